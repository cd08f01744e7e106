/**
 * Exact best-path searches over a {@link RouteGraph}. Every search returns the first path in the total
 * order (see `comparePaths`): a key (objective, hops, latency — possibly preceded by a shared-link
 * count and a violation), then the lexicographic list of site ids, then of link ids.
 *
 * - {@link walkTree}: no constraint. With the shortest-path tree rooted at the destination, the best
 *   path is a greedy walk along tight arcs taking the smallest next site (then link): every tight arc
 *   lies on an optimal path and all optimal paths have the same hop count, so the greedy choice is the
 *   lexicographic minimum.
 * - {@link aStar}: no constraint but some links removed (backup candidates). A* guided by the tree of
 *   the full graph (a consistent heuristic), settling sites by (f, g) so that every equal-cost
 *   predecessor is settled first, and keeping the lexicographically smaller prefix on ties.
 * - {@link labelSearch}: SLA constraints, shared-link penalties, best-effort violations. Best-first
 *   label setting with Pareto dominance, pruned by lower bounds (trees of latency, jitter and
 *   −ln(1−loss), and of the objective) against the best complete path found.
 */
import { LOSS_EPSILON_PCT, METRIC_SCALE, lossWithin, per, violationUnits } from './path-metrics';
import { treeNext, type RouteGraph, type Tree, type Weights } from './route-graph';
import type { Sla } from './types';

/** Best path from `src` to the root of `tree`, whose tree was built over exactly `allowed`. */
export function walkTree(
  g: RouteGraph,
  tree: Tree,
  src: number,
  dst: number,
  allowed: Uint8Array,
  w: Weights,
): number[] | null {
  if (tree.d1[src] === Infinity) return null;
  const next = treeNext(g, tree, allowed, w);
  const path: number[] = [];
  for (let u = src; u !== dst;) {
    const e = next[u]!;
    if (e < 0) throw new Error('walkTree: tree does not match the graph');
    path.push(e);
    u = g.other(e, u);
  }
  return path;
}

/** Reusable scratch arrays for {@link aStar}, stamped so that nothing is cleared between calls. */
class AStarSpace {
  gen = 0;
  readonly stamp: Int32Array;
  readonly removed: Int32Array;
  readonly g1: Float64Array;
  readonly g2: Float64Array;
  readonly g3: Float64Array;
  readonly f1: Float64Array;
  readonly f2: Float64Array;
  readonly f3: Float64Array;
  readonly predE: Int32Array;
  readonly predV: Int32Array;
  readonly done: Uint8Array;
  readonly pos: Int32Array;
  readonly heap: Int32Array;
  readonly mark: Int32Array;
  constructor(n: number, m: number) {
    this.stamp = new Int32Array(n);
    this.removed = new Int32Array(m);
    this.g1 = new Float64Array(n);
    this.g2 = new Float64Array(n);
    this.g3 = new Float64Array(n);
    this.f1 = new Float64Array(n);
    this.f2 = new Float64Array(n);
    this.f3 = new Float64Array(n);
    this.predE = new Int32Array(n);
    this.predV = new Int32Array(n);
    this.done = new Uint8Array(n);
    this.pos = new Int32Array(n);
    this.heap = new Int32Array(n);
    this.mark = new Int32Array(n);
  }

  /** Sites in the open set (`heap[0..size)`). */
  size = 0;

  /** Open-set order: key (f1, f2, f3), then g (equal keys pop in order of g: see aStarReverse). */
  less(a: number, b: number): boolean {
    const { f1, f2, f3, g1, g2, g3 } = this;
    if (f1[a] !== f1[b]) return f1[a]! < f1[b]!;
    if (f2[a] !== f2[b]) return f2[a]! < f2[b]!;
    if (f3[a] !== f3[b]) return f3[a]! < f3[b]!;
    if (g1[a] !== g1[b]) return g1[a]! < g1[b]!;
    if (g2[a] !== g2[b]) return g2[a]! < g2[b]!;
    return g3[a]! < g3[b]!;
  }

  /** Adds `v` to the open set (`pos[v]` < 0) or moves it up after its key decreased. */
  open(v: number): void {
    const { heap, pos } = this;
    let i = pos[v]!;
    if (i < 0) {
      i = this.size++;
      heap[i] = v;
    }
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pv = heap[p]!;
      if (!this.less(v, pv)) break;
      heap[i] = pv;
      pos[pv] = i;
      i = p;
    }
    heap[i] = v;
    pos[v] = i;
  }

  /** Starts a search at `v` (generation `gen`): distance 0, key = the bound `h` at `v`, open. */
  seed(v: number, gen: number, h1: Float64Array, h2: Float64Array, h3: Float64Array): void {
    this.stamp[v] = gen;
    this.g1[v] = 0;
    this.g2[v] = 0;
    this.g3[v] = 0;
    this.f1[v] = h1[v]!;
    this.f2[v] = h2[v]!;
    this.f3[v] = h3[v]!;
    this.done[v] = 0;
    this.predE[v] = -1;
    this.predV[v] = -1;
    this.pos[v] = -1;
    this.open(v);
  }

  /** Removes and returns the open site with the smallest key. */
  popMin(): number {
    const { heap, pos } = this;
    const top = heap[0]!;
    const size = --this.size;
    const last = heap[size]!;
    if (size > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size && this.less(heap[c + 1]!, heap[c]!)) c++;
        const cv = heap[c]!;
        if (!this.less(cv, last)) break;
        heap[i] = cv;
        pos[cv] = i;
        i = c;
      }
      heap[i] = last;
      pos[last] = i;
    }
    pos[top] = -1;
    return top;
  }
}

