// The lab: the link emulator on loopback (no root), then real namespaces (root; skips otherwise).
import t from 'tap';
import { createSocket, type Socket } from 'node:dgram';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Topology } from '@meridian/topology';
import { LinkEmulator } from '../src/link-emulator';
import {
  emulatorRequest,
  labDown,
  labFault,
  labPrerequisites,
  labStatus,
  labUp,
  readLabState,
} from '../src/lab';
import { parseFault } from '../src/lab-command';
import { freeUdpPort } from '../src/free-port';
import { DATA_PLANE_RT_BUDGET_HARD_US, DATA_PLANE_RT_BUDGET_SOFT_US } from '../src/data-plane-scheduling';

function bind(sock: Socket, port: number): Promise<void> {
  return new Promise((res) => sock.bind(port, '127.0.0.1', () => res()));
}

t.test('link emulator: delay, order, loss, down, clear, bad requests', async (t) => {
  const [pa, pb, ea, eb] = [
    await freeUdpPort(),
    await freeUdpPort(),
    await freeUdpPort(),
    await freeUdpPort(),
  ];
  const dir = os.tmpdir();
  const controlSocket = path.join(dir, `emu-${process.pid}.sock`);
  const emu = new LinkEmulator({
    controlSocket,
    links: [
      {
        id: 'L',
        a: { bind: '127.0.0.1', port: ea, peer: '127.0.0.1', peerPort: pa },
        b: { bind: '127.0.0.1', port: eb, peer: '127.0.0.1', peerPort: pb },
        nominal: { delayMs: 30, jitterMs: 0, lossPct: 0 },
      },
    ],
  });
  await emu.start();
  const sa = createSocket('udp4');
  const sb = createSocket('udp4');
  await bind(sa, pa);
  await bind(sb, pb);
  t.teardown(async () => {
    sa.close();
    sb.close();
    await emu.close();
  });
  const got: { n: number; at: number }[] = [];
  sb.on('message', (m) => got.push({ n: m.readUInt32BE(0), at: performance.now() }));
  const send = (n: number): void => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    sa.send(b, ea, '127.0.0.1');
  };
  const sentAt = performance.now();
  send(1);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(got.length, 1, 'delivered');
  t.ok(
    (got[0]?.at ?? 0) - sentAt >= 29,
    `held for the configured 30 ms (${((got[0]?.at ?? 0) - sentAt).toFixed(1)} ms)`,
  );

  got.length = 0;
  t.match(emu.handle(JSON.stringify({ op: 'set', link: 'L', delayMs: 5, jitterMs: 5 })), { ok: true });
  for (let i = 0; i < 100; i++) send(i);
  await new Promise((r) => setTimeout(r, 300));
  t.same(
    got.map((g) => g.n),
    [...Array(100).keys()],
    'jitter never reorders a link',
  );

  got.length = 0;
  await emulatorRequest(controlSocket, { op: 'set', link: 'L', lossPct: 100 });
  for (let i = 0; i < 20; i++) send(i);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(got.length, 0, '100% loss');
  await emulatorRequest(controlSocket, { op: 'set', link: 'L', clear: true });
  await emulatorRequest(controlSocket, { op: 'set', link: 'L', up: false });
  for (let i = 0; i < 20; i++) send(i);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(got.length, 0, 'down');
  const cleared = await emulatorRequest(controlSocket, { op: 'set', link: 'L', clear: true });
  t.match(
    cleared,
    { ok: true, link: { ab: { up: true, delayMs: 30, lossPct: 0 } } },
    'clear restores the nominal values',
  );
  send(7);
  await new Promise((r) => setTimeout(r, 150));
  t.same(
    got.map((g) => g.n),
    [7],
  );
  t.match(emu.handle('not json'), { ok: false });
  t.match(emu.handle('{"op":"set","link":"nope"}'), { ok: false, error: /unknown link/ });
  t.match(emu.handle('{"op":"set","link":"L","lossPct":101}'), { ok: false, error: /lossPct/ });
  t.match(emu.handle('{"op":"set","link":"L","delayMs":"x"}'), { ok: false });
  t.match(emu.handle('{"op":"reboot"}'), { ok: false });
});

