import t, { type Test } from 'tap';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { ProbeEngine, type LivenessChange, type ProbePlan, type ProbeReport } from '../src/probe-engine';
import { ProbeReflector } from '../src/probe-reflector';
import { encodeProbeRequest } from '../src/probe-packet';
import { sendRaw, sleep, testRelay, testReflector, until } from './udp-fixtures';

const log = pino({ level: 'silent' });

function plan(port: number, over: Partial<ProbePlan> = {}): ProbePlan {
  return {
    intervalMs: 20,
    timeoutMs: 300,
    downAfterMisses: 3,
    upAfterSuccesses: 2,
    reportIntervalMs: 200,
    targets: [{ link: 'L1', peerSite: 'B', host: '127.0.0.1', port }],
    ...over,
  };
}

async function engineWith(
  t: Test,
  p: ProbePlan,
): Promise<{ engine: ProbeEngine; reports: ProbeReport[]; changes: LivenessChange[] }> {
  const engine = new ProbeEngine({ log });
  await engine.start();
  t.teardown(() => engine.stop());
  const reports: ProbeReport[] = [];
  const changes: LivenessChange[] = [];
  engine.on('report', (r) => reports.push(r));
  engine.on('liveness', (c) => changes.push(c));
  engine.setPlan(p);
  return { engine, reports, changes };
}

const samplesOf = (reports: ProbeReport[]) => reports.flatMap((r) => r.links.flatMap((l) => l.samples));
const sum = (reports: ProbeReport[], f: 'sent' | 'received' | 'lost' | 'reordered' | 'duplicates') =>
  reports.reduce((s, r) => s + r.links.reduce((x, l) => x + l[f], 0), 0);

t.test('RTT excludes the reflector hold time', async (t) => {
  const refl = await testReflector({ holdMs: 200 });
  t.teardown(() => refl.close());
  const { engine, reports } = await engineWith(t, plan(refl.port, { intervalMs: 50, timeoutMs: 2000 }));
  t.ok(await until(() => samplesOf(reports).filter((s) => !s.lost).length >= 10));
  const answered = samplesOf(reports).filter((s) => !s.lost);
  const median =
    answered.map((s) => s.rttMs).sort((a, b) => a - b)[Math.floor(answered.length / 2)] ?? Infinity;
  // Wall-clock round trip is >= 200 ms; the probe RTT must not contain that hold.
  t.ok(median < 100, `median RTT ${median.toFixed(3)} ms excludes the 200 ms hold`);
  t.ok(
    answered.every((s) => s.fwdMs >= 0),
    'one-way estimates present (same clock on loopback)',
  );
  t.equal(engine.links()[0]?.alive, true);
});

t.test('loss is counted when the reflector drops every 4th probe', async (t) => {
  const refl = await testReflector({ dropEvery: 4 });
  t.teardown(() => refl.close());
  // A generous timeout: only the reflector's drops may count as loss, not a stall of this machine.
  const { reports, engine } = await engineWith(t, plan(refl.port, { timeoutMs: 1000, downAfterMisses: 2 }));
  t.ok(await until(() => samplesOf(reports).filter((s) => s.lost).length >= 5));
  await engine.stop();
  const samples = samplesOf(reports);
  const lost = samples.filter((s) => s.lost).length;
  // The reflector drops its 4th, 8th, ... request: seq 3, 7, 11, ... and only those are lost.
  const wrong = samples.filter((s) => s.lost !== ((s.seq + 1) % 4 === 0));
  t.same(wrong, [], 'exactly the dropped probes are counted lost');
  t.equal(sum(reports, 'lost'), lost, 'lost counter matches lost samples');
  t.equal(sum(reports, 'received') + lost, samples.length);
  t.ok(samples.filter((s) => s.lost).every((s) => s.rttMs < 0));
  // Single drops never reach two consecutive misses: liveness stays up.
  t.ok(reports.at(-1)?.links[0]?.alive, 'isolated losses do not take the link down');
  let unordered = 0;
  for (const r of reports) {
    const s = r.links[0]?.samples ?? [];
    for (let i = 1; i < s.length; i++) if ((s[i]?.sentAtUs ?? 0) < (s[i - 1]?.sentAtUs ?? 0)) unordered++;
  }
  t.equal(unordered, 0, 'samples are in send order within each report');
});

t.test('reordered and duplicated replies are counted', async (t) => {
  const refl = new ProbeReflector({ log });
  const { port } = await refl.start();
  t.teardown(() => refl.stop());
  const relay = await testRelay(port, { swapPairs: true, duplicateEvery: 5 });
  t.teardown(() => relay.close());
  const { reports, engine } = await engineWith(t, plan(relay.port, { timeoutMs: 1000 }));
  t.ok(await until(() => sum(reports, 'reordered') >= 5 && sum(reports, 'duplicates') >= 3));
  const c = engine.counters();
  t.ok(c.reordered >= 5, `reordered ${c.reordered}`);
  t.ok(c.duplicates >= 3, `duplicates ${c.duplicates}`);
  t.ok(c.received > c.reordered, 'duplicates are not counted as received');
  t.equal(c.lost, 0);
});

