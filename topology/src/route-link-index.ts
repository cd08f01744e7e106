/**
 * Which routes use which link. `RouteEngine.update` looks up the routes that lie on a changed link
 * here instead of scanning every route's paths (17,790 routes on the benchmark topology, of which a
 * one-link change typically touches a few hundred).
 */
export class LinkRouteIndex {
  /** Per link index, the routes (by position) whose paths use it; created on first use. */
  readonly #byLink: (Set<number> | undefined)[];

  constructor(links: number) {
    this.#byLink = new Array<Set<number> | undefined>(links);
  }

  /** Records that route `route` uses every link of `links` (a path, or `null` for none). */
  add(route: number, links: readonly number[] | null): void {
    if (links === null) return;
    for (const e of links) {
      let set = this.#byLink[e];
      if (set === undefined) {
        set = new Set();
        this.#byLink[e] = set;
      }
      set.add(route);
    }
  }

  /**
   * Forgets route `route` on every link of `links`. One entry stands for all of a route's paths
   * (they may share links), so callers remove only links that none of its paths uses any more.
   */
  delete(route: number, links: readonly number[] | null): void {
    if (links === null) return;
    for (const e of links) this.#byLink[e]?.delete(route);
  }

  /** The routes using at least one of `links`, in ascending order. */
  routesOn(links: readonly number[]): number[] {
    const out = new Set<number>();
    for (const e of links) for (const r of this.#byLink[e] ?? []) out.add(r);
    return [...out].sort((a, b) => a - b);
  }
}
