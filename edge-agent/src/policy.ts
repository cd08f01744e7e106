/**
 * The per-site policy: everything one site's router needs so that every (source, destination,
 * class) route that starts at this site follows its computed primary path, with the backup path
 * installed beside it, and so that paths of other sites can cross this site.
 *
 * ## Why SRv6 source routing
 *
 * SLA-constrained paths are not consistent hop by hop: the best voice path A→B→D need not continue
 * the way B's own best path to D goes, and a link-disjoint backup may cross a site of the primary
 * and leave it by another link. Destination-based (or even per-site policy-based) next hops cannot
 * tell, at a transit site, whether a packet is on A's primary, A's backup or B's own path. So the
 * path is carried in the packet: the source site encapsulates each classified IPv4 packet in IPv6
 * with a segment routing header (`encap seg6 mode encap`) whose segments name, hop by hop, the
 * link to leave each transit site by (`End.X` SIDs, one per site and link) and finally the
 * destination site's decapsulation SID (`End.DX4`, which routes the inner packet by its own
 * destination). Consequences:
 *
 * - forwarding is source-aware by construction, and packets take exactly the computed links,
 *   including between two sites joined by parallel links (a SID names a link, not a site);
 * - transit sites hold no per-route state, only their SIDs, so a route change touches the source
 *   site alone, and no combination of policy versions across sites can loop a packet;
 * - the backup path is a second, pre-installed encapsulation route with its own segment list:
 *   primary and backup never clash even when they share sites;
 * - fast reroute is local to the source (which runs the per-path probes): the switch is one
 *   kernel operation at the source, no other site and no controller involved.
 *
 * ## Hop-by-hop, where SRv6 is not there
 *
 * Some Linux kernels refuse every SRv6 route ("lwt encapsulation type not supported") and RouterOS
 * has no SRv6 at all. A route whose head-end or any site of its paths cannot do SRv6 (their agents
 * report it in their hello) is compiled hop-by-hop instead (`forwarding: 'hop-by-hop'`, empty
 * `segments`): the head-end steers the first link as before, and every transit site of the
 * primary and backup paths gets a {@link TransitEntrySchema transit entry}: packets from the
 * source's prefixes to the destination's prefixes, of the class, that arrive over the path's
 * incoming link leave over its outgoing link. What tells a route's paths apart at a site both
 * cross is the link the packet came in by: primary and backup (or protection) paths are
 * link-disjoint wherever the network allows, so they enter a shared site over different links.
 * Nothing in the packet changes (no DSCP rewrite, no extra header, so nothing the end points or
 * carriers see), a RouterOS router can match it (`in-interface`), and the head-end's fast reroute
 * acts along the whole backup path at once (its transit entries are installed beforehand). The
 * price: where a backup would enter a site over the primary's link and leave by another, the site
 * could not tell them apart, so the compiler drops that backup (`ambiguousBackups`); transit sites
 * hold per-route state, so a route change touches every site of the old and new paths, and the
 * controller orders it (make before break: the old path's entries stay one version, transit sites
 * are pushed before the head-end).
 *
 * ## Linux rendering (driver-linux.ts)
 *
 * Per route `slot` n (stable for a topology: class index × site count + destination index + 1):
 * nftables (`table ip meridian`) sets `meta mark 0x4d520000 + n` on packets to the destination's
 * prefixes that match the class (`ip dscp`, protocol, ports), in prerouting and output; `ip rule
 * fwmark → table 20000+2n` (primary, pref 20000+2n) and `→ table 20001+2n` (backup, pref
 * 20001+2n), for IPv4 and IPv6; the primary table holds the IPv4 encapsulation route and an IPv6
 * route for the first segment out of the first link; the backup table the same for the backup
 * path. Fast reroute deletes the primary rule (the backup rule right behind it takes over at once);
 * restoring re-adds it. Table 20000 (rule pref 29990) holds one unmarked route per destination
 * prefix so that locally originated packets find a route before nftables marks them.
 *
 * ## Versions and hashes
 *
 * `hash` is the SHA-256 of the canonical JSON (keys sorted) of the policy without `version` and
 * `hash`; the compiler (controller/src/policy-compiler.ts) sets it, the distributor assigns
 * `version` (monotonic per controller). Equal hash means equal forwarding state.
 */
