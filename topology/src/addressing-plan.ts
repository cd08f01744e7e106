/**
 * The addressing plan: where every site and link of a topology lives in address space (SRv6
 * locators and SIDs, link addresses, interface names, host addresses). The controller's policy
 * compiler takes it as input and the lab builds exactly it, so both derive it here from the
 * topology alone (`defaultAddressingPlan`) and agree without talking; production plans come from
 * the site inventory in the same shape (`meridian controller --addressing FILE`).
 */
import { RouteError } from './errors';
import type { Topology } from './types';

/** Addresses of one site in the plan. */
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
    if (first === undefined) {
      throw new RouteError(
        'TOPO_ERR_BAD_OPTION',
        `sites.${s.id}.prefixes`,
        'no prefix (the plan needs a host address)',
      );
    }
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
      throw new RouteError('TOPO_ERR_UNKNOWN_SITE', `links.${l.id}`, 'joins a site the plan does not have');
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
