/**
 * What a change of some links can do to the routes computed before it: the proofs `RouteEngine.update`
 * uses to leave routes alone. Paths avoiding the changed links keep their metrics and usability, so
 * only paths through a changed link can move an optimum.
 *
 * - {@link notBetter}: a link that is down now, or no better in any metric, only worsens the paths
 *   through it; a route avoiding it keeps its primary and backup.
 * - {@link ChangeBounds}: for links that got better, sound lower bounds on the key and SLA metrics of
 *   any simple path through them, compared with a route's backup.
 */
import { LOSS_EPSILON_PCT, toUnits, utilWithin } from './path-metrics';
import { bridgeLinks } from './route-bridges';
import type { RawRoute, RouteContext, TreeKind, UsableSet } from './route-context';
import { shortestTree, type Tree } from './route-graph';
import type { TrafficClass } from './types';

/**
 * Lower bounds through the links of one change, built per class when first needed (see
 * {@link ChangeBounds.mayDisplace}).
 */
export class ChangeBounds {
  readonly #ctx: RouteContext;
  readonly #changed: readonly number[];
  readonly #trees: AvoidingTrees;
  readonly #byClass = new Map<string, ClassBounds>();

  /** `ctx`: the context after the change; `changed`: the links whose state changed. */
  constructor(ctx: RouteContext, changed: readonly number[]) {
    this.#ctx = ctx;
    this.#changed = changed;
    this.#trees = new AvoidingTrees(ctx);
  }