import { contentHash } from '@meridian/topology';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

/** First mark of the reserved fwmark range (`0x4d52` = "MR"); slot n uses `MARK_BASE + n`. */
export const MARK_BASE = 0x4d520000;
/** Reserved routing tables and rule preferences: 20000 (base) … 29999. */
export const TABLE_BASE = 20000;
export const MAX_SLOT = 4999;
/** Preference of the rule to the base table (unmarked, locally originated packets). */
export const BASE_RULE_PREF = 29990;
/** Path-probe marks: `PROBE_MARK_BASE + 2×slot` (primary), `+ 1` (backup). */
export const PROBE_MARK_BASE = MARK_BASE + 0x8000;
/** Route protocol number tagging every route the drivers add (`ip route … proto 77`). */
export const ROUTE_PROTO = 77;
/**
 * Hop-by-hop transit: a packet classified by a transit entry gets mark `TRANSIT_MARK_BASE + i`,
 * where i is the index in `interfaces` of the entry's outgoing interface; rule pref and table
 * `TRANSIT_TABLE_BASE + i` hold one default route out of that interface. Below {@link TABLE_BASE}
 * so that the unmarked base rule (pref {@link BASE_RULE_PREF}) never sees a transit packet first.
 */
export const TRANSIT_MARK_BASE = MARK_BASE + 0xc000;
export const TRANSIT_TABLE_BASE = 19000;
export const MAX_TRANSIT_INTERFACES = 999;

/** How a route is forwarded: SRv6 source routing, or classification at every site of the path. */
export const ForwardingModeSchema = Type.Union([Type.Literal('srv6'), Type.Literal('hop-by-hop')]);
export type ForwardingMode = Static<typeof ForwardingModeSchema>;
export const FORWARDING_MODES: readonly ForwardingMode[] = ['srv6', 'hop-by-hop'];

const Ipv4 = Type.String({ pattern: '^(\\d{1,3}\\.){3}\\d{1,3}$' });
const Ipv4Cidr = Type.String({ pattern: '^(\\d{1,3}\\.){3}\\d{1,3}/\\d{1,2}$' });
const Ipv6 = Type.String({ pattern: '^[0-9a-fA-F:]+$', minLength: 2, maxLength: 39 });
const Id = Type.String({ minLength: 1, maxLength: 64 });
const IfName = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,15}$' });

/** One way out of the site: the first link of a path and how to reach the far end of it. */
export const PathStateSchema = Type.Object(
  {
    /** Sites of the path, source first. */
    sites: Type.Array(Id, { minItems: 2 }),
    /** Topology links of the path, in order. */
    links: Type.Array(Id, { minItems: 1 }),
    /** The local interface of `links[0]`. */
    outIf: IfName,
    /** The far end's addresses on `links[0]`. */
    nextHop4: Ipv4,
    nextHop6: Ipv6,
    /**
     * SRv6 segment list: an End.X SID per transit site (naming its outgoing link), then the
     * destination's End.DX4 SID. Empty for a hop-by-hop route (the transit sites' entries steer it).
     */
    segments: Type.Array(Ipv6, { maxItems: 16 }),
  },
  { additionalProperties: false },
);
export type PathState = Static<typeof PathStateSchema>;

export const ClassMatchSchema = Type.Object(
  {
    dscp: Type.Optional(Type.Array(Type.Integer({ minimum: 0, maximum: 63 }), { minItems: 1 })),
    protocol: Type.Optional(Type.Union([Type.Literal('udp'), Type.Literal('tcp')])),
    ports: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { minItems: 1 })),
  },
  { additionalProperties: false },
);

