import { parseArgs } from 'node:util';
import pino from 'pino';
import os from 'node:os';
import { EdgeAgent } from './agent';
import { DriverPolicyApplier, defaultAgentStateDir } from './agent-policy';
import type { PolicyDriver } from './driver';
import { LinuxPolicyDriver } from './driver-linux';
import { RouterOsPolicyDriver } from './driver-routeros';
import { FastReroute } from './fast-reroute';
import { alarmKey } from './link-alarm';
import { parseHostPort } from './controller-client';
import { isAgentError } from './errors';

const USAGE = `usage: meridian agent --site ID --controller HOST:PORT [--probe-listen HOST:PORT]
                      [--driver none|linux|routeros] [--netns NS] [--router HOST:PORT]
                      [--state-dir DIR] [--no-fast-reroute] [--frr-interval MS]
                      [--frr-max-pps N] [--reflector-nice N]
                      [--announce LINK=ADDR]...

Runs an edge agent: answers peers' probes on the probe port, probes the peers the controller's
probe plan names, and streams reports and liveness events to the controller over gRPC.

  --site ID                  topology site id of this agent
  --controller HOST:PORT     controller gRPC address (e.g. 127.0.0.1:7400)
  --probe-listen HOST:PORT   probe reflector address (default 127.0.0.1:0: a free port,
                             announced to the controller)
  --driver KIND              policy driver: none (default: pushes are refused with
                             AGENT_ERR_NO_DRIVER), linux (iproute2 + nftables), routeros.
                             At start the agent finds what the device can forward with
                             (SRv6, hop-by-hop), logs it and reports it in its hello
  --netns NS                 linux: work in this network namespace (not needed when the agent
                             itself runs inside the site's namespace)
  --router HOST:PORT         routeros: the router's API address (credentials from the env)
  --state-dir DIR            where the last applied policy is kept and re-applied from on start
                             (default /var/lib/meridian/agent-SITE as root, else TMPDIR)
  --no-fast-reroute          no local reroute (no per-path probes, no link alarms): only the
                             controller moves routes
  --frr-interval MS          per-path probe period (default 20)
  --frr-max-pps N            per-path probes per second at most (default 0: no limit); with
                             more paths the period grows. Link alarms (a link's own agents
                             declare it down and alarm every site) stay fast either way
  --reflector-nice N         nice value of the probe reflector's thread, -20..19 (default -10
                             as root, else the agent's): peers read its delay as the link's
                             and its silence as the link down, so it must not wait behind
                             the agent's own work
  --announce LINK=ADDR       announce the probe port at ADDR for LINK (repeatable; needs a
                             wildcard --probe-listen): peers probe the link over the link
  --log-level LEVEL          pino level (default info)

environment:
  MERIDIAN_AGENT_TOKEN       agent token the controller expects (required)
  MERIDIAN_ROUTER_USER, MERIDIAN_ROUTER_PASSWORD   routeros credentials

exit codes: 0 stopped by SIGINT/SIGTERM, 2 bad input or token refused, 1 internal error`;

