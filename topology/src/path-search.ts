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
 * - {@link branchAndBound}: SLA constraints, shared-link penalties, best-effort violations. Depth-first
 *   over simple paths, children in lower-bound order, pruned by SLA lower bounds (trees of latency,
 *   jitter and −ln(1−loss)) and by the objective lower bound against the incumbent. Exact: a branch
 *   is cut only when no completion can be feasible or rank before the incumbent.
 */
import { LOSS_EPSILON_PCT, METRIC_SCALE, lossWithin, per, violationUnits } from './path-metrics';
import { SiteHeap, type RouteGraph, type Tree, type Weights } from './route-graph';
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
  const { d1, d2, d3 } = tree;
  if (d1[src] === Infinity) return null;
  const { w1, w2, w3 } = w;
  const path: number[] = [];
  let u = src;
  while (u !== dst) {
    let next = -1;
    // Arcs are sorted by (neighbour rank, link rank): the first tight arc is the lexicographic choice.
    for (let k = g.adjStart[u]!, end = g.adjStart[u + 1]!; k < end; k++) {
      const e = g.adjLink[k]!;
      if (allowed[e] === 0) continue;
      const v = g.adjNbr[k]!;
      if (w1[e]! + d1[v]! === d1[u] && w2[e]! + d2[v]! === d2[u] && w3[e]! + d3[v]! === d3[u]) {
        path.push(e);
        next = v;
        break;
      }
    }
    if (next < 0) throw new Error('walkTree: tree does not match the graph');
    u = next;
  }
  return path;
}

/**
 * Best path from `src` to `dst` over `allowed` links minus `removed`; `bound` is the tree rooted at
 * `dst` over a superset of the allowed links (its distances never overestimate).
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
  const n = g.n;
  const { d1: h1, d2: h2, d3: h3 } = bound;
  if (h1[src] === Infinity) return null;
  const ok = allowed.slice();
  for (const e of removed) ok[e] = 0;
  const g1 = new Float64Array(n).fill(Infinity);
  const g2 = new Float64Array(n).fill(Infinity);
  const g3 = new Float64Array(n).fill(Infinity);
  const f1 = new Float64Array(n);
  const f2 = new Float64Array(n);
  const f3 = new Float64Array(n);
  const predE = new Int32Array(n).fill(-1);
  const predV = new Int32Array(n).fill(-1);
  const done = new Uint8Array(n);
  const heap = new SiteHeap(n, (a, b) => {
    if (f1[a] !== f1[b]) return f1[a]! < f1[b]!;
    if (f2[a] !== f2[b]) return f2[a]! < f2[b]!;
    if (f3[a] !== f3[b]) return f3[a]! < f3[b]!;
    if (g1[a] !== g1[b]) return g1[a]! < g1[b]!;
    if (g2[a] !== g2[b]) return g2[a]! < g2[b]!;
    return g3[a]! < g3[b]!;
  });
  const { w1, w2, w3 } = w;
  g1[src] = 0;
  g2[src] = 0;
  g3[src] = 0;
  f1[src] = h1[src]!;
  f2[src] = h2[src]!;
  f3[src] = h3[src]!;
  heap.push(src);
  while (heap.size > 0) {
    const u = heap.pop();
    done[u] = 1;
    if (u === dst) break;
    for (let k = g.adjStart[u]!, end = g.adjStart[u + 1]!; k < end; k++) {
      const e = g.adjLink[k]!;
      if (ok[e] === 0) continue;
      const v = g.adjNbr[k]!;
      if (done[v] === 1 || h1[v] === Infinity) continue;
      const n1 = g1[u]! + w1[e]!;
      const n2 = g2[u]! + w2[e]!;
      const n3 = g3[u]! + w3[e]!;
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
      heap.push(v);
    }
  }
  if (done[dst] === 0) return null;
  const path: number[] = [];
  for (let v = dst; v !== src; v = predV[v]!) path.push(predE[v]!);
  return path.reverse();
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

/** Lower bounds (trees rooted at the destination) of latency, jitter and −ln(1−loss). */
export interface SlaBounds {
  readonly lat: Float64Array;
  readonly jit: Float64Array;
  readonly loss: Float64Array;
}

/** A constrained or best-effort search (see {@link branchAndBound}). */
export interface BoundedQuery {
  readonly src: number;
  readonly dst: number;
  readonly allowed: Uint8Array;
  readonly weights: Weights;
  /** Objective tree rooted at `dst` over a superset of `allowed`. */
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
  readonly penalty?: Uint8Array;
  /** A path (link indices) that is not a candidate (the primary, when looking for its backup). */
  readonly forbid?: readonly number[];
}

interface Child {
  e: number;
  v: number;
  pen: number;
  viol: number;
  k1: number;
  k2: number;
  k3: number;
}

