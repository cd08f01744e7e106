import t from 'tap';
import { checkTopology, parseTopology } from '../src/loader';
import { computeRoutes } from '../src/route-compute';
import { RouteEngine } from '../src/route-engine';
import { fullMeshPairs, hubAndSpokePairs, routingPairs } from '../src/route-scope';

const BASE = `version: 1
sites:
  - { id: dc-1, kind: dc }
  - { id: cloud-1, kind: cloud }
  - { id: e-1, kind: edge }
  - { id: e-2, kind: edge }
links:
  - { id: l1, a: dc-1, b: cloud-1, transport: fiber, capacityMbps: 1000, latencyMs: 1 }
  - { id: l2, a: e-1, b: dc-1, transport: mpls, capacityMbps: 100, latencyMs: 5 }
  - { id: l3, a: e-2, b: cloud-1, transport: internet, capacityMbps: 100, latencyMs: 7 }
  - { id: l4, a: e-1, b: e-2, transport: internet, capacityMbps: 100, latencyMs: 2 }
classes:
  - { id: voice, sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 }, objective: latency, priority: 1 }
`;

const key = (p: { src: string; dst: string }) => `${p.src}>${p.dst}`;

t.test('hub-and-spoke: hubs both ways, each spoke to and from every hub, never spoke to spoke', (t) => {
  const topo = parseTopology(`${BASE}routing: { scope: hub-and-spoke }\n`, 'scope.yaml');
  t.same(topo.routing, { scope: 'hub-and-spoke' });
  const pairs = routingPairs(topo).map(key);
  t.same(pairs, [
    'dc-1>cloud-1',
    'cloud-1>dc-1',
    'e-1>dc-1',
    'dc-1>e-1',
    'e-1>cloud-1',
    'cloud-1>e-1',
    'e-2>dc-1',
    'dc-1>e-2',
    'e-2>cloud-1',
    'cloud-1>e-2',
  ]);
  const routes = computeRoutes(topo).routes.map(key);
  t.same(routes, pairs, 'computeRoutes routes the scope when not given pairs');
  t.same(new RouteEngine(topo).routes.map(key), pairs, 'so does RouteEngine');
  t.equal(
    computeRoutes(topo, { pairs: [{ src: 'e-1', dst: 'e-2' }] }).routes.length,
    1,
    'explicit pairs win',
  );
  t.end();
});

t.test('explicit hubs; full-mesh and no routing give every ordered pair', (t) => {
  const topo = parseTopology(`${BASE}routing: { scope: hub-and-spoke, hubs: [e-1] }\n`, 'scope.yaml');
  t.same(routingPairs(topo).map(key), [
    'dc-1>e-1',
    'e-1>dc-1',
    'cloud-1>e-1',
    'e-1>cloud-1',
    'e-2>e-1',
    'e-1>e-2',
  ]);
  const mesh = parseTopology(`${BASE}routing: { scope: full-mesh }\n`, 'scope.yaml');
  t.equal(routingPairs(mesh).length, 12);
  t.equal(computeRoutes(mesh).routes.length, 12);
  t.same(routingPairs(parseTopology(BASE, 'scope.yaml')), fullMeshPairs(mesh));
  t.equal(hubAndSpokePairs(mesh).length, 10, 'default hubs: the dc and cloud sites');
  t.end();
});

/** The one problem of `yaml`, as `code path line:column`. */
function problemsOf(extra: string): string[] {
  const text = `${BASE}${extra}`;
  return checkTopology(text, 'scope.yaml').problems.map((p) => `${p.code} ${p.path} ${p.line}:${p.column}`);
}

t.test('routing is validated like every other field, with file positions', (t) => {
  const line = BASE.split('\n').length; // the line the extra text starts on
  t.same(problemsOf('routing: { scope: star }\n'), [`TOPO_ERR_ENUM routing.scope ${line}:19`]);
  t.same(problemsOf('routing: { hubs: [dc-1] }\n'), [`TOPO_ERR_REQUIRED routing.scope ${line}:10`]);
  t.same(problemsOf('routing: full-mesh\n'), [`TOPO_ERR_TYPE routing ${line}:10`]);
  t.same(problemsOf('routing: { scope: hub-and-spoke, hubs: [dc-1, dc-9] }\n'), [
    `TOPO_ERR_UNKNOWN_SITE routing.hubs[1] ${line}:47`,
  ]);
  const unknown = checkTopology(`${BASE}routing: { scope: hub-and-spoke, hubs: [dc-2] }\n`, 's.yaml')
    .problems[0];
  t.match(unknown?.message, /did you mean 'dc-1'\?/);
  t.same(problemsOf('routing: { scope: hub-and-spoke, hubs: [] }\n'), [
    `TOPO_ERR_ROUTING_SCOPE routing.hubs ${line}:40`,
  ]);
  t.same(problemsOf('routing: { scope: full-mesh, hubs: [dc-1] }\n'), [
    `TOPO_ERR_ROUTING_SCOPE routing.hubs ${line}:36`,
  ]);
  const edgesOnly = BASE.replace('kind: dc', 'kind: edge').replace('kind: cloud', 'kind: edge');
  const r = checkTopology(`${edgesOnly}routing:\n  scope: hub-and-spoke\n`, 'scope.yaml');
  t.same(
    r.problems.map((p) => `${p.code} ${p.path} ${p.line}:${p.column}`),
    [`TOPO_ERR_ROUTING_SCOPE routing.scope ${line + 1}:10`],
    'hub-and-spoke without hubs and without dc or cloud sites',
  );
  const typo = checkTopology(`${BASE}routing: { scope: hub-and-spoke, hub: [dc-1] }\n`, 'scope.yaml');
  t.same(
    typo.warnings.map((w) => `${w.code} ${w.path}`),
    ['TOPO_WARN_UNKNOWN_KEY routing.hub'],
    'a typo of hubs is a warning',
  );
  t.end();
});
