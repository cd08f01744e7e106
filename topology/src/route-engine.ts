/**
 * `RouteEngine`: the controller's stateful route table. It holds the topology, the measured state and
 * the routes in force, and on every link change recomputes only the routes that can change, with the
 * same result as recomputing everything (with hysteresis applied the same way).
 *
 * Which routes can change when a set E of links changes (paths avoiding E keep their metrics and
 * usability, so only paths through E can move the optimum):
 * - a route whose primary or backup (pure or in force) uses a link of E;
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
import { RouteContext, type RawRoute } from './route-context';
import {
  NO_MARGINS,
  decideRoute,
  resolveMargins,
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
}

export class RouteEngine {
  readonly #topology: Topology;
  readonly #margins: HysteresisMargins;
  #state: Record<string, LinkState>;
  #ctx: RouteContext;
  readonly #slots: Slot[] = [];

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
    for (const slot of slots) this.#slots.push(slot);
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
    const affected = options.full === true ? this.#slots.map(() => true) : this.#affected(ctx, changed);
    const t1 = performance.now();
    const out: RouteChange[] = [];
    let recomputed = 0;
    this.#slots.forEach((slot, i) => {
      if (!affected[i]) return;
      recomputed++;
      // A route held by hysteresis keeps its object while its links' metrics change: drop its key.
      backupKeys.delete(slot.pure);
      backupKeys.delete(slot.active);
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
      slot.pure = pure;
      slot.active = route;
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
    });
    const t2 = performance.now();
    return {
      changes: out,
      recomputed,
      total: this.#slots.length,
      timings: { filterMs: t1 - t0, computeMs: t2 - t1, totalMs: t2 - t0 },
    };
  }

  /** Which routes can change after the links `changed` changed (see the module comment). */
  #affected(ctx: RouteContext, changed: readonly number[]): boolean[] {
    const g = ctx.graph;
    const isChanged = new Uint8Array(g.m);
    for (const e of changed) isChanged[e] = 1;
    const touches = (links: readonly number[] | null): boolean => {
      if (links === null) return false;
      for (let i = 0; i < links.length; i++) if (isChanged[links[i]!] === 1) return true;
      return false;
    };
    const anyUp = changed.some((e) => g.up[e] === 1);
    const bounds = new Map<string, ClassBounds>();
    const out = new Array<boolean>(this.#slots.length).fill(false);
    if (changed.length === 0) return out;
    for (let i = 0; i < this.#slots.length; i++) {
      const slot = this.#slots[i]!;
      const { pure, active } = slot;
      if (
        touches(pure.primary) ||
        touches(pure.backup) ||
        (active !== pure && (touches(active.primary) || touches(active.backup)))
      ) {
        out[i] = true;
        continue;
      }
      if (pure.status !== 'ok') {
        out[i] = anyUp;
        continue;
      }
      let through = bounds.get(slot.cls.id);
      if (through === undefined) {
        through = classBounds(ctx, slot.cls, changed);
        bounds.set(slot.cls.id, through);
      }
      if (through.links.length === 0) continue;
      out[i] = mayBeat(ctx, slot, pure, through) || (active !== pure && mayBeat(ctx, slot, active, through));
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

/** Trees rooted at both ends of a changed link usable by a class. */
interface ThroughBound {
  readonly e: number;
  readonly a: number;
  readonly b: number;
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
}

function classBounds(ctx: RouteContext, cls: TrafficClass, changed: readonly number[]): ClassBounds {
  const lossCap = (cls.sla.maxLossPct + LOSS_EPSILON_PCT) / 100;
  return {
    links: throughBounds(ctx, cls, changed),
    maxLat: toUnits(cls.sla.maxLatencyMs),
    maxJit: toUnits(cls.sla.maxJitterMs),
    maxLossLog: lossCap >= 1 ? Infinity : -Math.log1p(-lossCap) * (1 + 1e-9) + 1e-12,
  };
}

function throughBounds(ctx: RouteContext, cls: TrafficClass, changed: readonly number[]): ThroughBound[] {
  const g = ctx.graph;
  const set = ctx.usable(cls);
  const out: ThroughBound[] = [];
  for (const e of changed) {
    if (g.up[e] === 0 || !utilWithin(g.util[e]!, cls.maxUtilPct)) continue;
    const ends = [g.la[e]!, g.lb[e]!];
    const obj = ends.map((r) => {
      const t = ctx.tree(set, cls.objective, r);
      return [t.d1, t.d2, t.d3] as [Float64Array, Float64Array, Float64Array];
    });
    out.push({
      e,
      a: ends[0]!,
      b: ends[1]!,
      obj,
      lat: ends.map((r) => ctx.tree(set, 'lat', r).d1),
      jit: ends.map((r) => ctx.tree(set, 'jit', r).d1),
      loss: ends.map((r) => ctx.tree(set, 'loss', r).d1),
    });
  }
  return out;
}

/**
 * False only when no feasible path through a changed link can displace the `ok` route's primary or
 * backup: each such path must rank after the backup, which must exist and share no link.
 */
function mayBeat(ctx: RouteContext, slot: Slot, route: RawRoute, bounds: ClassBounds): boolean {
  const g = ctx.graph;
  const { cls, src, dst } = slot;
  const { maxLat, maxJit, maxLossLog } = bounds;
  let backupKey: [number, number, number] | null | undefined;
  for (const t of bounds.links) {
    const e = t.e;
    // Orientation 0: src .. a -e- b .. dst; orientation 1: src .. b -e- a .. dst.
    for (let o = 0; o < 2; o++) {
      const near = o;
      const far = 1 - o;
      const lat = t.lat[near]![src]! + g.lat[e]! + t.lat[far]![dst]!;
      const jit = t.jit[near]![src]! + g.jit[e]! + t.jit[far]![dst]!;
      const loss = t.loss[near]![src]! + g.lossLog[e]! + t.loss[far]![dst]!;
      if (!(lat <= maxLat && jit <= maxJit && loss <= maxLossLog)) continue;
      if (backupKey === undefined) backupKey = disjointBackupKey(ctx, cls, route);
      if (backupKey === null) return true;
      const w = ctx.weights(cls.objective);
      const n = t.obj[near]!;
      const f = t.obj[far]!;
      const k1 = n[0][src]! + w.w1[e]! + f[0][dst]!;
      const k2 = n[1][src]! + w.w2[e]! + f[1][dst]!;
      const k3 = n[2][src]! + w.w3[e]! + f[2][dst]!;
      if (k1 < backupKey[0]) return true;
      if (k1 === backupKey[0] && (k2 < backupKey[1] || (k2 === backupKey[1] && k3 <= backupKey[2])))
        return true;
    }
  }
  return false;
}

/**
 * Keys of disjoint backups by route object. A route keeps its object while none of its links changes
 * (a route touching a changed link is recomputed, and its entries dropped first: see `update`).
 */
const backupKeys = new WeakMap<RawRoute, [number, number, number] | null>();

/** The key of an `ok` route's backup when it shares no link with the primary, else `null`. */
function disjointBackupKey(
  ctx: RouteContext,
  cls: TrafficClass,
  route: RawRoute,
): [number, number, number] | null {
  let k = backupKeys.get(route);
  if (k === undefined) {
    const { primary, backup } = route;
    k = backup !== null && !backup.some((e) => primary!.includes(e)) ? ctx.key(backup, cls.objective) : null;
    backupKeys.set(route, k);
  }
  return k;
}
