/**
 * Policy compiler: from the route set to one policy per site (format and rationale in
 * edge-agent/src/policy.ts, whose TypeBox schema the agent validates against). Pure: no I/O.
 *
 * Each route (src, dst, class) is forwarded in one of two modes, chosen per route:
 *
 * - **SRv6**, where the head-end and every site of its primary and backup paths can do it (their
 *   agents said so in their hello, or `forwarding: 'srv6'` forces it): at its source site only, a
 *   segment list per path. Transit and destination sites only serve their SIDs, which depend on
 *   the topology alone, so a route change re-sends the source site's policy only.
 * - **hop-by-hop** otherwise (a kernel without SRv6 lightweight tunnels, a RouterOS site): the
 *   source steers the first link, and every transit site of each path gets a transit entry
 *   (source prefixes, destination prefixes, class, incoming link → outgoing link). The incoming
 *   link tells a route's paths apart at a site both cross: primary and policy backup are
 *   link-disjoint wherever the network allows (forwarding-backup.ts). Where they are not and would
 *   enter a site over the same link and leave it over different ones, the route keeps no backup in
 *   this mode (the site could not tell which path a packet is on); `ambiguousBackups` counts them.
 *   A route change keeps the previous route set's transit entries that the new set does not
 *   replace for one more version (`previousRoutes`): a head-end that has not applied its new
 *   policy yet still finds its old path in place downstream (make before break).
 *
 * The content hash tells the distributor which sites changed. Versions are the distributor's job.
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

export type ForwardingMode = 'srv6' | 'hop-by-hop';
/** `meridian controller --forwarding`: per route (`auto`), or one mode for every route. */
export type ForwardingChoice = 'auto' | ForwardingMode;
export const FORWARDING_CHOICES: readonly ForwardingChoice[] = ['auto', 'srv6', 'hop-by-hop'];

/** A hop-by-hop transit entry (the agent's `TransitEntry`). */
export interface CompiledTransit {
  src: string;
  srcPrefixes: string[];
  dst: string;
  dstPrefixes: string[];
  class: string;
  paths: ('primary' | 'backup')[];
  inLink: string;
  inIf: string;
  outLink: string;
  outIf: string;
  nextHop4: string;
  probePorts: number[];
}

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
    forwarding: ForwardingMode;
    primary: CompiledPath;
    backup: CompiledPath | null;
  }[];
  transit: CompiledTransit[];
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
/** The agent's highest route slot (edge-agent/src/policy.ts `MAX_SLOT`). */
const MAX_SLOT = 4999;

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
  mode: ForwardingMode,
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
  const dstPlan = plan.sites[dst];
  if (dstPlan === undefined) throw new PolicyCompileError(`unknown site '${dst}'`);
  if (mode === 'srv6') {
    for (let i = 1; i < path.links.length; i++) {
      segments.push(end(path.sites[i] ?? '', path.links[i] ?? '').sid);
    }
    segments.push(dstPlan.dx4Sid);
  }
  return {
    sites: [...path.sites],
    links: [...path.links],
    outIf: first.ifName,
    nextHop4: first.peer4,
    nextHop6: first.peer6,
    segments,
  };
}

/** Options of {@link compilePolicies}. */
export interface CompileOptions {
  /** UDP source port base of per-path probes; null: no path probes. Default {@link DEFAULT_PATH_PROBE_PORT_BASE}. */
  pathProbePortBase?: number | null;
  /** Default `auto`: SRv6 for a route whose every site is in `srv6Sites`, hop-by-hop otherwise. */
  forwarding?: ForwardingChoice;
  /** Sites whose data plane can do SRv6 (from their agents' hello); unknown sites cannot. */
  srv6Sites?: ReadonlySet<string>;
  /** The route set of the previous compile: its transit entries stay one more version (make before break). */
  previousRoutes?: readonly Route[];
}

/** What {@link compilePoliciesDetailed} says beside the policies. */
export interface CompileResult {
  readonly policies: Map<string, CompiledSitePolicy>;
  /** Routes per mode. */
  readonly modes: Record<ForwardingMode, number>;
  /** Hop-by-hop routes whose backup was dropped because a site could not tell it from the primary. */
  readonly ambiguousBackups: number;
  /** Transit entries kept from the previous route set (make before break). */
  readonly graceEntries: number;
}