const spaces = new WeakMap<RouteGraph, AStarSpace>();

function space(g: RouteGraph): AStarSpace {
  let sp = spaces.get(g);
  if (sp === undefined) {
    sp = new AStarSpace(g.n, g.m);
    spaces.set(g, sp);
  }
  return sp;
}

/**
 * Best path from `src` to `dst` over `allowed` links minus `removed`; `bound` is the tree rooted at
 * `dst` over exactly `allowed` (exact distances there, lower bounds once links are removed).
 *
 * A popped site whose own best path in the tree (the greedy walk) avoids the removed links and the
 * sites already on its prefix is not expanded: prefix + walk is a complete path of key f, the
 * smallest open key. Sites are still popped while their key equals that f, so the lexicographic
 * minimum among equal keys is found (the first "intact" site on that minimum yields it).
 */
export function aStar(
  g: RouteGraph,
  src: number,
  dst: number,
  allowed: Uint8Array,
  removed: readonly number[],
  w: Weights,
  bound: Tree,
): number[] | null {
  const { d1: h1, d2: h2, d3: h3 } = bound;
  if (h1[src] === Infinity) return null;
  const sp = space(g);
  const gen = ++sp.gen;
  const next = treeNext(g, bound, allowed, w);
  const { stamp, g1, g2, g3, f1, f2, f3, predE, predV, done, pos, mark } = sp;
  const rem = sp.removed;
  for (const e of removed) rem[e] = gen;
  const { w1, w2, w3 } = w;
  sp.size = 0;
  const touch = (v: number): void => {
    if (stamp[v] !== gen) {
      stamp[v] = gen;
      g1[v] = Infinity;
      g2[v] = Infinity;
      g3[v] = Infinity;
      done[v] = 0;
      pos[v] = -1;
    }
  };
  sp.seed(src, gen, h1, h2, h3);
  let best: number[] | null = null;
  let b1 = Infinity;
  let b2 = Infinity;
  let b3 = Infinity;
  while (sp.size > 0) {
    const u = sp.popMin();
    if (best !== null && lex3(f1[u]!, f2[u]!, f3[u]!, b1, b2, b3) > 0) break;
    done[u] = 1;
    // Is the tree's best path from u usable (no removed link, no site of u's prefix)?
    for (let x = u; x >= 0; x = predV[x]!) mark[x] = gen;
    const walk = intactWalk(g, next, u, dst, rem, gen, mark);
    if (walk !== null) {
      const path: number[] = [];
      for (let v = u; v !== src; v = predV[v]!) path.push(predE[v]!);
      path.reverse();
      for (const e of walk) path.push(e);
      const vsBest = best === null ? -1 : lex3(f1[u]!, f2[u]!, f3[u]!, b1, b2, b3);
      if (vsBest < 0 || (vsBest === 0 && comparePathLinks(g, src, path, best!) < 0)) {
        best = path;
        b1 = f1[u]!;
        b2 = f2[u]!;
        b3 = f3[u]!;
      }
      for (let x = u; x >= 0; x = predV[x]!) mark[x] = 0;
      continue;
    }
    // Direct links to dst first: an early upper bound keeps most of a hub's neighbours off the heap.
    for (let k = g.adjStart[u]!, end = g.adjStart[u + 1]!; k < end; k++) {
      if (g.adjNbr[k] !== dst) continue;
      const e = g.adjLink[k]!;
      if (allowed[e] === 0 || rem[e] === gen) continue;
      const n1 = g1[u]! + w1[e]!;
      const n2 = g2[u]! + w2[e]!;
      const n3 = g3[u]! + w3[e]!;
      if (best === null || lex3(n1, n2, n3, b1, b2, b3) < 0) {
        const path: number[] = [e];
        for (let x = u; x !== src; x = predV[x]!) path.push(predE[x]!);
        best = path.reverse();
        b1 = n1;
        b2 = n2;
        b3 = n3;
      }
    }
    for (let k = g.adjStart[u]!, end = g.adjStart[u + 1]!; k < end; k++) {
      const e = g.adjLink[k]!;
      if (allowed[e] === 0 || rem[e] === gen) continue;
      const v = g.adjNbr[k]!;
      if (h1[v] === Infinity) continue;
      if (
        best !== null &&
        lex3(g1[u]! + w1[e]! + h1[v]!, g2[u]! + w2[e]! + h2[v]!, g3[u]! + w3[e]! + h3[v]!, b1, b2, b3) > 0
      ) {
        continue;
      }
      touch(v);
      if (done[v] === 1) continue;
      const n1 = g1[u]! + w1[e]!;
      const n2 = g2[u]! + w2[e]!;
      const n3 = g3[u]! + w3[e]!;
      const v1 = n1 + h1[v]!;
      const v2 = n2 + h2[v]!;
      const v3 = n3 + h3[v]!;
      const vsBest = best === null ? -1 : lex3(v1, v2, v3, b1, b2, b3);
      if (vsBest > 0) continue;
      if (vsBest < 0 && mark[v] !== gen) {
        // An upper bound early: if v's tree path is intact, prefix + e + walk is a complete path.
        const walk = intactWalk(g, next, v, dst, rem, gen, mark);
        if (walk !== null) {
          const path: number[] = [e];
          for (let x = u; x !== src; x = predV[x]!) path.push(predE[x]!);
          path.reverse();
          for (const l of walk) path.push(l);
          best = path;
          b1 = v1;
          b2 = v2;
          b3 = v3;
        }
      }
      const c = lex3(n1, n2, n3, g1[v]!, g2[v]!, g3[v]!);
      if (c > 0) continue;
      if (c === 0 && !prefixBefore(g, predV, predE, u, e, predV[v]!, predE[v]!)) continue;
      g1[v] = n1;
      g2[v] = n2;
      g3[v] = n3;
      f1[v] = n1 + h1[v]!;
      f2[v] = n2 + h2[v]!;
      f3[v] = n3 + h3[v]!;
      predE[v] = e;
      predV[v] = u;
      sp.open(v);
    }
    for (let x = u; x >= 0; x = predV[x]!) mark[x] = 0;
  }
  return best;
}

