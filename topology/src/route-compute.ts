/**
 * `computeRoutes()`: the pure optimum for every requested (class, src, dst) under one network state.
 * The rules (primary, backup, statuses, best effort) are documented on {@link RouteContext}.
 */
import { RouteError } from './errors';
import { RouteContext, type RawRoute } from './route-context';
import { routingPairs, type SitePair } from './route-scope';
import type { NetworkState, Route, Topology, TrafficClass } from './types';

export type { SitePair };

export interface ComputeRoutesOptions {
  /** Measured link state; links not named keep their nominal values (up, utilisation 0). */
  readonly state?: NetworkState;
  /** Class ids to route (default: all); routes come in topology class order whatever this order. */
  readonly classes?: readonly string[];
  /**
   * Pairs to route, in this order (default: the pairs of the topology's `routing` scope, see
   * `routingPairs`; without one every ordered pair of distinct sites, topology order).
   */
  readonly pairs?: readonly SitePair[];
}

export interface RouteSet {
  readonly routes: Route[];
}

/** A validated request: classes and pairs as objects and site indices. */
export interface RouteRequest {
  readonly classes: readonly TrafficClass[];
  readonly pairs: readonly { readonly src: number; readonly dst: number }[];
}

/**
 * Checks the class ids, pairs and state links against the topology.
 * @throws RouteError `TOPO_ERR_UNKNOWN_CLASS`, `TOPO_ERR_UNKNOWN_SITE`, `TOPO_ERR_SAME_SITE`,
 *   `TOPO_ERR_UNKNOWN_LINK`.
 */
export function resolveRequest(topology: Topology, options: ComputeRoutesOptions = {}): RouteRequest {
  let classes: readonly TrafficClass[] = topology.classes;
  if (options.classes !== undefined) {
    const wanted = new Set<string>();
    options.classes.forEach((id, i) => {
      if (!topology.classes.some((c) => c.id === id)) {
        throw new RouteError(
          'TOPO_ERR_UNKNOWN_CLASS',
          `classes[${i}]`,
          `unknown class '${id}' (expected one of ${topology.classes.map((c) => c.id).join(', ')})`,
        );
      }
      wanted.add(id);
    });
    classes = topology.classes.filter((c) => wanted.has(c.id));
  }
  const index = new Map(topology.sites.map((s, i) => [s.id, i]));
  const site = (id: string, path: string): number => {
    const i = index.get(id);
    if (i === undefined) {
      throw new RouteError(
        'TOPO_ERR_UNKNOWN_SITE',
        path,
        `unknown site '${id}' (expected a site id of ${topology.source})`,
      );
    }
    return i;
  };
  let pairs: { src: number; dst: number }[];
  if (options.pairs !== undefined) {
    pairs = options.pairs.map((p, i) => {
      const src = site(p.src, `pairs[${i}].src`);
      const dst = site(p.dst, `pairs[${i}].dst`);
      if (src === dst) {
        throw new RouteError(
          'TOPO_ERR_SAME_SITE',
          `pairs[${i}]`,
          `source and destination are both '${p.src}' (expected two distinct sites)`,
        );
      }
      return { src, dst };
    });
  } else if (topology.routing !== undefined && topology.routing.scope !== 'full-mesh') {
    pairs = routingPairs(topology).map((p) => ({ src: index.get(p.src)!, dst: index.get(p.dst)! }));
  } else {
    pairs = [];
    const n = topology.sites.length;
    for (let s = 0; s < n; s++) for (let d = 0; d < n; d++) if (s !== d) pairs.push({ src: s, dst: d });
  }
  if (options.state !== undefined) checkState(topology, options.state);
  return { classes, pairs };
}

/** Link ids per topology (immutable): `RouteEngine.update` checks a whole state on every change. */
const linkIdSets = new WeakMap<Topology, ReadonlySet<string>>();

/** @throws RouteError `TOPO_ERR_UNKNOWN_LINK` when the state names a link the topology lacks. */
export function checkState(topology: Topology, state: NetworkState): void {
  let ids = linkIdSets.get(topology);
  if (ids === undefined) {
    ids = new Set(topology.links.map((l) => l.id));
    linkIdSets.set(topology, ids);
  }
  for (const id of Object.keys(state.links)) {
    if (!ids.has(id)) {
      throw new RouteError(
        'TOPO_ERR_UNKNOWN_LINK',
        `state.links.${id}`,
        `unknown link '${id}' (expected a link id of ${topology.source})`,
      );
    }
  }
}

/** The public form of a raw route. */
export function toRoute(
  ctx: RouteContext,
  cls: TrafficClass,
  src: number,
  dst: number,
  raw: RawRoute,
): Route {
  const g = ctx.graph;
  return {
    class: cls.id,
    src: g.siteIds[src]!,
    dst: g.siteIds[dst]!,
    status: raw.status,
    primary: raw.primary === null ? null : ctx.toPath(src, raw.primary),
    backup: raw.backup === null ? null : ctx.toPath(src, raw.backup),
  };
}

/**
 * Routes for every requested (class, src, dst): by class in topology order, then pairs in the given
 * order (or every ordered pair of distinct sites in topology order). The result is the pure optimum
 * of the rules on {@link RouteContext}; unreachable and degraded outcomes are statuses, not errors.
 * @throws RouteError for unknown class, site or link ids and same-site pairs.
 */
export function computeRoutes(topology: Topology, options: ComputeRoutesOptions = {}): RouteSet {
  const req = resolveRequest(topology, options);
  const ctx = new RouteContext(topology, options.state);
  const routes: Route[] = new Array<Route>(req.classes.length * req.pairs.length);
  for (const c of computeOrder(req.classes)) {
    const cls = req.classes[c]!;
    req.pairs.forEach((p, i) => {
      routes[c * req.pairs.length + i] = toRoute(ctx, cls, p.src, p.dst, ctx.route(cls, p.src, p.dst));
    });
  }
  return { routes };
}

/**
 * Class indices in the order to compute them: larger `maxUtilPct` (more usable links) first, then
 * looser SLAs, so that a class with a smaller usable set or a tighter SLA finds the answers of the
 * classes it can reuse cached (the result does not depend on the order).
 */
export function computeOrder(classes: readonly TrafficClass[]): number[] {
  const sla = (i: number) => classes[i]!.sla;
  return classes
    .map((_, i) => i)
    .sort(
      (a, b) =>
        classes[b]!.maxUtilPct - classes[a]!.maxUtilPct ||
        sla(b).maxLossPct - sla(a).maxLossPct ||
        sla(b).maxLatencyMs - sla(a).maxLatencyMs ||
        sla(b).maxJitterMs - sla(a).maxJitterMs ||
        a - b,
    );
}
