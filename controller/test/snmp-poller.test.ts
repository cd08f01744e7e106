import t from 'tap';
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import pino from 'pino';
import type { Device } from '@meridian/topology';
import { SnmpPoller, type InterfaceCounters, type SnmpDeviceError } from '../src/snmp-poller';

const log = pino({ level: 'silent' });

// @meridian/ops is loaded with require() and typed locally, not through a tsconfig reference:
// ops (the lab) may depend on the controller, and a reference back would make a cycle.
interface SnmpdLike {
  readonly host: string;
  readonly port: number;
  readonly community: string;
  restart(): Promise<void>;
  dispose(): Promise<void>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startSnmpd } = require('@meridian/ops') as { startSnmpd: () => Promise<SnmpdLike> };

function has(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`]);
    return true;
  } catch {
    return false;
  }
}

const device = (id: string, port: number, community: string, ifNames = ['lo']): Device => ({
  id,
  site: 'A',
  driver: 'linux',
  snmp: { host: '127.0.0.1', port, community, version: '2c' },
  interfaces: ifNames.map((ifName) => ({ ifName, link: `L-${ifName}` })),
});

function collect(p: SnmpPoller): { counters: InterfaceCounters[]; errors: SnmpDeviceError[] } {
  const out = { counters: [] as InterfaceCounters[], errors: [] as SnmpDeviceError[] };
  p.on('counters', (c) => out.counters.push(c));
  p.on('device-error', (e) => out.errors.push(e));
  return out;
}

/** Pushes `bytes` of UDP through the loopback interface. */
async function loopbackTraffic(bytes: number): Promise<void> {
  const rx = dgram.createSocket('udp4');
  const tx = dgram.createSocket('udp4');
  await new Promise<void>((r) => rx.bind(0, '127.0.0.1', () => r()));
  const chunk = Buffer.alloc(8192);
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    await new Promise<void>((r) => tx.send(chunk, rx.address().port, '127.0.0.1', () => r()));
  }
  await new Promise<void>((r) => tx.close(() => r()));
  await new Promise<void>((r) => rx.close(() => r()));
}

/** A UDP socket that answers every datagram with `reply(msg)` (or stays silent when it returns null). */
async function fakeAgent(
  reply: (msg: Buffer) => Buffer | null,
): Promise<{ port: number; close(): Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    const out = reply(msg);
    if (out) sock.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { port: sock.address().port, close: () => new Promise<void>((r) => sock.close(() => r())) };
}

t.test(
  'real snmpd: lo is resolved by ifName and loopback traffic shows as inBps > 0',
  { skip: !has('snmpd') && 'snmpd not installed (.ci/run installs it)' },
  async (t) => {
    const snmpd = await startSnmpd();
    t.teardown(() => snmpd.dispose());
    const poller = new SnmpPoller({
      devices: [device('r1', snmpd.port, snmpd.community, ['lo', 'no-such-if0'])],
      timeoutMs: 2000,
      log,
    });
    t.teardown(() => poller.stop());
    const got = collect(poller);
    await poller.pollOnce();
    t.same(got.counters, [], 'first poll only sets the baseline');
    t.match(got.errors[0], { device: 'r1', code: 'CTRL_ERR_SNMP_NO_INTERFACE', message: /no-such-if0/ });
    // net-snmp caches interface statistics for a few seconds: keep traffic flowing until it shows.
    let lo: InterfaceCounters | undefined;
    for (let i = 0; i < 12 && !(lo && lo.inBps > 0); i++) {
      await loopbackTraffic(2_000_000);
      await new Promise((r) => setTimeout(r, 1000));
      await poller.pollOnce();
      lo = got.counters.filter((c) => c.ifName === 'lo').at(-1);
    }
    t.ok(lo, 'counters emitted for lo');
    t.ok(lo && lo.inBps > 0, `lo inBps ${lo?.inBps}`);
    t.ok(lo && lo.outBps > 0, `lo outBps ${lo?.outBps}`);
    t.match(lo, { device: 'r1', ifName: 'lo', link: 'L-lo', operUp: true });
    t.ok(typeof lo?.updatedAt === 'number' && Math.abs((lo?.updatedAt ?? 0) - Date.now()) < 60_000);
    t.same(
      poller.latest().map((c) => c.ifName),
      ['lo'],
    );
  },
);

t.test(
  'real snmpd restarted: uptime went back, baseline reset and ifName re-resolved, no spike',
  { skip: !has('snmpd') && 'snmpd not installed (.ci/run installs it)' },
  async (t) => {
    const snmpd = await startSnmpd();
    t.teardown(() => snmpd.dispose());
    const poller = new SnmpPoller({
      devices: [device('r1', snmpd.port, snmpd.community)],
      timeoutMs: 2000,
      log,
    });
    t.teardown(() => poller.stop());
    const got = collect(poller);
    await poller.pollOnce();
    // Let snmpd's sysUpTime grow well past what it will be right after the restart.
    await new Promise((r) => setTimeout(r, 3000));
    await poller.pollOnce();
    t.equal(got.counters.length, 1, 'rate after two polls');
    await snmpd.restart();
    await poller.pollOnce();
    t.equal(got.counters.length, 1, 'the poll across the restart gives no rate');
    await new Promise((r) => setTimeout(r, 1100));
    await poller.pollOnce();
    t.equal(got.counters.length, 1, 'first poll after the restart is the new baseline (ifName walked again)');
    await new Promise((r) => setTimeout(r, 1100));
    await poller.pollOnce();
    t.equal(got.counters.length, 2, 'rates resume');
    t.ok(
      got.counters.every((c) => c.inBps < 1e10 && c.outBps < 1e10),
      `no spike: ${got.counters.map((c) => c.inBps.toFixed(0)).join(', ')} bit/s`,
    );
    t.same(got.errors, []);
  },
);

t.test('timeouts: nothing behind the port, and a wrong community, are per-device errors', async (t) => {
  const silent = await fakeAgent(() => null);
  t.teardown(() => silent.close());
  const poller = new SnmpPoller({
    devices: [device('dead', silent.port, 'x')],
    timeoutMs: 150,
    intervalMs: 200,
    log,
  });
  t.teardown(() => poller.stop());
  const got = collect(poller);
  poller.start();
  await new Promise((r) => setTimeout(r, 800));
  await poller.stop();
  t.ok(got.errors.length >= 2, `${got.errors.length} errors, polling went on`);
  t.match(got.errors[0], { device: 'dead', code: 'CTRL_ERR_SNMP_TIMEOUT', message: /no SNMP reply/ });
  t.same(got.counters, []);
});

t.test(
  'wrong community on a real snmpd is a timeout, not a crash',
  { skip: !has('snmpd') && 'snmpd not installed (.ci/run installs it)' },
  async (t) => {
    const snmpd = await startSnmpd();
    t.teardown(() => snmpd.dispose());
    const poller = new SnmpPoller({
      devices: [device('r1', snmpd.port, 'not-the-community')],
      timeoutMs: 300,
      log,
    });
    t.teardown(() => poller.stop());
    const got = collect(poller);
    await poller.pollOnce();
    t.match(got.errors, [{ code: 'CTRL_ERR_SNMP_TIMEOUT' }]);
  },
);

t.test('garbage replies become CTRL_ERR_SNMP_BAD_REPLY and never crash the process', async (t) => {
  const garbage = [
    Buffer.from('definitely not BER'),
    Buffer.from([0x30, 0x03, 0x02, 0x01]),
    Buffer.from([0x30, 0x82, 0xff, 0xff, 0x02]),
    Buffer.alloc(0),
  ];
  let n = 0;
  const agent = await fakeAgent(() => garbage[n++ % garbage.length] ?? null);
  t.teardown(() => agent.close());
  const poller = new SnmpPoller({ devices: [device('babbler', agent.port, 'x')], timeoutMs: 150, log });
  t.teardown(() => poller.stop());
  const got = collect(poller);
  for (let i = 0; i < 4; i++) await poller.pollOnce();
  t.equal(got.errors.length, 4);
  t.ok(got.errors.every((e) => e.code === 'CTRL_ERR_SNMP_BAD_REPLY' || e.code === 'CTRL_ERR_SNMP_TIMEOUT'));
  t.ok(
    got.errors.some((e) => e.code === 'CTRL_ERR_SNMP_BAD_REPLY'),
    'unparseable replies are named as such',
  );
});

t.test('well-formed replies with wrong types or missing varbinds are per-device errors', async (t) => {
  // Answers every request with a valid GetResponse carrying one varbind of the wrong OID and type.
  const wrong = await fakeAgent((msg) => {
    // Echo the request id: find the PDU (0xa0/0xa1) and copy its request-id INTEGER.
    const pduAt = msg.findIndex((b, i) => i > 4 && (b === 0xa0 || b === 0xa1));
    const hdrLen = (msg[pduAt + 1] ?? 0) > 0x80 ? 2 + ((msg[pduAt + 1] ?? 0) - 0x80) : 2;
    const reqIdStart = pduAt + hdrLen;
    const reqId = msg.subarray(reqIdStart, reqIdStart + 2 + (msg[reqIdStart + 1] ?? 0));
    const tlv = (tag: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([tag, body.length]), body]);
    const oid = tlv(0x06, Buffer.from([0x2b, 6, 1, 4, 1, 99, 1])); // 1.3.6.1.4.1.99.1 (a walk leaves the subtree at once)
    const vb = tlv(0x30, Buffer.concat([oid, tlv(0x04, Buffer.from('surprise'))]));
    const pdu = tlv(
      0xa2,
      Buffer.concat([reqId, tlv(0x02, Buffer.from([0])), tlv(0x02, Buffer.from([0])), tlv(0x30, vb)]),
    );
    return tlv(0x30, Buffer.concat([tlv(0x02, Buffer.from([1])), tlv(0x04, Buffer.from('x')), pdu]));
  });
  t.teardown(() => wrong.close());
  const poller = new SnmpPoller({ devices: [device('liar', wrong.port, 'x')], timeoutMs: 300, log });
  t.teardown(() => poller.stop());
  const got = collect(poller);
  await poller.pollOnce();
  await poller.pollOnce();
  t.ok(got.errors.length >= 2, got.errors.map((e) => e.code).join(','));
  t.ok(
    got.errors.some((e) => e.code === 'CTRL_ERR_SNMP_NO_INTERFACE'),
    'an empty ifName table means the interface is not there',
  );
  t.ok(
    got.errors.some((e) => e.code === 'CTRL_ERR_SNMP_BAD_REPLY' && /sysUpTime missing/.test(e.message)),
    'a reply without the asked-for varbinds is a bad reply',
  );
  t.same(got.counters, []);
});
