/**
 * The compiled routing graph: a topology under one network state turned into typed arrays (sites and
 * links by index, integer metrics, adjacency of up links), plus the shortest-path trees that the
 * searches use as exact distances and lower bounds. Everything here is internal to the route engine.
 */
import { effectiveLink, toUnits } from './path-metrics';
import type { NetworkState, Topology } from './types';

/** Per-link weights of a lexicographic triple metric. */
export interface Weights {
  readonly w1: Float64Array;
  readonly w2: Float64Array;
  readonly w3: Float64Array;
}

/** Distances (lexicographic triples) from every site to the tree's root; `Infinity` when cut off. */
export interface Tree {
  readonly d1: Float64Array;
  readonly d2: Float64Array;
  readonly d3: Float64Array;
  /** Per site, the first tight link towards the root (lexicographic choice), or -1; built lazily. */
  next?: Int32Array;
}

/**
 * The tree's next-hop links: for each site the first link (in adjacency order: neighbour rank, then
 * link rank) on some best path to the root. Following them gives the lexicographically smallest
 * best path, since all best paths from a site have the same number of hops.
 */
export function treeNext(g: RouteGraph, tree: Tree, allowed: Uint8Array, w: Weights): Int32Array {
  if (tree.next !== undefined) return tree.next;
  const { d1, d2, d3 } = tree;
  const { w1, w2, w3 } = w;
  const next = new Int32Array(g.n).fill(-1);
  for (let u = 0; u < g.n; u++) {
    if (d1[u] === Infinity || (d1[u] === 0 && d2[u] === 0 && d3[u] === 0)) continue;
    for (let k = g.adjStart[u]!, end = g.adjStart[u + 1]!; k < end; k++) {
      const e = g.adjLink[k]!;
      if (allowed[e] === 0) continue;
      const v = g.adjNbr[k]!;
      if (w1[e]! + d1[v]! === d1[u] && w2[e]! + d2[v]! === d2[u] && w3[e]! + d3[v]! === d3[u]) {
        next[u] = e;
        break;
      }
    }
  }
  tree.next = next;
  return next;
}

/**
 * The parts of a routing graph that depend on the topology alone: ids, ranks, link ends and the
 * adjacency of every link in comparison order. Built once per topology object (topologies are
 * immutable) and shared by the graph of every state, so that `RouteEngine.update` does not sort
 * ids and adjacency lists again for each change.
 */
interface GraphFrame {
  readonly siteIds: readonly string[];
  readonly siteIndex: ReadonlyMap<string, number>;
  readonly siteRank: Int32Array;
  readonly linkIds: readonly string[];
  readonly linkIndex: ReadonlyMap<string, number>;
  readonly linkRank: Int32Array;
  readonly la: Int32Array;
  readonly lb: Int32Array;
  /** CSR adjacency over all links (up or not), each site's arcs sorted by (neighbour rank, link rank). */
  readonly arcStart: Int32Array;
  readonly arcLink: Int32Array;
  readonly arcNbr: Int32Array;
}

const frames = new WeakMap<Topology, GraphFrame>();

function graphFrame(topology: Topology): GraphFrame {
  let f = frames.get(topology);
  if (f !== undefined) return f;
  const n = topology.sites.length;
  const m = topology.links.length;
  const siteIds = topology.sites.map((s) => s.id);
  const siteIndex = new Map(siteIds.map((id, i) => [id, i]));
  const siteRank = ranks(siteIds);
  const linkIds = topology.links.map((l) => l.id);
  const la = new Int32Array(m);
  const lb = new Int32Array(m);
  const arcs: [number, number][][] = Array.from({ length: n }, () => []);
  topology.links.forEach((link, i) => {
    const a = siteIndex.get(link.a);
    const b = siteIndex.get(link.b);
    if (a === undefined || b === undefined) throw new Error(`link ${link.id} names an unknown site`);
    la[i] = a;
    lb[i] = b;
    arcs[a]!.push([i, b]);
    arcs[b]!.push([i, a]);
  });
  const linkRank = ranks(linkIds);
  const arcStart = new Int32Array(n + 1);
  const arcLink = new Int32Array(2 * m);
  const arcNbr = new Int32Array(2 * m);
  let k = 0;
  for (let v = 0; v < n; v++) {
    const list = arcs[v]!;
    list.sort((x, y) => siteRank[x[1]]! - siteRank[y[1]]! || linkRank[x[0]]! - linkRank[y[0]]!);
    for (const [e, w] of list) {
      arcLink[k] = e;
      arcNbr[k] = w;
      k++;
    }
    arcStart[v + 1] = k;
  }
  f = {
    siteIds,
    siteIndex,
    siteRank,
    linkIds,
    linkIndex: new Map(linkIds.map((id, i) => [id, i])),
    linkRank,
    la,
    lb,
    arcStart,
    arcLink,
    arcNbr,
  };
  frames.set(topology, f);
  return f;
}

