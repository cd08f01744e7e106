import t from 'tap';
import type { Path, Route, Topology } from '@meridian/topology';
import { defaultAddressingPlan } from '@meridian/ops';
import { PolicyCompileError, compilePolicies, compilePoliciesDetailed } from '../src/policy-compiler';

// The agent's own check of a pushed policy: the compiler's output must pass it in every mode.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const agent = require('@meridian/edge-agent') as {
  validatePolicy(p: unknown): { path: string; message: string }[];
};

const link = (id: string, a: string, b: string) => ({
  id,
  a,
  b,
  transport: 'fiber' as const,
  capacityMbps: 100,
  latencyMs: 2,
  jitterMs: 0,
  lossPct: 0,
  cost: 1,
});
const topology: Topology = {
  version: 1,
  source: '<inline>',
  sites: [
    { id: 'a', kind: 'dc', region: 'r', prefixes: ['10.1.0.0/24'] },
    { id: 'b', kind: 'dc', region: 'r', prefixes: ['10.2.0.0/24'] },
    { id: 'c', kind: 'edge', region: 'r', prefixes: ['10.3.0.0/24', '172.20.0.0/16'] },
  ],
  // Two parallel links a-b: a SID names a link, so paths can pick either.
  links: [link('ab1', 'a', 'b'), link('ab2', 'a', 'b'), link('bc', 'b', 'c'), link('ac', 'a', 'c')],
  classes: [
    {
      id: 'voice',
      sla: { maxLatencyMs: 100, maxJitterMs: 10, maxLossPct: 1 },
      objective: 'latency',
      maxUtilPct: 100,
      priority: 1,
      match: { dscp: [46] },
    },
    {
      id: 'video',
      sla: { maxLatencyMs: 200, maxJitterMs: 30, maxLossPct: 1 },
      objective: 'latency',
      maxUtilPct: 100,
      priority: 2,
      match: { dscp: [34] },
    },
    {
      id: 'sync',
      sla: { maxLatencyMs: 900, maxJitterMs: 90, maxLossPct: 3 },
      objective: 'cost',
      maxUtilPct: 100,
      priority: 4,
      match: { dscp: [10] },
    },
  ],
  devices: [],
};
const p = (sites: string[], links: string[]): Path => ({
  sites,
  links,
  latencyMs: 0,
  jitterMs: 0,
  lossPct: 0,
  cost: 0,
  hops: links.length,
});
const routes: Route[] = [
  {
    class: 'voice',
    src: 'a',
    dst: 'c',
    status: 'ok',
    primary: p(['a', 'b', 'c'], ['ab2', 'bc']),
    backup: p(['a', 'c'], ['ac']),
  },
  { class: 'video', src: 'a', dst: 'c', status: 'degraded', primary: p(['a', 'c'], ['ac']), backup: null },
  { class: 'sync', src: 'a', dst: 'c', status: 'unreachable', primary: null, backup: null },
  {
    class: 'voice',
    src: 'c',
    dst: 'a',
    status: 'ok',
    primary: p(['c', 'b', 'a'], ['bc', 'ab1']),
    backup: null,
  },
];
const plan = defaultAddressingPlan(topology);

const srv6 = { forwarding: 'srv6' as const };

t.test('source routes: segment lists name each transit link, then the destination', (t) => {
  const pol = compilePolicies(topology, routes, plan, srv6);
  const a = pol.get('a')!;
  t.equal(a.version, 0);
  t.match(a.hash, /^[0-9a-f]{64}$/);
  t.equal(a.routes.length, 2, 'the unreachable route has no state');
  const voice = a.routes.find((r) => r.class === 'voice')!;
  // classes sorted by id: sync 0, video 1, voice 2; sites a 0, b 1, c 2 → slot 2×3+2+1
  t.equal(voice.slot, 9);
  t.same(voice.dstPrefixes, ['10.3.0.0/24', '172.20.0.0/16']);
  t.equal(voice.primary.outIf, plan.links['ab2']!.ifA);
  t.equal(voice.primary.nextHop4, plan.links['ab2']!.b4);
  t.same(voice.primary.segments, [plan.links['bc']!.sidA, plan.sites['c']!.dx4Sid]);
  t.same(voice.backup!.segments, [plan.sites['c']!.dx4Sid]);
  t.not(plan.links['ab1']!.sidA, plan.links['ab2']!.sidA, 'parallel links have their own SIDs');
  const c = pol.get('c')!;
  t.same(c.routes[0]!.primary.segments, [plan.links['ab1']!.sidB, plan.sites['a']!.dx4Sid]);
  t.same(
    pol.get('b')!.localSids.map((s) => s.action),
    ['End.X', 'End.X', 'End.X', 'End.DX4'],
    'a transit site only serves SIDs: one End.X per link, one End.DX4',
  );
  t.equal(pol.get('b')!.routes.length, 0);
  t.equal(a.defaultClass, 'sync', 'no match-all class: the least important one catches the rest');
  t.same(
    a.classes.map((x) => x.id),
    ['voice', 'video', 'sync'],
    'classes in match order',
  );
  t.end();
});

