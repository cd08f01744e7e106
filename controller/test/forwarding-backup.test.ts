import t from 'tap';
import { REFERENCE_TOPOLOGY_PATH, computeRoutes, loadTopology, type Route } from '@meridian/topology';
import { forwardingBackups } from '../src/forwarding-backup';

const topology = loadTopology(REFERENCE_TOPOLOGY_PATH);
const shares = (r: Route): boolean =>
  r.primary !== null && r.backup !== null && r.backup.links.some((l) => r.primary!.links.includes(l));

t.test('a backup sharing a link with the primary becomes a link-disjoint protection path', (t) => {
  // edge-cd's internet link past the voice loss SLA: voice from edge-cd has no feasible backup
  // avoiding edge-cd's MPLS link, so the route engine's backup shares it.
  const state = { links: { 'edge-cd.cloud-a.internet': { lossPct: 2 } } };
  const routes = computeRoutes(topology, { state }).routes;
  const voice = routes.find((r) => r.class === 'voice' && r.src === 'edge-cd' && r.dst === 'edge-hz')!;
  t.ok(voice.backup === null || shares(voice), 'the route engine backup is not link-disjoint here');
  const { routes: out, protectedRoutes } = forwardingBackups(topology, state, routes);
  t.equal(out.length, routes.length);
  const fwd = out.find((r) => r.class === 'voice' && r.src === 'edge-cd' && r.dst === 'edge-hz')!;
  t.ok(fwd.backup !== null, 'a protection path');
  t.notOk(shares(fwd), 'it shares no link with the primary');
  t.ok(fwd.backup!.links.includes('edge-cd.cloud-a.internet'), 'through the only other link of edge-cd');
  t.equal(fwd.backup!.sites[0], 'edge-cd');
  t.equal(fwd.backup!.sites.at(-1), 'edge-hz');
  t.same(fwd.primary, voice.primary, 'the primary is untouched');
  let changed = 0;
  for (let i = 0; i < routes.length; i++) {
    const a = routes[i]!;
    const b = out[i]!;
    if (a === b) continue;
    changed++;
    if (shares(b)) t.fail(`${b.class}/${b.src}>${b.dst} still shares a link`);
  }
  t.equal(changed, protectedRoutes, 'the count is the routes changed');
  t.ok(protectedRoutes > 0);
  // Every route that was already link-disjoint passes as the same object.
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i]!;
    if (r.backup !== null && !shares(r)) t.equal(out[i], r);
  }
  t.end();
});

t.test('the protection path uses up links only; with none, the route keeps its backup', (t) => {
  const state = {
    links: {
      'edge-cd.cloud-a.internet': { up: false },
    },
  };
  const routes = computeRoutes(topology, { state }).routes;
  const { routes: out } = forwardingBackups(topology, state, routes);
  for (let i = 0; i < routes.length; i++) {
    const r = out[i]!;
    if (r.backup?.links.includes('edge-cd.cloud-a.internet'))
      t.fail(`${r.class}/${r.src}>${r.dst} uses a down link`);
    // edge-cd has one up link left: nothing avoids it, so its routes keep the engine's backup.
    if (r.src === 'edge-cd') t.equal(r, routes[i]);
  }
  t.end();
});

t.test('routes without a primary pass unchanged, and the objective ranks the protection path', (t) => {
  const routes = computeRoutes(topology, {}).routes;
  const none: Route = {
    class: 'voice',
    src: 'edge-cd',
    dst: 'edge-hz',
    status: 'unreachable',
    primary: null,
    backup: null,
  };
  const { routes: out, protectedRoutes } = forwardingBackups(topology, { links: {} }, [none]);
  t.equal(out[0], none);
  t.equal(protectedRoutes, 0);
  // A primary whose backup is null (forced): the protection path is the lowest-latency one avoiding it.
  const v = routes.find((r) => r.class === 'voice' && r.src === 'bj-a' && r.dst === 'sh-a')!;
  const forced: Route = { ...v, backup: null };
  const got = forwardingBackups(topology, { links: {} }, [forced]).routes[0]!;
  t.ok(got.backup !== null);
  t.notOk(shares(got));
  // The engine's backup is the best feasible disjoint path; without the SLA, none is faster.
  t.ok(got.backup!.latencyMs <= v.backup!.latencyMs + 1e-9, 'no slower than the engine’s disjoint backup');
  t.end();
});
