/**
 * Route engine benchmark (issue 2 §5). Run compiled: `npm run bench -w topology` (tsc -b, then node on
 * dist/bench/routes.bench.js). Prints a markdown table of medians over several runs.
 *
 * (a) reference topology, every ordered pair, every class;
 * (b) generated 300-site topology (6 core + 294 edge, >= 1,000 links) under a measured state: every
 *     ordered core pair and every edge<->core pair both ways, all five classes;
 * (c) one-link change on (b): RouteEngine incremental update vs full recompute.
 * (d) the sweep of issue 20: generated WANs (`generateWan`: 6 cores, 294 edges, 1,099 links, the
 *     five classes) over seeds and SLA tightness, every core↔core, edge→core and core→edge pair,
 *     nominal state; per topology the full computation, its graphology baseline, and one access
 *     link / one core link change on a RouteEngine; then the median and worst case over the sweep.
 *     `BENCH_SEEDS=1,2,3` `BENCH_TIGHTNESS=1,1.5` `BENCH_RUNS=3` override the sweep.
 * Baseline in the same run: graphology-shortest-path's bidirectional Dijkstra (unconstrained, the
 * class objective as weight, primary only) for the same (class, pair) queries as (b).
 */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import { MultiUndirectedGraph } from 'graphology';
import { bidirectional } from 'graphology-shortest-path/dijkstra';
import { loadTopology } from '../src/loader';
import { REFERENCE_TOPOLOGY_PATH } from '../src/reference-topology';
import { computeRoutes, type SitePair } from '../src/route-compute';
import { hubAndSpokePairs } from '../src/route-scope';
import { generateWan } from '../src/topology-generator';
import { RouteEngine } from '../src/route-engine';
import type { LinkState, NetworkState, Topology } from '../src/types';
import { largeState, largeTopology } from './fixture-large';

interface Stats {
  median: number;
  min: number;
  max: number;
  runs: number;
}

function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]!, runs: s.length };
}

function measure(fn: () => void, runs: number, warmup = 2): Stats {
  for (let i = 0; i < warmup; i++) fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  return stats(samples);
}

const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));

function corePairs(topology: Topology): SitePair[] {
  const core = topology.sites.filter((s) => s.kind !== 'edge').map((s) => s.id);
  const edge = topology.sites.filter((s) => s.kind === 'edge').map((s) => s.id);
  const pairs: SitePair[] = [];
  for (const a of core) for (const b of core) if (a !== b) pairs.push({ src: a, dst: b });
  for (const e of edge) {
    for (const c of core) {
      pairs.push({ src: e, dst: c });
      pairs.push({ src: c, dst: e });
    }
  }
  return pairs;
}

/** graphology's bidirectional Dijkstra for every (class, pair): unconstrained, primary only. */
function baseline(topology: Topology, state: NetworkState, pairs: readonly SitePair[]): () => number {
  const graph = new MultiUndirectedGraph();
  for (const s of topology.sites) graph.addNode(s.id);
  for (const l of topology.links) {
    const st = state.links[l.id];
    if (st?.up === false) continue;
    graph.addEdgeWithKey(l.id, l.a, l.b, { latency: st?.latencyMs ?? l.latencyMs, cost: l.cost });
  }
  return () => {
    let found = 0;
    for (const cls of topology.classes) {
      const weight = cls.objective === 'hops' ? () => 1 : cls.objective;
      for (const p of pairs) if (bidirectional(graph, p.src, p.dst, weight).length > 0) found++;
    }
    return found;
  };
}

function machine(): string {
  const cpu =
    /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? '?';
  let load: string;
  try {
    load = execSync('cat /proc/loadavg', { encoding: 'utf8' }).trim().split(' ').slice(0, 3).join(' ');
  } catch {
    load = '?';
  }
  return `${os.availableParallelism()} CPUs (nproc), ${cpu}, Node ${process.version}, load average ${load}`;
}

const list = (env: string | undefined, fallback: number[]): number[] =>
  env === undefined || env === '' ? fallback : env.split(',').map(Number);

