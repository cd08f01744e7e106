import t, { type Test } from 'tap';
import { searchTuning } from '../src/path-search';
import { computeRoutes } from '../src/route-compute';
import type { Path, Route, Topology } from '../src/types';
import { allSimplePaths, expectedRoute, type BrutePath } from './brute-force';
import { pick, prng, randomState, randomTopology } from './fixtures-random';

const CASES = 300;

/** Why `got` differs from the oracle's path, or '' when it is the same path with the same metrics. */
function pathDiff(got: Path | null, want: BrutePath | null): string {
  const show = (p: Path | null) => (p === null ? 'null' : `${p.sites.join('>')} [${p.links.join(',')}]`);
  if (want === null || got === null) return want === got ? '' : `got ${show(got)}, want ${show(want)}`;
  if (got.links.join(',') !== want.links.join(',') || got.sites.join(',') !== want.sites.join(',')) {
    return `got ${show(got)}, want ${show(want)}`;
  }
  const close = (x: number, y: number) => Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(y));
  const okMetrics =
    close(got.latencyMs, want.latencyMs) &&
    close(got.jitterMs, want.jitterMs) &&
    close(got.lossPct, want.lossPct) &&
    close(got.cost, want.cost) &&
    got.hops === want.hops;
  return okMetrics ? '' : `metrics of ${show(got)} differ: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`;
}

t.test('primary, status and backup equal a brute-force enumeration of all simple paths', (t) => {
  checkAgainstOracle(t, CASES);
  t.end();
});

t.test('the same with every site creating its label children lazily (hubs only, normally)', (t) => {
  const saved = searchTuning.lazyDegree;
  searchTuning.lazyDegree = 0;
  t.teardown(() => {
    searchTuning.lazyDegree = saved;
  });
  checkAgainstOracle(t, CASES);
  t.end();
});

t.test(
  'the same with classes that share an objective under nested SLAs and link sets (reused answers)',
  (t) => {
    checkAgainstOracle(t, 150, (rnd, topology) => ({
      ...topology,
      classes: [
        ...topology.classes,
        ...topology.classes.map((c, i) => {
          const f = pick(rnd, [0.5, 0.8, 1]);
          return {
            ...c,
            id: `${c.id}-tight`,
            priority: 10 + i,
            maxUtilPct: pick(rnd, [c.maxUtilPct, Math.min(c.maxUtilPct, 80), 50]),
            sla: {
              maxLatencyMs: c.sla.maxLatencyMs * f,
              maxJitterMs: c.sla.maxJitterMs * pick(rnd, [f, 1]),
              maxLossPct: c.sla.maxLossPct * pick(rnd, [f, 1]),
            },
          };
        }),
      ],
    }));
    t.end();
  },
);

function checkAgainstOracle(
  t: Test,
  cases: number,
  vary: (rnd: () => number, topology: Topology) => Topology = (_, topology) => topology,
): void {
  let checked = 0;
  const statuses = { ok: 0, degraded: 0, unreachable: 0 };
  let sharedBackups = 0;
  let mismatches = 0;
  const failures: string[] = [];
  for (let c = 0; c < cases; c++) {
    const rnd = prng(1000 + c);
    const topology = vary(rnd, randomTopology(rnd));
    const state = c % 5 === 0 ? undefined : randomState(rnd, topology);
    const { routes } = computeRoutes(topology, { state });
    const byKey = new Map<string, Route>(routes.map((r) => [`${r.class}|${r.src}|${r.dst}`, r]));
    if (routes.length !== topology.classes.length * topology.sites.length * (topology.sites.length - 1))
      mismatches++;
    for (const s of topology.sites) {
      for (const d of topology.sites) {
        if (s === d) continue;
        const paths = allSimplePaths(topology, state, s.id, d.id);
        for (const cls of topology.classes) {
          const got = byKey.get(`${cls.id}|${s.id}|${d.id}`)!;
          const want = expectedRoute(paths, cls);
          const where = `case ${c} ${cls.id} ${s.id}->${d.id}`;
          const problems = [
            got.status === want.status ? '' : `status ${got.status}, want ${want.status}`,
            pathDiff(got.primary, want.primary) && `primary: ${pathDiff(got.primary, want.primary)}`,
            pathDiff(got.backup, want.backup) && `backup: ${pathDiff(got.backup, want.backup)}`,
          ].filter((p) => p !== '');
          if (problems.length > 0 && failures.length < 10) failures.push(`${where}: ${problems.join('; ')}`);
          if (problems.length > 0) mismatches++;
          statuses[want.status]++;
          if (want.backup && want.primary && want.backup.links.some((l) => want.primary!.links.includes(l)))
            sharedBackups++;
          checked++;
        }
      }
    }
  }
  t.equal(
    mismatches,
    0,
    `every route matches the oracle${failures.length > 0 ? `; first: ${failures.join(' | ')}` : ''}`,
  );
  t.comment(`routes checked ${checked}: ${JSON.stringify(statuses)}, backups sharing links ${sharedBackups}`);
  t.ok(statuses.ok > 0 && statuses.degraded > 0 && statuses.unreachable > 0, 'every status was exercised');
  t.ok(sharedBackups > 0, 'the fewest-shared backup rule was exercised');
}
