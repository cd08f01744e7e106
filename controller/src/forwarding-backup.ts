/**
 * The backup the data plane gets for each route: what a local fast-reroute switch moves traffic
 * onto, for the moments until the controller's next cycle puts the route on a new path.
 *
 * The route engine's backup is the best *feasible* path sharing no link with the primary, else the
 * feasible path sharing the fewest links (the rule, kept for `GET /api/v1/routes`). A
 * backup that shares a link with the primary cannot help when that link dies, and which link will
 * die is not known in advance: in the reference topology an edge site's only other link is an
 * internet one whose loss sits near the voice SLA, so voice backups there often share the edge's
 * MPLS link and a failure of that link left local reroute with nothing to switch to (270–400 ms
 * gaps, waiting for the controller). For forwarding, connectivity for a second beats the SLA:
 * when the route's backup shares a link with its primary (or there is none), the policy's backup
 * is the best path over up links that avoids every primary link, SLA or not (class objective,
 * then hops, then latency). When no such path exists, the route's own backup stays.
 */
import {
  effectiveLinks,
  pathFromLinks,
  type EffectiveLink,
  type NetworkState,
  type Objective,
  type Path,
  type Route,
  type Topology,
} from '@meridian/topology';

/** What {@link forwardingBackups} changed, for the cycle's log. */
export interface ForwardingBackupResult {
  readonly routes: Route[];
  /** Routes whose policy backup is a protection path instead of the route's own backup. */
  readonly protectedRoutes: number;
}

/**
 * The routes with, where the route's backup is not link-disjoint from its primary, a link-disjoint
 * protection path as backup (see the module comment). Routes without a primary pass unchanged.
 */
export function forwardingBackups(
  topology: Topology,
  state: NetworkState,
  routes: readonly Route[],
): ForwardingBackupResult {
  const links = effectiveLinks(topology, state);
  const graph = new ProtectionGraph(topology, links);
  const objectiveOf = new Map(topology.classes.map((c) => [c.id, c.objective]));
  const memo = new Map<string, Path | null>();
  let protectedRoutes = 0;
  const out = routes.map((r) => {
    if (r.primary === null) return r;
    const primaryLinks = new Set(r.primary.links);
    if (r.backup !== null && !r.backup.links.some((l) => primaryLinks.has(l))) return r;
    const objective = objectiveOf.get(r.class) ?? 'latency';
    const key = `${r.src}|${r.dst}|${objective}|${r.primary.links.join('>')}`;
    let path = memo.get(key);
    if (path === undefined) {
      const ids = graph.bestAvoiding(r.src, r.dst, primaryLinks, objective);
      path = ids === null ? null : pathFromLinks(r.src, ids, links);
      memo.set(key, path);
    }
    if (path === null) return r;
    protectedRoutes++;
    return { ...r, backup: path };
  });
  return { routes: out, protectedRoutes };
}

interface Edge {
  readonly to: number;
  readonly id: string;
  readonly link: EffectiveLink;
}

/** Sites and up links as adjacency lists; Dijkstra on (objective, hops, latency). */
class ProtectionGraph {
  readonly #index = new Map<string, number>();
  readonly #adj: Edge[][];

  constructor(topology: Topology, links: ReadonlyMap<string, EffectiveLink>) {
    topology.sites.forEach((s, i) => this.#index.set(s.id, i));
    this.#adj = topology.sites.map(() => []);
    for (const l of links.values()) {
      if (!l.up) continue;
      const a = this.#index.get(l.a);
      const b = this.#index.get(l.b);
      if (a === undefined || b === undefined) continue;
      this.#adj[a]!.push({ to: b, id: l.id, link: l });
      this.#adj[b]!.push({ to: a, id: l.id, link: l });
    }
  }

  /** Link ids of the best path from `src` to `dst` using none of `avoid`, or null. */
  bestAvoiding(src: string, dst: string, avoid: ReadonlySet<string>, objective: Objective): string[] | null {
    const s = this.#index.get(src);
    const d = this.#index.get(dst);
    if (s === undefined || d === undefined) return null;
    const n = this.#adj.length;
    const w = new Float64Array(n).fill(Infinity);
    const hops = new Int32Array(n);
    const lat = new Float64Array(n);
    const via: (Edge | null)[] = new Array<Edge | null>(n).fill(null);
    const from = new Int32Array(n).fill(-1);
    const done = new Uint8Array(n);
    w[s] = 0;
    // Sites are few (tens to hundreds) and this runs for the few routes that need it: a linear
    // scan for the minimum is simpler than a heap and fast enough.
    for (;;) {
      let u = -1;
      for (let i = 0; i < n; i++) {
        if (done[i] === 1 || w[i] === Infinity) continue;
        if (u === -1 || better(w[i]!, hops[i]!, lat[i]!, w[u]!, hops[u]!, lat[u]!)) u = i;
      }
      if (u === -1 || u === d) break;
      done[u] = 1;
      for (const e of this.#adj[u]!) {
        if (done[e.to] === 1 || avoid.has(e.id)) continue;
        const cw = w[u]! + weight(e.link, objective);
        const ch = hops[u]! + 1;
        const cl = lat[u]! + e.link.latencyMs;
        if (better(cw, ch, cl, w[e.to]!, hops[e.to]!, lat[e.to]!)) {
          w[e.to] = cw;
          hops[e.to] = ch;
          lat[e.to] = cl;
          via[e.to] = e;
          from[e.to] = u;
        }
      }
    }
    if (w[d] === Infinity) return null;
    const ids: string[] = [];
    for (let at = d; at !== s; at = from[at]!) ids.push(via[at]!.id);
    return ids.reverse();
  }
}

function weight(l: EffectiveLink, objective: Objective): number {
  switch (objective) {
    case 'latency':
      return l.latencyMs;
    case 'cost':
      return l.cost;
    case 'hops':
      return 1;
    default: {
      const never: never = objective;
      throw new Error(`unknown objective ${String(never)}`);
    }
  }
}

function better(w1: number, h1: number, l1: number, w2: number, h2: number, l2: number): boolean {
  // 1e-9: sums of the same link metrics in another order must tie.
  if (Math.abs(w1 - w2) > 1e-9) return w1 < w2;
  if (h1 !== h2) return h1 < h2;
  return l1 < l2 - 1e-9;
}