/**
 * Best path from `src` to `dst` over `allowed`, like {@link walkTree} but with the tree rooted at
 * `src` instead of `dst` (links are symmetric, so its distances are those from `src`). The sites on
 * some best path are `dst` and, backwards, every site with a tight link into one of them; the
 * lexicographically smallest best path is then the greedy walk from `src` over those sites in
 * adjacency order (neighbour rank, then link rank). Every objective counts hops in its second
 * component, so tight links always lead away from `src` and the walk cannot loop.
 */
export function walkFromRoot(
  g: RouteGraph,
  tree: Tree,
  src: number,
  dst: number,
  allowed: Uint8Array,
  w: Weights,
): number[] | null {
  const { d1, d2, d3 } = tree;
  if (d1[dst] === Infinity) return null;
  const sp = space(g);
  const gen = ++sp.gen;
  const { mark } = sp;
  const { w1, w2, w3 } = w;
  const tight = (u: number, e: number, v: number): boolean =>
    d1[u]! + w1[e]! === d1[v] && d2[u]! + w2[e]! === d2[v] && d3[u]! + w3[e]! === d3[v];
  const queue = [dst];
  mark[dst] = gen;
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!;
    if (v === src) continue;
    for (let k = g.adjStart[v]!, end = g.adjStart[v + 1]!; k < end; k++) {
      const e = g.adjLink[k]!;
      const u = g.adjNbr[k]!;
      if (allowed[e] === 0 || mark[u] === gen || !tight(u, e, v)) continue;
      mark[u] = gen;
      queue.push(u);
    }
  }
  const path: number[] = [];
  for (let u = src; u !== dst;) {
    let next = -1;
    for (let k = g.adjStart[u]!, end = g.adjStart[u + 1]!; k < end; k++) {
      const e = g.adjLink[k]!;
      const v = g.adjNbr[k]!;
      if (allowed[e] === 1 && mark[v] === gen && tight(u, e, v)) {
        path.push(e);
        next = v;
        break;
      }
    }
    if (next < 0) throw new Error('walkFromRoot: tree does not match the graph');
    u = next;
  }
  return path;
}

/**
 * Best path from `src` to `dst` over `allowed` links minus `removed`, like {@link aStar} but guided
 * by the tree rooted at `src` (exact distances over `allowed`, lower bounds once links are removed):
 * an A* search from `dst` towards `src`. It settles every site whose key (distance from `dst` plus
 * the bound to `src`) is at most the best path's, so each site on some best path gets its exact
 * distance to `dst`, and each keeps, of its tight links towards `dst`, the one to the smallest site
 * (then the smallest link). Following those from `src` is the greedy walk that gives the
 * lexicographically smallest best path (see {@link walkFromRoot}).
 *
 * Used when the tree rooted at `dst` does not exist but the one rooted at `src` does (a core site
 * routing to each of hundreds of edges): building a tree per edge would cost more than the search.
 */
