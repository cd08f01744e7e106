// One network namespace carrying site `a` of a four-site topology, enough for the Linux driver to
// apply a real policy (SRv6 routes, rules, nftables) and switch its routes; no lab (no emulator,
// no other sites: no traffic is sent). The namespace is named `mrsw-*`, not `mrd-*`, so that it
// never meets a lab running on the machine. Root only. Used by the switch test and bench.
import { spawnSync } from 'node:child_process';
import type { Path, Route, Topology } from '@meridian/topology';
import { defaultAddressingPlan } from '@meridian/topology';
import { compilePolicies } from '@meridian/controller';
import { MARK_BASE, TABLE_BASE, routeKey, type SitePolicy } from '../src/index';

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
    { id: 'c', kind: 'dc', region: 'r', prefixes: ['10.3.0.0/24'] },
    { id: 'd', kind: 'edge', region: 'r', prefixes: ['10.4.0.0/24'] },
  ],
  links: [link('a-b', 'a', 'b'), link('b-d', 'b', 'd'), link('a-c', 'a', 'c'), link('c-d', 'c', 'd')],
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
const path_ = (sites: string[], links: string[]): Path => ({
  sites,
  links,
  latencyMs: 0,
  jitterMs: 0,
  lossPct: 0,
  cost: 0,
  hops: links.length,
});
const via = (x: string, l1: string, l2: string): Path => path_(['a', x, 'd'], [l1, l2]);
const routes: Route[] = ['voice', 'bulk'].map((cls) => ({
  class: cls,
  src: 'a',
  dst: 'd',
  status: 'ok',
  primary: via('b', 'a-b', 'b-d'),
  backup: via('c', 'a-c', 'c-d'),
}));

export interface SwitchNetns {
  readonly ns: string;
  /** Site a's policy: voice/d and bulk/d, each with a backup. */
  readonly policy: SitePolicy;
  /** Route keys of the policy. */
  readonly keys: readonly string[];
  /** The IPv4 and IPv6 rule that carries a key's traffic on its primary, as {@link rules} shows it. */
  readonly primaryRule: (key: string) => string;
  /** Deletes the namespace (idempotent). */
  readonly remove: () => void;
}

/** Why the fixture cannot run here, or null. */
export function switchNetnsMissing(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  for (const bin of ['ip', 'nft']) {
    if (spawnSync(bin, ['-V']).error !== undefined) return `needs '${bin}'`;
  }
  return null;
}

function must(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** Builds the namespace `name` (removing a leftover of the same name first). */
export function createSwitchNetns(name: string): SwitchNetns {
  const plan = defaultAddressingPlan(topology);
  const policy = compilePolicies(topology, routes, plan).get('a');
  if (policy === undefined) throw new Error('no policy for site a');
  const remove = (): void => {
    spawnSync('ip', ['netns', 'del', name]);
  };
  remove();
  must(['netns', 'add', name]);
  try {
    const site = plan.sites['a']!;
    const lines = [
      'link set lo up',
      `address add ${site.hostAddress}/32 dev lo`,
      `address add ${site.tunnelSource}/128 dev lo`,
    ];
    // Each interface of the policy is one end of a veth pair whose other end stays in the
    // namespace too: the routes and SIDs need the device, nothing is sent.
    for (const i of policy.interfaces) {
      lines.push(
        `link add ${i.ifName} type veth peer name ${i.ifName}p`,
        `address add ${i.local4}/30 dev ${i.ifName}`,
        `address add ${i.local6}/64 dev ${i.ifName} nodad`,
        `link set ${i.ifName} up`,
        `link set ${i.ifName}p up`,
      );
    }
    const r = spawnSync('ip', ['-n', name, '-batch', '-'], {
      input: lines.join('\n') + '\n',
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`setting up ${name}: ${r.stderr.trim()}`);
  } catch (err) {
    remove();
    throw err;
  }
  const slots = new Map(policy.routes.map((r) => [routeKey(r), r.slot]));
  return {
    ns: name,
    policy,
    keys: [...slots.keys()],
    primaryRule: (key) => {
      const slot = slots.get(key) ?? NaN;
      return `${TABLE_BASE + 2 * slot} 0x${(MARK_BASE + slot).toString(16)}`;
    },
    remove,
  };
}

/** The rules present in the namespace for a family (`ip -j rule show`): `pref fwmark` each. */
export function rules(ns: string, family: 4 | 6): string[] {
  const r = spawnSync('ip', ['-n', ns, `-${family}`, '-j', 'rule', 'show'], { encoding: 'utf8' });
  return (JSON.parse(r.stdout || '[]') as { priority: number; fwmark?: string }[]).map(
    (x) => `${x.priority} ${x.fwmark ?? '-'}`,
  );
}