t.test('fault arguments', (t) => {
  t.same(parseFault(['down']), { kind: 'down' });
  t.same(parseFault(['loss', '2.5']), { kind: 'loss', pct: 2.5 });
  t.same(parseFault(['delay', '40', '5']), { kind: 'delay', ms: 40, jitterMs: 5 });
  t.same(parseFault(['delay', '40']), { kind: 'delay', ms: 40 });
  for (const bad of [['loss', '101'], ['loss'], ['delay', '-1'], ['flap'], ['down', 'now'], []]) {
    t.throws(() => parseFault(bad), { code: 'OPS_ERR_BAD_ARGS' }, bad.join(' '));
  }
  t.end();
});

const link = (id: string, a: string, b: string, latencyMs: number, lossPct = 0) => ({
  id,
  a,
  b,
  transport: 'fiber' as const,
  capacityMbps: 100,
  latencyMs,
  jitterMs: 0,
  lossPct,
  cost: 1,
});
const topology: Topology = {
  version: 1,
  source: '<inline>',
  sites: [
    { id: 'x', kind: 'dc', region: 'r', prefixes: ['10.10.0.0/24'] },
    { id: 'y', kind: 'dc', region: 'r', prefixes: ['10.20.0.0/16'] },
    { id: 'z-1', kind: 'edge', region: 'r', prefixes: ['192.168.7.0/24'] },
  ],
  links: [link('x-y', 'x', 'y', 20), link('y-z', 'y', 'z-1', 1), link('x-z', 'x', 'z-1', 1, 0)],
  classes: [],
  devices: [],
};

function ping(ns: string, to: string, count: number): { received: number; avgMs: number } {
  const r = spawnSync(
    'ip',
    ['netns', 'exec', ns, 'ping', '-n', '-q', '-c', String(count), '-i', '0.02', '-W', '1', to],
    {
      encoding: 'utf8',
    },
  );
  const rec = /(\d+) received/.exec(r.stdout);
  const avg = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  return { received: rec ? Number(rec[1]) : 0, avgMs: avg ? Number(avg[1]) : NaN };
}