export function aStarReverse(
  g: RouteGraph,
  src: number,
  dst: number,
  allowed: Uint8Array,
  removed: readonly number[],
  w: Weights,
  bound: Tree,
): number[] | null {
  const { d1: h1, d2: h2, d3: h3 } = bound;
  if (h1[dst] === Infinity) return null;
  const sp = space(g);
  const gen = ++sp.gen;
  const { stamp, g1, g2, g3, f1, f2, f3, done, pos, predE, predV } = sp;
  const rem = sp.removed;
  for (const e of removed) rem[e] = gen;
  const { w1, w2, w3 } = w;
  sp.size = 0;
  // Sites with equal f pop in order of g, so every site on a best path to a site pops (and records
  // itself as that site's next hop) before the site does: next hops are complete when a site settles
  // (the order is AStarSpace.less).
  sp.seed(dst, gen, h1, h2, h3);
  // Best distance from src to dst found so far (an upper bound of the answer's key, exact once src settles).
  let b1 = Infinity;
  let b2 = Infinity;
  let b3 = Infinity;
  const next = treeNext(g, bound, allowed, w);
  while (sp.size > 0) {
    const u = sp.popMin();
    if (lex3(f1[u]!, f2[u]!, f3[u]!, b1, b2, b3) > 0) break;
    done[u] = 1;
    if (u === src) continue;
    if (b1 === Infinity && intactToRoot(g, next, u, src, rem, gen)) {
      // The tree's path from u to src avoids the removed links: a walk of key f(u), the smallest
      // open key, so the answer's key is f(u) (dropping any cycle would only make it smaller).
      // Knowing it early keeps the rest of a hub's neighbours off the heap.
      b1 = f1[u]!;
      b2 = f2[u]!;
      b3 = f3[u]!;
    }
    const u1 = g1[u]!;
    for (let k = g.adjStart[u]!, end = g.adjStart[u + 1]!; k < end; k++) {
      const e = g.adjLink[k]!;
      if (allowed[e] === 0 || rem[e] === gen) continue;
      const v = g.adjNbr[k]!;
      const v1 = u1 + w1[e]! + h1[v]!;
      if (v1 > b1 || h1[v] === Infinity) continue;
      const n1 = u1 + w1[e]!;
      const n2 = g2[u]! + w2[e]!;
      const n3 = g3[u]! + w3[e]!;
      const v2 = n2 + h2[v]!;
      const v3 = n3 + h3[v]!;
      if (lex3(v1, v2, v3, b1, b2, b3) > 0) continue;
      if (stamp[v] !== gen) {
        stamp[v] = gen;
        done[v] = 0;
        pos[v] = -1;
      } else {
        if (done[v] === 1) continue;
        const c = lex3(n1, n2, n3, g1[v]!, g2[v]!, g3[v]!);
        if (c > 0) continue;
        if (c === 0) {
          // Another best way on from v: keep the smaller next site, then link.
          const d = g.siteRank[u]! - g.siteRank[predV[v]!]! || g.linkRank[e]! - g.linkRank[predE[v]!]!;
          if (d < 0) {
            predV[v] = u;
            predE[v] = e;
          }
          continue;
        }
      }
      predV[v] = u;
      predE[v] = e;
      g1[v] = n1;
      g2[v] = n2;
      g3[v] = n3;
      f1[v] = v1;
      f2[v] = v2;
      f3[v] = v3;
      if (v === src) {
        b1 = n1;
        b2 = n2;
        b3 = n3;
      }
      sp.open(v);
    }
  }
  if (stamp[src] !== gen || done[src] !== 1) return null;
  const path: number[] = [];
  for (let u = src; u !== dst; u = predV[u]!) path.push(predE[u]!);
  return path;
}

/** True when the tree's path from `u` to its root (next hops) uses no removed link. */
function intactToRoot(
  g: RouteGraph,
  next: Int32Array,
  u: number,
  root: number,
  rem: Int32Array,
  gen: number,
): boolean {
  while (u !== root) {
    const e = next[u]!;
    if (e < 0 || rem[e] === gen) return false;
    u = g.other(e, u);
  }
  return true;
}

/** The tree's best path from `u` (next hops), or `null` when it uses a removed link or a marked site. */
function intactWalk(
  g: RouteGraph,
  next: Int32Array,
  u: number,
  dst: number,
  rem: Int32Array,
  gen: number,
  mark: Int32Array,
): number[] | null {
  const path: number[] = [];
  while (u !== dst) {
    const e = next[u]!;
    if (e < 0 || rem[e] === gen) return null;
    u = g.other(e, u);
    if (mark[u] === gen) return null;
    path.push(e);
  }
  return path;
}

