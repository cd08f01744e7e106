/**
 * `meridian routes`: application-aware routes for a topology and an optional measured state, as an
 * aligned table or as JSON (the `{"routes":[...]}` contract of issue 2 §4).
 */
import { parseArgs } from 'node:util';
import { formatNumber, formatTable, jsonNumber, writeProblems, writeStdout } from './cli-output';
import { checkTopologyFile } from './loader';
import { REFERENCE_TOPOLOGY_PATH } from './reference-topology';
import { computeRoutes, type SitePair } from './route-compute';
import { checkNetworkStateFile } from './state-loader';
import { closest, listIds } from './suggest';
import type { LinkState, NetworkState, Path, Route, Topology } from './types';

const USAGE = `usage: meridian routes [--topology FILE] [--state STATE.json] [--class ID]... [--from SITE]
                       [--to SITE] [--fail-link ID]... [--json]

  --topology FILE    topology YAML (default: the reference topology)
  --state FILE       measured link state, JSON: {"links":{"<id>":{"up","latencyMs","jitterMs","lossPct","utilPct"}}}
  --class ID         only this class (repeatable; default: every class)
  --from SITE        only routes from SITE (default: every site)
  --to SITE          only routes to SITE (default: every site)
  --fail-link ID     what-if: treat the link as down (repeatable)
  --json             print {"routes":[...]} instead of a table

Exit 0 with the routes; 2 for bad flags, unknown sites, classes or links, invalid or unreadable files.`;

/** The JSON form of a path: exactly these fields, in this order. */
export interface PathJson {
  sites: string[];
  links: string[];
  latencyMs: number;
  jitterMs: number;
  lossPct: number;
  cost: number;
  hops: number;
}

/** The JSON form of a route: exactly these fields, in this order. */
export interface RouteJson {
  class: string;
  src: string;
  dst: string;
  status: Route['status'];
  primary: PathJson | null;
  backup: PathJson | null;
}

/** Built field by field so nothing the engine adds internally leaks into the contract. */
function pathJson(p: Path | null): PathJson | null {
  if (p === null) return null;
  return {
    sites: [...p.sites],
    links: [...p.links],
    latencyMs: jsonNumber(p.latencyMs),
    jitterMs: jsonNumber(p.jitterMs),
    lossPct: jsonNumber(p.lossPct),
    cost: jsonNumber(p.cost),
    hops: p.hops,
  };
}

/** Routes in the JSON contract form (numbers rounded to 1e-9, see `jsonNumber`). */
export function routesJson(routes: readonly Route[]): { routes: RouteJson[] } {
  return {
    routes: routes.map((r) => ({
      class: r.class,
      src: r.src,
      dst: r.dst,
      status: r.status,
      primary: pathJson(r.primary),
      backup: pathJson(r.backup),
    })),
  };
}

/** `bj-a -[leased]-> sh-a -[fiber]-> cloud-b`. */
export function formatPath(topology: Topology, p: Path | null): string {
  if (p === null) return '-';
  const transport = new Map(topology.links.map((l) => [l.id, l.transport]));
  let out = p.sites[0] ?? '';
  p.links.forEach((id, i) => {
    out += ` -[${transport.get(id) ?? id}]-> ${p.sites[i + 1] ?? '?'}`;
  });
  return out;
}

/** The human table: one line per route. */
export function routesTable(topology: Topology, routes: readonly Route[]): string {
  const rows = routes.map((r) => {
    const p = r.primary;
    return [
      r.class,
      r.src,
      r.dst,
      r.status,
      formatPath(topology, p),
      p === null ? '-' : formatNumber(p.latencyMs),
      p === null ? '-' : formatNumber(p.jitterMs),
      p === null ? '-' : formatNumber(p.lossPct),
      p === null ? '-' : formatNumber(p.cost),
      formatPath(topology, r.backup),
    ];
  });
  const table = formatTable(
    ['CLASS', 'SRC', 'DST', 'STATUS', 'PRIMARY', 'LAT_MS', 'JIT_MS', 'LOSS_%', 'COST', 'BACKUP'],
    rows,
    ['left', 'left', 'left', 'left', 'left', 'right', 'right', 'right', 'right', 'left'],
  );
  const count = (s: Route['status']) => routes.filter((r) => r.status === s).length;
  return (
    table +
    `${routes.length} route${routes.length === 1 ? '' : 's'}: ${count('ok')} ok, ${count('degraded')} degraded, ` +
    `${count('unreachable')} unreachable\n`
  );
}

