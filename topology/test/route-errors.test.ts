import t from 'tap';
import { isRouteError } from '../src/errors';
import { computeRoutes } from '../src/route-compute';
import { RouteEngine } from '../src/route-engine';
import type { Topology } from '../src/types';

const topology: Topology = {
  version: 1,
  source: 'test.yaml',
  sites: ['a', 'b'].map((id) => ({ id, kind: 'dc' as const, region: 'r', prefixes: [] })),
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

t.test('unknown class', (t) => {
  t.throws(() => computeRoutes(topology, { classes: ['voice', 'vidoe'] }), {
    name: 'RouteError',
    code: 'TOPO_ERR_UNKNOWN_CLASS',
    path: 'classes[1]',
    message: /unknown class 'vidoe' \(expected one of voice\)/,
  });
  t.end();
});

t.test('unknown site in a pair', (t) => {
  t.throws(() => computeRoutes(topology, { pairs: [{ src: 'a', dst: 'z' }] }), {
    code: 'TOPO_ERR_UNKNOWN_SITE',
    path: 'pairs[0].dst',
  });
  t.end();
});

t.test('same site pair', (t) => {
  t.throws(() => computeRoutes(topology, { pairs: [{ src: 'a', dst: 'a' }] }), {
    code: 'TOPO_ERR_SAME_SITE',
  });
  t.end();
});

t.test('unknown link in the state', (t) => {
  try {
    computeRoutes(topology, { state: { links: { nope: { up: false } } } });
    t.fail('should throw');
  } catch (err) {
    t.ok(isRouteError(err));
    t.match(err, { code: 'TOPO_ERR_UNKNOWN_LINK', path: 'state.links.nope' });
  }
  t.throws(() => new RouteEngine(topology, { hysteresis: { relativePct: Number.NaN } }), {
    code: 'TOPO_ERR_BAD_OPTION',
  });
  t.end();
});

t.test('outcomes are values: unreachable and degraded routes', (t) => {
  const down = computeRoutes(topology, { state: { links: { ab: { up: false } } } });
  t.same(
    down.routes.map((r) => [r.status, r.primary, r.backup]),
    [
      ['unreachable', null, null],
      ['unreachable', null, null],
    ],
  );
  const hot = computeRoutes(topology, {
    state: { links: { ab: { utilPct: 90 } } },
    pairs: [{ src: 'a', dst: 'b' }],
  });
  t.equal(
    hot.routes[0]!.status,
    'degraded',
    'only path over maxUtilPct: degraded with a best-effort primary',
  );
  t.same(hot.routes[0]!.primary!.links, ['ab']);
  t.equal(hot.routes[0]!.backup, null);
  const atBound = computeRoutes(topology, {
    state: { links: { ab: { latencyMs: 20, lossPct: 1, jitterMs: 5, utilPct: 80 } } },
  });
  t.equal(atBound.routes[0]!.status, 'ok', 'a path exactly at every bound is feasible');
  t.end();
});