  /**
   * False only when no feasible path through a changed link can displace the `ok` route's primary
   * or backup (`info`: facts about `route`'s backup, see {@link backupInfo}).
   */
  mayDisplace(cls: TrafficClass, src: number, dst: number, route: RawRoute, info: BackupInfo): boolean {
    let bounds = this.#byClass.get(cls.id);
    if (bounds === undefined) {
      bounds = classBounds(this.#ctx, cls, this.#changed, this.#trees);
      this.#byClass.set(cls.id, bounds);
    }
    return bounds.links.length > 0 && mayBeat(this.#ctx, cls, src, dst, route, info, bounds);
  }
}

/**
 * True when link `e` is no better for any path in context `b` than in context `a`: down in `b`, or up
 * in both with latency, jitter, loss and utilisation each the same or higher (cost is not state).
 */
export function notBetter(a: RouteContext, b: RouteContext, e: number): boolean {
  const x = a.graph;
  const y = b.graph;
  if (y.up[e] === 0) return true;
  return (
    x.up[e] === 1 &&
    y.lat[e]! >= x.lat[e]! &&
    y.jit[e]! >= x.jit[e]! &&
    y.lossPct[e]! >= x.lossPct[e]! &&
    y.util[e]! >= x.util[e]!
  );
}

/**
 * Distances towards both ends of a changed link `e` = (a, b) that a class may use, for lower bounds
 * on the simple paths through `e`. In such a path the part before `e` never visits `e`'s far end and
 * the part after never visits its near end, so the trees rooted at `a` avoid `b` and those rooted at
 * `b` avoid `a` (index 0: rooted at `a`, 1: at `b`). Without that, a bound through an access link
 * of an edge site would count walks that reach the edge's core twice, which are far shorter than
 * any real path through the link and flag most routes of the whole topology.
 */
interface ThroughBound {
  readonly e: number;
  readonly obj: [Float64Array, Float64Array, Float64Array][];
  readonly lat: Float64Array[];
  readonly jit: Float64Array[];
  readonly loss: Float64Array[];
}

/** The through-link trees of one class and its bounds in the units `mayBeat` compares. */
interface ClassBounds {
  readonly links: readonly ThroughBound[];
  readonly maxLat: number;
  readonly maxJit: number;
  readonly maxLossLog: number;
  /** Bridges of the class's usable links (computed when first needed). */
  bridges: Uint8Array | undefined;
}

/** Trees over a class's usable set minus one site's links, shared by the classes of one update. */
class AvoidingTrees {
  readonly #ctx: RouteContext;
  readonly #trees = new Map<string, Tree>();
  readonly #allowed = new Map<string, Uint8Array>();

  constructor(ctx: RouteContext) {
    this.#ctx = ctx;
  }

  /** The tree of `kind` rooted at `root` over `set` without the links of site `avoid`. */
  tree(set: UsableSet, kind: TreeKind, root: number, avoid: number): Tree {
    const key = `${set.id}/${kind}/${root}/${avoid}`;
    let t = this.#trees.get(key);
    if (t === undefined) {
      const g = this.#ctx.graph;
      let allowed = this.#allowed.get(`${set.id}/${avoid}`);
      if (allowed === undefined) {
        allowed = set.allowed.slice();
        for (let k = g.adjStart[avoid]!; k < g.adjStart[avoid + 1]!; k++) allowed[g.adjLink[k]!] = 0;
        this.#allowed.set(`${set.id}/${avoid}`, allowed);
      }
      t = shortestTree(g, root, allowed, this.#ctx.weights(kind));
      this.#trees.set(key, t);
    }
    return t;
  }
}

function classBounds(
  ctx: RouteContext,
  cls: TrafficClass,
  changed: readonly number[],
  trees: AvoidingTrees,
): ClassBounds {
  const lossCap = (cls.sla.maxLossPct + LOSS_EPSILON_PCT) / 100;
  return {
    links: throughBounds(ctx, cls, changed, trees),
    maxLat: toUnits(cls.sla.maxLatencyMs),
    maxJit: toUnits(cls.sla.maxJitterMs),
    maxLossLog: lossCap >= 1 ? Infinity : -Math.log1p(-lossCap) * (1 + 1e-9) + 1e-12,
    bridges: undefined,
  };
}

function throughBounds(
  ctx: RouteContext,
  cls: TrafficClass,
  changed: readonly number[],
  trees: AvoidingTrees,
): ThroughBound[] {
  const g = ctx.graph;
  const set = ctx.usable(cls);
  const out: ThroughBound[] = [];
  for (const e of changed) {
    if (g.up[e] === 0 || !utilWithin(g.util[e]!, cls.maxUtilPct)) continue;
    const ends = [g.la[e]!, g.lb[e]!] as const;
    const at = (kind: TreeKind, i: 0 | 1): Tree => trees.tree(set, kind, ends[i], ends[1 - i]!);
    const obj = ([0, 1] as const).map((i) => {
      const t = at(cls.objective, i);
      return [t.d1, t.d2, t.d3] as [Float64Array, Float64Array, Float64Array];
    });
    out.push({
      e,
      obj,
      // A latency objective tree's first component is the smallest latency already.
      lat: ([0, 1] as const).map((i) => (cls.objective === 'latency' ? obj[i]![0] : at('lat', i).d1)),
      jit: ([0, 1] as const).map((i) => at('jit', i).d1),
      loss: ([0, 1] as const).map((i) => at('loss', i).d1),
    });
  }
  return out;
}

/**
 * False only when no feasible path through a changed link can displace the `ok` route's primary or
 * backup: each such path must rank after the backup, which must exist and either share no link with
 * the primary or share only the primary's bridges (links every path shares); or the primary must be
 * the only path (all its links are bridges, no backup).
 */
function mayBeat(
  ctx: RouteContext,
  cls: TrafficClass,
  src: number,
  dst: number,
  route: RawRoute,
  info: BackupInfo,
  bounds: ClassBounds,
): boolean {
  const g = ctx.graph;
  const { maxLat, maxJit, maxLossLog } = bounds;
  const key = backupThreshold(ctx, cls, route, info, bounds);
  if (key === ONLY_PATH) return false;
  const w = ctx.weights(cls.objective);
  for (const t of bounds.links) {
    const e = t.e;
    // Orientation 0: src .. a -e- b .. dst; orientation 1: src .. b -e- a .. dst.
    for (let o = 0; o < 2; o++) {
      const n = t.obj[o]!;
      const f = t.obj[1 - o]!;
      // The key first: for most routes it alone rules the link out.
      if (key !== null) {
        const k1 = n[0][src]! + w.w1[e]! + f[0][dst]!;
        if (k1 > key[0]) continue;
        if (k1 === key[0]) {
          const k2 = n[1][src]! + w.w2[e]! + f[1][dst]!;
          if (k2 > key[1] || (k2 === key[1] && n[2][src]! + w.w3[e]! + f[2][dst]! > key[2])) continue;
        }
      }
      const lat = t.lat[o]![src]! + g.lat[e]! + t.lat[1 - o]![dst]!;
      const jit = t.jit[o]![src]! + g.jit[e]! + t.jit[1 - o]![dst]!;
      const loss = t.loss[o]![src]! + g.lossLog[e]! + t.loss[1 - o]![dst]!;
      if (lat <= maxLat && jit <= maxJit && loss <= maxLossLog) return true;
    }
  }
  return false;
}

/** `backupThreshold` when the primary is the only simple path: nothing can displace the route. */
const ONLY_PATH = [-Infinity, -Infinity, -Infinity] as const;

/**
 * The key a path must reach (or tie) to displace an `ok` route's primary or backup; `null` when a
 * path with fewer shared links might displace the backup whatever its key; {@link ONLY_PATH} when no
 * other path exists. A backup sharing links with the primary has the fewest possible when it shares
 * exactly the primary's bridges (under the new state), since every path crosses those.
 */
function backupThreshold(
  ctx: RouteContext,
  cls: TrafficClass,
  route: RawRoute,
  info: BackupInfo,
  bounds: ClassBounds,
): readonly [number, number, number] | null {
  if (info.shared === 0 && info.key !== null) return info.key;
  bounds.bridges ??= bridgeLinks(ctx.graph, ctx.usable(cls).allowed);
  const bridges = bounds.bridges;
  let onPrimary = 0;
  for (const e of route.primary!) onPrimary += bridges[e]!;
  if (info.key === null) return onPrimary === route.primary!.length ? ONLY_PATH : null;
  return info.shared === onPrimary ? info.key : null;
}

/** What the filter needs of a route's backup: its key (`null`: no backup) and links shared with the primary. */
export interface BackupInfo {
  readonly key: [number, number, number] | null;
  readonly shared: number;
}

export function backupInfo(ctx: RouteContext, cls: TrafficClass, route: RawRoute): BackupInfo {
  const { primary, backup } = route;
  if (backup === null) return { key: null, shared: 0 };
  return { key: ctx.key(backup, cls.objective), shared: backup.filter((e) => primary!.includes(e)).length };
}
