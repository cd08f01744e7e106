/**
 * Seeded random topologies and states for the property tests: small graphs with parallel links,
 * decimal metrics that tie (0.1 + 0.2 vs 0.3), tight SLAs, high utilisation and down links.
 */
import type { Link, LinkState, NetworkState, Objective, Site, Topology, TrafficClass } from '../src/types';

/** mulberry32: a small, fast, seedable PRNG (deterministic across runs and machines). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rnd: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rnd() * xs.length)]!;
}

const NAMES = ['bj', 'sh', 'gz', 'hk', 'cd', 'wh', 'xa', 'a', 'b', 'c', 'bj2', 'sh-b'];
const LATENCIES = [0.1, 0.2, 0.3, 1, 2, 3, 5, 7.5, 10, 15];
const LOSSES = [0, 0, 0, 0.1, 0.2, 0.5, 1, 2];

export function randomTopology(rnd: () => number, nSites?: number): Topology {
  const n = nSites ?? 3 + Math.floor(rnd() * 5);
  const names = [...NAMES].sort(() => rnd() - 0.5).slice(0, n);
  const sites: Site[] = names.map((id) => ({ id, kind: 'dc', region: 'r', prefixes: [] }));
  const links: Link[] = [];
  const nLinks = n - 1 + Math.floor(rnd() * (n + 4));
  for (let i = 0; i < nLinks; i++) {
    const a = Math.floor(rnd() * n);
    let b = Math.floor(rnd() * (n - 1));
    if (b >= a) b++;
    links.push({
      id: `${pick(rnd, ['l', 'k', 'm'])}${i}`,
      a: names[a]!,
      b: names[b]!,
      transport: pick(rnd, ['leased', 'internet', 'fiber'] as const),
      capacityMbps: 1000,
      latencyMs: pick(rnd, LATENCIES),
      jitterMs: pick(rnd, [0, 0.1, 0.2, 1, 2, 5]),
      lossPct: pick(rnd, LOSSES),
      cost: pick(rnd, [1, 1, 2, 3, 0.5, 0.1, 0.2]),
    });
    // Parallel links: sometimes duplicate the pair with other metrics.
    if (rnd() < 0.25) {
      links.push({
        ...links[links.length - 1]!,
        id: `p${i}`,
        latencyMs: pick(rnd, LATENCIES),
        cost: pick(rnd, [1, 2]),
      });
    }
  }
  const objectives: Objective[] = ['latency', 'cost', 'hops'];
  const classes: TrafficClass[] = objectives.map((objective, i) => ({
    id: `c${i}-${objective}`,
    objective,
    priority: i + 1,
    maxUtilPct: pick(rnd, [50, 80, 85, 100]),
    sla: {
      maxLatencyMs: pick(rnd, [0.3, 1, 3, 5, 10, 12.5, 20, 40, 100]),
      maxJitterMs: pick(rnd, [0, 0.3, 1, 3, 10, 100]),
      maxLossPct: pick(rnd, [0, 0.1, 0.3, 1, 5, 10]),
    },
  }));
  return { version: 1, source: '<random>', sites, links, classes, devices: [] };
}

export function randomLinkState(rnd: () => number, link: Link): LinkState {
  const s: { up?: boolean; latencyMs?: number; jitterMs?: number; lossPct?: number; utilPct?: number } = {};
  if (rnd() < 0.15) s.up = false;
  if (rnd() < 0.3) s.latencyMs = pick(rnd, LATENCIES);
  if (rnd() < 0.2) s.jitterMs = pick(rnd, [0, 0.2, 3]);
  if (rnd() < 0.2) s.lossPct = pick(rnd, LOSSES);
  if (rnd() < 0.5) s.utilPct = pick(rnd, [0, 10, 50, 79, 80, 85, 90, 99, 100]);
  void link;
  return s;
}

export function randomState(rnd: () => number, topology: Topology): NetworkState {
  const links: Record<string, LinkState> = {};
  for (const l of topology.links) if (rnd() < 0.6) links[l.id] = randomLinkState(rnd, l);
  return { links };
}
