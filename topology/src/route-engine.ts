/**
 * `RouteEngine`: the controller's stateful route table. It holds the topology, the measured state and
 * the routes in force, and on every link change recomputes only the routes that can change, with the
 * same result as recomputing everything (with hysteresis applied the same way).
 *
 * Which routes can change when a set E of links changes (paths avoiding E keep their metrics and
 * usability, so only paths through E can move the optimum):
 * - a route whose primary or backup (pure or in force) uses a link of E (found through a
 *   {@link LinkRouteIndex}, not by scanning every route);
 * - when no link of E got better (each is down now, or was up and no metric or utilisation fell):
 *   nothing else. Every path through E kept or worsened its key, SLA metrics, violation and
 *   usability, every other path is unchanged, and ties are broken by ids, which do not change; so a
 *   primary and backup avoiding E still rank first under every rule (best, disjoint, fewest shared,
 *   best effort), and no route gains a feasible or reachable path. Otherwise also:
 * - a `degraded` or `unreachable` route, when a link of E is up after the change;
 * - an `ok` route when some path through a link e of E could be feasible and rank before its backup
 *   (or its backup shares links with the primary, or it has none). "Could" is a sound lower bound:
 *   the shortest-path trees rooted at e's ends give the best objective key and the smallest latency,
 *   jitter and loss of any path from src to dst through e.
 * Every other route keeps its pure optimum, and hysteresis (idempotent for an unchanged optimum and
 * an unchanged current path) keeps its route in force.
 */
import { performance } from 'node:perf_hooks';
import { LOSS_EPSILON_PCT, toUnits, utilWithin } from './path-metrics';
import { checkState, computeOrder, resolveRequest, toRoute, type SitePair } from './route-compute';
import { bridgeLinks } from './route-bridges';
import { RouteContext, type RawRoute, type TreeKind, type UsableSet } from './route-context';
import { shortestTree, type Tree } from './route-graph';
import { LinkRouteIndex } from './route-link-index';
import {
  NO_MARGINS,
  decideRoute,
  resolveMargins,
  sameRawRoute,
  type HysteresisMargins,
  type HysteresisMarginsInput,
  type RouteChange,
} from './route-hysteresis';
import type { LinkState, NetworkState, Route, Topology, TrafficClass } from './types';

export interface RouteEngineOptions {
  /** Initial measured state (default: nominal). */
  readonly state?: NetworkState;
  /** Class ids to maintain (default all). */
  readonly classes?: readonly string[];
  /** Pairs to maintain (default every ordered pair of distinct sites). */
  readonly pairs?: readonly SitePair[];
  /**
   * Hysteresis margins (missing fields take the defaults of `DEFAULT_MARGINS`), or `false` (the
   * default) for the pure optimum.
   */
  readonly hysteresis?: HysteresisMarginsInput | false;
}

/** New measured state per link id: replaces the link's previous state; `null` returns it to nominal. */
export type LinkChanges = Readonly<Record<string, LinkState | null>>;

export interface UpdateResult {
  /** Routes whose status, primary or backup changed, in route order. */
  readonly changes: RouteChange[];
  /** Routes recomputed (the rest were proven unaffected). */
  readonly recomputed: number;
  readonly total: number;
  readonly timings: {
    /** Deciding which routes can change. */
    readonly filterMs: number;
    /** Recomputing them (and applying hysteresis). */
    readonly computeMs: number;
    readonly totalMs: number;
  };
}

interface Slot {
  readonly cls: TrafficClass;
  readonly src: number;
  readonly dst: number;
  pure: RawRoute;
  active: RawRoute;
  route: Route;
  /**
   * Backup facts of `pure` and `active` for the change filter, computed when first needed. They
   * depend only on the metrics of the routes' own links, which stay as they are until a change
   * touches those links, and then the route is recomputed and these are dropped.
   */
  pureBackup?: BackupInfo | undefined;
  activeBackup?: BackupInfo | undefined;
}

