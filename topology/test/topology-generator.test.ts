import t from 'tap';
import { stringify } from 'yaml';
import { generateWan, generateWanState, hubAndSpokePairs, parseTopology } from '../src/index';
import { computeRoutes } from '../src/route-compute';

t.test(
  'the default WAN is issue 20 exactly: 6 cores in a leased + internet mesh, 294 edges, 1,099 links',
  (t) => {
    const topo = generateWan({ seed: 1 });
    const cores = topo.sites.filter((s) => s.kind !== 'edge');
    const edges = topo.sites.filter((s) => s.kind === 'edge');
    t.equal(cores.length, 6);
    t.equal(edges.length, 294);
    t.equal(topo.links.length, 1099);
    const coreIds = new Set(cores.map((s) => s.id));
    const coreLinks = topo.links.filter((l) => coreIds.has(l.a) && coreIds.has(l.b));
    t.equal(coreLinks.length, 30, 'a leased and an internet link per core pair');
    t.same(new Set(coreLinks.map((l) => l.transport)), new Set(['leased', 'internet']));
    const homing = new Map<string, Set<string>>();
    for (const l of topo.links) {
      if (coreIds.has(l.b) && !coreIds.has(l.a)) homing.set(l.a, (homing.get(l.a) ?? new Set()).add(l.b));
    }
    const degrees = new Set([...homing.values()].map((s) => s.size));
    t.equal(homing.size, 294, 'every edge is homed');
    t.same([...degrees].sort(), [2, 3], 'dual- and triple-homed, to distinct cores');
    for (const l of topo.links) {
      if (!(l.latencyMs >= 1 && l.latencyMs <= 31)) t.fail(`latency ${l.latencyMs} of ${l.id}`);
      if (!(l.jitterMs >= 0 && l.jitterMs <= 6)) t.fail(`jitter ${l.jitterMs} of ${l.id}`);
      if (!(l.lossPct >= 0 && l.lossPct <= 2)) t.fail(`loss ${l.lossPct} of ${l.id}`);
      if (!(Number.isInteger(l.cost) && l.cost >= 1 && l.cost <= 9)) t.fail(`cost ${l.cost} of ${l.id}`);
    }
    const lossy = topo.links.filter((l) => l.lossPct > 0).length / topo.links.length;
    t.ok(lossy > 0.16 && lossy < 0.24, `about 20 % of links lossy (${lossy.toFixed(3)})`);
    const voice = topo.classes.find((c) => c.id === 'voice')!;
    t.same(voice.sla, { maxLatencyMs: 80, maxJitterMs: 15, maxLossPct: 1 });
    t.equal(voice.maxUtilPct, 85);
    t.same(
      topo.classes.map((c) => `${c.id}:${c.objective}`),
      ['voice:latency', 'video:latency', 'signaling:hops', 'api:latency', 'sync:cost'],
    );
    t.equal(hubAndSpokePairs(topo).length * topo.classes.length, 17790, '17,790 routes');
    t.end();
  },
);

t.test('the same options give the same topology; another seed another one', (t) => {
  t.same(generateWan({ seed: 7 }), generateWan({ seed: 7 }));
  t.not(JSON.stringify(generateWan({ seed: 7 }).links), JSON.stringify(generateWan({ seed: 8 }).links));
  const s = generateWanState(generateWan({ seed: 7 }), { seed: 3 });
  t.same(s, generateWanState(generateWan({ seed: 7 }), { seed: 3 }));
  t.end();
});

t.test('a generated topology is a valid topology file (the loader accepts its YAML)', (t) => {
  const topo = generateWan({ seed: 5, edges: 40, totalLinks: 160, slaTightness: 2 });
  const { source, ...file } = topo;
  void source;
  const loaded = parseTopology(stringify(file), 'wan.yaml');
  t.equal(loaded.sites.length, 46);
  t.equal(loaded.links.length, 160);
  t.same(
    loaded.classes[0]!.sla,
    { maxLatencyMs: 40, maxJitterMs: 7.5, maxLossPct: 0.5 },
    'bounds / tightness',
  );
  t.end();
});

t.test('options are checked and honoured', (t) => {
  t.throws(() => generateWan({ seed: 1, cores: 2, homing: [2, 3] }), RangeError);
  t.throws(() => generateWan({ seed: 1, latencyMs: [5, 1] }), RangeError);
  t.throws(() => generateWan({ seed: 1, slaTightness: 0 }), RangeError);
  const small = generateWan({ seed: 2, cores: 3, edges: 10, homing: [1, 1], totalLinks: 0, lossyShare: 0 });
  t.equal(small.links.length, 3 * 2 + 10, 'mesh and one access link per edge, no extra links');
  t.ok(small.links.every((l) => l.lossPct === 0));
  t.end();
});

t.test('a small generated WAN with its state routes every hub-and-spoke pair', (t) => {
  const topo = generateWan({ seed: 3, edges: 30, totalLinks: 120 });
  const state = generateWanState(topo, { seed: 4, downShare: 0 });
  const pairs = hubAndSpokePairs(topo);
  t.equal(pairs.length, 6 * 5 + 30 * 6 * 2);
  const { routes } = computeRoutes(topo, { state, pairs });
  t.equal(routes.length, pairs.length * 5);
  t.ok(
    routes.every((r) => r.status !== 'unreachable'),
    'homed edges are reachable',
  );
  t.end();
});
