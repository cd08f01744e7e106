/**
 * The route of one (class, src, dst) under one network state, with the caches that make computing
 * thousands of them cheap: shortest-path trees per (usable link set, metric, root), used from either
 * end of a route, and unconstrained best paths shared by the classes that see the same links with the
 * same objective.
 *
 * Rules (the contract of issue 2 §3, and the choices it leaves to us):
 * - `ok`: the primary is the first feasible path in the order of `comparePaths`. The backup is the
 *   first feasible path sharing no link with the primary; if there is none, the feasible path other
 *   than the primary with the fewest links shared with it (ties in the same order); else `null`.
 * - `degraded` (some path of up links, none feasible): the primary is the best-effort path, the path
 *   of up links (utilisation over `maxUtilPct` allowed) with the smallest violation (`slaViolation`:
 *   the summed relative excesses over the latency, jitter and loss bounds plus the relative excess
 *   of every over-utilised link), ties in the order of `comparePaths`. The backup is the path of up
 *   links other than the primary with the fewest links shared with it, then the smallest violation,
 *   then the same order; `null` when the primary is the only path.
 * - `unreachable` (no path of up links): primary and backup `null`.
 */
import { METRIC_SCALE, lossWithin, toUnits, utilExcess, utilWithin } from './path-metrics';
import {
  aStar,
  aStarReverse,
  labelSearch,
  walkFromRoot,
  walkTree,
  type LabelInit,
  type LabelKey,
  type LabelQuery,
  type LabelResult,
  type SlaBounds,
} from './path-search';
import { RouteGraph, repairTree, shortestTree, viaNotWorse, type Tree, type Weights } from './route-graph';
import type { NetworkState, Objective, Path, RouteStatus, Sla, Topology, TrafficClass } from './types';

/** A route as link-index lists (internal form). */
export interface RawRoute {
  readonly status: RouteStatus;
  readonly primary: readonly number[] | null;
  readonly backup: readonly number[] | null;
}

/** The links a class may use: up, and utilisation within its `maxUtilPct`. */
export interface UsableSet {
  /** Small integer naming the set: classes with equal sets share trees and candidates. */
  readonly id: number;
  readonly allowed: Uint8Array;
}

/** The metric of a shortest-path tree: a class objective, or one SLA metric alone. */
export type TreeKind = Objective | 'lat' | 'jit' | 'loss';

/** Label budget of a first, cheap attempt (shared bounds) before building bounds for one search. */
const CHEAP_SEARCH_LABELS = 2000;
const KIND_INDEX: Record<TreeKind, number> = { latency: 0, cost: 1, hops: 2, lat: 3, jit: 4, loss: 5 };
const KINDS: readonly TreeKind[] = ['latency', 'cost', 'hops', 'lat', 'jit', 'loss'];

export class RouteContext {
  readonly topology: Topology;
  readonly state: NetworkState | undefined;
  readonly graph: RouteGraph;
  readonly #weights = new Map<TreeKind, Weights>();
  readonly #usableByKey = new Map<string, UsableSet>();
  readonly #usableByClass = new Map<string, UsableSet>();
  readonly #upSet: UsableSet;
  readonly #trees = new Map<number, Tree>();
  /** Trees of the previous context that one changed link reaches: repaired when first needed. */
  readonly #repairs = new Map<number, () => Tree>();
  readonly #bestCandidates = new Map<number, { set: UsableSet; best: readonly number[] | null }[]>();
  readonly #backupCandidates = new Map<
    number,
    { set: UsableSet; primary: readonly number[]; backup: readonly number[] | null }[]
  >();
  readonly #utilExcess = new Map<string, Float64Array>();
  /** Constrained best paths per (objective, src, dst), by the set and SLA they were found for. */
  readonly #constrained = new Map<number, { set: UsableSet; sla: Sla; path: number[] | null }[]>();
  /** Feasible backups per (objective, src, dst), by primary, set and SLA. */
  readonly #backups = new Map<
    number,
    { set: UsableSet; sla: Sla; primaryKey: string; backup: readonly number[] | null }[]
  >();