export const PolicyClassSchema = Type.Object(
  {
    id: Id,
    priority: Type.Integer({ minimum: 1 }),
    /** Absent: the class matches every packet (only useful as `defaultClass`). */
    match: Type.Optional(ClassMatchSchema),
  },
  { additionalProperties: false },
);
export type PolicyClass = Static<typeof PolicyClassSchema>;

/** A (this site, dst, class) route: where its traffic is steered. */
export const PolicyRouteSchema = Type.Object(
  {
    class: Id,
    dst: Id,
    /** The destination site's prefixes (IPv4 CIDRs). */
    dstPrefixes: Type.Array(Ipv4Cidr, { minItems: 1 }),
    /** Stable per (class, dst) for a topology; selects fwmark, tables and rule preferences. */
    slot: Type.Integer({ minimum: 1, maximum: MAX_SLOT }),
    status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
    /** Absent in policies of earlier releases: `srv6`. */
    forwarding: Type.Optional(ForwardingModeSchema),
    primary: PathStateSchema,
    backup: Type.Union([PathStateSchema, Type.Null()]),
  },
  { additionalProperties: false },
);
export type PolicyRoute = Static<typeof PolicyRouteSchema>;

/** A SID this site serves: `End.X` (leave by `outIf` to `nextHop6`) or `End.DX4` (decapsulate). */
export const LocalSidSchema = Type.Union([
  Type.Object(
    {
      sid: Ipv6,
      action: Type.Literal('End.X'),
      link: Id,
      outIf: IfName,
      nextHop6: Ipv6,
    },
    { additionalProperties: false },
  ),
  Type.Object({ sid: Ipv6, action: Type.Literal('End.DX4') }, { additionalProperties: false }),
]);
export type LocalSid = Static<typeof LocalSidSchema>;

/**
 * Hop-by-hop: one path of a route (src → dst, class) crossing this site. A packet from one of
 * `srcPrefixes` to one of `dstPrefixes`, of `class`, that arrives over `inLink` leaves over
 * `outLink`. The incoming link is the path selector: a route's primary and backup (or protection)
 * paths are link-disjoint wherever the network allows, so where both cross a site they arrive
 * over different links; the compiler drops a backup that would arrive over the same link as the
 * primary and leave over another (see edge-agent/README.md, "Hop-by-hop forwarding").
 */
export const TransitEntrySchema = Type.Object(
  {
    src: Id,
    srcPrefixes: Type.Array(Ipv4Cidr, { minItems: 1 }),
    dst: Id,
    dstPrefixes: Type.Array(Ipv4Cidr, { minItems: 1 }),
    class: Id,
    /** Which of the route's paths use this entry (diagnostics; both when they share it). */
    paths: Type.Array(Type.Union([Type.Literal('primary'), Type.Literal('backup')]), {
      minItems: 1,
      maxItems: 2,
    }),
    inLink: Id,
    inIf: IfName,
    outLink: Id,
    outIf: IfName,
    /** The far end's IPv4 address on `outLink`. */
    nextHop4: Ipv4,
    /**
     * UDP source ports of the head-end's path probes for these paths (`pathProbePort`): a probe
     * follows its path whatever its DSCP, so it is matched on its port before any class.
     */
    probePorts: Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { maxItems: 2 }),
  },
  { additionalProperties: false },
);
export type TransitEntry = Static<typeof TransitEntrySchema>;

/** An interface of the site on a topology link. */
export const PolicyInterfaceSchema = Type.Object(
  {
    link: Id,
    ifName: IfName,
    peer: Id,
    local4: Ipv4,
    peer4: Ipv4,
    local6: Ipv6,
    peer6: Ipv6,
  },
  { additionalProperties: false },
);
export type PolicyInterface = Static<typeof PolicyInterfaceSchema>;

