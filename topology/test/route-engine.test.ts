import t from 'tap';
import { computeRoutes } from '../src/route-compute';
import { RouteEngine, type LinkChanges } from '../src/route-engine';
import { applyHysteresis } from '../src/route-hysteresis';
import type { LinkState, Route, Topology } from '../src/types';
import { pick, prng, randomLinkState, randomState, randomTopology } from './fixtures-random';

function randomChanges(rnd: () => number, topology: Topology): LinkChanges {
  const changes: Record<string, ReturnType<typeof randomLinkState> | null> = {};
  const n = 1 + Math.floor(rnd() * 3);
  for (let i = 0; i < n; i++) {
    const l = pick(rnd, topology.links);
    changes[l.id] = rnd() < 0.1 ? null : randomLinkState(rnd, l);
  }
  return changes;
}

const show = (r: Route) =>
  `${r.class} ${r.src}->${r.dst} ${r.status} ${r.primary?.links.join(',') ?? '-'} / ${r.backup?.links.join(',') ?? '-'}`;

t.test('incremental updates equal a full recompute on random change sequences', (t) => {
  let steps = 0;
  let skipped = 0;
  let mismatches = 0;
  const failures: string[] = [];
  for (let c = 0; c < 60; c++) {
    const rnd = prng(5000 + c);
    const topology = randomTopology(rnd);
    const state = randomState(rnd, topology);
    const hysteresis =
      c % 2 === 0
        ? false
        : { relativePct: pick(rnd, [0, 10, 30]), absolute: { latency: 1, cost: 0.5, hops: 1 } };
    const inc = new RouteEngine(topology, { state, hysteresis });
    const full = new RouteEngine(topology, { state, hysteresis });
    for (let s = 0; s < 12; s++) {
      const changes = randomChanges(rnd, topology);
      const a = inc.update(changes);
      const b = full.update(changes, { full: true });
      steps++;
      skipped += a.total - a.recomputed;
      const ra = inc.routes.map(show);
      const rb = full.routes.map(show);
      const same = JSON.stringify(inc.routes) === JSON.stringify(full.routes);
      const sameChanges =
        JSON.stringify(a.changes.map((x) => [x.class, x.src, x.dst, x.reason])) ===
        JSON.stringify(b.changes.map((x) => [x.class, x.src, x.dst, x.reason]));
      if (!same || !sameChanges) {
        mismatches++;
        if (failures.length < 3) {
          const i = ra.findIndex((x, k) => x !== rb[k]);
          failures.push(`case ${c} step ${s}: ${ra[i] ?? 'changes differ'} vs ${rb[i] ?? ''}`);
        }
      }
      if (hysteresis === false) {
        const pure = computeRoutes(topology, { state: inc.state });
        if (JSON.stringify(pure.routes) !== JSON.stringify(inc.routes)) {
          mismatches++;
          if (failures.length < 3) failures.push(`case ${c} step ${s}: engine differs from computeRoutes`);
        }
      }
    }
  }
  t.equal(mismatches, 0, `incremental == full${failures.length > 0 ? `: ${failures.join(' | ')}` : ''}`);
  t.ok(skipped > 0, 'the filter proved some routes unaffected');
  t.comment(`${steps} update steps, ${skipped} route recomputations skipped`);
  t.end();
});

/** A state for `link` that is worse than `now` in one or more metrics (or down). */
function worsened(rnd: () => number, now: LinkState): LinkState {
  const s: { -readonly [K in keyof LinkState]: LinkState[K] } = { ...now };
  const r = rnd();
  if (r < 0.2) s.up = false;
  else if (r < 0.4) s.latencyMs = (now.latencyMs ?? 1) + pick(rnd, [0.1, 1, 5, 20]);
  else if (r < 0.55) s.jitterMs = (now.jitterMs ?? 0) + pick(rnd, [0.2, 3]);
  else if (r < 0.75) s.lossPct = Math.min(100, (now.lossPct ?? 0) + pick(rnd, [0.1, 1, 3]));
  else s.utilPct = Math.min(100, (now.utilPct ?? 0) + pick(rnd, [5, 30, 60]));
  return s;
}

