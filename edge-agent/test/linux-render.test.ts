// The Linux driver's rendering, without a kernel: what a hop-by-hop transit site and head-end get.
import t from 'tap';
import type { Path, Route, Topology } from '@meridian/topology';
import { compilePolicies } from '@meridian/controller';
import { defaultAddressingPlan } from '@meridian/ops';
import { renderKernel, renderNft } from '../src/linux-render';
import { TRANSIT_MARK_BASE, TRANSIT_TABLE_BASE } from '../src/index';

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
    { id: 'c', kind: 'edge', region: 'r', prefixes: ['10.3.0.0/24'] },
  ],
  links: [link('a-b', 'a', 'b'), link('a-c', 'a', 'c'), link('b-c', 'b', 'c')],
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
      id: 'bulk',
      sla: { maxLatencyMs: 1000, maxJitterMs: 100, maxLossPct: 5 },
      objective: 'cost',
      maxUtilPct: 100,
      priority: 5,
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
    primary: p(['a', 'b', 'c'], ['a-b', 'b-c']),
    backup: p(['a', 'c'], ['a-c']),
  },
  {
    class: 'bulk',
    src: 'a',
    dst: 'c',
    status: 'ok',
    primary: p(['a', 'b', 'c'], ['a-b', 'b-c']),
    backup: null,
  },
];
const plan = defaultAddressingPlan(topology);
const policies = compilePolicies(topology, routes, plan, { forwarding: 'hop-by-hop' });

t.test('a transit site: one chain per incoming link, probe ports first, default class last', (t) => {
  const b = policies.get('b')!;
  const a = policies.get('a')!;
  const port = (cls: string): number => 20000 + 2 * a.routes.find((r) => r.class === cls)!.slot;
  const inIf = plan.links['a-b']!.ifB;
  const outIndex = b.interfaces.findIndex((i) => i.link === 'b-c');
  const mark = `0x${(TRANSIT_MARK_BASE + outIndex).toString(16)}`;
  const nft = renderNft(b);
  t.match(nft, `iifname vmap { "${inIf}" : jump t_${inIf} }`, 'dispatch on the incoming link');
  t.match(
    nft,
    /chain prerouting \{[^}]*jump transit\s+iifname \{ [^}]+ \} return\s+jump classify/,
    'transit entries first; a packet from a link that none claimed is not steered by the own routes',
  );
  const chain = nft.slice(nft.indexOf(`chain t_${inIf} {`));
  const lines = chain
    .slice(0, chain.indexOf('}\n'))
    .split('\n')
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const who = 'ip saddr { 10.1.0.0/24 } ip daddr { 10.3.0.0/24 }';
  t.same(lines, [
    `${who} udp sport { ${port('voice')} } meta mark set ${mark} accept`,
    `${who} udp sport { ${port('bulk')} } meta mark set ${mark} accept`,
    `${who} ip dscp { 46 } meta mark set ${mark} accept`,
    `${who} meta mark set ${mark} accept`,
  ]);
  const k = renderKernel(b);
  t.same(
    k.rules.map((r) => [r.family, r.pref, r.fwmark, r.table]),
    [[4, TRANSIT_TABLE_BASE + outIndex, TRANSIT_MARK_BASE + outIndex, TRANSIT_TABLE_BASE + outIndex]],
    'one rule: the mark of the outgoing interface to its table',
  );
  t.same(
    k.routes.map((r) => [r.table, r.dst, r.attrs]),
    [
      [
        String(TRANSIT_TABLE_BASE + outIndex),
        'default',
        `via ${plan.links['b-c']!.b4} dev ${plan.links['b-c']!.ifA}`,
      ],
    ],
    'whose default route leaves over b-c to c',
  );
  t.end();
});

t.test('a hop-by-hop head-end: first-hop routes, no SRv6 object', (t) => {
  const a = policies.get('a')!;
  const k = renderKernel(a);
  t.notOk(
    k.routes.some((r) => r.attrs.includes('seg6') || r.family === 6),
    'no encapsulation and no IPv6 route',
  );
  t.same(
    k.rules.filter((r) => r.fwmark === null).map((r) => [r.family, r.pref, r.iif]),
    [
      [4, 29990, 'lo'],
      [6, 29990, 'lo'],
    ],
    'the unmarked base table serves only what this host originates, never a forwarded packet',
  );
  const voice = a.routes.find((r) => r.class === 'voice')!;
  t.ok(
    k.routes.some(
      (r) =>
        r.table === String(20000 + 2 * voice.slot) && r.attrs.startsWith(`via ${plan.links['a-b']!.b4} dev`),
    ),
    'the primary table sends voice to b',
  );
  t.ok(
    k.routes.some(
      (r) =>
        r.table === String(20001 + 2 * voice.slot) && r.attrs.startsWith(`via ${plan.links['a-c']!.b4} dev`),
    ),
    'the backup table sends it to c directly',
  );
  t.notMatch(
    renderNft(a),
    /chain transit \{\s+iifname/,
    'a head-end with no transit entry has an empty transit chain',
  );
  t.end();
});
