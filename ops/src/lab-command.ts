/**
 * `meridian lab up|down|status|fault …` (root). Output for humans by default, `--json` for tools.
 */
import { parseArgs } from 'node:util';
import { REFERENCE_TOPOLOGY_PATH, isTopologyError, loadTopology, type Topology } from '@meridian/topology';
import { OpsError } from './errors';
import { labDown, labFault, labStatus, labUp, type LabFault } from './lab';
import { labServices } from './lab-services';

const USAGE = `usage: meridian lab up [--topology FILE] [--json] [--redis URL] [--influx URL]
                     [--no-services] [--no-fast-reroute]
       meridian lab down
       meridian lab status [--json]
       meridian lab fault LINK down|up|clear
       meridian lab fault LINK loss PCT
       meridian lab fault LINK delay MS [JITTER_MS]`;

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
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
          },
          strict: true,
        });
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
        const d = await labUp(topology, services);
        if (values.json === true) out(JSON.stringify(d));
        else {
          out(`lab up: ${d.sites.length} sites, ${d.links.length} links`);
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
        out(`lab down: removed ${r.removed} objects`);
        return 0;
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
      process.stderr.write(`meridian lab: ${err.message}\n`);
      return err.code === 'OPS_ERR_BAD_ARGS' ? 2 : 1;
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
