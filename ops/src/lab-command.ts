/**
 * `meridian lab up|down|status|fault …` (root). Output for humans by default, `--json` for tools.
 */
import { parseArgs } from 'node:util';
import { REFERENCE_TOPOLOGY_PATH, isTopologyError, loadTopology, type Topology } from '@meridian/topology';
import { OpsError } from './errors';
import {
  formatLabProgress,
  labDown,
  labFault,
  labStatus,
  labUp,
  parseForwarding,
  type LabDescription,
  type LabDownResult,
  type LabFault,
  type LabUpOptions,
} from './lab';
import { labServices } from './lab-services';

const USAGE = `usage: meridian lab up [--topology FILE] [--json] [--redis URL] [--influx URL]
                     [--forwarding auto|srv6|hop-by-hop] [--no-services] [--no-fast-reroute]
       meridian lab down
       meridian lab status [--json]
       meridian lab fault LINK down|up|clear
       meridian lab fault LINK loss PCT
       meridian lab fault LINK delay MS [JITTER_MS]`;

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/**
 * `labUp` for a CLI: progress lines on stderr (stdout stays for `--json`), and SIGINT/SIGTERM at
 * any point interrupt bring-up, which then removes what it made (a second signal during that
 * teardown is ignored: stopping it halfway would leave the lab behind). Rejects like `labUp`;
 * an interruption is OPS_ERR_INTERRUPTED with `signal` set.
 */
