/**
 * Which (src, dst) pairs a topology needs routes for. Every ordered pair of distinct sites
 * (`full-mesh`) is n(n−1) pairs: 89,700 at 300 sites, 448,500 routes over five classes, more than a
 * controller can recompute in its loop. Most WANs are hub-and-spoke: edges talk to the data centres
 * and clouds, rarely to each other, which is 3,558 pairs at 6 hubs and 294 edges.
 */
import type { Topology } from './types';

/** A (source, destination) pair of site ids. */
export interface SitePair {
  readonly src: string;
  readonly dst: string;
}

/**
 * Every hub↔hub ordered pair, then for each spoke (in site order) spoke→hub and hub→spoke for every
 * hub. Hubs are `hubs` when given, else every `dc` and `cloud` site; spokes are the other sites.
 */
export function hubAndSpokePairs(topology: Topology, hubs?: readonly string[]): SitePair[] {
  const isHub =
    hubs === undefined ? (id: string, kind: string) => kind !== 'edge' : (id: string) => hubs.includes(id);
  const hubIds = topology.sites.filter((s) => isHub(s.id, s.kind)).map((s) => s.id);
  const spokeIds = topology.sites.filter((s) => !isHub(s.id, s.kind)).map((s) => s.id);
  const pairs: SitePair[] = [];
  for (const a of hubIds) for (const b of hubIds) if (a !== b) pairs.push({ src: a, dst: b });
  for (const e of spokeIds) {
    for (const c of hubIds) {
      pairs.push({ src: e, dst: c });
      pairs.push({ src: c, dst: e });
    }
  }
  return pairs;
}

/** Every ordered pair of distinct sites, in site order. */
export function fullMeshPairs(topology: Topology): SitePair[] {
  const ids = topology.sites.map((s) => s.id);
  const pairs: SitePair[] = [];
  for (const a of ids) for (const b of ids) if (a !== b) pairs.push({ src: a, dst: b });
  return pairs;
}

/**
 * The pairs the topology's `routing` scope needs: {@link hubAndSpokePairs} (with its `hubs`) for
 * `hub-and-spoke`, else {@link fullMeshPairs}. What `computeRoutes` and `RouteEngine` route when not
 * given pairs.
 */
export function routingPairs(topology: Topology): SitePair[] {
  const routing = topology.routing;
  if (routing === undefined) return fullMeshPairs(topology);
  switch (routing.scope) {
    case 'full-mesh':
      return fullMeshPairs(topology);
    case 'hub-and-spoke':
      return hubAndSpokePairs(topology, routing.hubs);
    default: {
      const never: never = routing.scope;
      throw new Error(`unknown routing scope ${String(never)}`);
    }
  }
}
