/**
 * What the Linux driver wants in the kernel for a policy, computed without touching it (pure, so
 * it is testable and countable without root): policy-routing rules, routes (with the signature the
 * driver compares the kernel's by) and the nftables script. Mapping and why: driver-linux.ts and
 * policy.ts.
 */
import {
  BASE_RULE_PREF,
  MARK_BASE,
  PROBE_MARK_BASE,
  TABLE_BASE,
  TRANSIT_MARK_BASE,
  TRANSIT_TABLE_BASE,
  routeMode,
  type PathState,
  type PolicyRoute,
  type SitePolicy,
} from './policy';

export type Family = 4 | 6;
export const NFT_TABLE = 'meridian';

export interface RuleSpec {
  readonly family: Family;
  readonly pref: number;
  readonly fwmark: number | null;
  readonly table: number;
  /** `iif lo`: packets this host originates (the base rule); absent: any. */
  readonly iif?: string;
}

/** A rule's identity, as the driver compares the kernel's rules with the wanted ones. */
export const ruleKey = (r: RuleSpec): string =>
  `${r.family}|${r.pref}|${r.fwmark ?? '-'}|${r.table}|${r.iif ?? '-'}`;

/** A rule's selector for `ip rule add|del`. */
export const ruleSelector = (r: RuleSpec): string =>
  `pref ${r.pref}${r.iif !== undefined ? ` iif ${r.iif}` : ''}${r.fwmark !== null ? ` fwmark ${hex(r.fwmark)}` : ''} table ${r.table}`;

export interface RouteSpec {
  readonly family: Family;
  readonly table: string;
  readonly dst: string;
  /** Everything after the destination, without `table`/`proto`: compared with what the kernel shows. */
  readonly attrs: string;
  /** Normalised from the kernel's JSON, for comparison. */
  readonly signature: string;
}

export const primaryTable = (slot: number): number => TABLE_BASE + 2 * slot;
export const backupTable = (slot: number): number => TABLE_BASE + 2 * slot + 1;
export const markOf = (slot: number): number => MARK_BASE + slot;
export const probeMarkOf = (slot: number, role: 'p' | 'b'): number =>
  PROBE_MARK_BASE + 2 * slot + (role === 'b' ? 1 : 0);

export const hex = (n: number): string => `0x${n.toString(16)}`;

/** What the driver compares a path's table route by (the kernel side: {@link kernelSignature}). */
export function pathSignature(route: PolicyRoute, p: PathState): string {
  return routeMode(route) === 'srv6'
    ? `seg6|${p.segments.join(',')}|${p.outIf}`
    : `plain|${p.outIf}|${p.nextHop4}`;
}

export function normDst(dst: string, family: Family): string {
  if (dst === 'default') return family === 4 ? '0.0.0.0/0' : '::/0';
  return dst.includes('/') ? dst : `${dst}/${family === 4 ? 32 : 128}`;
}

