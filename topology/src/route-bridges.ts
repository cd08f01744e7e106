/**
 * Bridges of the routing graph: links whose removal disconnects their two ends. Every simple path
 * between two sites crosses every bridge that separates them, and a bridge on one simple path
 * separates its ends; so the bridges on a primary are links that every other path shares with it.
 * `RouteEngine` uses this to prove that a change cannot give a route a backup sharing fewer links.
 */
import type { RouteGraph } from './route-graph';

/**
 * Per link, 1 when it is a bridge of the graph of the links with `allowed[e] = 1` (parallel links
 * between the same two sites are never bridges). Tarjan's low-link, iterative.
 */
export function bridgeLinks(g: RouteGraph, allowed: Uint8Array): Uint8Array {
  const n = g.n;
  const out = new Uint8Array(g.m);
  const order = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const parentLink = new Int32Array(n).fill(-1);
  const cursor = new Int32Array(n);
  const stack: number[] = [];
  let time = 0;
  for (let root = 0; root < n; root++) {
    if (order[root] !== -1) continue;
    order[root] = low[root] = time++;
    cursor[root] = g.adjStart[root]!;
    stack.push(root);
    while (stack.length > 0) {
      const u = stack[stack.length - 1]!;
      const k = cursor[u]!;
      if (k < g.adjStart[u + 1]!) {
        cursor[u] = k + 1;
        const e = g.adjLink[k]!;
        if (allowed[e] === 0 || e === parentLink[u]) continue;
        const v = g.adjNbr[k]!;
        if (order[v] === -1) {
          order[v] = low[v] = time++;
          parentLink[v] = e;
          cursor[v] = g.adjStart[v]!;
          stack.push(v);
        } else if (order[v]! < low[u]!) {
          low[u] = order[v]!;
        }
        continue;
      }
      stack.pop();
      const e = parentLink[u]!;
      if (e < 0) continue;
      const p = g.other(e, u);
      if (low[u]! < low[p]!) low[p] = low[u]!;
      if (low[u]! > order[p]!) out[e] = 1;
    }
  }
  return out;
}