t.test('liveness goes down after N misses and up after M successes', async (t) => {
  const refl = await testReflector();
  t.teardown(() => refl.close());
  const { changes, reports, engine } = await engineWith(
    t,
    plan(refl.port, { timeoutMs: 150, downAfterMisses: 3, upAfterSuccesses: 4, reportIntervalMs: 60_000 }),
  );
  t.ok(await until(() => changes.length === 1));
  t.same(
    changes.map((c) => [c.up, c.streak]),
    [[true, 4]],
    'declared up after exactly 4 successes',
  );
  t.equal(reports.length, 1, 'a report went out at once with the change (report interval is 60 s)');
  refl.silent(true);
  t.ok(await until(() => changes.length === 2));
  t.same(changes[1] && [changes[1].up, changes[1].streak], [false, 3], 'down after exactly 3 misses');
  t.equal(reports.length, 2);
  t.equal(reports[1]?.links[0]?.alive, false);
  refl.silent(false);
  t.ok(await until(() => changes.length === 3));
  t.same(changes[2] && [changes[2].up, changes[2].streak], [true, 4]);
  t.equal(engine.links()[0]?.alive, true);
});

t.test('a plan change keeps state of kept targets and stops probing removed ones', async (t) => {
  const a = await testReflector();
  const b = await testReflector();
  t.teardown(() => a.close());
  t.teardown(() => b.close());
  const p = plan(a.port, { upAfterSuccesses: 1 });
  const { engine, changes } = await engineWith(t, p);
  t.ok(await until(() => changes.length === 1));
  engine.setPlan({
    ...p,
    targets: [...p.targets, { link: 'L2', peerSite: 'C', host: '127.0.0.1', port: b.port }],
  });
  t.ok(await until(() => changes.length === 2));
  t.same(
    changes.map((c) => c.link),
    ['L1', 'L2'],
    'L1 was not re-announced: its state was kept',
  );
  engine.setPlan({ ...p, targets: [{ link: 'L2', peerSite: 'C', host: '127.0.0.1', port: b.port }] });
  await sleep(50);
  const seen = a.seen();
  await sleep(150);
  t.equal(a.seen(), seen, 'removed target is no longer probed');
  t.same(
    engine.links().map((l) => l.link),
    ['L2'],
  );
});

t.test('foreign and malformed datagrams on the engine socket are counted and dropped', async (t) => {
  // A silent "peer" that records the engine's source port, so the test can write to that socket.
  const dgram = await import('node:dgram');
  const spy = dgram.createSocket('udp4');
  let enginePort = 0;
  spy.on('message', (_m, rinfo) => (enginePort = rinfo.port));
  await new Promise<void>((r) => spy.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => spy.close(() => r())));
  const { engine } = await engineWith(t, plan(spy.address().port));
  t.ok(await until(() => enginePort > 0));
  await sendRaw(enginePort, Buffer.from('garbage'));
  await sendRaw(enginePort, encodeProbeRequest({ senderId: 1, sessionId: 1, seq: 1, t1: 1 }));
  t.ok(await until(() => engine.counters().malformed === 1 && engine.counters().foreign === 1));
  t.notOk(engine.closed);
});

t.test('replies queued during a stall are read before any verdict (more than one poll holds)', async (t) => {
  // A peer reflector on its own thread that answers after 100 ms: ~4 probes per target in flight.
  const peer = new Worker(
    `const { parentPort } = require('node:worker_threads');
     const dgram = require('node:dgram');
     const sock = dgram.createSocket('udp4');
     sock.on('message', (m, r) => setTimeout(() => {
       m.writeUInt8(2, 5); // reply
       sock.send(m, r.port, r.address);
     }, 100));
     sock.bind(0, '127.0.0.1', () => parentPort.postMessage(sock.address().port));`,
    { eval: true },
  );
  t.teardown(() => peer.terminate());
  const port = await new Promise<number>((resolve) => peer.once('message', resolve));
  const targets = Array.from({ length: 40 }, (_, i) => ({
    link: `L${i}`,
    peerSite: 'B',
    host: '127.0.0.1',
    port,
  }));
  const { engine, changes } = await engineWith(
    t,
    plan(port, { intervalMs: 25, timeoutMs: 1000, downAfterMisses: 3, targets }),
  );
  t.ok(
    await until(() => engine.links().every((l) => l.alive === true && (l.srttMs ?? 0) >= 80), 5000),
    'every link up with its replies ~100 ms late (probes in flight)',
  );
  await sleep(300);
  const downBefore = changes.filter((c) => !c.up).length;
  // The agent thread stalls 250 ms: ~160 replies queue on the one socket, and every pending
  // probe's liveness deadline passes meanwhile. One poll reads only 32 of them.
  const start = performance.now();
  while (performance.now() - start < 250) {
    // busy
  }
  await sleep(300);
  t.equal(changes.filter((c) => !c.up).length - downBefore, 0, 'no link declared down by the stall');
  t.ok(
    engine.links().every((l) => l.alive === true),
    'every link still up',
  );
});
