/**
 * `RouteEngine`: the controller's stateful route table. It holds the topology, the measured state and
 * the routes in force, and on every link change recomputes only the routes that can change, with the
 * same result as recomputing everything (with hysteresis applied the same way).
 *
 * Which routes can change when a set E of links changes (paths avoiding E keep their metrics and
 * usability, so only paths through E can move the optimum; the proofs are in `route-change-bounds`):
 * - a route whose primary or backup (pure or in force) uses a link of E (found through a
 *   {@link LinkRouteIndex}, not by scanning every route);
 * - when no link of E got better (each is down now, or was up and no metric or utilisation fell):
 *   nothing else. Every path through E kept or worsened its key, SLA metrics, violation and
 *   usability, every other path is unchanged, and ties are broken by ids, which do not change; so a
 *   primary and backup avoiding E still rank first under every rule (best, disjoint, fewest shared,
 *   best effort), and no route gains a feasible or reachable path. Otherwise also:
 * - a `degraded` or `unreachable` route, when a link of E is up after the change;
 * - an `ok` route when some simple path through a link e of E could be feasible and rank before (or
 *   tie with) its backup. "Could" is a sound lower bound from shortest-path trees rooted at e's ends,
 *   each avoiding the other end (a simple path visits each end once). A route without a backup, or
 *   whose backup shares links with the primary, counts as reachable by any feasible path unless the
 *   shared links are bridges (every path crosses them, so no path shares fewer): then its backup key
 *   is the bar, and a primary made of bridges only is the one path there is.
 */
import { performance } from 'node:perf_hooks';
import { ChangeBounds, backupInfo, notBetter, type BackupInfo } from './route-change-bounds';
import { checkState, computeOrder, resolveRequest, toRoute, type SitePair } from './route-compute';
import { RouteContext, type RawRoute } from './route-context';
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
  /** Pairs to maintain (default: the topology's `routing` scope, see `routingPairs`; else every ordered pair). */
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
      for (const p of pathsOf(slot)) this.#index.add(i, p);
    });
  }

  /**
   * Moves slot `i` in the link index from the links of `before` to those of `after` (its paths
   * before and after a recompute), touching only the links that differ: a rerouted path usually
   * keeps most of its links.
   */
  #reindex(
    i: number,
    before: readonly (readonly number[] | null)[],
    after: readonly (readonly number[] | null)[],
  ): void {
    const within = (e: number, paths: readonly (readonly number[] | null)[]): boolean =>
      paths.some((p) => p !== null && p.includes(e));
    for (const p of before)
      if (p !== null)
        this.#index.delete(
          i,
          p.filter((e) => !within(e, after)),
        );
    for (const p of after)
      if (p !== null)
        this.#index.add(
          i,
          p.filter((e) => !within(e, before)),
        );
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
      // Its backup facts describe the links before the change: drop them.
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
      const previous = slot.route;
      // Most recomputed routes keep their paths: only re-index the ones that moved.
      const moved = !sameRawRoute(slot.pure, pure) || !sameRawRoute(slot.active, route);
      const before = moved ? pathsOf(slot) : [];
      slot.pure = pure;
      slot.active = route;
      if (moved) this.#reindex(i, before, pathsOf(slot));
      slot.route = toRoute(ctx, slot.cls, slot.src, slot.dst, route);
      if (reason !== null) {
        out.push({
          class: slot.cls.id,
          src: previous.src,
          dst: previous.dst,
          reason,
          from: previous,
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
    const bounds = new ChangeBounds(ctx, changed);
    const out: number[] = [];
    for (let i = 0; i < this.#slots.length; i++) {
      const slot = this.#slots[i]!;
      const { cls, src, dst, pure, active } = slot;
      let hit: boolean;
      if (touched[i] === 1) hit = true;
      else if (pure.status !== 'ok') hit = anyUp;
      else {
        hit =
          bounds.mayDisplace(cls, src, dst, pure, (slot.pureBackup ??= backupInfo(ctx, cls, pure))) ||
          (active !== pure &&
            bounds.mayDisplace(cls, src, dst, active, (slot.activeBackup ??= backupInfo(ctx, cls, active))));
      }
      if (hit) out.push(i);
    }
    return out;
  }
}

/** A slot's pure and (when different) active paths: the links the index lists it under. */
function pathsOf(slot: Slot): (readonly number[] | null)[] {
  const { pure, active } = slot;
  return active === pure
    ? [pure.primary, pure.backup]
    : [pure.primary, pure.backup, active.primary, active.backup];
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