/** Desired rules and routes of a policy. */
export function renderKernel(policy: SitePolicy): { rules: RuleSpec[]; routes: RouteSpec[] } {
  const rules: RuleSpec[] = [];
  const routes: RouteSpec[] = [];
  const encapRoutes = (table: number, route: PolicyRoute, p: PathState, src?: string): void => {
    const prefixes = route.dstPrefixes;
    const srcAttr = src !== undefined ? ` src ${src}` : '';
    if (routeMode(route) === 'hop-by-hop') {
      for (const prefix of prefixes) {
        routes.push({
          family: 4,
          table: String(table),
          dst: prefix,
          attrs: `via ${p.nextHop4} dev ${p.outIf}${srcAttr}`,
          signature: pathSignature(route, p),
        });
      }
      return;
    }
    const segs = p.segments.join(',');
    for (const prefix of prefixes) {
      routes.push({
        family: 4,
        table: String(table),
        dst: prefix,
        attrs: `encap seg6 mode encap segs ${segs} dev ${p.outIf}${srcAttr}`,
        signature: pathSignature(route, p),
      });
    }
    const first = p.segments[0] ?? '';
    routes.push({
      family: 6,
      table: String(table),
      dst: `${first}/128`,
      attrs: `dev ${p.outIf}`,
      signature: `plain|${p.outIf}`,
    });
  };
  const baseDone = new Set<string>();
  const byDefaultFirst = [...policy.routes].sort(
    (a, b) =>
      (a.class === policy.defaultClass ? 0 : 1) - (b.class === policy.defaultClass ? 0 : 1) ||
      a.slot - b.slot,
  );
  for (const r of byDefaultFirst) {
    if (baseDone.has(r.dst)) continue;
    baseDone.add(r.dst);
    encapRoutes(TABLE_BASE, r, r.primary, policy.hostAddress);
  }
  if (baseDone.size > 0) {
    for (const family of [4, 6] as const)
      // Only what this host originates (its first route lookup comes before the output hook's
      // mark): a forwarded packet that no transit entry claimed must not take this site's own
      // path (a site whose own path to the destination leads back where it came from would bounce
      // it until its TTL runs out).
      rules.push({ family, pref: BASE_RULE_PREF, fwmark: null, table: TABLE_BASE, iif: 'lo' });
  }
  for (const r of policy.routes) {
    encapRoutes(primaryTable(r.slot), r, r.primary);
    for (const family of [4, 6] as const) {
      rules.push({
        family,
        pref: primaryTable(r.slot),
        fwmark: markOf(r.slot),
        table: primaryTable(r.slot),
      });
    }
    if (policy.pathProbePortBase !== null) {
      for (const family of [4, 6] as const) {
        rules.push({
          family,
          pref: primaryTable(r.slot),
          fwmark: probeMarkOf(r.slot, 'p'),
          table: primaryTable(r.slot),
        });
        if (r.backup !== null) {
          rules.push({
            family,
            pref: backupTable(r.slot),
            fwmark: probeMarkOf(r.slot, 'b'),
            table: backupTable(r.slot),
          });
        }
      }
    }
    if (r.backup !== null) {
      encapRoutes(backupTable(r.slot), r, r.backup);
      for (const family of [4, 6] as const) {
        rules.push({
          family,
          pref: backupTable(r.slot),
          fwmark: markOf(r.slot),
          table: backupTable(r.slot),
        });
      }
    }
  }
  const nextHops = transitNextHops(policy);
  for (const [i, iface] of policy.interfaces.entries()) {
    const nh = nextHops.get(iface.ifName);
    if (nh === undefined) continue;
    routes.push({
      family: 4,
      table: String(TRANSIT_TABLE_BASE + i),
      dst: 'default',
      attrs: `via ${nh} dev ${iface.ifName}`,
      signature: `plain|${iface.ifName}|${nh}`,
    });
    rules.push({
      family: 4,
      pref: TRANSIT_TABLE_BASE + i,
      fwmark: TRANSIT_MARK_BASE + i,
      table: TRANSIT_TABLE_BASE + i,
    });
  }
  for (const s of policy.localSids) {
    if (s.action === 'End.X') {
      routes.push({
        family: 6,
        table: 'main',
        dst: `${s.sid}/128`,
        attrs: `encap seg6local action End.X nh6 ${s.nextHop6} dev ${s.outIf}`,
        signature: `End.X|${s.nextHop6}|${s.outIf}`,
      });
    } else {
      // Not `dev lo`: IPv6 turns a non-local route via loopback into a reject route.
      const dev = policy.interfaces[0]?.ifName;
      if (dev === undefined) continue;
      routes.push({
        family: 6,
        table: 'main',
        dst: `${s.sid}/128`,
        attrs: `encap seg6local action End.DX4 nh4 0.0.0.0 dev ${dev}`,
        signature: `End.DX4|0.0.0.0|${dev}`,
      });
    }
  }
  const seen = new Set<string>();
  const unique = routes.filter((r) => {
    const key = `${r.family}|${r.table}|${normDst(r.dst, r.family)}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return { rules, routes: unique };
}

/** The nftables script of a policy (an atomic replacement of the owned table). */
export function renderNft(policy: SitePolicy): string {
  const classOrder = new Map(policy.classes.map((c, i) => [c.id, i]));
  const classById = new Map(policy.classes.map((c) => [c.id, c]));
  const ordered = [...policy.routes].sort((a, b) => {
    const da = a.class === policy.defaultClass ? 1 : 0;
    const db = b.class === policy.defaultClass ? 1 : 0;
    return da - db || (classOrder.get(a.class) ?? 0) - (classOrder.get(b.class) ?? 0) || a.slot - b.slot;
  });
  const lines: string[] = [];
  // Path probes: only the agent's own packets (output chain), towards the route's destination,
  // from the path's probe port; their source port pins the path, whatever their DSCP.
  const probes: string[] = [];
  if (policy.pathProbePortBase !== null) {
    for (const r of ordered) {
      const base = policy.pathProbePortBase + 2 * r.slot;
      const to = `ip daddr { ${r.dstPrefixes.join(', ')} }`;
      probes.push(`    ${to} udp sport ${base} meta mark set ${hex(probeMarkOf(r.slot, 'p'))} accept`);
      if (r.backup !== null) {
        probes.push(`    ${to} udp sport ${base + 1} meta mark set ${hex(probeMarkOf(r.slot, 'b'))} accept`);
      }
    }
  }
  for (const r of ordered) {
    const cls = classById.get(r.class);
    const conds = [`ip daddr { ${r.dstPrefixes.join(', ')} }`];
    const m = r.class === policy.defaultClass ? undefined : cls?.match;
    conds.push(...classConditions(m));
    lines.push(`    ${conds.join(' ')} meta mark set ${hex(markOf(r.slot))} accept`);
  }
  const comment = `meridian:${policy.hash}:${policy.version}`;
  const transit = renderTransit(policy, classOrder, classById);
  return [
    `table ip ${NFT_TABLE}`,
    `delete table ip ${NFT_TABLE}`,
    `table ip ${NFT_TABLE} {`,
    `  comment "${comment}"`,
    '  chain classify {',
    ...lines,
    '  }',
    ...transit.chains,
    '  chain transit {',
    ...transit.dispatch,
    '  }',
    '  chain prerouting {',
    '    type filter hook prerouting priority mangle; policy accept;',
    // Transit first: a packet of another site's route must not be taken by this site's own
    // route to the same destination (its entry says where its path goes next).
    '    jump transit',
    // A packet that came over a link and matched no transit entry is not this site's to steer
    // (see the base rule in renderKernel): it keeps no mark and finds no route here.
    ...(policy.interfaces.length > 0
      ? [`    iifname { ${policy.interfaces.map((i) => `"${i.ifName}"`).join(', ')} } return`]
      : []),
    '    jump classify',
    '  }',
    '  chain probes {',
    ...probes,
    '  }',
    '  chain output {',
    '    type route hook output priority mangle; policy accept;',
    '    jump probes',
    '    jump classify',
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * The transit chains: one per incoming interface (entered through a verdict map on `iifname`,
 * so a packet meets only the entries of the link it came over), probe-port lines first (a path
 * probe follows its path whatever its DSCP), then the class lines in match order, the default
 * class last; each sets the mark of the outgoing interface's table.
 */
function renderTransit(
  policy: SitePolicy,
  classOrder: ReadonlyMap<string, number>,
  classById: ReadonlyMap<string, SitePolicy['classes'][number]>,
): { chains: string[]; dispatch: string[] } {
  const entries = policy.transit ?? [];
  if (entries.length === 0) return { chains: [], dispatch: [] };
  const ifIndex = new Map(policy.interfaces.map((i, n) => [i.ifName, n]));
  const byIn = new Map<string, typeof entries>();
  for (const e of entries) byIn.set(e.inIf, [...(byIn.get(e.inIf) ?? []), e]);
  const chains: string[] = [];
  const vmap: string[] = [];
  for (const [inIf, list] of [...byIn.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const chain = `t_${inIf.replace(/[^A-Za-z0-9_]/g, '_')}`;
    vmap.push(`"${inIf}" : jump ${chain}`);
    const probes: string[] = [];
    const ordered = [...list].sort((a, b) => {
      const da = a.class === policy.defaultClass ? 1 : 0;
      const db = b.class === policy.defaultClass ? 1 : 0;
      return da - db || (classOrder.get(a.class) ?? 0) - (classOrder.get(b.class) ?? 0);
    });
    const lines: string[] = [];
    for (const e of ordered) {
      const mark = hex(TRANSIT_MARK_BASE + (ifIndex.get(e.outIf) ?? 0));
      const who = `ip saddr { ${e.srcPrefixes.join(', ')} } ip daddr { ${e.dstPrefixes.join(', ')} }`;
      if (e.probePorts.length > 0) {
        probes.push(`    ${who} udp sport { ${e.probePorts.join(', ')} } meta mark set ${mark} accept`);
      }
      const m = e.class === policy.defaultClass ? undefined : classById.get(e.class)?.match;
      lines.push(`    ${[who, ...classConditions(m)].join(' ')} meta mark set ${mark} accept`);
    }
    chains.push(`  chain ${chain} {`, ...probes, ...lines, '  }');
  }
  return { chains, dispatch: [`    iifname vmap { ${vmap.join(', ')} }`] };
}

/** nft conditions of a class match (none: every packet). */
function classConditions(m: SitePolicy['classes'][number]['match']): string[] {
  const conds: string[] = [];
  if (m?.dscp !== undefined) conds.push(`ip dscp { ${m.dscp.join(', ')} }`);
  if (m?.protocol !== undefined) {
    conds.push(`meta l4proto ${m.protocol}`);
    if (m.ports !== undefined) conds.push(`${m.protocol} dport { ${m.ports.join(', ')} }`);
  } else if (m?.ports !== undefined) {
    conds.push(`th dport { ${m.ports.join(', ')} }`);
  }
  return conds;
}

/**
 * The next hop of each outgoing interface the policy's transit entries use (one pass: a core carries
 * thousands of entries, and a search per interface made the render quadratic).
 */
function transitNextHops(policy: SitePolicy): Map<string, string> {
  const out = new Map<string, string>();
  for (const t of policy.transit ?? []) if (!out.has(t.outIf)) out.set(t.outIf, t.nextHop4);
  return out;
}
