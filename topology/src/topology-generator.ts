/**
 * Seeded WAN generators: a family of realistic SD-WAN topologies (a meshed core, edges homed to
 * random cores, extra internet links between edges) and measured states for them, for benchmarks
 * and tests that need more than the reference topology. The same options give the same topology on
 * every machine (mulberry32, no `Math.random`), so a figure measured on `generateWan({ seed: 3 })`
 * can be reproduced anywhere.
 *
 * The defaults are the topology of issue 20: 6 cores in a full mesh of leased + internet links, 294
 * edges dual- or triple-homed to random cores, extra edge–edge internet links up to 1,099 links;
 * per link latency 1–31 ms, jitter 0–6 ms, 20 % of links lossy at 0–2 %, costs 1–9; the five classes
 * `voice` (80 ms / 15 ms / 1 %, maxUtilPct 85, latency), `video` (latency), `signaling` (hops), `api`
 * (latency) and `sync` (cost). Query it with {@link hubAndSpokePairs}: every core↔core, edge→core and
 * core→edge pair (17,790 routes over the five classes).
 */
import type { Link, LinkState, NetworkState, Objective, Site, Topology, TrafficClass } from './types';

/** A closed range `[lo, hi]` drawn uniformly. */
export type Range = readonly [lo: number, hi: number];

export interface WanOptions {
  /** PRNG seed (any 32-bit integer); the only source of randomness. */
  readonly seed: number;
  /** Core sites (`dc`, the last third `cloud`), in a full mesh. Default 6. */
  readonly cores?: number;
  /** Edge sites. Default 294. */
  readonly edges?: number;
  /** Number of distinct cores each edge is homed to, drawn uniformly from the range. Default [2, 3]. */
  readonly homing?: Range;
  /** Transports of every core pair's parallel links. Default `['leased', 'internet']`. */
  readonly coreTransports?: readonly ('leased' | 'internet' | 'mpls' | 'fiber')[];
  /** Extra edge–edge internet links are added until the topology has this many links. Default 1,099. */
  readonly totalLinks?: number;
  /** Per link one-way latency (0.1 ms resolution). Default [1, 31]. */
  readonly latencyMs?: Range;
  /** Per link jitter (0.1 ms resolution). Default [0, 6]. */
  readonly jitterMs?: Range;
  /** Share of links with loss. Default 0.2. */
  readonly lossyShare?: number;
  /** Loss of a lossy link (0.01 % resolution). Default [0, 2]. */
  readonly lossPct?: Range;
  /** Per link cost (integers). Default [1, 9]. */
  readonly costs?: Range;
  /**
   * How tight the classes' SLAs are: every bound (latency, jitter, loss) of {@link WAN_CLASSES} is
   * divided by this. 1 (default) is issue 20's voice 80 ms / 15 ms / 1 %; 2 halves every bound.
   */
  readonly slaTightness?: number;
  /** `Topology.source`. Default `<wan seed=S>`. */
  readonly source?: string;
}

/** The classes at `slaTightness` 1 (issue 20; the other bounds are the reference topology's). */
export const WAN_CLASSES: readonly TrafficClass[] = [
  cls('voice', 'latency', [80, 15, 1], 85, 1, [46]),
  cls('video', 'latency', [200, 40, 1], 85, 2, [34, 36, 38]),
  cls('signaling', 'hops', [250, 60, 1], 90, 3, [24, 26, 40]),
  cls('api', 'latency', [300, 100, 1], 90, 4, [18, 0]),
  cls('sync', 'cost', [1000, 500, 5], 95, 5, [10, 8]),
];

function cls(
  id: string,
  objective: Objective,
  [maxLatencyMs, maxJitterMs, maxLossPct]: [number, number, number],
  maxUtilPct: number,
  priority: number,
  dscp: number[],
): TrafficClass {
  return {
    id,
    objective,
    sla: { maxLatencyMs, maxJitterMs, maxLossPct },
    maxUtilPct,
    priority,
    match: { dscp },
  };
}