export class RouteEngine {
  readonly #topology: Topology;
  readonly #margins: HysteresisMargins;
  #state: Record<string, LinkState>;
  #ctx: RouteContext;
  readonly #slots: Slot[] = [];
  /** The links of every slot's pure and active paths. */
  readonly #index: LinkRouteIndex;

  /** Computes every route (with no previous routes: all are the pure optimum). */
  constructor(topology: Topology, options: RouteEngineOptions = {}) {
    this.#topology = topology;
    this.#margins =
      options.hysteresis === undefined || options.hysteresis === false
        ? NO_MARGINS
        : resolveMargins(options.hysteresis);
    const req = resolveRequest(topology, options);
    this.#state = { ...(options.state?.links ?? {}) };
    this.#ctx = new RouteContext(topology, { links: this.#state });
    const slots = new Array<Slot>(req.classes.length * req.pairs.length);
    for (const c of computeOrder(req.classes)) {
      const cls = req.classes[c]!;
      req.pairs.forEach(({ src, dst }, i) => {
        const pure = this.#ctx.route(cls, src, dst);
        slots[c * req.pairs.length + i] = {
          cls,
          src,
          dst,
          pure,
          active: pure,
          route: toRoute(this.#ctx, cls, src, dst, pure),
        };
      });
    }
    this.#index = new LinkRouteIndex(this.#ctx.graph.m);
    slots.forEach((slot, i) => {
      this.#slots.push(slot);
      this.#indexSlot(i, slot, true);
    });
  }

  /** Adds (or removes) the links of a slot's pure and active paths to (from) the link index. */
  #indexSlot(i: number, slot: Slot, add: boolean): void {
    const paths = [slot.pure.primary, slot.pure.backup];
    if (slot.active !== slot.pure) paths.push(slot.active.primary, slot.active.backup);
    for (const p of paths) {
      if (add) this.#index.add(i, p);
      else this.#index.delete(i, p);
    }
  }

  /** The routes in force, by class in topology order then pair order. */
  get routes(): Route[] {
    return this.#slots.map((s) => s.route);
  }

