/**
 * Hysteresis: route stability for the controller. A route keeps its current primary while that path
 * is up and feasible, unless the pure optimum improves the class objective by at least both margins.
 * Its backup is held the same way (the backup is installed forwarding state too: changing it costs a
 * policy push): the current backup stays while it is up, feasible, not the primary and sharing no
 * more links with the primary than the candidate does, unless the candidate improves the objective
 * by both margins. Every other case follows the pure optimum of `computeRoutes()`. With both margins
 * at 0 the result is exactly the pure optimum.
 */
import { RouteError } from './errors';
import { METRIC_SCALE } from './path-metrics';
import { resolveRequest, toRoute, type ComputeRoutesOptions } from './route-compute';
import { RouteContext, type RawRoute } from './route-context';
import type { Objective, Route, Topology, TrafficClass } from './types';

/** When a better path replaces a current one. Both margins must be met. */
export interface HysteresisMargins {
  /** Minimum improvement as a percentage of the current path's objective value (default 10). */
  readonly relativePct: number;
  /** Minimum improvement in the objective's unit: ms, cost units, hops (default 2 ms, 1, 1). */
  readonly absolute: Readonly<Record<Objective, number>>;
}

export const DEFAULT_MARGINS: HysteresisMargins = {
  relativePct: 10,
  absolute: { latency: 2, cost: 1, hops: 1 },
};

/** Margins as callers give them: any field may be left out (it takes its default). */
export interface HysteresisMarginsInput {
  readonly relativePct?: number;
  readonly absolute?: Partial<Readonly<Record<Objective, number>>>;
}

/** Margins that make hysteresis a no-op: the pure optimum always wins. */
export const NO_MARGINS: HysteresisMargins = { relativePct: 0, absolute: { latency: 0, cost: 0, hops: 0 } };

/**
 * Why a route changed: `new` (no previous route), `status` (ok/degraded/unreachable changed), `down`
 * (the previous primary lost a link), `infeasible` (the previous primary no longer meets the class),
 * `better` (a better path won by the margins, or a degraded route found a better best effort),
 * `backup` (only the backup path changed).
 */
export type RouteChangeReason = 'new' | 'status' | 'down' | 'infeasible' | 'better' | 'backup';

export interface RouteChange {
  readonly class: string;
  readonly src: string;
  readonly dst: string;
  readonly reason: RouteChangeReason;
  /** The previous route (`null` for `new`). */
  readonly from: Route | null;
  readonly to: Route;
}

/** Fills and checks margins. @throws RouteError `TOPO_ERR_BAD_OPTION` for a negative or non-finite margin. */
export function resolveMargins(margins?: HysteresisMarginsInput): HysteresisMargins {
  const m: HysteresisMargins = {
    relativePct: margins?.relativePct ?? DEFAULT_MARGINS.relativePct,
    absolute: { ...DEFAULT_MARGINS.absolute, ...margins?.absolute },
  };
  const bad = (x: number) => !Number.isFinite(x) || x < 0;
  if (bad(m.relativePct)) {
    throw new RouteError(
      'TOPO_ERR_BAD_OPTION',
      'margins.relativePct',
      `${m.relativePct} (expected a number >= 0)`,
    );
  }
  for (const [k, v] of Object.entries(m.absolute)) {
    if (bad(v))
      throw new RouteError('TOPO_ERR_BAD_OPTION', `margins.absolute.${k}`, `${v} (expected a number >= 0)`);
  }
  return m;
}