/** The (site, entry) pairs of one path's transit sites; the key is the agent's `transitKey`. */
interface PathTransit {
  readonly site: string;
  readonly inLink: string;
  readonly outLink: string;
}

function pathTransits(path: Path): PathTransit[] {
  const out: PathTransit[] = [];
  for (let i = 1; i < path.sites.length - 1; i++) {
    out.push({ site: path.sites[i] ?? '', inLink: path.links[i - 1] ?? '', outLink: path.links[i] ?? '' });
  }
  return out;
}

/** Whether a site would see both paths arrive over one link and leave over different ones. */
function ambiguous(primary: Path, backup: Path): boolean {
  const out = new Map(pathTransits(primary).map((t) => [`${t.site}|${t.inLink}`, t.outLink]));
  return pathTransits(backup).some((t) => {
    const o = out.get(`${t.site}|${t.inLink}`);
    return o !== undefined && o !== t.outLink;
  });
}

/** The forwarding mode of a route under `choice`. */
function modeOf(route: Route, choice: ForwardingChoice, srv6Sites: ReadonlySet<string>): ForwardingMode {
  if (choice !== 'auto') return choice;
  const all = (p: Path | null): boolean => p === null || p.sites.every((s) => srv6Sites.has(s));
  return all(route.primary) && all(route.backup) ? 'srv6' : 'hop-by-hop';
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
  options: CompileOptions = {},
): Map<string, CompiledSitePolicy> {
  return compilePoliciesDetailed(topology, routes, plan, options).policies;
}

