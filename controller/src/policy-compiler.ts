/**
 * Policy compiler: from the route set to one policy per site (format and rationale in
 * edge-agent/src/policy.ts, whose TypeBox schema the agent validates against). Pure: no I/O.
 *
 * Each route (src, dst, class) becomes, at its source site only, an SRv6 segment list per path
 * (primary and backup). Transit and destination sites only serve their SIDs, which depend on the
 * topology alone, so a route change recompiles and re-sends the source site's policy only; the
 * content hash tells the distributor which sites changed. Versions are the distributor's job.
 */
import {
  contentHash,
  type AddressingPlan,
  type Link,
  type Path,
  type Route,
  type Topology,
} from '@meridian/topology';

// The addressing plan's shape is @meridian/topology's (the lab builds the same plan).
export type { AddressingPlan, LinkAddressing, SiteAddressing } from '@meridian/topology';

/** The compiled policy of one site; structurally the agent's `SitePolicy` (version 0). */
export interface CompiledSitePolicy {
  version: number;
  hash: string;
  site: string;
  hostAddress: string;
  tunnelSource: string;
  interfaces: {
    link: string;
    ifName: string;
    peer: string;
    local4: string;
    peer4: string;
    local6: string;
    peer6: string;
  }[];
  classes: {
    id: string;
    priority: number;
    match?: { dscp?: number[]; protocol?: 'udp' | 'tcp'; ports?: number[] };
  }[];
  defaultClass: string | null;
  pathProbePortBase: number | null;
  localSids: (
    | { sid: string; action: 'End.X'; link: string; outIf: string; nextHop6: string }
    | { sid: string; action: 'End.DX4' }
  )[];
  routes: {
    class: string;
    dst: string;
    dstPrefixes: string[];
    slot: number;
    status: 'ok' | 'degraded';
    primary: CompiledPath;
    backup: CompiledPath | null;
  }[];
}

export interface CompiledPath {
  sites: string[];
  links: string[];
  outIf: string;
  nextHop4: string;
  nextHop6: string;
  segments: string[];
}

/**
 * Default UDP source port base of per-path probes (see the agent's `pathProbePort`): ports
 * 20000–29999, below Linux's ephemeral range (32768–60999) so no ordinary socket collides.
 */
export const DEFAULT_PATH_PROBE_PORT_BASE = 20000;

const byId = (a: { id: string }, b: { id: string }): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** The agent's `policyHash` (edge-agent/src/policy.ts): both are `contentHash` of the policy without version and hash. */
export function compiledPolicyHash(policy: Omit<CompiledSitePolicy, 'hash' | 'version'>): string {
  const { version: _v, hash: _h, ...content } = policy as CompiledSitePolicy;
  return contentHash(content);
}

/** Why a route could not be compiled (a bug upstream or a plan that does not fit the topology). */
export class PolicyCompileError extends Error {
  readonly code = 'CTRL_ERR_POLICY_COMPILE';
  constructor(message: string) {
    super(message);
    this.name = 'PolicyCompileError';
  }
}

function compilePath(
  linkById: ReadonlyMap<string, Link>,
  plan: AddressingPlan,
  src: string,
  path: Path,
): CompiledPath {
  const end = (
    site: string,
    linkId: string,
  ): { sid: string; ifName: string; peer4: string; peer6: string } => {
    const l = linkById.get(linkId);
    const la = plan.links[linkId];
    if (l === undefined || la === undefined)
      throw new PolicyCompileError(`path uses unknown link '${linkId}'`);
    if (l.a === site) return { sid: la.sidA, ifName: la.ifA, peer4: la.b4, peer6: la.b6 };
    if (l.b === site) return { sid: la.sidB, ifName: la.ifB, peer4: la.a4, peer6: la.a6 };
    throw new PolicyCompileError(`link '${linkId}' does not touch site '${site}'`);
  };
  const firstLink = path.links[0];
  const dst = path.sites[path.sites.length - 1];
  if (firstLink === undefined || dst === undefined || path.sites[0] !== src) {
    throw new PolicyCompileError(`path ${path.sites.join('>')} does not start at '${src}'`);
  }
  const first = end(src, firstLink);
  const segments: string[] = [];
  for (let i = 1; i < path.links.length; i++) {
    segments.push(end(path.sites[i] ?? '', path.links[i] ?? '').sid);
  }
  const dstPlan = plan.sites[dst];
  if (dstPlan === undefined) throw new PolicyCompileError(`unknown site '${dst}'`);
  segments.push(dstPlan.dx4Sid);
  return {
    sites: [...path.sites],
    links: [...path.links],
    outIf: first.ifName,
    nextHop4: first.peer4,
    nextHop6: first.peer6,
    segments,
  };
}

