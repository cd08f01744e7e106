import { InfluxDB } from 'influx';
import t from 'tap';
import pino from 'pino';
import { InfluxHistoryWriter, PointBuffer, type HistoryPoint } from '../src/index';
import { eventually, hello, openStream, ops, report, sleep, startController } from './helpers';

const point = (n: number): HistoryPoint => ({
  measurement: 'link_probe',
  tags: { link: 'l', src: 'a', dst: 'b' },
  fields: { rtt_ms: n, jitter_ms: 0, loss_pct: 0 },
  timestamp: 1_800_000_000_000 + n,
});

t.test('PointBuffer: FIFO, drop oldest when full, failed batch back in front', (t) => {
  const b = new PointBuffer(3);
  for (let i = 0; i < 5; i++) b.push(point(i));
  t.equal(b.size, 3);
  t.equal(b.dropped, 2);
  const batch = b.take(2);
  t.same(
    batch.map((p) => p.timestamp % 1000),
    [2, 3],
  );
  b.push(point(5));
  b.unshift(batch);
  t.equal(b.size, 3);
  t.equal(b.dropped, 3, 'one of the batch did not fit');
  t.same(
    b.take(10).map((p) => p.timestamp % 1000),
    [3, 4, 5],
  );
  t.end();
});

async function count(influx: InfluxDB, measurement: string): Promise<number> {
  const rows = await influx.query<{ count: number }>(`SELECT count(*) FROM "raw"."${measurement}"`);
  const r = rows[0] as unknown as Record<string, number> | undefined;
  if (!r) return 0;
  return Math.max(
    ...Object.entries(r)
      .filter(([k]) => k.startsWith('count'))
      .map(([, v]) => v),
  );
}

t.test('history in a real InfluxDB across an InfluxDB restart', async (t) => {
  const influxd = await ops.startInflux();
  t.teardown(() => influxd.dispose());
  const c = await startController({
    influxUrl: influxd.url,
    historyIntervalMs: 100,
    influx: { flushIntervalMs: 200, maxBuffered: 100_000 },
  });
  t.teardown(() => c.stop());
  const reader = new InfluxDB({ host: '127.0.0.1', port: influxd.port, database: 'meridian' });

  t.test('database and retention policies created', async (t) => {
    t.ok((await reader.getDatabaseNames()).includes('meridian'));
    const rps = await reader.showRetentionPolicies('meridian');
    t.match(
      rps.find((r) => r.name === 'raw'),
      { default: true },
    );
    t.ok(rps.some((r) => r.name === 'long'));
    t.equal(c.health().influx, 'up');
  });

  const bj1 = openStream(c.ports.grpc);
  t.teardown(() => bj1.close());
  bj1.call.write(hello('bj1', 9100));
  await bj1.waitFor((m) => 'welcome' in m && !!m.welcome);
  let feeding = true;
  const feed = (async () => {
    while (feeding) {
      bj1.call.write(report('bj1-sh1-a', 'sh1', 2, 20));
      await sleep(50);
    }
  })();
  t.teardown(async () => {
    feeding = false;
    await feed;
  });

  t.test('link_probe points with tags link/src/dst', async (t) => {
    await eventually(async () => (await count(reader, 'link_probe')) >= 3, 10_000, 'points in influx');
    const rows = await reader.query<{ link: string; src: string; dst: string; rtt_ms: number }>(
      'SELECT * FROM "raw"."link_probe" LIMIT 1',
    );
    t.match(rows[0], { link: 'bj1-sh1-a', src: 'bj1', dst: 'sh1', rtt_ms: 20, jitter_ms: 0, loss_pct: 0 });
  });

  t.test('InfluxDB stopped: buffered; restarted: flushed, nothing lost', async (t) => {
    await influxd.stop();
    await eventually(() => c.health().influx === 'down', 10_000, 'influx down');
    await eventually(() => c.history.stats().buffered >= 10, 10_000, 'points buffered');
    t.ok(c.history.stats().buffered >= 10, `buffered ${c.history.stats().buffered} while down`);
    await influxd.restart();
    await eventually(() => c.health().influx === 'up', 20_000, 'influx up');
    feeding = false;
    await feed;
    await sleep(300); // the last history tick
    await eventually(() => c.history.stats().buffered === 0, 20_000, 'buffer drained');
    const stats = c.history.stats();
    t.equal(stats.dropped, 0);
    const n = await count(reader, 'link_probe');
    t.equal(n, stats.written, `every point written reached InfluxDB (${n})`);
  });
});

t.test('a full buffer drops the oldest points and counts them', async (t) => {
  const influxd = await ops.startInflux();
  t.teardown(() => influxd.dispose());
  const w = new InfluxHistoryWriter({
    url: influxd.url,
    log: pino({ level: 'silent' }),
    maxBuffered: 50,
    flushIntervalMs: 100,
  });
  await w.start();
  await influxd.stop();
  for (let i = 0; i < 120; i++) w.write(point(i));
  await eventually(() => w.health() === 'down', 10_000, 'writer down');
  t.equal(w.stats().buffered, 50);
  t.equal(w.stats().dropped, 70);
  await influxd.restart();
  // `buffered` reaches 0 when the last batch is taken, before InfluxDB has acknowledged it.
  await eventually(() => w.stats().written === 50, 20_000, 'flushed and acknowledged');
  const reader = new InfluxDB({ host: '127.0.0.1', port: influxd.port, database: 'meridian' });
  const rows = await reader.query<{ rtt_ms: number }>('SELECT rtt_ms FROM "raw"."link_probe"');
  t.same(
    rows.map((r) => r.rtt_ms),
    Array.from({ length: 50 }, (_, k) => 70 + k),
    'the newest 50 kept',
  );
  await w.close();
});
