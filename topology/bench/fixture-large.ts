/**
 * The benchmark's generated topology: the reference core (4 DCs, 2 clouds and their links) plus 294
 * seeded edge sites, each dual-homed (MPLS + internet to a primary core, internet to a secondary
 * core), and internet links between nearby edges; a seeded measured state with realistic utilisation
 * (a few links between the classes' utilisation limits), some lossy internet links and a few down.
 */
import type { Link, LinkState, NetworkState, Site, Topology } from '../src/types';

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

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** 300 sites (the reference's 6 core sites + 294 edges), >= 1,000 links. */
export function largeTopology(reference: Topology, edges = 294, seed = 2026): Topology {
  const rnd = prng(seed);
  const core = reference.sites.filter((s) => s.kind !== 'edge');
  const coreIds = new Set(core.map((s) => s.id));
  const links: Link[] = reference.links.filter((l) => coreIds.has(l.a) && coreIds.has(l.b));
  // Position of a core on the Beijing (0) – Shanghai (1) axis.
  const pos = new Map(core.map((s) => [s.id, s.region === 'beijing' ? 0 : 1]));
  const sites: Site[] = [...core];
  const edgePos: number[] = [];
  for (let i = 0; i < edges; i++) {
    const id = `edge-${String(i + 1).padStart(3, '0')}`;
    const x = rnd();
    edgePos.push(x);
    sites.push({
      id,
      kind: 'edge',
      region: x < 0.5 ? 'north' : 'east',
      prefixes: [`10.${100 + (i >> 8)}.${i & 255}.0/24`],
    });
    const byDistance = [...core].sort(
      (a, b) => Math.abs(pos.get(a.id)! - x) - Math.abs(pos.get(b.id)! - x) || (rnd() < 0.5 ? -1 : 1),
    );
    const primary = byDistance[Math.floor(rnd() * 3)]!;
    let secondary = byDistance[Math.floor(rnd() * 4)]!;
    if (secondary.id === primary.id)
      secondary = byDistance[(byDistance.indexOf(primary) + 1) % byDistance.length]!;
    const lat = (c: Site) => 2 + 22 * Math.abs(pos.get(c.id)! - x) + rnd() * 6;
    const base = lat(primary);
    links.push({
      id: `${id}.${primary.id}.mpls`,
      a: id,
      b: primary.id,
      transport: 'mpls',
      capacityMbps: 200,
      latencyMs: round(base),
      jitterMs: 0.5,
      lossPct: 0,
      cost: 3,
    });
    links.push({
      id: `${id}.${primary.id}.internet`,
      a: id,
      b: primary.id,
      transport: 'internet',
      capacityMbps: 500,
      latencyMs: round(base * 1.6 + 3),
      jitterMs: round(2 + rnd() * 6),
      lossPct: round(rnd() * 0.3, 2),
      cost: 1,
    });
    links.push({
      id: `${id}.${secondary.id}.internet`,
      a: id,
      b: secondary.id,
      transport: 'internet',
      capacityMbps: 500,
      latencyMs: round(lat(secondary) * 1.6 + 3),
      jitterMs: round(2 + rnd() * 6),
      lossPct: round(rnd() * 0.3, 2),
      cost: 1,
    });
  }
  // Internet links between edges close to each other (a few branches reach a neighbour directly).
  const edgeSites = sites.slice(core.length);
  for (let k = 0; links.length < 1040; k++) {
    const i = Math.floor(rnd() * edges);
    let j = Math.floor(rnd() * edges);
    if (i === j) continue;
    if (Math.abs(edgePos[i]! - edgePos[j]!) > 0.1) j = (i + 1 + Math.floor(rnd() * 3)) % edges;
    const a = edgeSites[i]!.id;
    const b = edgeSites[j]!.id;
    const d = Math.abs(edgePos[i]! - edgePos[j]!);
    links.push({
      id: `${a}.${b}.internet.${k}`,
      a,
      b,
      transport: 'internet',
      capacityMbps: 100,
      latencyMs: round(3 + 22 * d + rnd() * 4),
      jitterMs: round(3 + rnd() * 5),
      lossPct: round(rnd() * 0.4, 2),
      cost: 1,
    });
  }
  return { version: 1, source: '<generated-300>', sites, links, classes: reference.classes, devices: [] };
}

/** A measured state: utilisation on every link, a few hot links, latency drift, lossy and down links. */
export function largeState(topology: Topology, seed = 7): NetworkState {
  const rnd = prng(seed);
  const links: Record<string, LinkState> = {};
  for (const l of topology.links) {
    const s: { up?: boolean; latencyMs?: number; lossPct?: number; utilPct?: number } = {};
    const r = rnd();
    s.utilPct = r < 0.04 ? round(86 + rnd() * 11) : round(rnd() * 70);
    if (rnd() < 0.05) s.latencyMs = round(l.latencyMs * (1 + rnd() * 0.5));
    if (l.transport === 'internet' && rnd() < 0.05) s.lossPct = round(0.5 + rnd() * 1.5, 2);
    if (rnd() < 0.01) s.up = false;
    links[l.id] = s;
  }
  return { links };
}