t.test('only the source of a changed route gets a new hash', (t) => {
  const before = compilePolicies(topology, routes, plan, srv6);
  const again = compilePolicies(topology, routes, plan, srv6);
  for (const [site, pol] of before) t.equal(again.get(site)!.hash, pol.hash, `${site} stable`);
  const changed = routes.map((r) =>
    r.class === 'voice' && r.src === 'a' ? { ...r, primary: p(['a', 'b', 'c'], ['ab1', 'bc']) } : r,
  );
  const after = compilePolicies(topology, changed, plan, srv6);
  t.not(after.get('a')!.hash, before.get('a')!.hash);
  t.equal(after.get('b')!.hash, before.get('b')!.hash, 'transit unchanged');
  t.equal(after.get('c')!.hash, before.get('c')!.hash);
  t.end();
});

t.test('inconsistent input is a compile error', (t) => {
  const bad: Route[] = [
    { class: 'voice', src: 'a', dst: 'c', status: 'ok', primary: p(['a', 'c'], ['bc']), backup: null },
  ];
  t.throws(() => compilePolicies(topology, bad, plan), PolicyCompileError);
  const unknown: Route[] = [
    { class: 'nope', src: 'a', dst: 'c', status: 'ok', primary: p(['a', 'c'], ['ac']), backup: null },
  ];
  t.throws(() => compilePolicies(topology, unknown, plan), { code: 'CTRL_ERR_POLICY_COMPILE' });
  t.equal(
    compilePolicies(topology, routes, plan, { pathProbePortBase: null }).get('a')!.pathProbePortBase,
    null,
  );
  t.end();
});

t.test('hop-by-hop: the head-end steers the first link, every transit site gets an entry', (t) => {
  const pol = compilePolicies(topology, routes, plan, { forwarding: 'hop-by-hop' });
  for (const [site, policy] of pol) t.same(agent.validatePolicy(policy), [], `${site}: the agent accepts it`);
  const a = pol.get('a')!;
  const voice = a.routes.find((r) => r.class === 'voice')!;
  t.equal(voice.forwarding, 'hop-by-hop');
  t.same(voice.primary.segments, [], 'no segment list');
  t.equal(voice.primary.outIf, plan.links['ab2']!.ifA);
  t.same(a.localSids, [], 'no SIDs where no SRv6 is used');
  const b = pol.get('b')!;
  t.same(
    b.transit.map((e) => [e.class, e.src, e.dst, e.inLink, e.outLink, e.paths]),
    [
      ['voice', 'a', 'c', 'ab2', 'bc', ['primary']],
      ['voice', 'c', 'a', 'bc', 'ab1', ['primary']],
    ],
    'b carries voice a>c (in over ab2, out over bc) and c>a (in over bc, out over ab1)',
  );
  const ac = b.transit[0]!;
  t.equal(ac.inIf, plan.links['ab2']!.ifB);
  t.equal(ac.outIf, plan.links['bc']!.ifA);
  t.equal(ac.nextHop4, plan.links['bc']!.b4, 'the next hop is c on link bc');
  t.same(ac.srcPrefixes, ['10.1.0.0/24']);
  t.same(ac.dstPrefixes, ['10.3.0.0/24', '172.20.0.0/16']);
  t.same(ac.probePorts, [20000 + 2 * 9], "the head-end's primary probe port of slot 9");
  t.same(pol.get('c')!.transit, [], 'a destination holds no transit state');
  t.end();
});