/** Lexicographic order of two paths from `src` (same key, so the same length): sites, then links. */
function comparePathLinks(g: RouteGraph, src: number, a: readonly number[], b: readonly number[]): number {
  let x = src;
  let y = src;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    x = g.other(a[i]!, x);
    y = g.other(b[i]!, y);
    const d = g.siteRank[x]! - g.siteRank[y]!;
    if (d !== 0) return d;
  }
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) {
    const d = g.linkRank[a[i]!]! - g.linkRank[b[i]!]!;
    if (d !== 0) return d;
  }
  return 0;
}

function lex3(a1: number, a2: number, a3: number, b1: number, b2: number, b3: number): number {
  if (a1 !== b1) return a1 < b1 ? -1 : 1;
  if (a2 !== b2) return a2 < b2 ? -1 : 1;
  if (a3 !== b3) return a3 < b3 ? -1 : 1;
  return 0;
}

/** True when prefix (…, u) + e ranks before prefix (…, u2) + e2 (same length, same end site). */
function prefixBefore(
  g: RouteGraph,
  predV: Int32Array,
  predE: Int32Array,
  u: number,
  e: number,
  u2: number,
  e2: number,
): boolean {
  const sa: number[] = [];
  const la: number[] = [e];
  for (let x = u; x >= 0; x = predV[x]!) {
    sa.push(x);
    if (predE[x]! >= 0) la.push(predE[x]!);
  }
  const sb: number[] = [];
  const lb: number[] = [e2];
  for (let x = u2; x >= 0; x = predV[x]!) {
    sb.push(x);
    if (predE[x]! >= 0) lb.push(predE[x]!);
  }
  for (let i = sa.length - 1, j = sb.length - 1; i >= 0 && j >= 0; i--, j--) {
    const d = g.siteRank[sa[i]!]! - g.siteRank[sb[j]!]!;
    if (d !== 0) return d < 0;
  }
  for (let i = la.length - 1, j = lb.length - 1; i >= 0 && j >= 0; i--, j--) {
    const d = g.linkRank[la[i]!]! - g.linkRank[lb[j]!]!;
    if (d !== 0) return d < 0;
  }
  return false;
}

/**
 * Sites with more arcs than `lazyDegree` create their label children lazily, in key order (see
 * labelSearch). Only tests change it (0: every site lazy, so that small brute-forced graphs exercise it).
 */
export const searchTuning = { lazyDegree: 12 };

/** A site's arcs (adjacency positions) in order of their objective increment `rc` over a tree. */
interface ArcOrder {
  readonly order: Int32Array;
  /** `w1[e] + d1[v] − d1[u]` of each arc, ascending (≥ 0 over the tree's own links). */
  readonly rc: Float64Array;
}

/** Per tree: the arc orders of the sites expanded so far, for one graph and weight (else rebuilt). */
const arcOrders = new WeakMap<
  Tree,
  { readonly g: RouteGraph; readonly w1: Float64Array; readonly byNode: (ArcOrder | undefined)[] }
>();

/**
 * The arcs of site `u` that can lead to the tree's root, sorted by how much they add to the
 * objective lower bound `o1 + d1`: a label's children in the order a best-first search needs them.
 */
function arcOrder(g: RouteGraph, tree: Tree, w1: Float64Array, u: number): ArcOrder {
  let all = arcOrders.get(tree);
  if (all === undefined || all.g !== g || all.w1 !== w1) {
    all = { g, w1, byNode: [] };
    arcOrders.set(tree, all);
  }
  let o = all.byNode[u];
  if (o !== undefined) return o;
  const d1 = tree.d1;
  const start = g.adjStart[u]!;
  const end = g.adjStart[u + 1]!;
  const ks: number[] = [];
  let packable = end - start < 1024;
  for (let k = start; k < end; k++) {
    const v = g.adjNbr[k]!;
    if (d1[v] === Infinity) continue;
    const r = w1[g.adjLink[k]!]! + d1[v]! - d1[u]!;
    // Integer increments (objective weights are integer units) pack with the arc into one number.
    if (!(Number.isInteger(r) && r >= 0 && r < 2 ** 40)) packable = false;
    ks.push(k);
  }
  const rcOf = (k: number): number => w1[g.adjLink[k]!]! + d1[g.adjNbr[k]!]! - d1[u]!;
  let sorted: number[];
  if (packable) {
    const keys = new Float64Array(ks.length);
    for (let i = 0; i < ks.length; i++) keys[i] = rcOf(ks[i]!) * 1024 + (ks[i]! - start);
    keys.sort();
    sorted = Array.from(keys, (x) => start + (x % 1024));
  } else {
    sorted = ks.sort((a, b) => rcOf(a) - rcOf(b) || a - b);
  }
  o = { order: Int32Array.from(sorted), rc: Float64Array.from(sorted, rcOf) };
  all.byNode[u] = o;
  return o;
}

/** Lower bounds (trees rooted at the destination) of latency, jitter and −ln(1−loss). */
export interface SlaBounds {
  readonly lat: Float64Array;
  readonly jit: Float64Array;
  readonly loss: Float64Array;
}