export const SitePolicySchema = Type.Object(
  {
    /** Assigned by the distributor, monotonic; 0 = not yet distributed. */
    version: Type.Integer({ minimum: 0 }),
    /** SHA-256 hex of the canonical content (see {@link policyHash}). */
    hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    site: Id,
    /** The site's host address (inside its first prefix): source of locally originated traffic. */
    hostAddress: Ipv4,
    /** Source address of the outer IPv6 header (`ip sr tunsrc`). */
    tunnelSource: Ipv6,
    interfaces: Type.Array(PolicyInterfaceSchema),
    /** Classes in match order (priority, then id); `defaultClass` catches unmatched packets. */
    classes: Type.Array(PolicyClassSchema),
    defaultClass: Type.Union([Id, Type.Null()]),
    /**
     * Per-path probes: UDP sent from source port `base + 2×slot` (primary) or `base + 2×slot + 1`
     * (backup) to an address inside the destination's prefixes always takes that path, whichever
     * path the route's traffic uses; so the source sees a link die anywhere on either path. Null: off.
     */
    pathProbePortBase: Type.Union([
      Type.Integer({ minimum: 1024, maximum: 65535 - 2 * MAX_SLOT - 1 }),
      Type.Null(),
    ]),
    localSids: Type.Array(LocalSidSchema),
    routes: Type.Array(PolicyRouteSchema),
    /** Hop-by-hop paths of other sites' routes crossing this site. Absent in earlier releases: none. */
    transit: Type.Optional(Type.Array(TransitEntrySchema)),
  },
  { additionalProperties: false },
);
/** A site's policy, as carried in `PolicyPush.policy_json`. */
export type SitePolicy = Static<typeof SitePolicySchema>;

/** A problem found in a policy; `path` is a JSON pointer. */
export interface PolicyProblem {
  readonly path: string;
  readonly message: string;
}

/** The content hash of a policy: SHA-256 of its canonical JSON without `version` and `hash`. */
export function policyHash(policy: Omit<SitePolicy, 'version' | 'hash'> & Partial<SitePolicy>): string {
  const { version: _v, hash: _h, ...content } = policy;
  return contentHash(content);
}

let compiled: ReturnType<typeof TypeCompiler.Compile<typeof SitePolicySchema>> | undefined;
/** The schema compiled once, on first use (compiling costs a few ms at agent start otherwise). */
function policyCheck(): ReturnType<typeof TypeCompiler.Compile<typeof SitePolicySchema>> {
  compiled ??= TypeCompiler.Compile(SitePolicySchema);
  return compiled;
}

/**
 * Checks an untrusted policy (schema, hash, and the cross-references the drivers rely on).
 * Returns the problems; an empty list means the policy can be applied.
 */