/** One access link degraded and restored, one core link down and up: incremental update times. */
function incremental(
  topology: Topology,
  pairs: readonly SitePair[],
): { access: Stats; core: Stats; same: boolean } {
  const engine = new RouteEngine(topology, { pairs });
  const used = new Map<string, number>();
  for (const r of engine.routes)
    for (const id of r.primary?.links ?? []) used.set(id, (used.get(id) ?? 0) + 1);
  const isCore = (id: string) => !id.startsWith('edge-');
  const access = topology.links
    .filter((l) => isCore(l.b) !== isCore(l.a) && (used.get(l.id) ?? 0) > 0)
    .slice(0, 10);
  const core = topology.links
    .filter((l) => isCore(l.a) && isCore(l.b))
    .sort((x, y) => (used.get(y.id) ?? 0) - (used.get(x.id) ?? 0))
    .slice(0, 3);
  const a: number[] = [];
  const c: number[] = [];
  for (const l of access) {
    a.push(engine.update({ [l.id]: { latencyMs: l.latencyMs + 30, lossPct: 0.8 } }).timings.totalMs);
    a.push(engine.update({ [l.id]: null }).timings.totalMs);
  }
  for (const l of core) {
    c.push(engine.update({ [l.id]: { up: false } }).timings.totalMs);
    c.push(engine.update({ [l.id]: null }).timings.totalMs);
  }
  const same = JSON.stringify(engine.routes) === JSON.stringify(computeRoutes(topology, { pairs }).routes);
  return { access: stats(a), core: stats(c), same };
}

/** (d): the sweep of generated WANs. Returns its table rows and whether every incremental run matched. */
function sweep(): { lines: string[]; same: boolean } {
  const seeds = list(process.env['BENCH_SEEDS'], [1, 2, 3, 4, 5]);
  const tightness = list(process.env['BENCH_TIGHTNESS'], [1, 1.5]);
  const runs = list(process.env['BENCH_RUNS'], [3])[0]!;
  const lines = [
    '| seed | SLA tightness | ok / degraded | median ms | min–max ms | baseline ms | ratio | access link inc. median / max ms | core link inc. median ms |',
    '|---:|---:|---|---:|---:|---:|---:|---:|---:|',
  ];
  const all: { ms: number; ratio: number }[] = [];
  let same = true;
  for (const seed of seeds) {
    let baseMs: number | undefined;
    for (const t of tightness) {
      const topo = generateWan({ seed, slaTightness: t });
      const pairs = hubAndSpokePairs(topo);
      const st = { ok: 0, degraded: 0, unreachable: 0 };
      for (const r of computeRoutes(topo, { pairs }).routes) st[r.status]++;
      const e = measure(() => computeRoutes(topo, { pairs }), runs, 1);
      // The baseline ignores SLAs: one measurement per seed serves every tightness.
      if (baseMs === undefined) {
        const base = baseline(topo, { links: {} }, pairs);
        baseMs = measure(() => void base(), 2, 0).median;
      }
      const inc = incremental(topo, pairs);
      same &&= inc.same;
      const ratio = e.median / baseMs;
      all.push({ ms: e.median, ratio });
      lines.push(
        `| ${seed} | ${t} | ${st.ok} / ${st.degraded} | ${ms(e.median)} | ${ms(e.min)}–${ms(e.max)} | ${ms(baseMs)} | ${ratio.toFixed(3)} | ${ms(inc.access.median)} / ${ms(inc.access.max)} | ${ms(inc.core.median)} |`,
      );
    }
  }
  const byMs = stats(all.map((x) => x.ms));
  const byRatio = stats(all.map((x) => x.ratio));
  lines.push(
    `| **sweep (${all.length})** | | | median **${ms(byMs.median)}**, worst **${ms(byMs.max)}** | | | median **${byRatio.median.toFixed(3)}**, worst **${byRatio.max.toFixed(3)}** | | |`,
  );
  return { lines, same };
}