t.test('auto: SRv6 only where every site of the route can do it; mixed networks', (t) => {
  const all = compilePolicies(topology, routes, plan, { srv6Sites: new Set(['a', 'b', 'c']) });
  t.ok(
    [...all.values()].every((p) => p.routes.every((r) => r.forwarding === 'srv6')),
    'every site reported SRv6: every route is SRv6',
  );
  const res = compilePoliciesDetailed(topology, routes, plan, { srv6Sites: new Set(['a', 'c']) });
  const a = res.policies.get('a')!;
  t.equal(a.routes.find((r) => r.class === 'voice')!.forwarding, 'hop-by-hop', 'voice crosses b');
  t.equal(a.routes.find((r) => r.class === 'video')!.forwarding, 'srv6', 'video is a→c direct');
  t.same(res.modes, { srv6: 1, 'hop-by-hop': 2 });
  t.same(res.policies.get('b')!.localSids, [], 'b has no SRv6: no SIDs');
  t.equal(a.localSids.length, 4, 'a serves its SIDs: an End.X per link, one End.DX4');
  for (const [site, policy] of res.policies) t.same(agent.validatePolicy(policy), [], `${site} valid`);
  const none = compilePolicies(topology, routes, plan);
  t.ok(
    [...none.values()].every((p) => p.routes.every((r) => r.forwarding === 'hop-by-hop')),
    'no capability known: hop-by-hop everywhere',
  );
  t.end();
});

t.test('hop-by-hop: a backup a site cannot tell from the primary is dropped', (t) => {
  // A fourth site gives b a second way to c: both paths enter b over ab1 and leave differently.
  const topo: Topology = {
    ...topology,
    sites: [...topology.sites, { id: 'd', kind: 'dc', region: 'r', prefixes: ['10.4.0.0/24'] }],
    links: [...topology.links, link('bd', 'b', 'd'), link('dc', 'd', 'c')],
  };
  const plan4 = defaultAddressingPlan(topo);
  const shared: Route = {
    class: 'voice',
    src: 'a',
    dst: 'c',
    status: 'ok',
    primary: p(['a', 'b', 'c'], ['ab1', 'bc']),
    backup: p(['a', 'b', 'd', 'c'], ['ab1', 'bd', 'dc']),
  };
  const res = compilePoliciesDetailed(topo, [shared], plan4, { forwarding: 'hop-by-hop' });
  t.equal(res.ambiguousBackups, 1);
  t.equal(res.policies.get('a')!.routes[0]!.backup, null, 'b would see both arrive over ab1');
  t.same(res.policies.get('d')!.transit, [], 'nothing of the dropped backup is installed');
  const disjoint = { ...shared, backup: p(['a', 'b', 'd', 'c'], ['ab2', 'bd', 'dc']) };
  const ok = compilePoliciesDetailed(topo, [disjoint], plan4, { forwarding: 'hop-by-hop' });
  t.equal(ok.ambiguousBackups, 0, 'over the parallel link b can tell them apart');
  t.same(
    ok.policies.get('b')!.transit.map((e) => [e.inLink, e.outLink, e.paths[0]]),
    [
      ['ab1', 'bc', 'primary'],
      ['ab2', 'bd', 'backup'],
    ],
  );
  t.same(ok.policies.get('b')!.transit[1]!.probePorts, [
    20000 + 2 * ok.policies.get('a')!.routes[0]!.slot + 1,
  ]);
  t.end();
});

t.test('hop-by-hop: the previous route set stays downstream for one version', (t) => {
  const moved = routes.map((r) =>
    r.class === 'voice' && r.src === 'a' ? { ...r, primary: p(['a', 'c'], ['ac']), backup: null } : r,
  );
  const res = compilePoliciesDetailed(topology, moved, plan, {
    forwarding: 'hop-by-hop',
    previousRoutes: routes,
  });
  t.equal(res.graceEntries, 1);
  t.same(
    res.policies.get('b')!.transit.map((e) => `${e.class}:${e.src}>${e.dst}@${e.inLink}`),
    ['voice:a>c@ab2', 'voice:c>a@bc'],
    'the old voice a>c entry is still at b while a may still send that way',
  );
  const next = compilePolicies(topology, moved, plan, { forwarding: 'hop-by-hop', previousRoutes: moved });
  t.same(
    next.get('b')!.transit.map((e) => `${e.src}>${e.dst}`),
    ['c>a'],
    'and is gone one version later',
  );
  t.end();
});