/** {@link compilePolicies}, with counts of what it decided. */
export function compilePoliciesDetailed(
  topology: Topology,
  routes: readonly Route[],
  plan: AddressingPlan,
  options: CompileOptions = {},
): CompileResult {
  const choice = options.forwarding ?? 'auto';
  const srv6Sites = options.srv6Sites ?? new Set<string>();
  const canSrv6 = (site: string): boolean => choice === 'srv6' || (choice === 'auto' && srv6Sites.has(site));
  const probeBase =
    options.pathProbePortBase === undefined ? DEFAULT_PATH_PROBE_PORT_BASE : options.pathProbePortBase;
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
  const classOrder = new Map(ordered.map((c, i) => [c.id, i]));
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
  const slotOf = (r: Route): number => {
    const ci = classIndex.get(r.class);
    const di = siteIndex.get(r.dst);
    if (ci === undefined || di === undefined || !prefixes.has(r.src)) {
      throw new PolicyCompileError(`route ${r.class}/${r.src}>${r.dst} names an unknown class or site`);
    }
    const slot = ci * sites.length + di + 1;
    if (slot > MAX_SLOT) {
      throw new PolicyCompileError(
        `route ${r.class}/${r.src}>${r.dst} needs slot ${slot}, above the ${MAX_SLOT} reserved`,
      );
    }
    return slot;
  };
  /** Where a site's end of a link is: its interface and the far end's IPv4 address. */
  const endAt = (site: string, linkId: string): { ifName: string; peer4: string } => {
    const l = linkById.get(linkId);
    const la = plan.links[linkId];
    if (l === undefined || la === undefined)
      throw new PolicyCompileError(`path uses unknown link '${linkId}'`);
    if (l.a === site) return { ifName: la.ifA, peer4: la.b4 };
    if (l.b === site) return { ifName: la.ifB, peer4: la.a4 };
    throw new PolicyCompileError(`link '${linkId}' does not touch site '${site}'`);
  };

  // Per route: its mode and the backup the data plane gets.
  const modes: Record<ForwardingMode, number> = { srv6: 0, 'hop-by-hop': 0 };
  let ambiguousBackups = 0;
  interface Decided {
    readonly route: Route;
    readonly primary: Path;
    readonly mode: ForwardingMode;
    readonly backup: Path | null;
    readonly slot: number;
  }
  const decide = (r: Route, count: boolean): Decided | null => {
    if (r.primary === null || r.status === 'unreachable') return null;
    const mode = modeOf(r, choice, srv6Sites);
    let backup = r.backup;
    if (mode === 'hop-by-hop' && backup !== null && ambiguous(r.primary, backup)) {
      backup = null;
      if (count) ambiguousBackups++;
    }
    if (count) modes[mode]++;
    return { route: r, primary: r.primary, mode, backup, slot: slotOf(r) };
  };
  const decided = routes.flatMap((r) => decide(r, true) ?? []);

  // Transit entries per site, keyed by the agent's transitKey.
  const transitOf = (list: readonly Decided[]): Map<string, Map<string, CompiledTransit>> => {
    const bySite = new Map<string, Map<string, CompiledTransit>>();
    for (const d of list) {
      if (d.mode !== 'hop-by-hop') continue;
      const r = d.route;
      const srcPrefixes = prefixes.get(r.src) ?? [];
      const dstPrefixes = prefixes.get(r.dst) ?? [];
      for (const [role, path] of [
        ['primary', d.primary],
        ['backup', d.backup],
      ] as const) {
        if (path === null) continue;
        const port = probeBase === null ? null : probeBase + 2 * d.slot + (role === 'backup' ? 1 : 0);
        for (const t of pathTransits(path)) {
          const key = `${r.class}/${r.src}>${r.dst}@${t.inLink}`;
          let m = bySite.get(t.site);
          if (m === undefined) bySite.set(t.site, (m = new Map<string, CompiledTransit>()));
          const have = m.get(key);
          if (have !== undefined) {
            // Same incoming link: `ambiguous` guarantees the same outgoing one.
            have.paths.push(role);
            if (port !== null) have.probePorts.push(port);
            continue;
          }
          const inEnd = endAt(t.site, t.inLink);
          const outEnd = endAt(t.site, t.outLink);
          m.set(key, {
            src: r.src,
            srcPrefixes: [...srcPrefixes],
            dst: r.dst,
            dstPrefixes: [...dstPrefixes],
            class: r.class,
            paths: [role],
            inLink: t.inLink,
            inIf: inEnd.ifName,
            outLink: t.outLink,
            outIf: outEnd.ifName,
            nextHop4: outEnd.peer4,
            probePorts: port === null ? [] : [port],
          });
        }
      }
    }
    return bySite;
  };
  const transit = transitOf(decided);
  let graceEntries = 0;
  if (options.previousRoutes !== undefined) {
    const previous = transitOf(options.previousRoutes.flatMap((r) => decide(r, false) ?? []));
    for (const [site, entries] of previous) {
      let m = transit.get(site);
      if (m === undefined) transit.set(site, (m = new Map<string, CompiledTransit>()));
      for (const [key, e] of entries) {
        if (m.has(key)) continue;
        m.set(key, e);
        graceEntries++;
      }
    }
  }
  const transitOrder = (a: CompiledTransit, b: CompiledTransit): number =>
    (classOrder.get(a.class) ?? 0) - (classOrder.get(b.class) ?? 0) ||
    (a.src < b.src ? -1 : a.src > b.src ? 1 : 0) ||
    (a.dst < b.dst ? -1 : a.dst > b.dst ? 1 : 0) ||
    (a.inLink < b.inLink ? -1 : a.inLink > b.inLink ? 1 : 0);

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
      if (canSrv6(site.id)) {
        localSids.push({
          sid: isA ? la.sidA : la.sidB,
          action: 'End.X',
          link: l.id,
          outIf: iface.ifName,
          nextHop6: iface.peer6,
        });
      }
    }
    if (canSrv6(site.id)) localSids.push({ sid: sp.dx4Sid, action: 'End.DX4' });
    const siteRoutes: CompiledSitePolicy['routes'] = [];
    for (const d of decided) {
      const r = d.route;
      if (r.src !== site.id) continue;
      siteRoutes.push({
        class: r.class,
        dst: r.dst,
        dstPrefixes: prefixes.get(r.dst) ?? [],
        slot: d.slot,
        status: r.status === 'degraded' ? 'degraded' : 'ok',
        forwarding: d.mode,
        primary: compilePath(linkById, plan, site.id, d.primary, d.mode),
        backup: d.backup === null ? null : compilePath(linkById, plan, site.id, d.backup, d.mode),
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
      pathProbePortBase: probeBase,
      localSids,
      routes: siteRoutes,
      transit: [...(transit.get(site.id)?.values() ?? [])].sort(transitOrder),
    };
    out.set(site.id, { version: 0, hash: compiledPolicyHash(content), ...content });
  }
  return { policies: out, modes, ambiguousBackups, graceEntries };
}