t.test('incremental equals full on sequences of single links getting worse, then better again', (t) => {
  // Worse-only changes take the engine's fast path (only routes on the link), restoring ones the
  // bounded filter (tighter bounds through the link, bridges for shared backups): check both.
  let steps = 0;
  let mismatches = 0;
  const failures: string[] = [];
  for (let c = 0; c < 60; c++) {
    const rnd = prng(9000 + c);
    const topology = randomTopology(rnd);
    const state = randomState(rnd, topology);
    const hysteresis =
      c % 3 === 2 ? { relativePct: 10, absolute: { latency: 1, cost: 0.5, hops: 1 } } : false;
    const inc = new RouteEngine(topology, { state, hysteresis });
    const full = new RouteEngine(topology, { state, hysteresis });
    for (let s = 0; s < 10; s++) {
      const link = pick(rnd, topology.links);
      const before = inc.state.links[link.id] ?? { latencyMs: link.latencyMs };
      const sequence: LinkChanges[] = [{ [link.id]: worsened(rnd, before) }];
      if (rnd() < 0.5) sequence.push({ [link.id]: worsened(rnd, sequence[0]![link.id]!) });
      sequence.push({ [link.id]: inc.state.links[link.id] ?? null });
      for (const changes of sequence) {
        const a = inc.update(changes);
        const b = full.update(changes, { full: true });
        steps++;
        const same =
          JSON.stringify(inc.routes) === JSON.stringify(full.routes) &&
          JSON.stringify(a.changes.map((x) => [x.class, x.src, x.dst, x.reason])) ===
            JSON.stringify(b.changes.map((x) => [x.class, x.src, x.dst, x.reason]));
        if (!same) {
          mismatches++;
          const ra = inc.routes.map(show);
          const rb = full.routes.map(show);
          const i = ra.findIndex((x, k) => x !== rb[k]);
          if (failures.length < 3)
            failures.push(
              `case ${c} ${JSON.stringify(changes)}: ${ra[i] ?? 'changes differ'} vs ${rb[i] ?? ''}`,
            );
        }
      }
    }
  }
  t.equal(mismatches, 0, `incremental == full${failures.length > 0 ? `: ${failures.join(' | ')}` : ''}`);
  t.comment(`${steps} update steps`);
  t.end();
});

