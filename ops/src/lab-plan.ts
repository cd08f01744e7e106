/**
 * The lab's layout for a topology: namespace names, management addresses and UDP ports on top of
 * the addressing plan (`defaultAddressingPlan`), which the controller's policy compiler takes as
 * input, so the policies it compiles fit the lab exactly.
 */
import type { Topology } from '@meridian/topology';
import { OpsError } from './errors';

/** Addresses of one site (structurally the compiler's `SiteAddressing`, controller/src/policy-compiler.ts). */
export interface SiteAddressing {
  readonly index: number;
  /** SRv6 locator (/64); SIDs are taken from it. */
  readonly locator: string;
  readonly tunnelSource: string;
  readonly dx4Sid: string;
  /** Host address inside the site's first prefix. */
  readonly hostAddress: string;
}

/** Addresses, interface names and End.X SIDs of one link; `a`/`b` as in the topology. */
export interface LinkAddressing {
  readonly index: number;
  readonly ifA: string;
  readonly ifB: string;
  readonly a4: string;
  readonly b4: string;
  readonly a6: string;
  readonly b6: string;
  readonly sidA: string;
  readonly sidB: string;
}

/** The addressing plan the policy compiler takes (`compilePolicies(topology, routes, plan)`). */
export interface AddressingPlan {
  readonly sites: Readonly<Record<string, SiteAddressing>>;
  readonly links: Readonly<Record<string, LinkAddressing>>;
}

const byId = (a: { id: string }, b: { id: string }): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}
function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (Math.floor(n / 2 ** s) % 256).toString()).join('.');
}

/** The first usable address of a prefix (the address itself for a /31 or /32). */
export function hostAddressOf(prefix: string): string {
  const [addr = '', lenText = '32'] = prefix.split('/');
  const len = Number(lenText);
  const base = ipv4ToInt(addr);
  return intToIpv4(len >= 31 ? base : base + 1);
}

/**
 * The default plan: site i (sites sorted by id) gets locator `fc00:0:<i+1>::/64`; link k (links
 * sorted by id) gets `172.16.0.0/12` /30 number k and `fd00:0:0:<k+1>::/64`, interface `ml<k>` at
 * both ends. Deterministic for a topology, so the lab and the controller agree without talking.
 */
export function defaultAddressingPlan(topology: Topology): AddressingPlan {
  const sites: Record<string, SiteAddressing> = {};
  [...topology.sites].sort(byId).forEach((s, i) => {
    const loc = `fc00:0:${(i + 1).toString(16)}`;
    const first = s.prefixes[0];
    if (first === undefined) throw new OpsError('OPS_ERR_BAD_ARGS', `site '${s.id}' has no prefix`);
    sites[s.id] = {
      index: i,
      locator: `${loc}::/64`,
      tunnelSource: `${loc}::1`,
      dx4Sid: `${loc}::d4`,
      hostAddress: hostAddressOf(first),
    };
  });
  const links: Record<string, LinkAddressing> = {};
  [...topology.links].sort(byId).forEach((l, k) => {
    const base = ipv4ToInt('172.16.0.0') + 4 * k;
    const v6 = `fd00:0:0:${(k + 1).toString(16)}`;
    const sa = sites[l.a];
    const sb = sites[l.b];
    if (sa === undefined || sb === undefined)
      throw new OpsError('OPS_ERR_BAD_ARGS', `link '${l.id}' joins an unknown site`);
    const x = (k + 1).toString(16);
    links[l.id] = {
      index: k,
      ifA: `ml${k}`,
      ifB: `ml${k}`,
      a4: intToIpv4(base + 1),
      b4: intToIpv4(base + 2),
      a6: `${v6}::1`,
      b6: `${v6}::2`,
      sidA: `${sa.locator.replace('::/64', '')}::1:${x}`,
      sidB: `${sb.locator.replace('::/64', '')}::1:${x}`,
    };
  });
  return { sites, links };
}

export interface LabSitePlan {
  readonly id: string;
  readonly index: number;
  readonly netns: string;
  readonly hostAddress: string;
  readonly tunnelSource: string;
  /** Root-namespace end of the management veth (the controller listens here), and the site end. */
  readonly mgmtRoot: string;
  readonly mgmtSite: string;
  readonly mgmtRootIf: string;
}

export interface LabLinkPlan {
  readonly id: string;
  readonly index: number;
  readonly a: string;
  readonly b: string;
  readonly ifA: string;
  readonly ifB: string;
  readonly a4: string;
  readonly b4: string;
  readonly a6: string;
  readonly b6: string;
  /** UDP port of this link at both sites' management addresses (socat ↔ emulator). */
  readonly port: number;
}

export interface LabPlan {
  readonly sites: readonly LabSitePlan[];
  readonly links: readonly LabLinkPlan[];
  readonly addressing: AddressingPlan;
}

const MGMT_BASE = (10 << 24) | (254 << 16);

function ipv4(n: number): string {
  return [24, 16, 8, 0].map((s) => ((n >>> s) & 255).toString()).join('.');
}

export function labPlan(topology: Topology): LabPlan {
  const addressing = defaultAddressingPlan(topology);
  if (topology.sites.length > 16000)
    throw new OpsError('OPS_ERR_BAD_ARGS', 'the lab supports at most 16000 sites');
  if (topology.links.length > 20000)
    throw new OpsError('OPS_ERR_BAD_ARGS', 'the lab supports at most 20000 links');
  const sites = topology.sites
    .map((s) => {
      const a = addressing.sites[s.id];
      if (a === undefined) throw new OpsError('OPS_ERR_LAB_STATE', `no addressing for site '${s.id}'`);
      const netns = `mrd-${s.id}`;
      return {
        id: s.id,
        index: a.index,
        netns,
        hostAddress: a.hostAddress,
        tunnelSource: a.tunnelSource,
        mgmtRoot: ipv4(MGMT_BASE + 4 * a.index + 1),
        mgmtSite: ipv4(MGMT_BASE + 4 * a.index + 2),
        mgmtRootIf: `mm${a.index}`,
      };
    })
    .sort((x, y) => x.index - y.index);
  const links = topology.links
    .map((l) => {
      const a = addressing.links[l.id];
      if (a === undefined) throw new OpsError('OPS_ERR_LAB_STATE', `no addressing for link '${l.id}'`);
      return {
        id: l.id,
        index: a.index,
        a: l.a,
        b: l.b,
        ifA: a.ifA,
        ifB: a.ifB,
        a4: a.a4,
        b4: a.b4,
        a6: a.a6,
        b6: a.b6,
        port: 40000 + a.index,
      };
    })
    .sort((x, y) => x.index - y.index);
  return { sites, links, addressing };
}
