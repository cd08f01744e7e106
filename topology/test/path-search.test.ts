import t from 'tap';
import { aStar, aStarReverse, walkFromRoot, walkTree } from '../src/path-search';
import { RouteContext } from '../src/route-context';
import { shortestTree } from '../src/route-graph';
import { prng, randomState, randomTopology } from './fixtures-random';

// The route engine searches from whichever end has a shortest-path tree already; both directions
// must give the same path (ties broken by sites, then links, from the source) on every input.
t.test('searches guided by the source tree equal those guided by the destination tree', (t) => {
  let pairs = 0;
  let mismatches = 0;
  const failures: string[] = [];
  for (let c = 0; c < 150; c++) {
    const rnd = prng(7000 + c);
    const topology = randomTopology(rnd, 3 + Math.floor(rnd() * 8));
    const ctx = new RouteContext(topology, c % 4 === 0 ? undefined : randomState(rnd, topology));
    const g = ctx.graph;
    for (const cls of topology.classes) {
      const allowed = ctx.usable(cls).allowed;
      const w = ctx.weights(cls.objective);
      const trees = Array.from({ length: g.n }, (_, r) => shortestTree(g, r, allowed, w));
      for (let src = 0; src < g.n; src++) {
        for (let dst = 0; dst < g.n; dst++) {
          if (src === dst) continue;
          pairs++;
          const forward = walkTree(g, trees[dst]!, src, dst, allowed, w);
          const reverse = walkFromRoot(g, trees[src]!, src, dst, allowed, w);
          // Removed links: the forward best path (the backup search's case), or random links.
          const removed =
            forward !== null && rnd() < 0.7
              ? forward
              : topology.links.filter(() => rnd() < 0.3).map((l) => g.linkIndex.get(l.id)!);
          const a = aStar(g, src, dst, allowed, removed, w, trees[dst]!);
          const b = aStarReverse(g, src, dst, allowed, removed, w, trees[src]!);
          if (
            JSON.stringify(forward) !== JSON.stringify(reverse) ||
            JSON.stringify(a) !== JSON.stringify(b)
          ) {
            mismatches++;
            if (failures.length < 3) {
              failures.push(
                `case ${c} ${cls.id} ${g.siteIds[src]}->${g.siteIds[dst]}: walk ${String(forward)} vs ${String(reverse)}, without [${String(removed)}] ${String(a)} vs ${String(b)}`,
              );
            }
          }
        }
      }
    }
  }
  t.equal(mismatches, 0, `same paths both ways${failures.length > 0 ? `: ${failures.join(' | ')}` : ''}`);
  t.comment(`${pairs} (class, pair) searches compared`);
  t.end();
});
