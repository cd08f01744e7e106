import { parseArgs } from 'node:util';
import pino from 'pino';
import { EdgeAgent } from './agent';
import { parseHostPort } from './controller-client';
import { isAgentError } from './errors';

const USAGE = `usage: meridian agent --site ID --controller HOST:PORT [--probe-listen HOST:PORT]

Runs an edge agent: answers peers' probes on the probe port, probes the peers the controller's
probe plan names, and streams reports and liveness events to the controller over gRPC.

  --site ID                  topology site id of this agent
  --controller HOST:PORT     controller gRPC address (e.g. 127.0.0.1:7400)
  --probe-listen HOST:PORT   probe reflector address (default 127.0.0.1:0: a free port,
                             announced to the controller)
  --log-level LEVEL          pino level (default info)

environment:
  MERIDIAN_AGENT_TOKEN       agent token the controller expects (required)

exit codes: 0 stopped by SIGINT/SIGTERM, 2 bad input or token refused, 1 internal error`;

function fail(msg: string): number {
  process.stderr.write(`meridian agent: ${msg}\n\n${USAGE}\n`);
  return 2;
}

/** `meridian agent ...`: resolves to the exit code after a clean shutdown. */
export async function agentCommand(argv: string[]): Promise<number> {
  let values: {
    site?: string;
    controller?: string;
    'probe-listen'?: string;
    'log-level'?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        site: { type: 'string' },
        controller: { type: 'string' },
        'probe-listen': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    return fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (!values.site) return fail('--site is required');
  if (!values.controller) return fail('--controller is required');
  if (!parseHostPort(values.controller)) return fail(`--controller '${values.controller}' is not HOST:PORT`);
  const listen = parseHostPort(values['probe-listen'] ?? '127.0.0.1:0');
  if (!listen) return fail(`--probe-listen '${values['probe-listen']}' is not HOST:PORT`);
  const token = process.env['MERIDIAN_AGENT_TOKEN'];
  if (token === undefined || token === '') {
    return fail('MERIDIAN_AGENT_TOKEN is not set: export the agent token the controller expects');
  }
  const level = values['log-level'] ?? 'info';
  if (!Object.prototype.hasOwnProperty.call(pino.levels.values, level) && level !== 'silent') {
    return fail(`--log-level '${level}' is not one of ${Object.keys(pino.levels.values).join(', ')}, silent`);
  }
  const log = pino({ name: 'meridian-agent', level });

  let agent: EdgeAgent;
  try {
    agent = new EdgeAgent({
      site: values.site,
      controller: values.controller,
      token,
      probeListen: listen,
      log,
    });
    await agent.start();
  } catch (err) {
    if (isAgentError(err)) return fail(`${err.code}: ${err.message}`);
    throw err;
  }

  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      agent.stop().then(
        () => resolve(code),
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          resolve(1);
        },
      );
    };
    const onSignal = (sig: NodeJS.Signals): void => {
      log.info({ signal: sig }, 'stopping');
      finish(0);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    agent.on('fatal', (err) => {
      process.stderr.write(`meridian agent: ${err.code}: ${err.message}\n`);
      finish(2);
    });
  });
}