t.test('update reports changes with reasons and timings', (t) => {
  const topology: Topology = {
    version: 1,
    source: '<test>',
    sites: ['a', 'b', 'c'].map((id) => ({ id, kind: 'dc' as const, region: 'r', prefixes: [] })),
    links: [
      {
        id: 'ab',
        a: 'a',
        b: 'b',
        transport: 'leased',
        capacityMbps: 100,
        latencyMs: 10,
        jitterMs: 0,
        lossPct: 0,
        cost: 1,
      },
      {
        id: 'ac',
        a: 'a',
        b: 'c',
        transport: 'leased',
        capacityMbps: 100,
        latencyMs: 6,
        jitterMs: 0,
        lossPct: 0,
        cost: 1,
      },
      {
        id: 'cb',
        a: 'c',
        b: 'b',
        transport: 'leased',
        capacityMbps: 100,
        latencyMs: 6,
        jitterMs: 0,
        lossPct: 0,
        cost: 1,
      },
    ],
    classes: [
      {
        id: 'voice',
        objective: 'latency',
        maxUtilPct: 80,
        priority: 1,
        sla: { maxLatencyMs: 20, maxJitterMs: 5, maxLossPct: 1 },
      },
    ],
    devices: [],
  };
  const engine = new RouteEngine(topology, {
    pairs: [{ src: 'a', dst: 'b' }],
    hysteresis: { relativePct: 10, absolute: { latency: 2 } },
  });
  t.same(engine.routes[0]!.primary!.links, ['ab'], 'direct link first');
  let r = engine.update({ ab: { up: false } });
  t.same(
    r.changes.map((c) => c.reason),
    ['down'],
  );
  t.same(engine.routes[0]!.primary!.links, ['ac', 'cb']);
  t.ok(r.timings.totalMs >= 0 && r.recomputed === 1 && r.total === 1);
  // ab back at 10 ms vs current 12 ms: gain 2 ms >= 2 ms and 16.7% >= 10%: switch.
  r = engine.update({ ab: null });
  t.same(
    r.changes.map((c) => c.reason),
    ['better'],
  );
  // The current path ab slows to 11 ms: still feasible and still the optimum.
  r = engine.update({ ab: { latencyMs: 11 } });
  t.same(r.changes, [], 'current path still feasible: no change');
  // ab over the class utilisation limit: infeasible, switch.
  r = engine.update({ ab: { latencyMs: 11, utilPct: 95 } });
  t.same(
    r.changes.map((c) => c.reason),
    ['infeasible'],
  );
  t.same(engine.routes[0]!.primary!.links, ['ac', 'cb']);
  t.equal(engine.routes[0]!.backup, null, 'no other feasible path');
  // ab usable again at 11 ms vs 12 ms: gain 1 ms < 2 ms: hold ac,cb; the backup becomes ab.
  r = engine.update({ ab: { latencyMs: 11 } });
  t.same(
    r.changes.map((c) => c.reason),
    ['backup'],
  );
  t.same(engine.routes[0]!.primary!.links, ['ac', 'cb']);
  t.same(engine.routes[0]!.backup!.links, ['ab']);
  // Everything down: unreachable (status change).
  r = engine.update({ ab: { up: false }, ac: { up: false } });
  t.same(
    r.changes.map((c) => c.reason),
    ['status'],
  );
  t.equal(engine.routes[0]!.status, 'unreachable');
  t.throws(() => engine.update({ nope: { up: false } }), { code: 'TOPO_ERR_UNKNOWN_LINK' });
  t.equal(engine.routes[0]!.status, 'unreachable', 'a rejected update changes nothing');
  t.end();
});

t.test('applyHysteresis keeps a feasible path unless a candidate is better by both margins', (t) => {
  const rnd = prng(42);
  let held = 0;
  let cases = 0;
  for (let c = 0; c < 40; c++) {
    const topology = randomTopology(rnd);
    const s0 = randomState(rnd, topology);
    const s1 = randomState(rnd, topology);
    const before = computeRoutes(topology, { state: s0 }).routes;
    const pure = computeRoutes(topology, { state: s1 }).routes;
    const zero = applyHysteresis(topology, before, {
      state: s1,
      margins: { relativePct: 0, absolute: { latency: 0, cost: 0, hops: 0 } },
    });
    t.same(zero.routes, pure, `case ${c}: zero margins give the pure optimum`);
    const wide = applyHysteresis(topology, before, {
      state: s1,
      margins: { relativePct: 1000, absolute: { latency: 1e6, cost: 1e6, hops: 100 } },
    });
    wide.routes.forEach((r, i) => {
      const prev = before[i]!;
      cases++;
      if (
        prev.status === 'ok' &&
        r.status === 'ok' &&
        prev.primary!.links.join() !== pure[i]!.primary!.links.join()
      ) {
        // With huge margins a previous ok primary stays whenever it is still up and feasible.
        const stillFeasible = !wide.changes.some(
          (ch) => ch.class === r.class && ch.src === r.src && ch.dst === r.dst && ch.reason !== 'backup',
        );
        if (stillFeasible) {
          held++;
          t.same(r.primary!.links, prev.primary!.links, `case ${c} ${show(r)} held`);
        }
      }
    });
  }
  t.ok(held > 0, `some routes were held by hysteresis (${held} of ${cases})`);
  const rnd2 = prng(7);
  const topo = randomTopology(rnd2);
  const first = applyHysteresis(topo, [], {});
  t.ok(
    first.changes.length === first.routes.length && first.changes.every((c) => c.reason === 'new'),
    'no previous routes: all new',
  );
  t.throws(() => applyHysteresis(topo, [], { margins: { relativePct: -1 } }), {
    code: 'TOPO_ERR_BAD_OPTION',
  });
  t.end();
});