  /** The measured state the routes were computed for. */
  get state(): NetworkState {
    return { links: { ...this.#state } };
  }

  /**
   * Applies link state changes and updates the routes. `full: true` recomputes every route instead of
   * the affected ones (same result; for checks and benchmarks).
   * @throws RouteError `TOPO_ERR_UNKNOWN_LINK` for an unknown link id; nothing is changed then.
   */
  update(changes: LinkChanges, options: { full?: boolean } = {}): UpdateResult {
    const t0 = performance.now();
    const next: Record<string, LinkState> = { ...this.#state };
    for (const [id, s] of Object.entries(changes)) {
      if (s === null) delete next[id];
      else next[id] = s;
    }
    checkState(this.#topology, { links: next });
    const old = this.#ctx;
    const ctx = new RouteContext(this.#topology, { links: next });
    this.#state = next;
    this.#ctx = ctx;
    const changed: number[] = [];
    for (const id of Object.keys(changes)) {
      const e = ctx.graph.linkIndex.get(id)!;
      if (linkDiffers(old, ctx, e)) changed.push(e);
    }
    // Trees the change cannot alter are kept (a full recompute starts from scratch on purpose).
    if (options.full !== true) ctx.inherit(old, changed);
    let affected: readonly number[];
    if (options.full === true) affected = this.#slots.map((_, i) => i);
    else if (changed.every((e) => notBetter(old, ctx, e))) affected = this.#index.routesOn(changed);
    else affected = this.#affected(ctx, changed);
    const t1 = performance.now();
    const out: RouteChange[] = [];
    for (const i of affected) {
      const slot = this.#slots[i]!;
      // A route held by hysteresis keeps its object while its links' metrics change: drop its key.
      slot.pureBackup = undefined;
      slot.activeBackup = undefined;
      const pure = ctx.route(slot.cls, slot.src, slot.dst);
      const { route, reason } = decideRoute(
        ctx,
        slot.cls,
        slot.src,
        slot.dst,
        slot.active,
        pure,
        this.#margins,
      );
      const before = slot.route;
      // Most recomputed routes keep their paths: only re-index the ones that moved.
      const moved = !sameRawRoute(slot.pure, pure) || !sameRawRoute(slot.active, route);
      if (moved) this.#indexSlot(i, slot, false);
      slot.pure = pure;
      slot.active = route;
      if (moved) this.#indexSlot(i, slot, true);
      slot.route = toRoute(ctx, slot.cls, slot.src, slot.dst, route);
      if (reason !== null) {
        out.push({
          class: slot.cls.id,
          src: before.src,
          dst: before.dst,
          reason,
          from: before,
          to: slot.route,
        });
      }
    }
    const t2 = performance.now();
    return {
      changes: out,
      recomputed: affected.length,
      total: this.#slots.length,
      timings: { filterMs: t1 - t0, computeMs: t2 - t1, totalMs: t2 - t0 },
    };
  }

  /**
   * Which routes can change after the links `changed` changed, some of them for the better (see the
   * module comment), in ascending order.
   */
  #affected(ctx: RouteContext, changed: readonly number[]): number[] {
    const g = ctx.graph;
    const touched = new Uint8Array(this.#slots.length);
    for (const i of this.#index.routesOn(changed)) touched[i] = 1;
    const anyUp = changed.some((e) => g.up[e] === 1);
    const bounds = new Map<string, ClassBounds>();
    const trees = new AvoidingTrees(ctx);
    const out: number[] = [];
    for (let i = 0; i < this.#slots.length; i++) {
      const slot = this.#slots[i]!;
      const { pure, active } = slot;
      let hit: boolean;
      if (touched[i] === 1) hit = true;
      else if (pure.status !== 'ok') hit = anyUp;
      else {
        let through = bounds.get(slot.cls.id);
        if (through === undefined) {
          through = classBounds(ctx, slot.cls, changed, trees);
          bounds.set(slot.cls.id, through);
        }
        hit =
          through.links.length > 0 &&
          (mayBeat(ctx, slot, pure, (slot.pureBackup ??= backupInfo(ctx, slot.cls, pure)), through) ||
            (active !== pure &&
              mayBeat(
                ctx,
                slot,
                active,
                (slot.activeBackup ??= backupInfo(ctx, slot.cls, active)),
                through,
              )));
      }
      if (hit) out.push(i);
    }
    return out;
  }
}

/** True when the effective state of link `e` differs between two contexts. */
function linkDiffers(a: RouteContext, b: RouteContext, e: number): boolean {
  const x = a.graph;
  const y = b.graph;
  return (
    x.up[e] !== y.up[e] ||
    x.lat[e] !== y.lat[e] ||
    x.jit[e] !== y.jit[e] ||
    x.lossPct[e] !== y.lossPct[e] ||
    x.util[e] !== y.util[e]
  );
}

/**
 * True when link `e` is no better for any path in context `b` than in context `a`: down in `b`, or up
 * in both with latency, jitter, loss and utilisation each the same or higher (cost is not state).
 */
function notBetter(a: RouteContext, b: RouteContext, e: number): boolean {
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
  slot: Slot,
  route: RawRoute,
  info: BackupInfo,
  bounds: ClassBounds,
): boolean {
  const g = ctx.graph;
  const { src, dst } = slot;
  const { maxLat, maxJit, maxLossLog } = bounds;
  const key = backupThreshold(ctx, slot.cls, route, info, bounds);
  if (key === ONLY_PATH) return false;
  const w = ctx.weights(slot.cls.objective);
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
interface BackupInfo {
  readonly key: [number, number, number] | null;
  readonly shared: number;
}

function backupInfo(ctx: RouteContext, cls: TrafficClass, route: RawRoute): BackupInfo {
  const { primary, backup } = route;
  if (backup === null) return { key: null, shared: 0 };
  return { key: ctx.key(backup, cls.objective), shared: backup.filter((e) => primary!.includes(e)).length };
}