/** A constrained or best-effort search (see {@link labelSearch}). */
export interface BoundedQuery {
  readonly src: number;
  readonly dst: number;
  readonly allowed: Uint8Array;
  readonly weights: Weights;
  /** Objective tree rooted at `dst`, and SLA trees, over a superset of `allowed` (lower bounds). */
  readonly bound: Tree;
  readonly slaBounds: SlaBounds;
  readonly sla: Sla;
  /**
   * `feasible`: only paths meeting the SLA; `best-effort`: every path, ranked first by the violation
   * (see `slaViolation`), with `utilExcess` per link.
   */
  readonly mode: 'feasible' | 'best-effort';
  readonly utilExcess?: Float64Array;
  /** Per-link 0/1: the first key is the number of penalised links (links shared with a primary). */
  readonly penalty?: Float64Array;
  /** With `penalty`: the fewest penalised links from each site to `dst` (same graph as `bound`). */
  readonly penaltyBound?: Float64Array;
}

/** A label-setting search: {@link BoundedQuery} plus where the walk starts and what it may not touch. */
export interface LabelQuery extends BoundedQuery {
  /** Sites the path may not enter (the fixed prefix of a deviation, always including `src`). */
  readonly blocked?: Uint8Array;
  /** A link the first step may not take (the primary's link at a deviation point). */
  readonly firstLinkNot?: number;
  /** Resources of a fixed prefix ending at `src` (default: the empty prefix). */
  readonly init?: LabelInit;
  /**
   * Give up (return `'budget'`) after creating this many labels: lets a caller try cheap shared
   * bounds first and pay for tight ones only when the search turns out to be large.
   */
  readonly maxLabels?: number;
  /**
   * Only paths ranking at most this key (penalty, violation units, objective triple) matter: labels
   * whose lower bound is strictly worse are dropped. Lets a caller pass the best path it already
   * has (e.g. from an earlier deviation point); `null` is returned when nothing reaches it.
   */
  readonly cutoff?: LabelKey;
}

/** The ranking key of a complete path, before the lexicographic tie-breaks. */
export interface LabelKey {
  readonly pen: number;
  readonly viol: number;
  readonly k1: number;
  readonly k2: number;
  readonly k3: number;
}

export interface LabelInit {
  readonly pen: number;
  readonly o1: number;
  readonly o2: number;
  readonly o3: number;
  readonly lat: number;
  readonly jit: number;
  readonly keep: number;
  readonly lossLog: number;
  readonly ex: number;
}

/** The result of {@link labelSearch}: the links from `src` and the exact ranking key. */
export interface LabelResult {
  readonly links: number[];
  readonly pen: number;
  readonly viol: number;
  readonly k1: number;
  readonly k2: number;
  readonly k3: number;
}

interface Label {
  readonly node: number;
  readonly pred: Label | null;
  readonly link: number;
  readonly pen: number;
  readonly o1: number;
  readonly o2: number;
  readonly o3: number;
  readonly lat: number;
  readonly jit: number;
  readonly lossLog: number;
  readonly keep: number;
  readonly ex: number;
  readonly fPen: number;
  readonly fViol: number;
  readonly f1: number;
  readonly f2: number;
  readonly f3: number;
  /**
   * Heap key: (f1, f2, f3) when created; for a hub whose children are created in groups, a lower
   * bound of the children not created yet (position `cursor` of its {@link arcOrder}).
   */
  cursor: number;
  k1: number;
  k2: number;
  k3: number;
}

/** Lexicographic order of two label prefixes of the same length: sites, then links. */
function labelPrefixCmp(g: RouteGraph, a: Label, b: Label): number {
  const sa: Label[] = [];
  const sb: Label[] = [];
  for (let x: Label | null = a; x !== null; x = x.pred) sa.push(x);
  for (let x: Label | null = b; x !== null; x = x.pred) sb.push(x);
  for (let i = sa.length - 1, j = sb.length - 1; i >= 0 && j >= 0; i--, j--) {
    const d = g.siteRank[sa[i]!.node]! - g.siteRank[sb[j]!.node]!;
    if (d !== 0) return d;
  }
  for (let i = sa.length - 1, j = sb.length - 1; i >= 0 && j >= 0; i--, j--) {
    if (sa[i]!.link < 0 || sb[j]!.link < 0) continue;
    const d = g.linkRank[sa[i]!.link]! - g.linkRank[sb[j]!.link]!;
    if (d !== 0) return d;
  }
  return sa.length - sb.length;
}

/**
 * Exact best path by best-first label setting with Pareto dominance. A label (a path prefix) is
 * dropped when another label at the same site is at least as good in every resource (penalty,
 * latency, jitter, loss, utilisation excess) and ranks first by key (then lexicographically):
 * every completion of the dropped label is then matched by a completion of the other, and when
 * that completion repeats a site, removing the cycle gives a simple path that is strictly better
 * (fewer hops, no metric larger). Labels are popped in order of their lower bound, so the search
 * stops as soon as the best complete path found ranks before every open label.
 */