  constructor(topology: Topology, state?: NetworkState) {
    this.topology = topology;
    this.state = state;
    this.graph = new RouteGraph(topology, state);
    this.#upSet = { id: 0, allowed: this.graph.up };
    this.#usableByKey.set('', this.#upSet);
  }

  /**
   * Takes over the trees of `old` (the same topology under the state before the links `changed`
   * changed) that the change cannot alter. A tree stays exact when no changed link can lie on a best
   * path to its root, before or after the change: for each changed link usable before (after), going
   * over it must be strictly worse than each end's own distance under the old (new) weights. Then the
   * distances and the tight links, hence also the tree's next hops, are the same as a rebuilt tree's.
   * Call before computing anything in this context.
   */
  inherit(old: RouteContext, changed: readonly number[]): void {
    const g = this.graph;
    const og = old.graph;
    if (og.n !== g.n || og.m !== g.m) return;
    // Old set id -> (old set, new set), through the classes that had them.
    const sets = new Map<number, [UsableSet, UsableSet]>([[old.#upSet.id, [old.#upSet, this.#upSet]]]);
    for (const [clsId, oldSet] of old.#usableByClass) {
      const cls = this.topology.classes.find((c) => c.id === clsId);
      if (cls !== undefined && !sets.has(oldSet.id)) sets.set(oldSet.id, [oldSet, this.usable(cls)]);
    }
    const n = g.n;
    for (const [key, tree] of old.#trees) {
      const root = key % n;
      const rest = (key - root) / n;
      const kindIndex = rest % 6;
      const pair = sets.get((rest - kindIndex) / 6);
      if (pair === undefined) continue;
      const kind = KINDS[kindIndex]!;
      const ow = old.weights(kind);
      const nw = this.weights(kind);
      let ok = true;
      for (const e of changed) {
        if (
          (pair[0].allowed[e] === 1 && mayUse(tree, og.la[e]!, og.lb[e]!, ow, e)) ||
          (pair[1].allowed[e] === 1 && mayUse(tree, g.la[e]!, g.lb[e]!, nw, e))
        ) {
          ok = false;
          break;
        }
      }
      const newKey = (pair[1].id * 6 + kindIndex) * n + root;
      if (ok) this.#trees.set(newKey, tree);
      else if (changed.length === 1) {
        // One changed link (the usual update): repair the tree where the change reaches it.
        const e = changed[0]!;
        const oldAllowed = pair[0].allowed;
        const allowed = pair[1].allowed;
        this.#repairs.set(newKey, () => repairTree(g, tree, root, e, oldAllowed, ow, allowed, nw));
      }
    }
  }

  /** Weights of a lexicographic metric: objectives rank (objective, hops, latency). */
  weights(kind: TreeKind): Weights {
    let w = this.#weights.get(kind);
    if (w === undefined) {
      const g = this.graph;
      switch (kind) {
        case 'latency':
          w = { w1: g.lat, w2: g.ones, w3: g.lat };
          break;
        case 'cost':
          w = { w1: g.cost, w2: g.ones, w3: g.lat };
          break;
        case 'hops':
          w = { w1: g.ones, w2: g.ones, w3: g.lat };
          break;
        case 'lat':
          w = { w1: g.lat, w2: g.zeros, w3: g.zeros };
          break;
        case 'jit':
          w = { w1: g.jit, w2: g.zeros, w3: g.zeros };
          break;
        case 'loss':
          w = { w1: g.lossLog, w2: g.zeros, w3: g.zeros };
          break;
        default: {
          const never: never = kind;
          throw new Error(`unknown tree kind ${String(never)}`);
        }
      }
      this.#weights.set(kind, w);
    }
    return w;
  }

  /** All up links (the set best-effort paths use). */
  get upSet(): UsableSet {
    return this.#upSet;
  }

  /** The links `cls` may use. */
  usable(cls: TrafficClass): UsableSet {
    let set = this.#usableByClass.get(cls.id);
    if (set === undefined) {
      const g = this.graph;
      const over: number[] = [];
      for (let e = 0; e < g.m; e++)
        if (g.up[e] === 1 && !utilWithin(g.util[e]!, cls.maxUtilPct)) over.push(e);
      const key = over.join(',');
      set = this.#usableByKey.get(key);
      if (set === undefined) {
        const allowed = g.up.slice();
        for (const e of over) allowed[e] = 0;
        set = { id: this.#usableByKey.size, allowed };
        this.#usableByKey.set(key, set);
      }
      this.#usableByClass.set(cls.id, set);
    }
    return set;
  }

  /** Tree of `kind` rooted at `root` over `set` (cached). */
  tree(set: UsableSet, kind: TreeKind, root: number): Tree {
    const n = this.graph.n;
    const kindIndex = KIND_INDEX[kind];
    const key = (set.id * 6 + kindIndex) * n + root;
    let t = this.#trees.get(key);
    if (t === undefined) {
      const repair = this.#repairs.get(key);
      t = repair !== undefined ? repair() : shortestTree(this.graph, root, set.allowed, this.weights(kind));
      this.#trees.set(key, t);
    }
    return t;
  }

  /**
   * True when the unconstrained searches from `src` to `dst` should use the tree rooted at `src`:
   * it exists (or is waiting for repair) and the one rooted at `dst` does not. With routes from a
   * few core sites to hundreds of edges, trees rooted at the cores serve both directions instead of
   * one tree per edge. Both ways give the same path.
   */
  #useSourceTree(set: UsableSet, kind: TreeKind, src: number, dst: number): boolean {
    const n = this.graph.n;
    const base = (set.id * 6 + KIND_INDEX[kind]) * n;
    const has = (root: number): boolean => this.#trees.has(base + root) || this.#repairs.has(base + root);
    return !has(dst) && has(src);
  }

  readonly #differences = new Map<number, readonly number[]>();

  /** Links usable by exactly one of two sets. */
  #difference(a: UsableSet, b: UsableSet): readonly number[] {
    const key = Math.min(a.id, b.id) * 65536 + Math.max(a.id, b.id);
    let d = this.#differences.get(key);
    if (d === undefined) {
      const out: number[] = [];
      for (let e = 0; e < this.graph.m; e++) if (a.allowed[e] !== b.allowed[e]) out.push(e);
      d = out;
      this.#differences.set(key, d);
    }
    return d;
  }

  /** True when every link usable by `b` is usable by `a`. */
  #contains(a: UsableSet, b: UsableSet): boolean {
    for (const e of this.#difference(a, b)) if (b.allowed[e] === 1) return false;
    return true;
  }

  /**
   * The best path over `set` (no SLA), or `null` when `dst` cannot be reached over it: a superset's
   * cached best path when it lies within `set` (nothing in the smaller set can beat it), else the walk
   * of `set`'s tree rooted at `dst`, or from the root of the one rooted at `src` (cached).
   */
  #unconstrainedBest(
    set: UsableSet,
    objective: Objective,
    src: number,
    dst: number,
  ): readonly number[] | null {
    const g = this.graph;
    const key = (KIND_INDEX[objective] * g.n + src) * g.n + dst;
    let list = this.#bestCandidates.get(key);
    if (list === undefined) {
      list = [];
      this.#bestCandidates.set(key, list);
    }
    for (const c of list) {
      if (c.set === set) return c.best;
      if (!this.#contains(c.set, set)) continue;
      if (c.best === null || c.best.every((e) => set.allowed[e] === 1)) {
        list.push({ set, best: c.best });
        return c.best;
      }
    }
    const w = this.weights(objective);
    const best = this.#useSourceTree(set, objective, src, dst)
      ? walkFromRoot(g, this.tree(set, objective, src), src, dst, set.allowed, w)
      : walkTree(g, this.tree(set, objective, dst), src, dst, set.allowed, w);
    list.push({ set, best });
    return best;
  }

  /**
   * The best path avoiding `primary` over `set` (no SLA): from a superset's cached answer for the same
   * primary when that answer lies within `set` (then nothing better exists in the smaller set), else
   * by `aStar`, or `aStarReverse` when only the source has a tree (cached).
   */
  #disjointBest(
    set: UsableSet,
    objective: Objective,
    src: number,
    dst: number,
    primary: readonly number[],
  ): readonly number[] | null {
    const g = this.graph;
    const key = (KIND_INDEX[objective] * g.n + src) * g.n + dst;
    let list = this.#backupCandidates.get(key);
    if (list === undefined) {
      list = [];
      this.#backupCandidates.set(key, list);
    }
    for (const c of list) {
      if (c.primary !== primary) continue;
      if (c.set === set) return c.backup;
      if (c.backup !== null && this.#contains(c.set, set) && c.backup.every((e) => set.allowed[e] === 1)) {
        list.push({ set, primary, backup: c.backup });
        return c.backup;
      }
    }
    const w = this.weights(objective);
    const b = this.#useSourceTree(set, objective, src, dst)
      ? aStarReverse(g, src, dst, set.allowed, primary, w, this.tree(set, objective, src))
      : aStar(g, src, dst, set.allowed, primary, w, this.tree(set, objective, dst));
    list.push({ set, primary, backup: b });
    return b;
  }

  /**
   * Lower bounds of latency, jitter and loss towards `root` over `set`. A latency objective's tree
   * minimises latency first, so its first component is the latency bound: no separate tree.
   */
  slaBounds(set: UsableSet, root: number, objective?: Objective): SlaBounds {
    return {
      lat: this.tree(set, objective === 'latency' ? 'latency' : 'lat', root).d1,
      jit: this.tree(set, 'jit', root).d1,
      loss: this.tree(set, 'loss', root).d1,
    };
  }

  /**
   * Bounds for a label search towards `dst` over (a subset of) `set`: the cached trees of `set`
   * rooted at `dst` (exact over `set`, lower bounds over any subset), plus with a penalty the tree of
   * the fewest penalised links.
   */
  #searchBounds(
    set: UsableSet,
    objective: Objective,
    dst: number,
    penalty?: Float64Array,
  ): { bound: Tree; slaBounds: SlaBounds; penalty?: Float64Array; penaltyBound?: Float64Array } {
    const g = this.graph;
    const pen =
      penalty === undefined
        ? {}
        : {
            penalty,
            penaltyBound: shortestTree(g, dst, set.allowed, { w1: penalty, w2: g.zeros, w3: g.zeros }).d1,
          };
    return { ...pen, bound: this.tree(set, objective, dst), slaBounds: this.slaBounds(set, dst, objective) };
  }

