/**
 * The routes and policies HTTP API on a real controller (real listen, bearer auth), with raw gRPC
 * agents applying what is pushed and a real Redis for the audit stream.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import t from 'tap';
import { computeRoutes, routesJson } from '@meridian/topology';
import {
  API_TOKEN,
  eventually,
  hello,
  openStream,
  ops,
  report,
  smallTopology,
  startController,
} from './helpers';
import { allApplied, api, connectAgents, planFor } from './policy-helpers';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'meridian.js');
const SITES = ['bj1', 'sh1', 'sh2'];
const plan = planFor(smallTopology());

async function fetchText(port: number, p: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1${p}`, {
    headers: { authorization: `Bearer ${API_TOKEN}` },
  });
  return res.text();
}

t.test('GET /api/v1/routes', async (t) => {
  const c = await startController({ hysteresis: false });
  t.teardown(() => c.stop());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mrd-routes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { source: _source, ...topo } = smallTopology();
  const topoFile = path.join(dir, 'topology.yaml');
  writeFileSync(topoFile, JSON.stringify(topo));

  // bj1-sh1-a dies and bj1-sh2 is measured slow: routes move.
  const s = openStream(c.ports.grpc);
  t.teardown(() => s.close());
  s.call.write(hello('bj1', 9100));
  await s.waitFor((m) => 'welcome' in m && !!m.welcome);
  s.call.write(report('bj1-sh1-a', 'sh1', 0, 0, 5));
  s.call.write(report('bj1-sh2', 'sh2', 20, 90));
  await eventually(
    () =>
      c.routeLoop.state.links['bj1-sh1-a']?.up === false && c.routeLoop.state.links['bj1-sh2'] !== undefined,
  );

  t.test('exactly `meridian routes --json` for the same state', async (t) => {
    const stateFile = path.join(dir, 'state.json');
    writeFileSync(stateFile, JSON.stringify(c.routeLoop.state));
    const body = await fetchText(c.ports.http, '/routes');
    const { stdout } = await promisify(execFile)(process.execPath, [
      BIN,
      'routes',
      '--topology',
      topoFile,
      '--state',
      stateFile,
      '--json',
    ]);
    t.equal(body, stdout.trim(), 'byte for byte');
    t.same(JSON.parse(body), routesJson(computeRoutes(c.topology, { state: c.routeLoop.state }).routes));
    const r = (JSON.parse(body) as { routes: { src: string; dst: string; primary: { links: string[] } }[] })
      .routes;
    t.same(r.find((x) => x.src === 'bj1' && x.dst === 'sh1')?.primary.links, ['bj1-sh1-b'], 'state applied');
  });

  t.test('filters', async (t) => {
    const all = (await api(c, 'GET', '/routes')).json.routes as { class: string; src: string; dst: string }[];
    t.equal(all.length, 6);
    const from = await api(c, 'GET', '/routes?from=bj1');
    t.same(
      from.json.routes,
      all.filter((r) => r.src === 'bj1'),
    );
    const both = await api(c, 'GET', '/routes?class=voice&from=sh2&to=bj1');
    t.same(
      both.json.routes,
      all.filter((r) => r.src === 'sh2' && r.dst === 'bj1'),
    );
    t.equal(both.json.routes.length, 1);
  });

  t.test('400 names the field, 401 without the token', async (t) => {
    for (const [q, field] of [
      ['class=video', 'class'],
      ['from=nowhere', 'from'],
      ['to=bj9', 'to'],
      ['to=', 'to'],
    ] as const) {
      const r = await api(c, 'GET', `/routes?${q}`);
      t.equal(r.status, 400, q);
      t.equal(r.json.error.code, 'CTRL_ERR_BAD_REQUEST');
      t.match(r.json.error.message, field, `${q}: message names ${field}`);
    }
    t.equal((await api(c, 'GET', '/routes', undefined, null)).status, 401);
    const wrong = await api(c, 'GET', '/routes', undefined, 'nope');
    t.equal(wrong.status, 401);
    t.equal(wrong.json.error.code, 'CTRL_ERR_UNAUTHENTICATED');
    t.equal((await api(c, 'GET', '/policies', undefined, null)).status, 401);
    t.equal((await api(c, 'POST', '/policies/rollback', { version: 1 }, null)).status, 401);
  });

  t.test('no plan: policies are not distributed, rollback is refused', async (t) => {
    const p = await api(c, 'GET', '/policies');
    t.same(p.json, { distributing: false, current: { version: null, sites: {} }, versions: [], agents: [] });
    const r = await api(c, 'POST', '/policies/rollback', { version: 1 });
    t.equal(r.status, 409);
    t.equal(r.json.error.code, 'CTRL_ERR_POLICY_NO_PLAN');
  });

  t.test('cycles list the loop timings', async (t) => {
    const r = await api(c, 'GET', '/routes/cycles');
    t.equal(r.status, 200);
    t.ok(r.json.cycles.some((x: { routeChanges: number }) => x.routeChanges > 0));
  });
});

t.test('policies: list, rollback as a new version, audit', async (t) => {
  const redis = await ops.startRedis();
  t.teardown(() => redis.dispose());
  const c = await startController({ addressing: plan, redisUrl: redis.url });
  t.teardown(() => c.stop());
  const agents = await connectAgents(c, SITES);
  t.teardown(() => {
    for (const a of agents.values()) a.close();
  });
  await eventually(() => allApplied(c, SITES), 10_000, 'v1 applied');
  agents.get('bj1')!.stream!.call.write(report('bj1-sh1-a', 'sh1', 0, 0, 5));
  await eventually(() => c.policies.versions().length === 2 && allApplied(c, SITES), 10_000, 'v2 applied');

  t.test('GET /api/v1/policies', async (t) => {
    const r = await api(c, 'GET', '/policies');
    t.equal(r.status, 200);
    t.equal(r.json.distributing, true);
    t.equal(r.json.current.version, 2);
    t.same(Object.keys(r.json.current.sites), SITES);
    t.same(
      r.json.versions.map((v: { version: number }) => v.version),
      [2, 1],
      'newest first',
    );
    t.match(r.json.versions[1], { version: 1, reason: 'routes', rollbackOf: null, sites: SITES });
    t.equal(r.json.agents.length, 3);
    for (const a of r.json.agents) {
      t.match(a, {
        status: 'applied',
        version: 2,
        appliedVersion: 2,
        connected: true,
        attempts: 1,
        error: null,
      });
      t.equal(a.hash, r.json.current.sites[a.site].hash);
    }
  });

  t.test('rollback to v1: a new version with v1 content, pushed and applied', async (t) => {
    const r = await api(c, 'POST', '/policies/rollback', { version: 1 });
    t.equal(r.status, 200);
    t.same(r.json, { rollbackOf: 1, version: 3, sites: SITES });
    for (const s of SITES) {
      const v1 = await c.policies.get(s, 1);
      const v3 = await c.policies.get(s, 3);
      t.equal(v3!.hash, v1!.hash, `${s}: same content`);
      const { version: _a, ...c1 } = v1!;
      const { version: _b, ...c3 } = v3!;
      t.same(c3, c1);
      const push = await agents.get(s)!.waitPush((p) => p.version === 3);
      t.equal(push.hash, v1!.hash);
    }
    await eventually(
      () => allApplied(c, SITES) && c.distributor.statusOf('bj1')!.version === 3,
      10_000,
      'v3 applied',
    );
    const meta = c.policies.versions().at(-1)!;
    t.match(meta, { version: 3, reason: 'rollback', rollbackOf: 1 });
    const again = await api(c, 'POST', '/policies/rollback', { version: 3 });
    t.same(again.json, { rollbackOf: 3, version: null, sites: [] }, 'nothing differs: no version');
  });

  t.test('the rollback is in the audit stream', async (t) => {
    const reader = new Redis(redis.url);
    t.teardown(() => reader.disconnect());
    const rows = await reader.xrange('meridian:audit', '-', '+');
    const first = rows[0]![1];
    t.equal(first[first.indexOf('action') + 1], 'policy.rollback');
    t.match(JSON.parse(first[first.indexOf('detail') + 1]!), { rollbackOf: 1, version: 3, sites: SITES });
    const r = await api(c, 'GET', '/policies/audit');
    t.match(r.json.entries[0], { action: 'policy.rollback', detail: { rollbackOf: 1, version: 3 } });
  });

  t.test('rollback errors', async (t) => {
    const unknown = await api(c, 'POST', '/policies/rollback', { version: 99 });
    t.equal(unknown.status, 404);
    t.equal(unknown.json.error.code, 'CTRL_ERR_POLICY_UNKNOWN_VERSION');
    t.match(unknown.json.error.message, '99');
    for (const body of [
      {},
      { version: 0 },
      { version: 'one' },
      { version: 1.5 },
      { version: 1, force: true },
      'not json',
    ]) {
      const r = await api(c, 'POST', '/policies/rollback', body);
      t.equal(r.status, 400, JSON.stringify(body));
      t.equal(r.json.error.code, 'CTRL_ERR_BAD_REQUEST');
    }
    t.equal(c.policies.versions().length, 3, 'no version issued by a bad request');
  });

  t.test('GET /api/v1/policies/sites/:site: a site policy as pushed, now or as of a version', async (t) => {
    const now = await api(c, 'GET', '/policies/sites/bj1');
    t.equal(now.status, 200);
    t.match(now.json, { site: 'bj1', version: 3, asOf: 3, hash: c.distributor.statusOf('bj1')!.hash });
    t.same(now.json.policy, await c.policies.get('bj1', 3));
    // As of v2: bj1's latest policy of a version <= 2.
    const bj1At2 = Math.max(
      ...c.policies
        .versions()
        .filter((m) => m.version <= 2 && m.sites.includes('bj1'))
        .map((m) => m.version),
    );
    const at2 = await api(c, 'GET', '/policies/sites/bj1?version=2');
    t.match(at2.json, { site: 'bj1', version: bj1At2, asOf: 2 });
    t.same(at2.json.policy, await c.policies.get('bj1', bj1At2));
    const at1 = await api(c, 'GET', '/policies/sites/sh2?version=1');
    t.match(at1.json, { site: 'sh2', version: 1, asOf: 1, policy: { site: 'sh2', version: 1 } });

    const cases: [string, number, string, RegExp][] = [
      ['/policies/sites/nope', 400, 'CTRL_ERR_BAD_REQUEST', /params\.site: unknown site 'nope'/],
      ['/policies/sites/bj1?version=99', 404, 'CTRL_ERR_POLICY_UNKNOWN_VERSION', /99/],
      ['/policies/sites/bj1?version=0', 400, 'CTRL_ERR_BAD_REQUEST', /version/],
      ['/policies/sites/bj1?version=abc', 400, 'CTRL_ERR_BAD_REQUEST', /version/],
      ['/policies/sites/bj1?verison=1', 400, 'CTRL_ERR_BAD_REQUEST', /query\.verison: unknown field/],
    ];
    for (const [p, status, code, message] of cases) {
      const r = await api(c, 'GET', p);
      t.equal(r.status, status, p);
      t.match(r.json.error, { code, message }, p);
    }
    t.equal((await api(c, 'GET', '/policies/sites/bj1', undefined, null)).status, 401);
  });
});

t.test('GET /api/v1/policies/sites/:site before any policy: 404 naming the site', async (t) => {
  const c = await startController({});
  t.teardown(() => c.stop());
  const r = await api(c, 'GET', '/policies/sites/bj1');
  t.equal(r.status, 404);
  t.match(r.json.error, { code: 'CTRL_ERR_NOT_FOUND', message: /bj1 had no policy yet/ });
});

t.test('a topology over routeLoop.maxRoutes: the loop is off and says so', async (t) => {
  const c = await startController({ addressing: plan, routeLoop: { maxRoutes: 5 } });
  t.teardown(() => c.stop());
  t.equal(c.routeLoop.enabled, false);
  t.same(c.routes, []);
  const r = await api(c, 'GET', '/routes');
  t.equal(r.status, 503);
  t.equal(r.json.error.code, 'CTRL_ERR_ROUTES_DISABLED');
  t.equal((await api(c, 'GET', '/policies')).json.distributing, false);
});

t.test("maxRoutes counts the routes the topology's routing scope asks for", async (t) => {
  const topology = smallTopology();
  const perPair = topology.classes.length;
  // Full mesh: 3 sites × 2 = 6 pairs; hub-and-spoke around bj1: bj1<->sh1, bj1<->sh2 = 4 pairs.
  const maxRoutes = 5 * perPair;
  const full = await startController({ topology, routeLoop: { maxRoutes } });
  t.teardown(() => full.stop());
  t.equal(full.routeLoop.enabled, false, `full mesh: ${6 * perPair} routes are over ${maxRoutes}`);
  const scoped = await startController({
    topology: { ...topology, routing: { scope: 'hub-and-spoke', hubs: ['bj1'] } },
    routeLoop: { maxRoutes },
  });
  t.teardown(() => scoped.stop());
  t.equal(scoped.routeLoop.enabled, true, `hub-and-spoke: ${4 * perPair} routes`);
  t.same(
    [...new Set(scoped.routes.map((r) => `${r.src}>${r.dst}`))].sort(),
    ['bj1>sh1', 'bj1>sh2', 'sh1>bj1', 'sh2>bj1'],
    'no spoke-to-spoke routes',
  );
});