export function labelSearch(g: RouteGraph, q: LabelQuery): LabelResult | null | 'budget' {
  const maxLabels = q.maxLabels ?? Infinity;
  let labels = 0;
  const { src, dst, allowed, sla, mode, penalty, blocked, firstLinkNot } = q;
  const penaltyBound = q.penaltyBound ?? g.zeros;
  const { w1, w2, w3 } = q.weights;
  const { d1, d2, d3 } = q.bound;
  const hLat = q.slaBounds.lat;
  const hJit = q.slaBounds.jit;
  const hLoss = q.slaBounds.loss;
  const utilEx = q.utilExcess ?? g.zeros;
  const feasibleOnly = mode === 'feasible';
  const maxLat = Math.round(sla.maxLatencyMs * METRIC_SCALE);
  const maxJit = Math.round(sla.maxJitterMs * METRIC_SCALE);
  const lossCap = (sla.maxLossPct + LOSS_EPSILON_PCT) / 100;
  const maxLossLog = lossCap >= 1 ? Infinity : -Math.log1p(-lossCap) * (1 + 1e-9) + 1e-12;
  const perLat = per(sla.maxLatencyMs);
  const perJit = per(sla.maxJitterMs);
  const perLoss = per(sla.maxLossPct);
  const violation = (lat: number, jit: number, lossPct: number, ex: number): number =>
    Math.max(0, lat - maxLat) / METRIC_SCALE / perLat +
    Math.max(0, jit - maxJit) / METRIC_SCALE / perJit +
    (lossWithin(lossPct, sla.maxLossPct) ? 0 : lossPct - sla.maxLossPct) / perLoss +
    ex;
  const cmpF = (a: Label, b: Label): number =>
    a.fPen - b.fPen || a.fViol - b.fViol || lex3(a.k1, a.k2, a.k3, b.k1, b.k2, b.k3);

  const heap: Label[] = [];
  const push = (l: Label): void => {
    heap.push(l);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (cmpF(heap[p]!, l) <= 0) break;
      heap[i] = heap[p]!;
      i = p;
    }
    heap[i] = l;
  };
  const pop = (): Label => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= heap.length) break;
        if (c + 1 < heap.length && cmpF(heap[c + 1]!, heap[c]!) < 0) c++;
        if (cmpF(heap[c]!, last) >= 0) break;
        heap[i] = heap[c]!;
        i = c;
      }
      heap[i] = last;
    }
    return top;
  };

  // Labels kept per site; most searches touch a few sites, so the lists are created on first use.
  const atNode: (Label[] | undefined)[] = new Array<Label[] | undefined>(g.n);
  const init = q.init ?? { pen: 0, o1: 0, o2: 0, o3: 0, lat: 0, jit: 0, keep: 1, lossLog: 0, ex: 0 };
  const root: Label = {
    node: src,
    pred: null,
    link: -1,
    ...init,
    fPen: 0,
    fViol: 0,
    f1: 0,
    f2: 0,
    f3: 0,
    cursor: 0,
    k1: 0,
    k2: 0,
    k3: 0,
  };
  push(root);
  let best: Label | null = null;
  let bestViol = 0;

  const inPrefix = (l: Label, v: number): boolean => {
    for (let x: Label | null = l; x !== null; x = x.pred) if (x.node === v) return true;
    return false;
  };

  // The key to beat (or tie): the cutoff, then the best complete path found.
  let cPen = q.cutoff?.pen ?? Infinity;
  let cViol = q.cutoff?.viol ?? Infinity;
  let c1 = q.cutoff?.k1 ?? Infinity;
  let c2 = q.cutoff?.k2 ?? Infinity;
  let c3 = q.cutoff?.k3 ?? Infinity;
  const worse = (pen: number, viol: number, f1: number, f2: number, f3: number): boolean => {
    if (pen !== cPen) return pen > cPen;
    if (viol !== cViol) return viol > cViol;
    return lex3(f1, f2, f3, c1, c2, c3) > 0;
  };

  /** Creates the child of `l` over adjacency position `k`, unless pruned or dominated. */
  const child = (l: Label, k: number): 'budget' | undefined => {
    const e = g.adjLink[k]!;
    if (allowed[e] === 0) return;
    if (l.pred === null && e === firstLinkNot) return;
    const v = g.adjNbr[k]!;
    if (d1[v] === Infinity || v === src || (blocked !== undefined && blocked[v] === 1)) return;
    const lat = l.lat + g.lat[e]!;
    const jit = l.jit + g.jit[e]!;
    const lossLog = l.lossLog + g.lossLog[e]!;
    const latLb = lat + hLat[v]!;
    const jitLb = jit + hJit[v]!;
    const lossLogLb = lossLog + hLoss[v]!;
    const ex = l.ex + utilEx[e]!;
    let fViol = 0;
    if (feasibleOnly) {
      if (latLb > maxLat || jitLb > maxJit || lossLogLb > maxLossLog) return;
    } else {
      const lossLb = Math.max(0, -100 * Math.expm1(-lossLogLb) * (1 - 1e-12) - 1e-12);
      fViol = violationUnits(violation(latLb, jitLb, lossLb, ex));
    }
    const pen = l.pen + (penalty === undefined ? 0 : penalty[e]!);
    const o1 = l.o1 + w1[e]!;
    const o2 = l.o2 + w2[e]!;
    const o3 = l.o3 + w3[e]!;
    // Most candidates fail the cutoff: test it before allocating the label.
    if (worse(pen + penaltyBound[v]!, fViol, o1 + d1[v]!, o2 + d2[v]!, o3 + d3[v]!)) return;
    const next: Label = {
      node: v,
      pred: l,
      link: e,
      pen,
      o1,
      o2,
      o3,
      lat,
      jit,
      lossLog,
      keep: l.keep * (1 - g.lossPct[e]! / 100),
      ex,
      fPen: pen + penaltyBound[v]!,
      fViol,
      f1: o1 + d1[v]!,
      f2: o2 + d2[v]!,
      f3: o3 + d3[v]!,
      cursor: 0,
      k1: o1 + d1[v]!,
      k2: o2 + d2[v]!,
      k3: o3 + d3[v]!,
    };
    if (inPrefix(l, v)) return;
    let dominated = false;
    for (const other of atNode[v] ?? []) {
      if (
        other.pen <= pen &&
        other.lat <= lat &&
        other.jit <= jit &&
        other.keep >= next.keep &&
        other.ex <= ex
      ) {
        const c = lex3(other.o1, other.o2, other.o3, o1, o2, o3);
        if (c < 0 || (c === 0 && labelPrefixCmp(g, other, next) <= 0)) {
          dominated = true;
          break;
        }
      }
    }
    if (dominated) return;
    if (++labels > maxLabels) return 'budget';
    (atNode[v] ??= []).push(next);
    push(next);
    if (v === dst) {
      // A complete path: its exact key bounds the answer's now, not only once it is popped.
      const lossPct = 100 * (1 - next.keep);
      if (feasibleOnly && (lat > maxLat || jit > maxJit || !lossWithin(lossPct, sla.maxLossPct))) return;
      const viol = feasibleOnly ? 0 : violationUnits(violation(lat, jit, lossPct, ex));
      if (!worse(pen, viol, o1, o2, o3)) {
        cPen = pen;
        cViol = viol;
        c1 = o1;
        c2 = o2;
        c3 = o3;
      }
    }
    return undefined;
  };

  while (heap.length > 0) {
    const l = pop();
    if (worse(l.fPen, l.fViol, l.k1, l.k2, l.k3)) break;
    if (l.node === dst) {
      const lossPct = 100 * (1 - l.keep);
      if (feasibleOnly && (l.lat > maxLat || l.jit > maxJit || !lossWithin(lossPct, sla.maxLossPct)))
        continue;
      const viol = feasibleOnly ? 0 : violationUnits(violation(l.lat, l.jit, lossPct, l.ex));
      if (best !== null) {
        const c =
          l.pen - best.pen ||
          viol - bestViol ||
          lex3(l.o1, l.o2, l.o3, best.o1, best.o2, best.o3) ||
          labelPrefixCmp(g, l, best);
        if (c >= 0) continue;
      }
      best = l;
      bestViol = viol;
      cPen = l.pen;
      cViol = viol;
      c1 = l.o1;
      c2 = l.o2;
      c3 = l.o3;
      continue;
    }
    const u = l.node;
    const start = g.adjStart[u]!;
    const end = g.adjStart[u + 1]!;
    if (end - start <= searchTuning.lazyDegree) {
      for (let k = start; k < end; k++) if (child(l, k) === 'budget') return 'budget';
      continue;
    }
    // A hub: its children in order of their key, one group of equal objective increments per pop,
    // the label going back on the heap keyed by the next group (a lower bound of its children).
    const { order, rc } = arcOrder(g, q.bound, w1, u);
    let i = l.cursor;
    const group = rc[i]!;
    for (; i < order.length && rc[i] === group; i++) if (child(l, order[i]!) === 'budget') return 'budget';
    if (i < order.length) {
      l.cursor = i;
      l.k1 = l.o1 + d1[u]! + rc[i]!;
      l.k2 = -Infinity;
      l.k3 = -Infinity;
      push(l);
    }
  }
  if (best === null) return null;
  const links: number[] = [];
  for (let x: Label | null = best; x !== null && x.pred !== null; x = x.pred) links.push(x.link);
  links.reverse();
  return { links, pen: best.pen, viol: bestViol, k1: best.o1, k2: best.o2, k3: best.o3 };
}