export class RouteGraph {
  readonly n: number;
  readonly m: number;
  readonly siteIds: readonly string[];
  readonly siteIndex: ReadonlyMap<string, number>;
  /** Rank of each site id in string order: lexicographic comparisons of paths use ranks. */
  readonly siteRank: Int32Array;
  readonly linkIds: readonly string[];
  readonly linkIndex: ReadonlyMap<string, number>;
  readonly linkRank: Int32Array;
  readonly la: Int32Array;
  readonly lb: Int32Array;
  readonly up: Uint8Array;
  /** Latency, jitter and cost in integer units (see METRIC_SCALE). */
  readonly lat: Float64Array;
  readonly jit: Float64Array;
  readonly cost: Float64Array;
  readonly lossPct: Float64Array;
  /** `−ln(1 − loss/100)`: additive, so shortest-path trees bound the loss of any completion. */
  readonly lossLog: Float64Array;
  readonly util: Float64Array;
  readonly ones: Float64Array;
  readonly zeros: Float64Array;
  /** CSR adjacency over up links, each site's arcs sorted by (neighbour rank, link rank). */
  readonly adjStart: Int32Array;
  readonly adjLink: Int32Array;
  readonly adjNbr: Int32Array;
  /** Connected component of each site over up links. */
  readonly component: Int32Array;

  constructor(topology: Topology, state?: NetworkState) {
    const frame = graphFrame(topology);
    const n = topology.sites.length;
    const m = topology.links.length;
    this.n = n;
    this.m = m;
    this.siteIds = frame.siteIds;
    this.siteIndex = frame.siteIndex;
    this.siteRank = frame.siteRank;
    this.linkIds = frame.linkIds;
    this.linkIndex = frame.linkIndex;
    this.linkRank = frame.linkRank;
    this.la = frame.la;
    this.lb = frame.lb;
    this.up = new Uint8Array(m);
    this.lat = new Float64Array(m);
    this.jit = new Float64Array(m);
    this.cost = new Float64Array(m);
    this.lossPct = new Float64Array(m);
    this.lossLog = new Float64Array(m);
    this.util = new Float64Array(m);
    this.ones = new Float64Array(m).fill(1);
    this.zeros = new Float64Array(m);
    topology.links.forEach((link, i) => {
      const e = effectiveLink(link, state?.links[link.id]);
      this.up[i] = e.up ? 1 : 0;
      this.lat[i] = toUnits(e.latencyMs);
      this.jit[i] = toUnits(e.jitterMs);
      this.cost[i] = toUnits(e.cost);
      this.lossPct[i] = e.lossPct;
      this.lossLog[i] = -Math.log1p(-Math.min(100, Math.max(0, e.lossPct)) / 100);
      this.util[i] = e.utilPct;
    });
    // The frame's adjacency without the down links keeps its order.
    this.adjStart = new Int32Array(n + 1);
    let total = 0;
    for (let k = 0; k < frame.arcLink.length; k++) total += this.up[frame.arcLink[k]!]!;
    this.adjLink = new Int32Array(total);
    this.adjNbr = new Int32Array(total);
    let j = 0;
    for (let v = 0; v < n; v++) {
      for (let k = frame.arcStart[v]!, end = frame.arcStart[v + 1]!; k < end; k++) {
        const e = frame.arcLink[k]!;
        if (this.up[e] === 0) continue;
        this.adjLink[j] = e;
        this.adjNbr[j] = frame.arcNbr[k]!;
        j++;
      }
      this.adjStart[v + 1] = j;
    }
    this.component = new Int32Array(n).fill(-1);
    const stack: number[] = [];
    for (let s = 0; s < n; s++) {
      if (this.component[s] !== -1) continue;
      this.component[s] = s;
      stack.push(s);
      while (stack.length > 0) {
        const u = stack.pop()!;
        for (let k = this.adjStart[u]!; k < this.adjStart[u + 1]!; k++) {
          const v = this.adjNbr[k]!;
          if (this.component[v] === -1) {
            this.component[v] = s;
            stack.push(v);
          }
        }
      }
    }
  }