function main(): void {
  const rows: string[][] = [];
  const reference = loadTopology(REFERENCE_TOPOLOGY_PATH);

  // (a)
  const refRoutes = computeRoutes(reference).routes.length;
  const a = measure(() => computeRoutes(reference), 40, 5);
  rows.push([
    '(a) reference, all pairs, all classes',
    `${refRoutes} routes`,
    ms(a.median),
    `${ms(a.min)}–${ms(a.max)}`,
    '< 10 ms',
  ]);

  // (b)
  const large = largeTopology(reference);
  const state = largeState(large);
  const pairs = corePairs(large);
  const nRoutes = pairs.length * large.classes.length;
  const b = measure(() => computeRoutes(large, { state, pairs }), 9, 2);
  rows.push([
    `(b) 300 sites / ${large.links.length} links, measured state`,
    `${nRoutes} routes`,
    ms(b.median),
    `${ms(b.min)}–${ms(b.max)}`,
    '< 200 ms',
  ]);
  const bNominal = measure(() => computeRoutes(large, { pairs }), 9, 2);
  rows.push([
    '(b) same, nominal state',
    `${nRoutes} routes`,
    ms(bNominal.median),
    `${ms(bNominal.min)}–${ms(bNominal.max)}`,
    '',
  ]);
  const statuses = { ok: 0, degraded: 0, unreachable: 0 };
  for (const r of computeRoutes(large, { state, pairs }).routes) statuses[r.status]++;

  const base = baseline(large, state, pairs);
  const bl = measure(() => void base(), 3, 1);
  rows.push([
    '(b) baseline: graphology bidirectional Dijkstra, same (class, pair) queries, primary only',
    `${nRoutes} queries`,
    ms(bl.median),
    `${ms(bl.min)}–${ms(bl.max)}`,
    `ratio ${(bl.median / b.median).toFixed(1)}× slower than (b)`,
  ]);

  // (c)
  const engine = new RouteEngine(large, { state, pairs });
  const initial = engine.routes;
  const used = new Map<string, number>();
  for (const r of initial) for (const id of r.primary?.links ?? []) used.set(id, (used.get(id) ?? 0) + 1);
  const accessLinks = large.links
    .filter((l) => l.transport === 'mpls' && (used.get(l.id) ?? 0) > 0)
    .slice(0, 15);
  const coreLinks = large.links
    .filter((l) => !l.a.startsWith('edge-') && !l.b.startsWith('edge-'))
    .sort((x, y) => (used.get(y.id) ?? 0) - (used.get(x.id) ?? 0))
    .slice(0, 5);
  const incAccess: number[] = [];
  const incCore: number[] = [];
  const recomputedAccess: number[] = [];
  const recomputedCore: number[] = [];
  const degrade = (id: string): LinkState => ({ ...state.links[id], latencyMs: 60, lossPct: 0.8 });
  for (let round = 0; round < 3; round++) {
    for (const l of accessLinks) {
      for (const change of [{ [l.id]: degrade(l.id) }, { [l.id]: state.links[l.id] ?? null }]) {
        const r = engine.update(change);
        incAccess.push(r.timings.totalMs);
        recomputedAccess.push(r.recomputed);
      }
    }
    for (const l of coreLinks) {
      for (const change of [
        { [l.id]: { ...state.links[l.id], up: false } },
        { [l.id]: state.links[l.id] ?? null },
      ]) {
        const r = engine.update(change);
        incCore.push(r.timings.totalMs);
        recomputedCore.push(r.recomputed);
      }
    }
  }
  const fullSamples: number[] = [];
  for (const l of accessLinks.slice(0, 5)) {
    for (const change of [{ [l.id]: degrade(l.id) }, { [l.id]: state.links[l.id] ?? null }]) {
      fullSamples.push(engine.update(change, { full: true }).timings.totalMs);
    }
  }
  const same =
    JSON.stringify(engine.routes) ===
    JSON.stringify(computeRoutes(large, { state: engine.state, pairs }).routes);
  const inc1 = stats(incAccess);
  const inc2 = stats(incCore);
  const full = stats(fullSamples);
  const avg = (xs: number[]) => Math.round(xs.reduce((s, x) => s + x, 0) / xs.length);
  rows.push([
    '(c) one access link degraded/restored, incremental',
    `${avg(recomputedAccess)} of ${nRoutes} routes recomputed (mean)`,
    ms(inc1.median),
    `${ms(inc1.min)}–${ms(inc1.max)}`,
    '< 10 ms',
  ]);
  rows.push([
    '(c) one busiest core link down/up, incremental',
    `${avg(recomputedCore)} of ${nRoutes} routes recomputed (mean)`,
    ms(inc2.median),
    `${ms(inc2.min)}–${ms(inc2.max)}`,
    '',
  ]);
  rows.push([
    '(c) one link change, full recompute',
    `${nRoutes} routes`,
    ms(full.median),
    `${ms(full.min)}–${ms(full.max)}`,
    '',
  ]);

  console.log(`Machine: ${machine()}`);
  console.log(`(b) statuses under the measured state: ${JSON.stringify(statuses)}`);
  console.log(`(c) incremental result equals a full computeRoutes: ${same}\n`);
  console.log('| scenario | size | median ms | min–max ms | target / note |');
  console.log('|---|---|---:|---:|---|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  if (!same) process.exitCode = 1;
  if (process.env['BENCH_SWEEP'] === '0') return;
  const d = sweep();
  console.log(
    `\n(d) generated WANs (targets: <= 200 ms and <= 0.04 x baseline each; access link <= 10 ms); incremental = full: ${d.same}\n`,
  );
  for (const l of d.lines) console.log(l);
  if (!d.same) process.exitCode = 1;
}

main();