export async function labUpInterruptible(
  topology: Topology,
  options: Omit<LabUpOptions, 'signal' | 'onProgress'>,
  who: string,
): Promise<LabDescription> {
  const abort = new AbortController();
  let received: NodeJS.Signals | null = null;
  const started = Date.now();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (received !== null) return;
    received = sig;
    process.stderr.write(`${who}: ${sig}: stopping bring-up and removing the partial lab...\n`);
    abort.abort(`interrupted by ${sig}`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await labUp(topology, {
      ...options,
      signal: abort.signal,
      onProgress: (p) =>
        process.stderr.write(
          `${who}: [${((Date.now() - started) / 1000).toFixed(1)} s] ${formatLabProgress(p)}\n`,
        ),
    });
  } catch (err) {
    if (received !== null && err instanceof OpsError && err.code === 'OPS_ERR_INTERRUPTED') {
      throw Object.assign(err, { signal: received });
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * How long `lab up` waits for another lab on the machine to go down (MERIDIAN_LAB_WAIT_MS, default
 * 0: refuse at once). Test files that run the CLI in parallel set it, so their labs take turns.
 */
export function labSlotWaitMs(): number {
  const v = Number(process.env['MERIDIAN_LAB_WAIT_MS'] ?? '0');
  return Number.isFinite(v) && v > 0 ? v : 0;
}

/** The exit code for a failed command: 2 for bad input, 128+N after signal N, else 1. */
export function exitCodeOf(err: OpsError): number {
  if (err.code === 'OPS_ERR_BAD_ARGS') return 2;
  if (err.code === 'OPS_ERR_INTERRUPTED') {
    const sig = (err as OpsError & { signal?: NodeJS.Signals }).signal;
    return sig === 'SIGINT' ? 130 : 143;
  }
  return 1;
}

/** `lab down`'s report, for humans. */
export function formatLabDown(r: LabDownResult): string {
  const left = r.survivors.length > 0 ? `; STILL RUNNING after SIGKILL: ${r.survivors.join(', ')}` : '';
  return `lab down: removed ${r.removed} objects (namespaces, devices), stopped ${r.processes} processes${left}`;
}

function loadTopologyFile(file: string): Topology {
  try {
    return loadTopology(file);
  } catch (err) {
    if (isTopologyError(err)) throw new OpsError('OPS_ERR_BAD_ARGS', err.message);
    throw err;
  }
}

function num(text: string | undefined, what: string, max: number): number {
  const v = Number(text);
  if (text === undefined || text === '' || !Number.isFinite(v) || v < 0 || v > max) {
    throw new OpsError('OPS_ERR_BAD_ARGS', `${what} must be a number in 0..${max}, got '${text ?? ''}'`);
  }
  return v;
}

export function parseFault(args: readonly string[]): LabFault {
  const [kind, a, b, ...rest] = args;
  const extra = (n: number): void => {
    if (args.length > n) throw new OpsError('OPS_ERR_BAD_ARGS', `unexpected '${args.slice(n).join(' ')}'`);
  };
  const k = kind ?? '';
  switch (k) {
    case 'down':
    case 'up':
    case 'clear':
      extra(1);
      return { kind: k };
    case 'loss':
      extra(2);
      return { kind: k, pct: num(a, 'PCT', 100) };
    case 'delay':
      if (rest.length > 0) extra(3);
      return b === undefined
        ? { kind: k, ms: num(a, 'MS', 60000) }
        : { kind: k, ms: num(a, 'MS', 60000), jitterMs: num(b, 'JITTER_MS', 60000) };
    default:
      throw new OpsError('OPS_ERR_BAD_ARGS', `unknown fault '${kind ?? ''}'\n${USAGE}`);
  }
}

/** `meridian lab …`; resolves to the exit code. */
export async function labCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub ?? '') {
      case 'up': {
        const { values } = parseArgs({
          args: rest,
          options: {
            topology: { type: 'string' },
            json: { type: 'boolean' },
            redis: { type: 'string' },
            influx: { type: 'string' },
            'no-services': { type: 'boolean' },
            'no-fast-reroute': { type: 'boolean' },
            forwarding: { type: 'string' },
          },
          strict: true,
        });
        const forwarding = parseForwarding(values.forwarding);
        const topology = loadTopologyFile(values.topology ?? REFERENCE_TOPOLOGY_PATH);
        const services =
          values['no-services'] === true
            ? {}
            : {
                startServices: labServices({
                  ...(values.redis !== undefined ? { redisUrl: values.redis } : {}),
                  ...(values.influx !== undefined ? { influxUrl: values.influx } : {}),
                  ...(values['no-fast-reroute'] === true ? { fastReroute: false } : {}),
                }),
              };
        const d = await labUpInterruptible(
          topology,
          { ...services, forwarding, waitMs: labSlotWaitMs() },
          'meridian lab up',
        );
        if (values.json === true) out(JSON.stringify(d));
        else {
          out(`lab up: ${d.sites.length} sites, ${d.links.length} links, forwarding ${d.forwarding}`);
          for (const s of d.sites) out(`  ${s.id}\t${s.netns}\t${s.address}`);
          if (d.controller.http !== null) {
            out(`controller: API http://${d.controller.http}/api/v1  gRPC ${d.controller.grpc ?? ''}`);
            out(`API token: ${d.apiToken ?? ''}`);
            out('every agent has applied its first policy');
          } else out('controller and agents: not started (--no-services)');
        }
        return 0;
      }
      case 'down': {
        parseArgs({ args: rest, options: {}, strict: true });
        const r = await labDown();
        out(formatLabDown(r));
        return r.survivors.length > 0 ? 1 : 0;
      }
      case 'status': {
        const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean' } }, strict: true });
        const s = await labStatus();
        if (values.json === true) out(JSON.stringify(s));
        else if (!s.up) out('lab: down');
        else {
          out(`lab: up, ${s.description?.sites.length ?? 0} sites`);
          for (const l of s.links as {
            id: string;
            ab: Record<string, unknown>;
            ba: Record<string, unknown>;
          }[]) {
            const d = (x: Record<string, unknown>): string =>
              `${x['up'] === true ? 'up' : 'DOWN'} ${String(x['delayMs'])}±${String(x['jitterMs'])}ms loss ${String(x['lossPct'])}% fwd ${String(x['forwarded'])} drop ${String(x['dropped'])}`;
            out(`  ${l.id}\ta>b ${d(l.ab)}\tb>a ${d(l.ba)}`);
          }
        }
        return 0;
      }
      case 'fault': {
        const [link, ...f] = rest;
        if (link === undefined) throw new OpsError('OPS_ERR_BAD_ARGS', `missing LINK\n${USAGE}`);
        const r = await labFault(link, parseFault(f));
        out(JSON.stringify(r));
        return 0;
      }
      default:
        process.stderr.write(`${USAGE}\n`);
        return sub === '--help' || sub === 'help' ? 0 : 2;
    }
  } catch (err) {
    if (err instanceof OpsError) {
      process.stderr.write(`meridian lab: ${err.code}: ${err.message}\n`);
      return exitCodeOf(err);
    }
    if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      process.stderr.write(`meridian lab: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    if ((err as { code?: string }).code === 'ENOENT') {
      process.stderr.write(`meridian lab: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}