  /** The other end of link `e` seen from site `u`. */
  other(e: number, u: number): number {
    return this.la[e] === u ? this.lb[e]! : this.la[e]!;
  }
}

function ranks(ids: readonly string[]): Int32Array {
  const order = ids.map((_, i) => i).sort((x, y) => (ids[x]! < ids[y]! ? -1 : ids[x]! > ids[y]! ? 1 : 0));
  const rank = new Int32Array(ids.length);
  order.forEach((i, r) => (rank[i] = r));
  return rank;
}

/** A binary min-heap of site indices with decrease-key, ordered by a caller-supplied `less`. */
export class SiteHeap {
  readonly #heap: Int32Array;
  readonly #pos: Int32Array;
  #size = 0;
  readonly #less: (a: number, b: number) => boolean;

  constructor(n: number, less: (a: number, b: number) => boolean) {
    this.#heap = new Int32Array(n);
    this.#pos = new Int32Array(n).fill(-1);
    this.#less = less;
  }

  get size(): number {
    return this.#size;
  }

  /** Inserts `v`, or restores the heap after `v`'s key decreased. */
  push(v: number): void {
    let i = this.#pos[v]!;
    if (i < 0) {
      i = this.#size++;
      this.#heap[i] = v;
      this.#pos[v] = i;
    }
    this.#up(i);
  }