function sameLinks(a: readonly number[] | null, b: readonly number[] | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when the two raw routes have the same status and paths. */
export function sameRawRoute(a: RawRoute, b: RawRoute): boolean {
  return a.status === b.status && sameLinks(a.primary, b.primary) && sameLinks(a.backup, b.backup);
}

/** The objective of a path in its own unit (ms, cost units, hops). */
function objectiveValue(ctx: RouteContext, links: readonly number[], objective: Objective): number {
  const k = ctx.key(links, objective)[0];
  return objective === 'hops' ? k : k / METRIC_SCALE;
}

function sharedWith(primary: readonly number[], path: readonly number[]): number {
  let n = 0;
  for (const e of path) if (primary.includes(e)) n++;
  return n;
}

/** True when `candidate` beats `current` on the class objective by both margins. */
function winsByMargins(
  ctx: RouteContext,
  objective: Objective,
  current: readonly number[],
  candidate: readonly number[],
  margins: HysteresisMargins,
): boolean {
  const now = objectiveValue(ctx, current, objective);
  const gain = now - objectiveValue(ctx, candidate, objective);
  const tol = 1e-9;
  return gain >= margins.absolute[objective] - tol && gain >= (margins.relativePct / 100) * now - tol;
}

/** The backup to install next to `primary`: the previous one while it holds, else `candidate`. */
function holdBackup(
  ctx: RouteContext,
  cls: TrafficClass,
  primary: readonly number[],
  previous: readonly number[] | null,
  candidate: readonly number[] | null,
  margins: HysteresisMargins,
): readonly number[] | null {
  if (previous === null || candidate === null || sameLinks(previous, candidate)) return candidate;
  if (sameLinks(previous, primary)) return candidate;
  if (previous.some((e) => ctx.graph.up[e] === 0) || !ctx.isFeasible(previous, cls)) return candidate;
  if (sharedWith(primary, previous) > sharedWith(primary, candidate)) return candidate;
  return winsByMargins(ctx, cls.objective, previous, candidate, margins) ? candidate : previous;
}

/**
 * The route to use given the previous one and the pure optimum under the new state, and why it
 * changed (`null`: unchanged paths and status).
 */
export function decideRoute(
  ctx: RouteContext,
  cls: TrafficClass,
  src: number,
  dst: number,
  prev: RawRoute | undefined,
  pure: RawRoute,
  margins: HysteresisMargins,
): { route: RawRoute; reason: RouteChangeReason | null } {
  const g = ctx.graph;
  const down = (links: readonly number[] | null) => links !== null && links.some((e) => g.up[e] === 0);
  if (prev === undefined) return { route: pure, reason: 'new' };
  if (pure.status !== 'ok' || prev.status !== 'ok' || prev.primary === null) {
    if (prev.status !== pure.status) return { route: pure, reason: 'status' };
    if (!sameLinks(prev.primary, pure.primary))
      return { route: pure, reason: down(prev.primary) ? 'down' : 'better' };
    return { route: pure, reason: sameLinks(prev.backup, pure.backup) ? null : 'backup' };
  }
  const held = prev.primary;
  if (down(held)) return { route: pure, reason: 'down' };
  if (!ctx.isFeasible(held, cls)) return { route: pure, reason: 'infeasible' };
  if (sameLinks(held, pure.primary)) {
    const backup = holdBackup(ctx, cls, held, prev.backup, pure.backup, margins);
    return {
      route: backup === pure.backup ? pure : { status: 'ok', primary: held, backup },
      reason: sameLinks(prev.backup, backup) ? null : 'backup',
    };
  }
  if (winsByMargins(ctx, cls.objective, held, pure.primary!, margins)) {
    return { route: pure, reason: 'better' };
  }
  const backup = holdBackup(ctx, cls, held, prev.backup, ctx.backupOf(cls, src, dst, held), margins);
  return {
    route: { status: 'ok', primary: held, backup },
    reason: sameLinks(prev.backup, backup) ? null : 'backup',
  };
}

export interface HysteresisOptions extends ComputeRoutesOptions {
  /** Default {@link DEFAULT_MARGINS}; missing fields take their defaults. */
  readonly margins?: HysteresisMarginsInput;
}

/**
 * Routes under a new state with hysteresis against `previous` (e.g. the routes in force), and the
 * list of routes whose status, primary or backup changed. Requested routes absent from `previous`
 * are `new`; a previous path that is not a simple path of the topology between its sites counts as
 * absent.
 * @throws RouteError for unknown ids in the options and bad margins.
 */
export function applyHysteresis(
  topology: Topology,
  previous: readonly Route[],
  options: HysteresisOptions = {},
): { routes: Route[]; changes: RouteChange[] } {
  const margins = resolveMargins(options.margins);
  const req = resolveRequest(topology, options);
  const ctx = new RouteContext(topology, options.state);
  const prevByKey = new Map(previous.map((r) => [`${r.class}\u0000${r.src}\u0000${r.dst}`, r]));
  const routes: Route[] = [];
  const changes: RouteChange[] = [];
  for (const cls of req.classes) {
    for (const { src, dst } of req.pairs) {
      const key = `${cls.id}\u0000${ctx.graph.siteIds[src]!}\u0000${ctx.graph.siteIds[dst]!}`;
      const before = prevByKey.get(key);
      let prevRaw: RawRoute | undefined;
      if (before !== undefined) {
        const primary = before.primary === null ? null : ctx.linksOf(before.primary, src, dst);
        const backup = before.backup === null ? null : ctx.linksOf(before.backup, src, dst);
        if ((primary === null) === (before.primary === null))
          prevRaw = { status: before.status, primary, backup };
      }
      const pure = ctx.route(cls, src, dst);
      const { route, reason } = decideRoute(ctx, cls, src, dst, prevRaw, pure, margins);
      const out = toRoute(ctx, cls, src, dst, route);
      routes.push(out);
      if (reason !== null) {
        changes.push({ class: cls.id, src: out.src, dst: out.dst, reason, from: before ?? null, to: out });
      }
    }
  }
  return { routes, changes };
}