/** Exact best path under SLA limits, penalties and/or violations; `null` when there is none. */
export function branchAndBound(g: RouteGraph, q: BoundedQuery): number[] | null {
  const { src, dst, allowed, sla, mode, penalty, forbid } = q;
  const { w1, w2, w3 } = q.weights;
  const { d1, d2, d3 } = q.bound;
  const hLat = q.slaBounds.lat;
  const hJit = q.slaBounds.jit;
  const hLoss = q.slaBounds.loss;
  const utilEx = q.utilExcess ?? g.zeros;
  if (d1[src] === Infinity) return null;
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

  const sites = new Int32Array(g.n + 1);
  const links = new Int32Array(g.n);
  const visited = new Uint8Array(g.n);
  let has = false;
  let iPen = 0;
  let iViol = 0;
  let i1 = 0;
  let i2 = 0;
  let i3 = 0;
  let iHops = 0;
  const iSites = new Int32Array(g.n + 1);
  const iLinks = new Int32Array(g.n);

  /** Sign of (lower bound of a child) − incumbent, the prefix deciding when the keys are equal. */
  const versusIncumbent = (c: Child, depth: number): number => {
    if (!has) return -1;
    if (c.pen !== iPen) return c.pen - iPen;
    if (c.viol !== iViol) return c.viol - iViol;
    const k = lex3(c.k1, c.k2, c.k3, i1, i2, i3);
    if (k !== 0) return k;
    // Same key: any completion has the incumbent's length, so a later site prefix cannot win.
    for (let i = 1; i <= depth; i++) {
      const d = g.siteRank[sites[i]!]! - g.siteRank[iSites[i]!]!;
      if (d !== 0) return d;
    }
    if (depth + 1 <= iHops) {
      const d = g.siteRank[c.v]! - g.siteRank[iSites[depth + 1]!]!;
      if (d !== 0) return d;
    }
    return 0;
  };

  const arrive = (
    depth: number,
    pen: number,
    o1: number,
    o2: number,
    o3: number,
    lat: number,
    jit: number,
    keep: number,
    ex: number,
  ): void => {
    const lossPct = 100 * (1 - keep);
    if (feasibleOnly && (lat > maxLat || jit > maxJit || !lossWithin(lossPct, sla.maxLossPct))) return;
    if (forbid !== undefined && forbid.length === depth) {
      let same = true;
      for (let i = 0; i < depth && same; i++) same = forbid[i] === links[i];
      if (same) return;
    }
    const viol = feasibleOnly ? 0 : violationUnits(violation(lat, jit, lossPct, ex));
    if (has) {
      let c = pen - iPen || viol - iViol || lex3(o1, o2, o3, i1, i2, i3);
      if (c === 0) {
        const len = Math.min(depth, iHops);
        for (let i = 1; i <= len && c === 0; i++) c = g.siteRank[sites[i]!]! - g.siteRank[iSites[i]!]!;
        if (c === 0) c = depth - iHops;
        for (let i = 0; i < len && c === 0; i++) c = g.linkRank[links[i]!]! - g.linkRank[iLinks[i]!]!;
      }
      if (c >= 0) return;
    }
    has = true;
    iPen = pen;
    iViol = viol;
    i1 = o1;
    i2 = o2;
    i3 = o3;
    iHops = depth;
    iSites.set(sites.subarray(0, depth + 1));
    iLinks.set(links.subarray(0, depth));
  };

  const visit = (
    u: number,
    depth: number,
    pen: number,
    o1: number,
    o2: number,
    o3: number,
    lat: number,
    jit: number,
    lossLog: number,
    keep: number,
    ex: number,
  ): void => {
    if (u === dst) {
      arrive(depth, pen, o1, o2, o3, lat, jit, keep, ex);
      return;
    }
    visited[u] = 1;
    const children: Child[] = [];
    for (let k = g.adjStart[u]!, end = g.adjStart[u + 1]!; k < end; k++) {
      const e = g.adjLink[k]!;
      if (allowed[e] === 0) continue;
      const v = g.adjNbr[k]!;
      if (visited[v] === 1 || d1[v] === Infinity) continue;
      const latLb = lat + g.lat[e]! + hLat[v]!;
      const jitLb = jit + g.jit[e]! + hJit[v]!;
      const lossLogLb = lossLog + g.lossLog[e]! + hLoss[v]!;
      let viol = 0;
      if (feasibleOnly) {
        if (latLb > maxLat || jitLb > maxJit || lossLogLb > maxLossLog) continue;
      } else {
        const lossLb = Math.max(0, -100 * Math.expm1(-lossLogLb) * (1 - 1e-12) - 1e-12);
        viol = violationUnits(violation(latLb, jitLb, lossLb, ex + utilEx[e]!));
      }
      const c: Child = {
        e,
        v,
        pen: pen + (penalty === undefined ? 0 : penalty[e]!),
        viol,
        k1: o1 + w1[e]! + d1[v]!,
        k2: o2 + w2[e]! + d2[v]!,
        k3: o3 + w3[e]! + d3[v]!,
      };
      if (versusIncumbent(c, depth) > 0) continue;
      children.push(c);
    }
    // Stable sort: equal bounds keep the adjacency order (neighbour rank, link rank).
    children.sort((a, b) => a.pen - b.pen || a.viol - b.viol || lex3(a.k1, a.k2, a.k3, b.k1, b.k2, b.k3));
    for (const c of children) {
      if (versusIncumbent(c, depth) > 0) continue;
      const e = c.e;
      sites[depth + 1] = c.v;
      links[depth] = e;
      visit(
        c.v,
        depth + 1,
        pen + (penalty === undefined ? 0 : penalty[e]!),
        o1 + w1[e]!,
        o2 + w2[e]!,
        o3 + w3[e]!,
        lat + g.lat[e]!,
        jit + g.jit[e]!,
        lossLog + g.lossLog[e]!,
        keep * (1 - g.lossPct[e]! / 100),
        ex + utilEx[e]!,
      );
    }
    visited[u] = 0;
  };

  sites[0] = src;
  visit(src, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0);
  if (!has) return null;
  return Array.from(iLinks.subarray(0, iHops));
}