  pop(): number {
    const h = this.#heap;
    const top = h[0]!;
    this.#pos[top] = -2;
    const last = h[--this.#size]!;
    if (this.#size > 0) {
      h[0] = last;
      this.#pos[last] = 0;
      this.#down(0);
    }
    return top;
  }

  #up(i: number): void {
    const h = this.#heap;
    const v = h[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pv = h[p]!;
      if (!this.#less(v, pv)) break;
      h[i] = pv;
      this.#pos[pv] = i;
      i = p;
    }
    h[i] = v;
    this.#pos[v] = i;
  }

  #down(i: number): void {
    const h = this.#heap;
    const n = this.#size;
    const v = h[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && this.#less(h[c + 1]!, h[c]!)) c++;
      const cv = h[c]!;
      if (!this.#less(cv, v)) break;
      h[i] = cv;
      this.#pos[cv] = i;
      i = c;
    }
    h[i] = v;
    this.#pos[v] = i;
  }
}

/** Scratch arrays of {@link shortestTree} for one graph size, reused across calls (no clearing needed). */
interface TreeScratch {
  readonly heap: Int32Array;
  /** Heap position of each site while queued, -1 before, -2 once settled. */
  readonly pos: Int32Array;
}

const treeScratch = new Map<number, TreeScratch>();

/** Distances handed out per chunk: allocating one small typed array per tree costs more than the tree. */
const CHUNK_DISTANCES = 1 << 16;
let chunk = new Float64Array(0);
let chunkUsed = 0;

/**
 * `size` distances, all `Infinity`, carved from a shared chunk. A chunk lives while any tree carved
 * from it does; trees live as long as their route context, so little is held beyond that.
 */
function distanceBuffer(size: number): Float64Array {
  if (chunkUsed + size > chunk.length) {
    chunk = new Float64Array(Math.max(CHUNK_DISTANCES, size));
    chunkUsed = 0;
  }
  const out = chunk.subarray(chunkUsed, chunkUsed + size).fill(Infinity);
  chunkUsed += size;
  return out;
}

/**
 * Dijkstra from `root` over the links with `allowed[e] = 1`, minimising the lexicographic triple
 * `(w1, w2, w3)`. Links are undirected with symmetric metrics, so the tree gives the distance from
 * every site to `root` as well as from `root`.
 *
 * This runs about a thousand times per full computation of the benchmark topology, so the heap is
 * written out here over typed arrays (no comparator closure) and the three distance arrays share
 * one buffer: fewer allocations and less garbage.
 */
export function shortestTree(g: RouteGraph, root: number, allowed: Uint8Array, w: Weights): Tree {
  const n = g.n;
  const buffer = distanceBuffer(3 * n);
  const d1 = buffer.subarray(0, n);
  const d2 = buffer.subarray(n, 2 * n);
  const d3 = buffer.subarray(2 * n, 3 * n);
  let scratch = treeScratch.get(n);
  if (scratch === undefined) {
    scratch = { heap: new Int32Array(n), pos: new Int32Array(n) };
    treeScratch.set(n, scratch);
  }
  const { heap, pos } = scratch;
  pos.fill(-1);
  const { w1, w2, w3 } = w;
  const { adjStart, adjLink, adjNbr } = g;
  d1[root] = 0;
  d2[root] = 0;
  d3[root] = 0;
  heap[0] = root;
  pos[root] = 0;
  let size = 1;
  while (size > 0) {
    // Pop the smallest site.
    const u: number = heap[0];
    pos[u] = -2;
    size--;
    if (size > 0) {
      const last = heap[size]!;
      const l1 = d1[last]!;
      const l2 = d2[last]!;
      const l3 = d3[last]!;
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size && lessSite(d1, d2, d3, heap[c + 1]!, heap[c]!)) c++;
        const cv = heap[c]!;
        const c1 = d1[cv]!;
        if (c1 > l1 || (c1 === l1 && (d2[cv]! > l2 || (d2[cv] === l2 && d3[cv]! >= l3)))) break;
        heap[i] = cv;
        pos[cv] = i;
        i = c;
      }
      heap[i] = last;
      pos[last] = i;
    }
    const u1 = d1[u]!;
    const u2 = d2[u]!;
    const u3 = d3[u]!;
    for (let k: number = adjStart[u]!, end: number = adjStart[u + 1]!; k < end; k++) {
      const e = adjLink[k]!;
      if (allowed[e] === 0) continue;
      const v = adjNbr[k]!;
      const p = pos[v]!;
      if (p === -2) continue;
      const n1 = u1 + w1[e]!;
      const v1 = d1[v]!;
      if (n1 > v1) continue;
      const n2 = u2 + w2[e]!;
      const n3 = u3 + w3[e]!;
      if (n1 === v1) {
        const v2 = d2[v]!;
        if (n2 > v2 || (n2 === v2 && n3 >= d3[v]!)) continue;
      }
      d1[v] = n1;
      d2[v] = n2;
      d3[v] = n3;
      // Insert or decrease-key: sift up from v's slot.
      let i = p;
      if (i < 0) i = size++;
      while (i > 0) {
        const q = (i - 1) >> 1;
        const qv = heap[q]!;
        const q1 = d1[qv]!;
        if (q1 < n1 || (q1 === n1 && (d2[qv]! < n2 || (d2[qv] === n2 && d3[qv]! <= n3)))) break;
        heap[i] = qv;
        pos[qv] = i;
        i = q;
      }
      heap[i] = v;
      pos[v] = i;
    }
  }
  return { d1, d2, d3 };
}

function lessSite(d1: Float64Array, d2: Float64Array, d3: Float64Array, a: number, b: number): boolean {
  const x = d1[a]!;
  const y = d1[b]!;
  if (x !== y) return x < y;
  const x2 = d2[a]!;
  const y2 = d2[b]!;
  if (x2 !== y2) return x2 < y2;
  return d3[a]! < d3[b]!;
}