/** mulberry32: small, fast and the same on every platform. Returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;

function checkRange(name: string, r: Range, min = 0): void {
  if (!(Number.isFinite(r[0]) && Number.isFinite(r[1]) && r[0] >= min && r[0] <= r[1]))
    throw new RangeError(
      `generateWan: ${name} must be [lo, hi] with ${min} <= lo <= hi, got [${r.join(', ')}]`,
    );
}

/**
 * A seeded WAN topology (see the module comment for the defaults). Sites are `core-1`… and
 * `edge-001`…, each with a /24; links are named `a.b.transport` (edge–edge links get a counter).
 * @throws RangeError for impossible options (homing outside 1..cores, bad ranges). A `totalLinks`
 *   below what the core mesh and access links need is not an error: there are no extra links then.
 */
export function generateWan(options: WanOptions): Topology {
  const cores = options.cores ?? 6;
  const edges = options.edges ?? 294;
  const homing = options.homing ?? [2, 3];
  const coreTransports = options.coreTransports ?? ['leased', 'internet'];
  const totalLinks = options.totalLinks ?? 1099;
  const latencyMs = options.latencyMs ?? [1, 31];
  const jitterMs = options.jitterMs ?? [0, 6];
  const lossyShare = options.lossyShare ?? 0.2;
  const lossPct = options.lossPct ?? [0, 2];
  const costs = options.costs ?? [1, 9];
  const tightness = options.slaTightness ?? 1;
  if (!Number.isInteger(cores) || cores < 1)
    throw new RangeError(`generateWan: cores must be an integer >= 1`);
  if (!Number.isInteger(edges) || edges < 0)
    throw new RangeError(`generateWan: edges must be an integer >= 0`);
  checkRange('homing', homing, 1);
  if (homing[1] > cores || !Number.isInteger(homing[0]) || !Number.isInteger(homing[1]))
    throw new RangeError(`generateWan: homing must be integers within 1..cores (${cores})`);
  checkRange('latencyMs', latencyMs);
  checkRange('jitterMs', jitterMs);
  checkRange('lossPct', lossPct);
  if (lossPct[1] > 100) throw new RangeError('generateWan: lossPct above 100');
  checkRange('costs', costs);
  if (!(lossyShare >= 0 && lossyShare <= 1))
    throw new RangeError('generateWan: lossyShare must be in [0, 1]');
  if (!(tightness > 0 && Number.isFinite(tightness)))
    throw new RangeError('generateWan: slaTightness must be a finite number > 0');

  const rnd = seededRandom(options.seed);
  const uniform = ([lo, hi]: Range): number => lo + rnd() * (hi - lo);
  const link = (id: string, a: string, b: string, transport: Link['transport']): Link => ({
    id,
    a,
    b,
    transport,
    capacityMbps: transport === 'internet' ? 500 : transport === 'mpls' ? 200 : 1000,
    latencyMs: round(uniform(latencyMs), 1),
    jitterMs: round(uniform(jitterMs), 1),
    lossPct: rnd() < lossyShare ? round(uniform(lossPct), 2) : 0,
    cost: Math.floor(costs[0] + rnd() * (Math.floor(costs[1]) - Math.ceil(costs[0]) + 1)),
  });

  const sites: Site[] = [];
  const coreIds: string[] = [];
  for (let i = 0; i < cores; i++) {
    const id = `core-${i + 1}`;
    coreIds.push(id);
    sites.push({
      id,
      kind: i >= cores - Math.floor(cores / 3) ? 'cloud' : 'dc',
      region: `region-${i + 1}`,
      prefixes: [`10.${i >> 8}.${i & 255}.0/24`],
    });
  }
  const links: Link[] = [];
  for (let i = 0; i < cores; i++)
    for (let j = i + 1; j < cores; j++)
      for (const t of coreTransports)
        links.push(link(`${coreIds[i]}.${coreIds[j]}.${t}`, coreIds[i]!, coreIds[j]!, t));

  const edgeIds: string[] = [];
  const width = Math.max(3, String(edges).length);
  for (let i = 0; i < edges; i++) {
    const id = `edge-${String(i + 1).padStart(width, '0')}`;
    edgeIds.push(id);
    sites.push({
      id,
      kind: 'edge',
      region: `region-${1 + Math.floor(rnd() * cores)}`,
      prefixes: [`10.${64 + (i >> 8)}.${i & 255}.0/24`],
    });
    const k = homing[0] + Math.floor(rnd() * (homing[1] - homing[0] + 1));
    // k distinct cores: a partial Fisher–Yates shuffle.
    const order = [...coreIds];
    for (let h = 0; h < k; h++) {
      const r = h + Math.floor(rnd() * (order.length - h));
      [order[h], order[r]] = [order[r]!, order[h]!];
      const transport = h === 0 ? 'mpls' : 'internet';
      links.push(link(`${id}.${order[h]}.${transport}`, id, order[h]!, transport));
    }
  }
  // Extra internet links between random edges (at most one per edge pair).
  const seen = new Set<string>();
  for (let k = 0; links.length < totalLinks && edges >= 2 && k < 100 * totalLinks; k++) {
    const i = Math.floor(rnd() * edges);
    let j = Math.floor(rnd() * (edges - 1));
    if (j >= i) j++;
    const [a, b] = i < j ? [edgeIds[i]!, edgeIds[j]!] : [edgeIds[j]!, edgeIds[i]!];
    if (seen.has(`${a}|${b}`)) continue;
    seen.add(`${a}|${b}`);
    links.push(link(`${a}.${b}.internet`, a, b, 'internet'));
  }
  const classes = WAN_CLASSES.map((c) => ({
    ...c,
    sla: {
      maxLatencyMs: c.sla.maxLatencyMs / tightness,
      maxJitterMs: c.sla.maxJitterMs / tightness,
      maxLossPct: c.sla.maxLossPct / tightness,
    },
  }));
  return {
    version: 1,
    source: options.source ?? `<wan seed=${options.seed}>`,
    sites,
    links,
    classes,
    devices: [],
  };
}