t.test('lab on namespaces', async (t) => {
  const why = await labPrerequisites();
  if (why !== null) {
    t.plan(0, `skipped: ${why}`);
    return;
  }
  const stateDir = path.join(os.tmpdir(), `meridian-lab-ops-${process.pid}`);
  t.teardown(() => labDown({ stateDir }));
  const d = await labUp(topology, { stateDir, waitMs: 600_000 });
  t.same(
    d.sites.map((s) => [s.id, s.netns, s.address]),
    [
      ['x', 'mrd-x', '10.10.0.1'],
      ['y', 'mrd-y', '10.20.0.1'],
      ['z-1', 'mrd-z-1', '192.168.7.1'],
    ],
  );
  t.same(Object.keys(d).sort(), ['apiToken', 'controller', 'forwarding', 'links', 'sites']);
  t.ok(d.forwarding === 'srv6' || d.forwarding === 'hop-by-hop', `forwarding in force: ${d.forwarding}`);
  t.same(d.links.map((l) => l.id).sort(), ['x-y', 'x-z', 'y-z']);
  await t.rejects(labUp(topology, { stateDir }), { code: 'OPS_ERR_LAB_STATE' }, 'a second lab up is refused');

  const xy = d.links.find((l) => l.id === 'x-y')!;
  const addrs = JSON.parse(readFileSync(path.join(stateDir, 'plan.json'), 'utf8')) as {
    links: Record<string, { b4: string }>;
  };
  const yAddr = addrs.links['x-y']!.b4;
  t.equal(spawnSync('ip', ['-n', 'mrd-x', 'link', 'show', xy.ifA]).status, 0, `${xy.ifA} exists in mrd-x`);
  const nominal = ping('mrd-x', yAddr, 5);
  t.equal(nominal.received, 5, 'link x-y carries traffic');
  t.ok(nominal.avgMs >= 40, `RTT carries the nominal 2×20 ms (${nominal.avgMs} ms)`);
  t.ok(ping('mrd-x', '10.254.0.1', 2).received === 2, 'management path to the root namespace');

  await labFault('x-y', { kind: 'down' }, { stateDir });
  t.equal(ping('mrd-x', yAddr, 5).received, 0, 'down: nothing passes');
  await labFault('x-y', { kind: 'up' }, { stateDir });
  await labFault('x-y', { kind: 'delay', ms: 0 }, { stateDir });
  const fast = ping('mrd-x', yAddr, 5);
  t.ok(fast.received === 5 && fast.avgMs < nominal.avgMs, `delay 0: faster (${fast.avgMs} ms)`);
  await labFault('x-y', { kind: 'loss', pct: 100 }, { stateDir });
  t.equal(ping('mrd-x', yAddr, 5).received, 0, 'loss 100%');
  await labFault('x-y', { kind: 'clear' }, { stateDir });
  t.equal(ping('mrd-x', yAddr, 3).received, 3, 'clear');
  await t.rejects(labFault('nope', { kind: 'down' }, { stateDir }), { code: 'OPS_ERR_BAD_ARGS' });
  const st = await labStatus({ stateDir });
  t.equal(st.up, true);
  t.equal(st.links.length, 3);

  // The CLI over the same lab.
  const cli = (args: string[]) =>
    spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'bin', 'meridian.js'), 'lab', ...args], {
      encoding: 'utf8',
      env: { ...process.env, MERIDIAN_LAB_DIR: stateDir },
    });
  const s = cli(['status', '--json']);
  t.equal(s.status, 0);
  t.match(JSON.parse(s.stdout), { up: true, links: [{ id: String }, {}, {}] });
  t.equal(cli(['fault', 'x-y', 'loss', '200']).status, 2, 'bad PCT: exit 2');
  t.equal(cli(['fault', 'x-y', 'delay', '3', '1']).status, 0);
  t.equal(cli(['frobnicate']).status, 2);

  // The data plane (emulator, socat relays) runs real-time, above every control-plane task.
  const state = readLabState(stateDir)!;
  const dataPlane = state.pids.filter((p) => p.what === 'link-emulator' || p.what === 'socat');
  t.equal(dataPlane.length, 1 + 2 * 3, 'the emulator and a relay per link end');
  for (const p of dataPlane) {
    // /proc/PID/stat field 41 is the scheduling policy (1 = SCHED_FIFO); fields after "(comm) ".
    const fields = readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    t.equal(fields[41 - 3], '1', `${p.what} ${p.pid} runs SCHED_FIFO`);
    // ...with a real-time budget (data-plane-scheduling.ts), so a spinning one cannot starve the kernel.
    t.match(
      readFileSync(`/proc/${p.pid}/limits`, 'utf8'),
      new RegExp(
        `Max realtime timeout\\s+${DATA_PLANE_RT_BUDGET_SOFT_US}\\s+${DATA_PLANE_RT_BUDGET_HARD_US}\\s`,
      ),
      `${p.what} ${p.pid} has a real-time budget`,
    );
  }

  // A crash: the emulator dies; lab down still removes everything.
  const emuPid = state.pids.find((p) => p.what === 'link-emulator')!.pid;
  process.kill(emuPid, 'SIGKILL');
  const r = await labDown({ stateDir });
  t.ok(r.removed >= 3, `removed ${r.removed}`);
  t.ok(r.processes >= state.pids.length - 1, `stopped ${r.processes} processes (the emulator was dead)`);
  t.same(r.survivors, [], 'none survived');
  t.notMatch(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout, /mrd-/);
  t.notMatch(spawnSync('ip', ['link', 'show'], { encoding: 'utf8' }).stdout, /\bmm\d+:/);
  for (const p of state.pids)
    t.not(spawnSync('kill', ['-0', String(p.pid)]).status, 0, `${p.what} ${p.pid} gone`);
  t.same(await labDown({ stateDir }), { removed: 0, processes: 0, survivors: [] }, 'idempotent');
});
