import { Redis } from 'ioredis';
import t from 'tap';
import { API_TOKEN, eventually, hello, openStream, ops, report, startController } from './helpers';

t.test('link state and presence in a real Redis, across a Redis restart', async (t) => {
  const redis = await ops.startRedis();
  t.teardown(() => redis.dispose());
  const c = await startController({ redisUrl: redis.url, redis: { flushIntervalMs: 100 } });
  t.teardown(() => c.stop());
  const base = `http://127.0.0.1:${c.ports.http}`;
  const health = async () =>
    ((await (await fetch(`${base}/api/v1/health`)).json()) as { redis: string }).redis;
  const reader = new Redis(redis.url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    retryStrategy: () => 200,
  });
  reader.on('error', () => undefined);
  await reader.connect();
  t.teardown(() => reader.disconnect());
  const sub = new Redis(redis.url, { lazyConnect: true });
  sub.on('error', () => undefined);
  await sub.connect();
  const events: { type: string; id?: string; site?: string }[] = [];
  sub.on('message', (_ch: string, msg: string) => events.push(JSON.parse(msg) as { type: string }));
  await sub.subscribe('meridian:events');
  t.teardown(() => sub.disconnect());

  const bj1 = openStream(c.ports.grpc);
  t.teardown(() => bj1.close());
  bj1.call.write(hello('bj1', 9100));
  await bj1.waitFor((m) => 'welcome' in m && !!m.welcome);

  t.test('health up; samples reach meridian:link:<id>; presence and events', async (t) => {
    t.equal(await health(), 'up');
    bj1.call.write(report('bj1-sh1-a', 'sh1', 5, 20));
    const h = await eventually(async () => {
      const x = await reader.hgetall('meridian:link:bj1-sh1-a');
      return x.samples === '5' ? x : undefined;
    });
    t.match(h, {
      id: 'bj1-sh1-a',
      a: 'bj1',
      b: 'sh1',
      up: 'true',
      latencyMs: '10',
      src: 'bj1',
      updatedAt: /^\d{4}-/,
    });
    const agent = await reader.hgetall('meridian:agent:bj1');
    t.match(agent, { site: 'bj1', connected: 'true', address: /127\.0\.0\.1/ });
    await eventually(
      () => events.some((e) => e.type === 'link-change' && e.id === 'bj1-sh1-a'),
      5000,
      'link-change event',
    );
    t.pass('link-change published on meridian:events');
  });

  t.test('Redis killed: health down, API keeps serving; restarted: state written back', async (t) => {
    await redis.stop();
    await eventually(async () => (await health()) === 'down', 10_000, 'health down');
    bj1.call.write(report('bj1-sh1-a', 'sh1', 7, 30));
    const res = await fetch(`${base}/api/v1/links`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    const links = ((await res.json()) as { links: { id: string; samples: number }[] }).links;
    t.equal(links.find((l) => l.id === 'bj1-sh1-a')!.samples, 12, 'served from memory while Redis is down');
    await redis.restart(); // no persistence: it comes back empty
    await eventually(async () => (await health()) === 'up', 15_000, 'health up');
    const h = await eventually(
      async () => {
        const x = await reader.hgetall('meridian:link:bj1-sh1-a').catch((): Record<string, string> => ({}));
        return x.samples === '12' ? x : undefined;
      },
      15_000,
      'link written back',
    );
    t.equal(h.up, 'true');
    const agent = await eventually(async () => {
      const x = await reader.hgetall('meridian:agent:bj1');
      return x.connected === 'true' ? x : undefined;
    });
    t.equal(agent.site, 'bj1', 'presence written back');
    const all = await reader.keys('meridian:link:*');
    t.equal(all.length, 4, 'every link written back');
  });
});

t.test('Redis down at start: controller starts on memory, catches up when Redis comes', async (t) => {
  const redis = await ops.startRedis();
  await redis.stop();
  t.teardown(() => redis.dispose());
  const c = await startController({ redisUrl: redis.url, redis: { flushIntervalMs: 100 } });
  t.teardown(() => c.stop());
  t.equal(c.health().redis, 'down');
  const bj1 = openStream(c.ports.grpc);
  t.teardown(() => bj1.close());
  bj1.call.write(hello('bj1', 9100));
  await bj1.waitFor((m) => 'welcome' in m && !!m.welcome);
  bj1.call.write(report('bj1-sh1-b', 'sh1', 4, 8));
  await eventually(() => c.estimator.snapshot('bj1-sh1-b')!.samples === 4);
  await redis.restart();
  await eventually(() => c.health().redis === 'up', 15_000, 'redis up');
  const reader = new Redis(redis.url);
  t.teardown(() => reader.disconnect());
  const h = await eventually(async () => {
    const x = await reader.hgetall('meridian:link:bj1-sh1-b');
    return x.samples === '4' ? x : undefined;
  });
  t.equal(h.up, 'true');
});