export interface WanStateOptions {
  readonly seed: number;
  /** Share of links whose utilisation lies in [86, 97] % (between the classes' limits). Default 0.04. */
  readonly hotShare?: number;
  /** Utilisation of the other links, uniform. Default [0, 70]. */
  readonly utilPct?: Range;
  /** Share of links whose latency drifted up by 0–50 %. Default 0.05. */
  readonly driftShare?: number;
  /** Share of internet links measured lossy at 0.5–2 %. Default 0.05. */
  readonly lossyShare?: number;
  /** Share of links down. Default 0.01. */
  readonly downShare?: number;
}

/**
 * A seeded measured state for any topology: utilisation on every link (a few links between the
 * classes' `maxUtilPct` limits), latency drift, lossy internet links and a few links down.
 */
export function generateWanState(topology: Topology, options: WanStateOptions): NetworkState {
  const rnd = seededRandom(options.seed);
  const hot = options.hotShare ?? 0.04;
  const util = options.utilPct ?? [0, 70];
  const drift = options.driftShare ?? 0.05;
  const lossy = options.lossyShare ?? 0.05;
  const down = options.downShare ?? 0.01;
  const links: Record<string, LinkState> = {};
  for (const l of topology.links) {
    const s: { up?: boolean; latencyMs?: number; lossPct?: number; utilPct?: number } = {};
    s.utilPct = rnd() < hot ? round(86 + rnd() * 11, 1) : round(util[0] + rnd() * (util[1] - util[0]), 1);
    if (rnd() < drift) s.latencyMs = round(l.latencyMs * (1 + rnd() * 0.5), 1);
    if (l.transport === 'internet' && rnd() < lossy) s.lossPct = round(0.5 + rnd() * 1.5, 2);
    if (rnd() < down) s.up = false;
    links[l.id] = s;
  }
  return { links };
}