/**
 * Compiles one policy per site (version 0, content hash set). Routes that are unreachable or
 * have no primary path produce no forwarding state (their traffic takes the unmarked path); the
 * route loop hands unreachable routes over with their last path instead (fail static, route-loop.ts).
 */
export function compilePolicies(
  topology: Topology,
  routes: readonly Route[],
  plan: AddressingPlan,
  options: { pathProbePortBase?: number | null } = {},
): Map<string, CompiledSitePolicy> {
  const sites = [...topology.sites].sort(byId);
  const classesSorted = [...topology.classes].sort(byId);
  const classIndex = new Map(classesSorted.map((c, i) => [c.id, i]));
  const siteIndex = new Map(sites.map((s, i) => [s.id, i]));
  const prefixes = new Map(sites.map((s) => [s.id, [...s.prefixes]]));
  const linkById = new Map(topology.links.map((l) => [l.id, l]));
  // Match order: classes with a match by priority, then match-all classes (the first is default).
  const ordered = [...topology.classes].sort(
    (a, b) =>
      (a.match === undefined ? 1 : 0) - (b.match === undefined ? 1 : 0) ||
      a.priority - b.priority ||
      byId(a, b),
  );
  const matchAll = ordered.find((c) => c.match === undefined);
  const leastImportant = [...topology.classes].sort((a, b) => b.priority - a.priority || byId(a, b))[0];
  const defaultClass = (matchAll ?? leastImportant)?.id ?? null;
  const classes = ordered.map((c) => {
    const m = c.match;
    const match =
      m === undefined
        ? undefined
        : {
            ...(m.dscp !== undefined ? { dscp: [...m.dscp] } : {}),
            ...(m.protocol !== undefined ? { protocol: m.protocol } : {}),
            ...(m.ports !== undefined ? { ports: [...m.ports] } : {}),
          };
    return { id: c.id, priority: c.priority, ...(match !== undefined ? { match } : {}) };
  });

  const out = new Map<string, CompiledSitePolicy>();
  for (const site of sites) {
    const sp = plan.sites[site.id];
    if (sp === undefined) throw new PolicyCompileError(`the plan has no site '${site.id}'`);
    const interfaces: CompiledSitePolicy['interfaces'] = [];
    const localSids: CompiledSitePolicy['localSids'] = [];
    for (const l of [...topology.links].sort(byId)) {
      const la = plan.links[l.id];
      if (la === undefined) throw new PolicyCompileError(`the plan has no link '${l.id}'`);
      if (l.a !== site.id && l.b !== site.id) continue;
      const isA = l.a === site.id;
      const iface = {
        link: l.id,
        ifName: isA ? la.ifA : la.ifB,
        peer: isA ? l.b : l.a,
        local4: isA ? la.a4 : la.b4,
        peer4: isA ? la.b4 : la.a4,
        local6: isA ? la.a6 : la.b6,
        peer6: isA ? la.b6 : la.a6,
      };
      interfaces.push(iface);
      localSids.push({
        sid: isA ? la.sidA : la.sidB,
        action: 'End.X',
        link: l.id,
        outIf: iface.ifName,
        nextHop6: iface.peer6,
      });
    }
    localSids.push({ sid: sp.dx4Sid, action: 'End.DX4' });
    const siteRoutes: CompiledSitePolicy['routes'] = [];
    for (const r of routes) {
      if (r.src !== site.id || r.primary === null || r.status === 'unreachable') continue;
      const ci = classIndex.get(r.class);
      const di = siteIndex.get(r.dst);
      const dstPrefixes = prefixes.get(r.dst);
      if (ci === undefined || di === undefined || dstPrefixes === undefined) {
        throw new PolicyCompileError(`route ${r.class}/${r.src}>${r.dst} names an unknown class or site`);
      }
      const slot = ci * sites.length + di + 1;
      if (slot > 4999) {
        throw new PolicyCompileError(
          `route ${r.class}/${r.src}>${r.dst} needs slot ${slot}, above the 4999 reserved`,
        );
      }
      siteRoutes.push({
        class: r.class,
        dst: r.dst,
        dstPrefixes,
        slot,
        status: r.status,
        primary: compilePath(linkById, plan, site.id, r.primary),
        backup: r.backup === null ? null : compilePath(linkById, plan, site.id, r.backup),
      });
    }
    siteRoutes.sort((a, b) => a.slot - b.slot);
    const content = {
      site: site.id,
      hostAddress: sp.hostAddress,
      tunnelSource: sp.tunnelSource,
      interfaces,
      classes,
      defaultClass,
      pathProbePortBase:
        options.pathProbePortBase === undefined ? DEFAULT_PATH_PROBE_PORT_BASE : options.pathProbePortBase,
      localSids,
      routes: siteRoutes,
    };
    out.set(site.id, { version: 0, hash: compiledPolicyHash(content), ...content });
  }
  return out;
}
