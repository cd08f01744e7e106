/**
 * End to end with real edge agents (`meridian agent` processes) on loopback: probes between them,
 * reports over gRPC, link state in /api/v1/links, Redis and InfluxDB; an agent stopped takes its
 * links down, started again brings them back up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { InfluxDB } from 'influx';
import { Redis } from 'ioredis';
import t from 'tap';
import { AGENT_TOKEN, API_TOKEN, eventually, ops, startController } from './helpers';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'meridian.js');

interface LinkJson {
  id: string;
  up: boolean | null;
  latencyMs: number | null;
  lossPct: number | null;
  samples: number;
}

function startAgent(site: string, grpcPort: number): ChildProcess {
  const child = spawn(
    process.execPath,
    [
      BIN,
      'agent',
      '--site',
      site,
      '--controller',
      `127.0.0.1:${grpcPort}`,
      '--probe-listen',
      '127.0.0.1:0',
      '--log-level',
      'warn',
    ],
    { env: { ...process.env, MERIDIAN_AGENT_TOKEN: AGENT_TOKEN }, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return child;
}

async function stopAgent(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

t.test('real agents on loopback -> controller -> API, Redis, InfluxDB; liveness down and up', async (t) => {
  const redis = await ops.startRedis();
  t.teardown(() => redis.dispose());
  const influxd = await ops.startInflux();
  t.teardown(() => influxd.dispose());
  const c = await startController({
    redisUrl: redis.url,
    influxUrl: influxd.url,
    influx: { flushIntervalMs: 250 },
  });
  t.teardown(() => c.stop());
  const agents = new Map<string, ChildProcess>();
  t.teardown(async () => {
    for (const a of agents.values()) await stopAgent(a);
  });
  for (const site of ['bj1', 'sh1', 'sh2']) agents.set(site, startAgent(site, c.ports.grpc));

  const links = async (): Promise<Map<string, LinkJson>> => {
    const res = await fetch(`http://127.0.0.1:${c.ports.http}/api/v1/links`, {
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    return new Map(((await res.json()) as { links: LinkJson[] }).links.map((l) => [l.id, l]));
  };

  t.test('every link measured and up', async (t) => {
    const all = await eventually(
      async () => {
        const m = await links();
        return [...m.values()].every((l) => l.up === true && l.samples >= 10) ? m : undefined;
      },
      30_000,
      'all links up',
    );
    for (const l of all.values()) {
      t.ok(l.latencyMs !== null && l.latencyMs >= 0, `${l.id} latency measured (${l.latencyMs} ms)`);
    }
    const agentsRes = await fetch(`http://127.0.0.1:${c.ports.http}/api/v1/agents`, {
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    const list = ((await agentsRes.json()) as { agents: { site: string; connected: boolean }[] }).agents;
    t.same(
      list
        .filter((a) => a.connected)
        .map((a) => a.site)
        .sort(),
      ['bj1', 'sh1', 'sh2'],
    );
  });

  t.test('the same state in Redis and history in InfluxDB', async (t) => {
    const r = new Redis(redis.url);
    t.teardown(() => r.disconnect());
    const h = await eventually(async () => {
      const x = await r.hgetall('meridian:link:sh1-sh2');
      return x.up === 'true' && Number(x.samples) > 0 ? x : undefined;
    });
    t.equal(h.src, 'sh1', 'the a end probes');
    const influx = new InfluxDB({ host: '127.0.0.1', port: influxd.port, database: 'meridian' });
    const rows = await eventually(
      async () => {
        const x = await influx.query<{ link: string; src: string; dst: string }>(
          `SELECT * FROM "raw"."link_probe" WHERE link = 'bj1-sh2' LIMIT 1`,
        );
        return x.length > 0 ? x : undefined;
      },
      15_000,
      'link_probe points',
    );
    t.match(rows[0], { link: 'bj1-sh2', src: 'bj1', dst: 'sh2' });
  });

  t.test('agent stopped: its links go down; restarted: up again', async (t) => {
    const t0 = Date.now();
    await stopAgent(agents.get('sh2')!);
    const down = await eventually(
      async () => {
        const m = await links();
        return m.get('bj1-sh2')!.up === false && m.get('sh1-sh2')!.up === false ? m : undefined;
      },
      15_000,
      'sh2 links down',
    );
    t.comment(
      `sh2 stopped -> both links down at the controller in ${Date.now() - t0} ms (loaded machine; benchmarks measure this properly)`,
    );
    t.equal(down.get('bj1-sh1-a')!.up, true, 'other links unaffected');
    agents.set('sh2', startAgent('sh2', c.ports.grpc));
    await eventually(
      async () => {
        const m = await links();
        return m.get('bj1-sh2')!.up === true && m.get('sh1-sh2')!.up === true;
      },
      30_000,
      'sh2 links up again',
    );
    t.pass('links up after the agent came back (new probe port announced, plan re-sent)');
  });
});