  /** Best path of a label search. */
  #search(q: LabelQuery): number[] | null;
  /** Best path other than `forbid` (by deviation from it: see {@link RouteContext.#deviations}). */
  #search(q: LabelQuery, forbid: readonly number[]): number[] | null;
  #search(q: LabelQuery, forbid?: readonly number[]): number[] | null {
    if (forbid === undefined) {
      const r = labelSearch(this.graph, q);
      if (r === 'budget') throw new Error('labelSearch: budget without maxLabels');
      return r?.links ?? null;
    }
    return this.#deviations(q, forbid);
  }

  /**
   * The best path other than `forbid`: any other simple path follows `forbid` for i links, then
   * leaves it by another link and never returns to the sites already passed. One exact search per
   * deviation point i, and the best of them (key, then sites, then links).
   */
  #deviations(q: LabelQuery, forbid: readonly number[]): number[] | null {
    const g = this.graph;
    const penalty = q.penalty ?? g.zeros;
    const utilEx = q.utilExcess ?? g.zeros;
    const { w1, w2, w3 } = q.weights;
    let init: LabelInit = { pen: 0, o1: 0, o2: 0, o3: 0, lat: 0, jit: 0, keep: 1, lossLog: 0, ex: 0 };
    const blocked = new Uint8Array(g.n);
    let at = q.src;
    let best: { r: LabelResult; links: number[] } | null = null;
    let cutoff: { cutoff?: LabelKey } = {};
    for (let i = 0; i < forbid.length; i++) {
      const e = forbid[i]!;
      // First with the shared bounds and a label budget: most deviations are small searches.
      let r: LabelResult | null | 'budget' = labelSearch(g, {
        ...q,
        src: at,
        blocked,
        firstLinkNot: e,
        init,
        maxLabels: CHEAP_SEARCH_LABELS,
        ...cutoff,
      });
      if (r === 'budget') r = this.#deviationTight({ ...q, ...cutoff }, at, e, blocked, init);
      if (r !== null) {
        const links = [...forbid.slice(0, i), ...r.links];
        if (best === null || this.#compareFull(q.src, r, links, best.r, best.links) < 0) {
          best = { r, links };
          // Later deviation points only matter if they reach this key (ties: by the site lists).
          cutoff = { cutoff: { pen: r.pen, viol: r.viol, k1: r.k1, k2: r.k2, k3: r.k3 } };
        }
      }
      blocked[at] = 1;
      init = {
        pen: init.pen + penalty[e]!,
        o1: init.o1 + w1[e]!,
        o2: init.o2 + w2[e]!,
        o3: init.o3 + w3[e]!,
        lat: init.lat + g.lat[e]!,
        jit: init.jit + g.jit[e]!,
        keep: init.keep * (1 - g.lossPct[e]! / 100),
        lossLog: init.lossLog + g.lossLog[e]!,
        ex: init.ex + utilEx[e]!,
      };
      at = g.other(e, at);
    }
    return best === null ? null : best.links;
  }

  /** A deviation search with bounds over exactly what it may use (no passed site, not link `e`). */
  #deviationTight(
    q: LabelQuery,
    at: number,
    e: number,
    blocked: Uint8Array,
    init: LabelInit,
  ): LabelResult | null {
    const g = this.graph;
    // Bounds over what this deviation may use (no passed site, not the primary's link here): the
    // shared trees route through those and are too weak to prove quickly that nothing fits.
    const reduced = q.allowed.slice();
    reduced[e] = 0;
    for (let x = 0; x < g.n; x++) {
      if (blocked[x] === 0) continue;
      for (let k = g.adjStart[x]!; k < g.adjStart[x + 1]!; k++) reduced[g.adjLink[k]!] = 0;
    }
    // With a latency objective the objective tree is the latency bound too.
    const byLatency = q.weights === this.weights('latency');
    const latencyBound = byLatency ? shortestTree(g, q.dst, reduced, q.weights) : undefined;
    const lat = (latencyBound ?? shortestTree(g, q.dst, reduced, this.weights('lat'))).d1;
    const jit = shortestTree(g, q.dst, reduced, this.weights('jit')).d1;
    const loss = shortestTree(g, q.dst, reduced, this.weights('loss')).d1;
    const hopeless =
      lat[at] === Infinity ||
      (q.mode === 'feasible' &&
        (init.lat + lat[at]! > toUnits(q.sla.maxLatencyMs) ||
          init.jit + jit[at]! > toUnits(q.sla.maxJitterMs) ||
          !lossWithin(100 * -Math.expm1(-(init.lossLog + loss[at]!)) * (1 - 1e-12), q.sla.maxLossPct)));
    if (hopeless) return null;
    const r = labelSearch(g, {
      ...q,
      allowed: reduced,
      bound: latencyBound ?? shortestTree(g, q.dst, reduced, q.weights),
      slaBounds: { lat, jit, loss },
      ...(q.penalty === undefined
        ? {}
        : { penaltyBound: shortestTree(g, q.dst, reduced, { w1: q.penalty, w2: g.zeros, w3: g.zeros }).d1 }),
      src: at,
      blocked,
      firstLinkNot: e,
      init,
    });
    if (r === 'budget') throw new Error('labelSearch: budget without maxLabels');
    return r;
  }

  #compareFull(
    src: number,
    a: LabelResult,
    la: readonly number[],
    b: LabelResult,
    lb: readonly number[],
  ): number {
    const c = a.pen - b.pen || a.viol - b.viol || a.k1 - b.k1 || a.k2 - b.k2 || a.k3 - b.k3;
    if (c !== 0) return c;
    const g = this.graph;
    let x = src;
    let y = src;
    for (let i = 0; i < Math.min(la.length, lb.length); i++) {
      x = g.other(la[i]!, x);
      y = g.other(lb[i]!, y);
      const d = g.siteRank[x]! - g.siteRank[y]!;
      if (d !== 0) return d;
    }
    if (la.length !== lb.length) return la.length - lb.length;
    for (let i = 0; i < la.length; i++) {
      const d = g.linkRank[la[i]!]! - g.linkRank[lb[i]!]!;
      if (d !== 0) return d;
    }
    return 0;
  }

  #utilExcessOf(cls: TrafficClass): Float64Array {
    let ex = this.#utilExcess.get(cls.id);
    if (ex === undefined) {
      const g = this.graph;
      ex = new Float64Array(g.m);
      for (let e = 0; e < g.m; e++) ex[e] = utilExcess(g.util[e]!, cls.maxUtilPct);
      this.#utilExcess.set(cls.id, ex);
    }
    return ex;
  }

  /** True when the links (all usable by the class) meet its SLA. */
  meetsSla(links: readonly number[], cls: TrafficClass): boolean {
    const g = this.graph;
    let lat = 0;
    let jit = 0;
    let keep = 1;
    for (const e of links) {
      lat += g.lat[e]!;
      jit += g.jit[e]!;
      keep *= 1 - g.lossPct[e]! / 100;
    }
    return (
      lat <= toUnits(cls.sla.maxLatencyMs) &&
      jit <= toUnits(cls.sla.maxJitterMs) &&
      lossWithin(100 * (1 - keep), cls.sla.maxLossPct)
    );
  }

  /** True when every link is up and usable by the class and the SLA is met. */
  isFeasible(links: readonly number[], cls: TrafficClass): boolean {
    const allowed = this.usable(cls).allowed;
    for (const e of links) if (allowed[e] === 0) return false;
    return this.meetsSla(links, cls);
  }

  /** The route of one (class, src, dst) by site index. */
  route(cls: TrafficClass, src: number, dst: number): RawRoute {
    const g = this.graph;
    if (g.component[src] !== g.component[dst]) return { status: 'unreachable', primary: null, backup: null };
    const set = this.usable(cls);
    const w = this.weights(cls.objective);
    const cand = this.#unconstrainedBest(set, cls.objective, src, dst);
    if (cand !== null) {
      if (this.meetsSla(cand, cls)) {
        const b = this.#disjointBest(set, cls.objective, src, dst, cand);
        return { status: 'ok', primary: cand, backup: this.#feasibleBackup(cls, src, dst, cand, b) };
      }
      const primary = this.#constrainedBest(cls, set, src, dst);
      if (primary !== null) {
        const b = aStar(g, src, dst, set.allowed, primary, w, this.tree(set, cls.objective, dst));
        return { status: 'ok', primary, backup: this.#feasibleBackup(cls, src, dst, primary, b) };
      }
    }
    const primary = this.#bestEffort(cls, src, dst);
    if (primary === null) throw new Error('route: connected sites without a best-effort path');
    return { status: 'degraded', primary, backup: this.bestEffortBackup(cls, src, dst, primary) };
  }

  /**
   * The backup of a feasible primary. `disjoint` is the best path avoiding the primary's links
   * regardless of the SLA (from `aStar`), or `null` when no such path exists.
   */
  #feasibleBackup(
    cls: TrafficClass,
    src: number,
    dst: number,
    primary: readonly number[],
    disjoint: readonly number[] | null,
  ): readonly number[] | null {
    if (disjoint !== null && this.meetsSla(disjoint, cls)) return disjoint;
    return this.feasibleBackup(cls, src, dst, primary, disjoint === null);
  }

  /** The backup of any feasible primary (e.g. one held by hysteresis) under the `ok` rule. */
  backupOf(
    cls: TrafficClass,
    src: number,
    dst: number,
    primary: readonly number[],
  ): readonly number[] | null {
    const set = this.usable(cls);
    const w = this.weights(cls.objective);
    const disjoint = aStar(this.graph, src, dst, set.allowed, primary, w, this.tree(set, cls.objective, dst));
    return this.#feasibleBackup(cls, src, dst, primary, disjoint);
  }

  /** The ranking key (objective, hops, latency) of a path, in integer units. */
  key(links: readonly number[], objective: Objective): [number, number, number] {
    const w = this.weights(objective);
    let k1 = 0;
    let k3 = 0;
    for (const e of links) {
      k1 += w.w1[e]!;
      k3 += w.w3[e]!;
    }
    return [k1, links.length, k3];
  }

  /**
   * The best feasible path when the unconstrained best breaks the SLA. A class whose links are a
   * subset of another's and whose SLA is at least as tight (every bound) takes that class's answer
   * when it lies within its links and meets its SLA: its own feasible paths are a subset of the
   * other's, so nothing it may use ranks first. When the other has no feasible path, neither has it.
   * (voice, video and api share most answers: the loss bound binds them alike.)
   */
  #constrainedBest(cls: TrafficClass, set: UsableSet, src: number, dst: number): number[] | null {
    const n = this.graph.n;
    const key = (KIND_INDEX[cls.objective] * n + src) * n + dst;
    let list = this.#constrained.get(key);
    if (list === undefined) {
      list = [];
      this.#constrained.set(key, list);
    }
    for (const c of list) {
      if (!looserOrEqual(c.sla, cls.sla) || (c.set !== set && !this.#contains(c.set, set))) continue;
      if (c.path === null) return null;
      if (c.path.every((e) => set.allowed[e] === 1) && this.meetsSla(c.path, cls)) return c.path;
    }
    const path = this.#search({
      src,
      dst,
      allowed: set.allowed,
      weights: this.weights(cls.objective),
      ...this.#searchBounds(set, cls.objective, dst),
      sla: cls.sla,
      mode: 'feasible',
    });
    list.push({ set, sla: cls.sla, path });
    return path;
  }

  /** The backup rule for a feasible primary, by search (also used for primaries held by hysteresis). */
  feasibleBackup(
    cls: TrafficClass,
    src: number,
    dst: number,
    primary: readonly number[],
    noDisjointPath = false,
  ): readonly number[] | null {
    // Another class's backup for the same primary, over a superset of links with a looser SLA, is
    // this class's when it lies within its links and meets its SLA: under every backup rule (best
    // disjoint, fewest shared, none) the candidates here are a subset of the other class's. When the
    // other's backup shares links, no feasible disjoint path exists for it, nor here.
    const n = this.graph.n;
    const key = (KIND_INDEX[cls.objective] * n + src) * n + dst;
    const set = this.usable(cls);
    const primaryKey = primary.join(',');
    let list = this.#backups.get(key);
    if (list === undefined) {
      list = [];
      this.#backups.set(key, list);
    }
    let noDisjoint = noDisjointPath;
    for (const c of list) {
      if (c.primaryKey !== primaryKey || !looserOrEqual(c.sla, cls.sla)) continue;
      if (c.set !== set && !this.#contains(c.set, set)) continue;
      if (c.backup === null) return null;
      if (c.backup.every((e) => set.allowed[e] === 1) && this.meetsSla(c.backup, cls)) return c.backup;
      if (c.backup.some((e) => primary.includes(e))) noDisjoint = true;
    }
    const backup = this.#feasibleBackupSearch(cls, src, dst, primary, noDisjoint);
    list.push({ set, sla: cls.sla, primaryKey, backup });
    return backup;
  }

  #feasibleBackupSearch(
    cls: TrafficClass,
    src: number,
    dst: number,
    primary: readonly number[],
    noDisjointPath: boolean,
  ): readonly number[] | null {
    const g = this.graph;
    const set = this.usable(cls);
    const w = this.weights(cls.objective);
    if (!noDisjointPath) {
      const without = set.allowed.slice();
      for (const e of primary) without[e] = 0;
      const base = { src, dst, allowed: without, weights: w, sla: cls.sla, mode: 'feasible' as const };
      // First with the set's shared trees and a label budget; when that search turns out large
      // (typically: nothing feasible avoids the primary), again with bounds over the graph without
      // the primary's links, which the shared trees route through.
      let found = labelSearch(g, {
        ...base,
        ...this.#searchBounds(set, cls.objective, dst),
        maxLabels: CHEAP_SEARCH_LABELS,
      });
      if (found === 'budget') {
        const bound = shortestTree(g, dst, without, w);
        found = labelSearch(g, {
          ...base,
          bound,
          slaBounds: {
            lat:
              cls.objective === 'latency' ? bound.d1 : shortestTree(g, dst, without, this.weights('lat')).d1,
            jit: shortestTree(g, dst, without, this.weights('jit')).d1,
            loss: shortestTree(g, dst, without, this.weights('loss')).d1,
          },
        });
        if (found === 'budget') throw new Error('labelSearch: budget without maxLabels');
      }
      const disjoint = found?.links ?? null;
      if (disjoint !== null) return disjoint;
    }
    const penalty = new Float64Array(g.m);
    for (const e of primary) penalty[e] = 1;
    return this.#search(
      {
        src,
        dst,
        allowed: set.allowed,
        weights: w,
        ...this.#searchBounds(set, cls.objective, dst, penalty),
        sla: cls.sla,
        mode: 'feasible',
      },
      primary,
    );
  }

  #bestEffort(cls: TrafficClass, src: number, dst: number): readonly number[] | null {
    const up = this.#upSet;
    return this.#search({
      src,
      dst,
      allowed: up.allowed,
      weights: this.weights(cls.objective),
      ...this.#searchBounds(up, cls.objective, dst),
      sla: cls.sla,
      mode: 'best-effort',
      utilExcess: this.#utilExcessOf(cls),
    });
  }

  /** The backup rule for a best-effort primary. */
  bestEffortBackup(
    cls: TrafficClass,
    src: number,
    dst: number,
    primary: readonly number[],
  ): readonly number[] | null {
    const up = this.#upSet;
    const penalty = new Float64Array(this.graph.m);
    for (const e of primary) penalty[e] = 1;
    return this.#search(
      {
        src,
        dst,
        allowed: up.allowed,
        weights: this.weights(cls.objective),
        ...this.#searchBounds(up, cls.objective, dst, penalty),
        sla: cls.sla,
        mode: 'best-effort',
        utilExcess: this.#utilExcessOf(cls),
      },
      primary,
    );
  }

  /** A path (link indices from `src`) in its public form. */
  toPath(src: number, links: readonly number[]): Path {
    // Same sums as `pathFromLinks` (the graph holds the same integer units), without id lookups.
    const g = this.graph;
    const sites = [g.siteIds[src]!];
    const ids: string[] = [];
    let lat = 0;
    let jit = 0;
    let cost = 0;
    let keep = 1;
    let at = src;
    for (const e of links) {
      at = g.other(e, at);
      sites.push(g.siteIds[at]!);
      ids.push(g.linkIds[e]!);
      lat += g.lat[e]!;
      jit += g.jit[e]!;
      cost += g.cost[e]!;
      keep *= 1 - g.lossPct[e]! / 100;
    }
    return {
      sites,
      links: ids,
      latencyMs: lat / METRIC_SCALE,
      jitterMs: jit / METRIC_SCALE,
      lossPct: 100 * (1 - keep),
      cost: cost / METRIC_SCALE,
      hops: links.length,
    };
  }

  /** Link indices of a public path from `src` to `dst`, or `null` when it is not a simple path of the topology. */
  linksOf(path: Path, src: number, dst: number): number[] | null {
    const g = this.graph;
    const out: number[] = [];
    const seen = new Set<number>([src]);
    let at = src;
    for (const id of path.links) {
      const e = g.linkIndex.get(id);
      if (e === undefined || (g.la[e] !== at && g.lb[e] !== at)) return null;
      at = g.other(e, at);
      if (seen.has(at)) return null;
      seen.add(at);
      out.push(e);
    }
    return at === dst && out.length > 0 ? out : null;
  }
}

/**
 * True when link `e` (ends `a`, `b`) could lie on a best path to the tree's root: going over it is at
 * least as good as an end's own distance (with a relative slack for the floating −ln(1−loss) sums).
 */
function mayUse(t: Tree, a: number, b: number, w: Weights, e: number): boolean {
  if (t.d1[a] === Infinity && t.d1[b] === Infinity) return false;
  return viaNotWorse(t, b, a, w, e) || viaNotWorse(t, a, b, w, e);
}

/** True when every bound of `a` is at least that of `b`: every path meeting `b` meets `a`. */
function looserOrEqual(a: Sla, b: Sla): boolean {
  return a.maxLatencyMs >= b.maxLatencyMs && a.maxJitterMs >= b.maxJitterMs && a.maxLossPct >= b.maxLossPct;
}