function usageError(message: string): number {
  process.stderr.write(`meridian routes: ${message}\n\n${USAGE}\n`);
  return 2;
}

function inputError(message: string): number {
  process.stderr.write(`meridian routes: ${message}\n`);
  return 2;
}

function unknownId(what: string, flag: string, id: string, known: readonly string[]): number {
  const guess = closest(id, known);
  return inputError(
    `${flag}: unknown ${what} '${id}'${guess === undefined ? '' : `, did you mean '${guess}'?`} ` +
      `(expected one of ${listIds(known, 12)})`,
  );
}

/**
 * Runs `meridian routes`.
 * @returns the exit code: 0 routes printed, 2 bad flags or input.
 */
export function routesCommand(argv: readonly string[]): Promise<number> {
  return Promise.resolve(run(argv));
}

function run(argv: readonly string[]): number {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        topology: { type: 'string' },
        state: { type: 'string' },
        class: { type: 'string', multiple: true },
        from: { type: 'string' },
        to: { type: 'string' },
        'fail-link': { type: 'string', multiple: true },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    });
  } catch (err) {
    return usageError(err instanceof Error ? err.message : String(err));
  }
  const opts = parsed.values;
  if (opts.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  for (const [flag, v] of [
    ['--topology', opts.topology],
    ['--state', opts.state],
    ['--from', opts.from],
    ['--to', opts.to],
  ] as const) {
    if (v === '') return usageError(`${flag} needs a value`);
  }

  const topoFile = opts.topology ?? REFERENCE_TOPOLOGY_PATH;
  const checked = checkTopologyFile(topoFile);
  for (const w of checked.warnings) process.stderr.write(`warning: ${w.message}\n`);
  const topology = checked.topology;
  if (topology === undefined) {
    const n = checked.problems.length;
    writeProblems(
      `meridian routes: ${topoFile}: invalid topology, ${n} problem${n === 1 ? '' : 's'}:`,
      checked.problems,
    );
    return 2;
  }

  let state: NetworkState | undefined;
  if (opts.state !== undefined) {
    const s = checkNetworkStateFile(opts.state, topology);
    if (s.state === undefined) {
      const n = s.problems.length;
      writeProblems(
        `meridian routes: ${opts.state}: invalid state, ${n} problem${n === 1 ? '' : 's'}:`,
        s.problems,
      );
      return 2;
    }
    state = s.state;
  }

  const classIds = topology.classes.map((c) => c.id);
  let classes: string[] | undefined;
  if (opts.class !== undefined) {
    classes = [];
    for (const id of opts.class) {
      if (!classIds.includes(id)) return unknownId('class', '--class', id, classIds);
      if (!classes.includes(id)) classes.push(id);
    }
  }

  const siteIds = topology.sites.map((s) => s.id);
  for (const [flag, id] of [
    ['--from', opts.from],
    ['--to', opts.to],
  ] as const) {
    if (id !== undefined && !siteIds.includes(id)) return unknownId('site', flag, id, siteIds);
  }
  if (opts.from !== undefined && opts.from === opts.to) {
    return inputError(`--from and --to name the same site '${opts.from}' (expected two different sites)`);
  }

  if (opts['fail-link'] !== undefined) {
    const linkIds = topology.links.map((l) => l.id);
    const links: Record<string, LinkState> = { ...(state?.links ?? {}) };
    for (const id of opts['fail-link']) {
      if (!linkIds.includes(id)) return unknownId('link', '--fail-link', id, linkIds);
      links[id] = { ...(links[id] ?? {}), up: false };
    }
    state = { links };
  }

  let pairs: SitePair[] | undefined;
  const { from, to } = opts;
  if (from !== undefined && to !== undefined) pairs = [{ src: from, dst: to }];
  else if (from !== undefined) pairs = siteIds.filter((s) => s !== from).map((dst) => ({ src: from, dst }));
  else if (to !== undefined) pairs = siteIds.filter((s) => s !== to).map((src) => ({ src, dst: to }));

  let routes: Route[];
  try {
    routes = computeRoutes(topology, { state, classes, pairs }).routes;
  } catch (err) {
    // Every id was checked above; an engine refusal is still bad input, never a stack trace.
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('TOPO_ERR_')) {
      return inputError(`${code}: ${err instanceof Error ? err.message : String(err)}`);
    }
    throw err;
  }
  writeStdout(opts.json === true ? `${JSON.stringify(routesJson(routes))}\n` : routesTable(topology, routes));
  return 0;
}