/** (w(e) + d(from)) ≤ d(to) lexicographically, counting near-equal first components (float sums) as ≤. */
export function viaNotWorse(t: Tree, from: number, to: number, w: Weights, e: number): boolean {
  const x1 = w.w1[e]! + t.d1[from]!;
  const y1 = t.d1[to]!;
  if (x1 === Infinity) return false;
  if (x1 > y1 + Math.abs(y1) * 1e-9 + 1e-9) return false;
  if (x1 !== y1) return true;
  const x2 = w.w2[e]! + t.d2[from]!;
  const y2 = t.d2[to]!;
  if (x2 !== y2) return x2 < y2;
  return w.w3[e]! + t.d3[from]! <= t.d3[to]!;
}

/**
 * The tree after one link `e` changed (its usability or weights), from the tree before: exact, like a
 * rebuild. First the sites whose best path may use `e` (its "via" ends and every site with a tight
 * link into them) are recomputed without `e` from their neighbours' unchanged distances; then `e`
 * with its new weights (when usable) improves what it can. Both are Dijkstra runs seeded with known
 * distances, so they settle only the part of the tree the change reaches.
 */
export function repairTree(
  g: RouteGraph,
  old: Tree,
  root: number,
  e: number,
  oldAllowed: Uint8Array,
  oldW: Weights,
  allowed: Uint8Array,
  w: Weights,
): Tree {
  const n = g.n;
  const d1 = old.d1.slice();
  const d2 = old.d2.slice();
  const d3 = old.d3.slice();
  const heap = new SiteHeap(n, (x, y) => {
    if (d1[x] !== d1[y]) return d1[x]! < d1[y]!;
    if (d2[x] !== d2[y]) return d2[x]! < d2[y]!;
    return d3[x]! < d3[y]!;
  });
  const settle = (skip: number): void => {
    while (heap.size > 0) {
      const u = heap.pop();
      for (let k = g.adjStart[u]!, end = g.adjStart[u + 1]!; k < end; k++) {
        const l = g.adjLink[k]!;
        if (l === skip || allowed[l] === 0) continue;
        const v = g.adjNbr[k]!;
        const n1 = d1[u]! + w.w1[l]!;
        const n2 = d2[u]! + w.w2[l]!;
        const n3 = d3[u]! + w.w3[l]!;
        if (n1 > d1[v]! || (n1 === d1[v] && (n2 > d2[v]! || (n2 === d2[v] && n3 >= d3[v]!)))) continue;
        d1[v] = n1;
        d2[v] = n2;
        d3[v] = n3;
        heap.push(v);
      }
    }
  };
  const a = g.la[e]!;
  const b = g.lb[e]!;
  if (oldAllowed[e] === 1) {
    // Sites that may depend on e: BFS along tight links (old weights) away from e's via ends.
    const inA = new Uint8Array(n);
    inA[root] = 2; // never reset: with zero-weight links the root looks "via e" too
    const queue: number[] = [];
    const add = (x: number): void => {
      inA[x] = 1;
      queue.push(x);
    };
    if (inA[b] === 0 && viaNotWorse(old, a, b, oldW, e)) add(b);
    if (inA[a] === 0 && viaNotWorse(old, b, a, oldW, e)) add(a);
    for (let i = 0; i < queue.length; i++) {
      const z = queue[i]!;
      for (let k = g.adjStart[z]!, end = g.adjStart[z + 1]!; k < end; k++) {
        const l = g.adjLink[k]!;
        const y = g.adjNbr[k]!;
        if (inA[y] !== 0 || l === e || oldAllowed[l] === 0) continue;
        if (viaNotWorse(old, z, y, oldW, l)) add(y);
      }
    }
    if (queue.length > 0) {
      for (const y of queue) {
        d1[y] = Infinity;
        d2[y] = Infinity;
        d3[y] = Infinity;
      }
      // Seed with every site outside A next to A (distances there are exact without e).
      for (const y of queue) {
        for (let k = g.adjStart[y]!, end = g.adjStart[y + 1]!; k < end; k++) {
          const z = g.adjNbr[k]!;
          if (inA[z] !== 1 && d1[z] !== Infinity) heap.push(z);
        }
      }
      settle(e);
    }
  }
  if (allowed[e] === 1) {
    heap.push(a);
    heap.push(b);
    settle(-1);
  }
  return { d1, d2, d3 };
}