export function validatePolicy(input: unknown): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  // The compiled check is cheap; walking every error is not, so only a bad policy pays for it.
  const valid = policyCheck().Check(input);
  for (const e of valid ? [] : policyCheck().Errors(input)) {
    problems.push({ path: e.path || '/', message: e.message });
    if (problems.length >= 20) break;
  }
  if (problems.length > 0) return problems;
  const p = input as SitePolicy;
  if (policyHash(p) !== p.hash) problems.push({ path: '/hash', message: 'does not match the content' });
  const ifNames = new Set(p.interfaces.map((i) => i.ifName));
  const classIds = new Set(p.classes.map((c) => c.id));
  if (p.defaultClass !== null && !classIds.has(p.defaultClass)) {
    problems.push({ path: '/defaultClass', message: `unknown class '${p.defaultClass}'` });
  }
  const slots = new Set<number>();
  p.routes.forEach((r, i) => {
    if (!classIds.has(r.class))
      problems.push({ path: `/routes/${i}/class`, message: `unknown class '${r.class}'` });
    if (slots.has(r.slot)) problems.push({ path: `/routes/${i}/slot`, message: `slot ${r.slot} used twice` });
    slots.add(r.slot);
    for (const [role, path] of [
      ['primary', r.primary],
      ['backup', r.backup],
    ] as const) {
      if (path === null) continue;
      if (!ifNames.has(path.outIf)) {
        problems.push({
          path: `/routes/${i}/${role}/outIf`,
          message: `'${path.outIf}' is not an interface of the policy`,
        });
      }
      if (path.sites[0] !== p.site || path.sites[path.sites.length - 1] !== r.dst) {
        problems.push({
          path: `/routes/${i}/${role}/sites`,
          message: `must run from '${p.site}' to '${r.dst}'`,
        });
      }
      if (path.links.length !== path.sites.length - 1) {
        problems.push({ path: `/routes/${i}/${role}/links`, message: 'must have one link fewer than sites' });
      }
      if (routeMode(r) === 'srv6' && path.segments.length !== path.links.length) {
        problems.push({ path: `/routes/${i}/${role}/segments`, message: 'must have one segment per link' });
      }
      if (routeMode(r) === 'hop-by-hop' && path.segments.length !== 0) {
        problems.push({
          path: `/routes/${i}/${role}/segments`,
          message: 'must be empty for a hop-by-hop route',
        });
      }
    }
  });
  if (p.interfaces.length > MAX_TRANSIT_INTERFACES) {
    problems.push({ path: '/interfaces', message: `at most ${MAX_TRANSIT_INTERFACES} interfaces` });
  }
  const transitKeys = new Map<string, number>();
  (p.transit ?? []).forEach((t, i) => {
    const at = `/transit/${i}`;
    if (!classIds.has(t.class)) problems.push({ path: `${at}/class`, message: `unknown class '${t.class}'` });
    for (const f of ['inIf', 'outIf'] as const) {
      if (!ifNames.has(t[f])) {
        problems.push({ path: `${at}/${f}`, message: `'${t[f]}' is not an interface of the policy` });
      }
    }
    if (t.inLink === t.outLink) problems.push({ path: `${at}/outLink`, message: 'must differ from inLink' });
    if (t.src === p.site || t.dst === p.site) {
      problems.push({ path: at, message: `a transit entry cannot start or end at this site ('${p.site}')` });
    }
    const key = transitKey(t);
    const first = transitKeys.get(key);
    if (first !== undefined) {
      problems.push({ path: at, message: `same route and incoming link as /transit/${first}` });
    } else transitKeys.set(key, i);
  });
  p.localSids.forEach((s, i) => {
    if (s.action === 'End.X' && !ifNames.has(s.outIf)) {
      problems.push({
        path: `/localSids/${i}/outIf`,
        message: `'${s.outIf}' is not an interface of the policy`,
      });
    }
  });
  return problems;
}

/** The UDP source port of a path probe (null when the policy has no path probes). */
export function pathProbePort(policy: SitePolicy, slot: number, role: 'primary' | 'backup'): number | null {
  if (policy.pathProbePortBase === null) return null;
  return policy.pathProbePortBase + 2 * slot + (role === 'backup' ? 1 : 0);
}

/** The forwarding mode of a route (absent: SRv6, the only mode of earlier releases). */
export function routeMode(route: { forwarding?: ForwardingMode }): ForwardingMode {
  return route.forwarding ?? 'srv6';
}

/** Whether a policy needs SRv6 from the data plane (a route in SRv6 mode, or a SID to serve). */
export function policyNeedsSrv6(policy: SitePolicy): boolean {
  return policy.localSids.length > 0 || policy.routes.some((r) => routeMode(r) === 'srv6');
}

/** The key of a transit entry: what a site tells packets apart by (route and incoming link). */
export function transitKey(t: { src: string; dst: string; class: string; inLink: string }): string {
  return `${t.class}/${t.src}>${t.dst}@${t.inLink}`;
}

/** The key of a route inside a site policy. */
export function routeKey(route: { class: string; dst: string }): string {
  return `${route.class}/${route.dst}`;
}
