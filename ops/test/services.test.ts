import t from 'tap';
import { execFileSync } from 'node:child_process';
import { startInflux, startRedis, startSnmpd, tcpOpen } from '../src/index';

function has(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`]);
    return true;
  } catch {
    return false;
  }
}

t.test(
  'private redis-server starts, restarts and goes away',
  { skip: !has('redis-server') && 'redis-server not installed (.ci/run installs it)' },
  async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.dispose());
    t.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
    t.ok(await tcpOpen('127.0.0.1', redis.port), 'accepts connections');
    await redis.stop();
    t.notOk(await tcpOpen('127.0.0.1', redis.port), 'stopped');
    await redis.restart();
    t.ok(await tcpOpen('127.0.0.1', redis.port), 'back on the same port');
  },
);

t.test(
  'private influxd answers /ping',
  { skip: !has('influxd') && 'influxd not installed (.ci/run installs it)' },
  async (t) => {
    const influx = await startInflux();
    t.teardown(() => influx.dispose());
    const res = await fetch(`${influx.url}/ping`);
    t.equal(res.status, 204);
  },
);

t.test(
  'private snmpd answers on UDP',
  { skip: !has('snmpd') && 'snmpd not installed (.ci/run installs it)' },
  async (t) => {
    const snmpd = await startSnmpd();
    t.teardown(() => snmpd.dispose());
    t.ok(snmpd.port > 0);
    t.equal(snmpd.community, 'meridian-test');
    const out = execFileSync('snmpget', [
      '-v2c',
      '-c',
      snmpd.community,
      `127.0.0.1:${snmpd.port}`,
      '1.3.6.1.2.1.1.3.0',
    ]).toString();
    t.match(out, /Timeticks/);
  },
);
