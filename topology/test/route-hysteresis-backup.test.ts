import t from 'tap';
import { applyHysteresis, computeRoutes, parseTopology, type NetworkState, type Route } from '../src/index';

// a–b direct is every primary; two disjoint two-hop backups, a–c–b (20 ms) just ahead of a–d–b (20.5 ms).
const topology = parseTopology(`
version: 1
sites:
  - { id: a, kind: dc, prefixes: ["10.1.0.0/16"] }
  - { id: b, kind: dc, prefixes: ["10.2.0.0/16"] }
  - { id: c, kind: dc, prefixes: ["10.3.0.0/16"] }
  - { id: d, kind: dc, prefixes: ["10.4.0.0/16"] }
links:
  - { id: ab, a: a, b: b, transport: fiber, capacityMbps: 1000, latencyMs: 5 }
  - { id: ac, a: a, b: c, transport: fiber, capacityMbps: 1000, latencyMs: 10 }
  - { id: cb, a: c, b: b, transport: fiber, capacityMbps: 1000, latencyMs: 10 }
  - { id: ad, a: a, b: d, transport: fiber, capacityMbps: 1000, latencyMs: 10 }
  - { id: db, a: d, b: b, transport: fiber, capacityMbps: 1000, latencyMs: 10.5 }
classes:
  - { id: voice, sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 }, objective: latency, priority: 1 }
`);
const pairs = [{ src: 'a', dst: 'b' }];
const opts = { classes: ['voice'], pairs };

function inForce(): Route[] {
  // The route in force: the same primary, the slightly worse backup a–d–b (as installed before a change).
  const [pure] = computeRoutes(topology, opts).routes;
  const viaD = computeRoutes(topology, { ...opts, state: { links: { cb: { up: false } } } }).routes[0]!
    .backup;
  return [{ ...pure!, backup: viaD }];
}

t.test('the pure optimum picks the a–c–b backup', (t) => {
  const [r] = computeRoutes(topology, opts).routes;
  t.same(r!.primary!.links, ['ab']);
  t.same(r!.backup!.links, ['ac', 'cb']);
  t.same(inForce()[0]!.backup!.links, ['ad', 'db']);
  t.end();
});

t.test('a backup within the margins is held: no change, no push', (t) => {
  const { routes, changes } = applyHysteresis(topology, inForce(), opts);
  t.same(routes[0]!.backup!.links, ['ad', 'db'], 'a–d–b stays although a–c–b is 0.5 ms better');
  t.same(changes, []);
  t.end();
});

t.test('a candidate better by both margins replaces the backup', (t) => {
  const state = { links: { db: { latencyMs: 30 } } };
  const { routes, changes } = applyHysteresis(topology, inForce(), { ...opts, state });
  t.same(routes[0]!.backup!.links, ['ac', 'cb']);
  t.equal(changes.length, 1);
  t.equal(changes[0]!.reason, 'backup');
  t.end();
});

t.test('a held backup that goes down or breaks the SLA is replaced at once', (t) => {
  const states: NetworkState[] = [{ links: { ad: { up: false } } }, { links: { db: { lossPct: 5 } } }];
  for (const state of states) {
    const { routes, changes } = applyHysteresis(topology, inForce(), { ...opts, state });
    t.same(routes[0]!.backup!.links, ['ac', 'cb']);
    t.equal(changes[0]?.reason, 'backup');
  }
  t.end();
});

t.test('zero margins give the pure optimum', (t) => {
  const margins = { relativePct: 0, absolute: { latency: 0, cost: 0, hops: 0 } };
  const { routes } = applyHysteresis(topology, inForce(), { ...opts, margins });
  t.same(routes, computeRoutes(topology, opts).routes);
  t.end();
});
