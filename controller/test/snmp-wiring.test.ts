import { EventEmitter } from 'node:events';
import { InfluxDB } from 'influx';
import t from 'tap';
import type { Topology } from '@meridian/topology';
import { SnmpPoller } from '../src/index';
import { API_TOKEN, eventually, ops, quietLog, smallTopology, startController } from './helpers';

interface SnmpdLike {
  readonly port: number;
  readonly community: string;
  dispose(): Promise<void>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSnmpd } = require('@meridian/ops') as { startSnmpd: () => Promise<SnmpdLike> };

t.test(
  'SNMP counters from a real snmpd reach /api/v1/interfaces, Redis-free state and InfluxDB if_counters',
  async (t) => {
    const snmpd = await startSnmpd();
    t.teardown(() => snmpd.dispose());
    const influxd = await ops.startInflux();
    t.teardown(() => influxd.dispose());
    const base = smallTopology();
    const topology: Topology = {
      ...base,
      devices: [
        {
          id: 'bj1-r1',
          site: 'bj1',
          driver: 'linux',
          snmp: { host: '127.0.0.1', port: snmpd.port, community: snmpd.community, version: '2c' },
          interfaces: [{ ifName: 'lo', link: 'bj1-sh1-a' }],
        },
      ],
    };
    const snmp = new SnmpPoller({ devices: topology.devices, intervalMs: 300, log: quietLog });
    const c = await startController({
      topology,
      snmp,
      influxUrl: influxd.url,
      influx: { flushIntervalMs: 200 },
    });
    t.teardown(() => c.stop());

    const res = await eventually(
      async () => {
        const r = await fetch(`http://127.0.0.1:${c.ports.http}/api/v1/interfaces`, {
          headers: { authorization: `Bearer ${API_TOKEN}` },
        });
        const j = (await r.json()) as { interfaces: Record<string, unknown>[] };
        return j.interfaces.length > 0 ? j.interfaces : undefined;
      },
      15_000,
      'interfaces',
    );
    t.match(res[0], {
      device: 'bj1-r1',
      ifName: 'lo',
      link: 'bj1-sh1-a',
      operUp: true,
      inBps: Number,
      outBps: Number,
      updatedAt: /^\d{4}-/,
    });
    t.same(
      Object.keys(res[0]!).sort(),
      ['device', 'ifName', 'inBps', 'link', 'operUp', 'outBps', 'updatedAt', 'utilPct'].sort(),
    );
    t.ok(c.store.get('meridian:if:bj1-r1:lo'), 'interface hash in the store');
    const reader = new InfluxDB({ host: '127.0.0.1', port: influxd.port, database: 'meridian' });
    const rows = await eventually(
      async () => {
        const r = await reader.query<{ device: string; ifname: string; link: string; oper_up: boolean }>(
          'SELECT * FROM "raw"."if_counters"',
        );
        return r.length > 0 ? r : undefined;
      },
      15_000,
      'if_counters in influx',
    );
    t.match(rows[0], { device: 'bj1-r1', ifname: 'lo', link: 'bj1-sh1-a', oper_up: true });
  },
);

t.test('utilisation from the poller feeds the link state', async (t) => {
  const fake = Object.assign(new EventEmitter(), { start() {}, stop() {} });
  const c = await startController({ snmp: fake });
  t.teardown(() => c.stop());
  fake.emit('counters', {
    device: 'r',
    ifName: 'eth0',
    link: 'sh1-sh2',
    operUp: true,
    inBps: 5e8,
    outBps: 1e8,
    utilPct: 50,
    updatedAt: Date.now(),
  });
  t.equal(c.estimator.snapshot('sh1-sh2')!.utilPct, 50);
  t.equal(c.interfaces().length, 1);
});
