import t from 'tap';
import { Controller } from '../src/index';
import { AGENT_TOKEN, API_TOKEN, quietLog, smallTopology, startController } from './helpers';

t.test('HTTP API on a real listen()', async (t) => {
  const c = await startController();
  t.teardown(() => c.stop());
  const base = `http://127.0.0.1:${c.ports.http}`;

  t.test('health needs no token and says embedded', async (t) => {
    const res = await fetch(`${base}/api/v1/health`);
    t.equal(res.status, 200);
    t.same(await res.json(), { status: 'ok', redis: 'embedded', influx: 'embedded' });
  });

  t.test('401 without or with a wrong token, catalog error body', async (t) => {
    for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: 'Basic abc' }] as Record<
      string,
      string
    >[]) {
      for (const p of ['links', 'agents', 'interfaces']) {
        const res = await fetch(`${base}/api/v1/${p}`, { headers });
        t.equal(res.status, 401, `${p} ${JSON.stringify(headers)}`);
        const body = (await res.json()) as { error: { code: string; message: string } };
        t.equal(body.error.code, 'CTRL_ERR_UNAUTHENTICATED');
        t.type(body.error.message, 'string');
      }
    }
  });

  t.test('links, agents, interfaces have exactly the contract shapes', async (t) => {
    const auth = { authorization: `Bearer ${API_TOKEN}` };
    const links = (await (await fetch(`${base}/api/v1/links`, { headers: auth })).json()) as {
      links: object[];
    };
    t.equal(links.links.length, 4);
    t.same(
      Object.keys(links.links[0]!).sort(),
      ['a', 'b', 'id', 'jitterMs', 'latencyMs', 'lossPct', 'samples', 'up', 'updatedAt', 'utilPct'].sort(),
    );
    t.match(links.links[0], { id: 'bj1-sh1-a', a: 'bj1', b: 'sh1', up: null, samples: 0, updatedAt: null });
    const agents = (await (await fetch(`${base}/api/v1/agents`, { headers: auth })).json()) as {
      agents: object[];
    };
    t.same(agents.agents[0], {
      site: 'bj1',
      connected: false,
      address: null,
      lastSeen: null,
      forwarding: null,
    });
    const ifs = await (await fetch(`${base}/api/v1/interfaces`, { headers: auth })).json();
    t.same(ifs, { interfaces: [] });
  });

  t.test('unknown route: 404 with catalog code', async (t) => {
    const res = await fetch(`${base}/api/v1/nope`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    t.equal(res.status, 404);
    t.equal(((await res.json()) as { error: { code: string } }).error.code, 'CTRL_ERR_NOT_FOUND');
  });
});

t.test('HTTP plugins added before start inherit auth', async (t) => {
  const c = new Controller({
    topology: smallTopology(),
    apiToken: API_TOKEN,
    agentToken: AGENT_TOKEN,
    grpc: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    log: quietLog,
  });
  c.addHttpPlugin((app) => {
    app.get('/extra', () => ({ ok: true }));
    return Promise.resolve();
  });
  await c.start();
  t.teardown(() => c.stop());
  const base = `http://127.0.0.1:${c.ports.http}`;
  t.equal((await fetch(`${base}/api/v1/extra`)).status, 401);
  const res = await fetch(`${base}/api/v1/extra`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
  t.same(await res.json(), { ok: true });
  t.throws(() => c.addHttpPlugin(() => Promise.resolve()), /before start/);
});
