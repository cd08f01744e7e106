import t from 'tap';
import type { Path, Route, Topology } from '@meridian/topology';
import { defaultAddressingPlan } from '@meridian/ops';
import { PolicyCompileError, compilePolicies } from '../src/policy-compiler';

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

t.test('source routes: segment lists name each transit link, then the destination', (t) => {
  const pol = compilePolicies(topology, routes, plan);
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
  const before = compilePolicies(topology, routes, plan);
  const again = compilePolicies(topology, routes, plan);
  for (const [site, pol] of before) t.equal(again.get(site)!.hash, pol.hash, `${site} stable`);
  const changed = routes.map((r) =>
    r.class === 'voice' && r.src === 'a' ? { ...r, primary: p(['a', 'b', 'c'], ['ab1', 'bc']) } : r,
  );
  const after = compilePolicies(topology, changed, plan);
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