/** The reflector thread's nice value as root: the lab's data plane runs at the same. */
const DEFAULT_REFLECTOR_NICE = -10;

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
    driver?: string;
    netns?: string;
    router?: string;
    'state-dir'?: string;
    'no-fast-reroute'?: boolean;
    'frr-interval'?: string;
    'frr-max-pps'?: string;
    'reflector-nice'?: string;
    announce?: string[];
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
        driver: { type: 'string' },
        netns: { type: 'string' },
        router: { type: 'string' },
        'state-dir': { type: 'string' },
        'no-fast-reroute': { type: 'boolean' },
        'frr-interval': { type: 'string' },
        'frr-max-pps': { type: 'string' },
        'reflector-nice': { type: 'string' },
        announce: { type: 'string', multiple: true },
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
  const driverKind = values.driver ?? 'none';
  if (driverKind !== 'none' && driverKind !== 'linux' && driverKind !== 'routeros') {
    return fail(`--driver '${driverKind}' is not one of none, linux, routeros`);
  }
  const announce: { link: string; host: string }[] = [];
  for (const a of values.announce ?? []) {
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)=(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
    if (m === null) return fail(`--announce '${a}' is not LINK=IPV4`);
    announce.push({ link: m[1]!, host: m[2]! });
  }
  const frrInterval = Number(values['frr-interval'] ?? '20');
  if (!Number.isInteger(frrInterval) || frrInterval < 5 || frrInterval > 10_000) {
    return fail(`--frr-interval '${values['frr-interval']}' is not an integer in 5..10000 (ms)`);
  }
  const frrMaxPps = Number(values['frr-max-pps'] ?? '0');
  if (!Number.isInteger(frrMaxPps) || frrMaxPps < 0 || frrMaxPps > 1_000_000) {
    return fail(`--frr-max-pps '${values['frr-max-pps']}' is not an integer in 0..1000000`);
  }
  const niceText = values['reflector-nice'];
  const reflectorNice =
    niceText !== undefined ? Number(niceText) : process.getuid?.() === 0 ? DEFAULT_REFLECTOR_NICE : null;
  if (
    reflectorNice !== null &&
    (!Number.isInteger(reflectorNice) || reflectorNice < -20 || reflectorNice > 19)
  ) {
    return fail(`--reflector-nice '${niceText}' is not an integer in -20..19`);
  }
  let driver: PolicyDriver | null = null;
  if (driverKind === 'linux') {
    driver = new LinuxPolicyDriver(values.netns !== undefined ? { netns: values.netns } : {});
  } else if (driverKind === 'routeros') {
    const router = parseHostPort(values.router ?? '');
    if (!router) return fail(`--driver routeros needs --router HOST:PORT (got '${values.router ?? ''}')`);
    const user = process.env['MERIDIAN_ROUTER_USER'];
    if (user === undefined || user === '') return fail('MERIDIAN_ROUTER_USER is not set (routeros driver)');
    driver = new RouterOsPolicyDriver({
      host: router.host,
      port: router.port,
      user,
      password: process.env['MERIDIAN_ROUTER_PASSWORD'] ?? '',
    });
  }
  const log = pino({ name: 'meridian-agent', level });

  let agent: EdgeAgent;
  let frr: FastReroute | null = null;
  try {
    let applier: DriverPolicyApplier | undefined;
    if (driver !== null) {
      applier = new DriverPolicyApplier({
        driver,
        site: values.site,
        stateDir: values['state-dir'] ?? defaultAgentStateDir(values.site, os.tmpdir()),
        log: log.child({ site: values.site }),
      });
      if (values['no-fast-reroute'] !== true && driver.kind === 'linux') {
        if (listen.port === 0)
          return fail('fast reroute needs a fixed --probe-listen port (the same at every site)');
        frr = new FastReroute({
          applier,
          // The path reflector listens on the host address, next to the probe port.
          reflectorPort: listen.port + 1,
          intervalMs: frrInterval,
          ...(frrMaxPps > 0 ? { maxPps: frrMaxPps } : {}),
          alarmKey: alarmKey(token),
          log: log.child({ site: values.site }),
        });
      }
      // The last applied policy first: the site forwards with it even if the controller is away.
      await applier.restore();
    }
    agent = new EdgeAgent({
      site: values.site,
      controller: values.controller,
      token,
      probeListen: listen,
      reflectorNice,
      log,
      announce,
      ...(applier !== undefined ? { applier } : {}),
    });
    await agent.start();
  } catch (err) {
    frr?.stop();
    if (isAgentError(err)) return fail(`${err.code}: ${err.message}`);
    throw err;
  }
  // A link of this site declared down by its own probes: reroute here and alarm every site.
  agent.on('liveness', (c) => {
    if (!c.up) frr?.linkDown(c.link);
  });
  frr?.on('reroute', (ev) =>
    agent.sendEvent({
      kind: 'fast-reroute',
      atMs: ev.atMs,
      link: ev.links[0] ?? '',
      peerSite: ev.dst,
      up: ev.action === 'activate-primary',
      detailJson: JSON.stringify(ev),
    }),
  );

  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      frr?.stop();
      Promise.all([agent.stop(), driver?.close()]).then(
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
