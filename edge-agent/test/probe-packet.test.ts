import t from 'tap';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import {
  PROBE_HEADER_BYTES,
  encodeProbeRequest,
  nowUs,
  parseProbe,
  probeRttMs,
  stampReply,
} from '../src/probe-packet';
import { ProbeReflector } from '../src/probe-reflector';
import { sendRaw, until } from './udp-fixtures';

const log = pino({ level: 'silent' });

t.test('request round-trips and a stamped reply gives RTT without hold time', (t) => {
  const t1 = 1_700_000_000_123_456;
  const buf = encodeProbeRequest({ senderId: 0xdeadbeef, sessionId: 7, seq: 0xffffffff, t1 });
  t.equal(buf.length, PROBE_HEADER_BYTES);
  const req = parseProbe(buf);
  t.ok(req.ok);
  if (!req.ok) throw new Error(`request did not parse: ${req.reason}`);
  t.same(req.packet, {
    type: 'request',
    senderId: 0xdeadbeef,
    sessionId: 7,
    seq: 0xffffffff,
    t1,
    t2: 0,
    t3: 0,
  });
  // Reflector clock 5 s off; it holds the probe 40 ms. Path takes 3 ms each way.
  const t2 = t1 + 5_000_000 + 3000;
  const t3 = t2 + 40_000;
  const rep = parseProbe(stampReply(buf, t2, t3));
  t.ok(rep.ok);
  if (!rep.ok) throw new Error(`reply did not parse: ${rep.reason}`);
  t.equal(rep.packet.type, 'reply');
  const t4 = t1 + 3000 + 40_000 + 3000;
  t.equal(probeRttMs(rep.packet, t4), 6);
  t.end();
});

t.test('padding is kept and oversize / undersize are refused', (t) => {
  const buf = encodeProbeRequest({ senderId: 1, sessionId: 1, seq: 1, t1: 1 }, 200);
  t.equal(buf.length, 200);
  t.ok(parseProbe(buf).ok);
  t.same(parseProbe(buf.subarray(0, 47)), { ok: false, reason: 'short' });
  t.same(parseProbe(Buffer.alloc(2000)), { ok: false, reason: 'long' });
  const badMagic = Buffer.from(buf);
  badMagic.writeUInt32BE(0x12345678, 0);
  t.same(parseProbe(badMagic), { ok: false, reason: 'magic' });
  const badVersion = Buffer.from(buf);
  badVersion.writeUInt8(9, 4);
  t.same(parseProbe(badVersion), { ok: false, reason: 'version' });
  const badType = Buffer.from(buf);
  badType.writeUInt8(3, 5);
  t.same(parseProbe(badType), { ok: false, reason: 'type' });
  t.end();
});

t.test('fuzz: random bytes and mutated probes never throw', (t) => {
  const valid = encodeProbeRequest({ senderId: 9, sessionId: 9, seq: 9, t1: 9 });
  let parsed = 0;
  let odd = 0;
  for (let i = 0; i < 20_000; i++) {
    let bytes: Buffer;
    if (i % 2 === 0) {
      bytes = Buffer.alloc(Math.floor(Math.random() * 120));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(Math.random() * 256);
    } else {
      bytes = Buffer.from(valid);
      const flips = 1 + Math.floor(Math.random() * 4);
      for (let k = 0; k < flips; k++)
        bytes[Math.floor(Math.random() * bytes.length)] = Math.floor(Math.random() * 256);
      if (Math.random() < 0.2) bytes = bytes.subarray(0, Math.floor(Math.random() * bytes.length));
    }
    const r = parseProbe(bytes);
    if (r.ok) {
      parsed++;
      if (!Number.isInteger(r.packet.seq) || !(r.packet.t1 >= 0)) odd++;
    }
  }
  t.equal(odd, 0, 'parsed fields are plain non-negative integers');
  t.ok(parsed > 0, 'mutations outside the header fields still parse');
  t.end();
});

t.test('reflector answers requests and counts malformed and foreign packets', async (t) => {
  const refl = new ProbeReflector({ log });
  const { port } = await refl.start();
  t.teardown(() => refl.stop());
  t.ok(port > 0, 'port 0 picked a free port');
  await sendRaw(port, Buffer.from('hello, not a probe'));
  await sendRaw(port, Buffer.alloc(0));
  await sendRaw(port, Buffer.alloc(60, 0xff));
  const reply = stampReply(encodeProbeRequest({ senderId: 1, sessionId: 2, seq: 3, t1: 4 }), 5, 6);
  await sendRaw(port, reply);
  t.ok(await until(() => refl.counters().malformed === 3 && refl.counters().foreign === 1));
  t.same(refl.counters(), { reflected: 0, malformed: 3, foreign: 1, sendErrors: 0 });
  t.notOk(refl.closed);
});

t.test('the reflector answers while the agent thread is blocked', async (t) => {
  // Its own thread: a stall of the agent (a policy apply, a GC pause) must not read as the link's
  // delay or death at the peers. A peer (a worker thread here) probes while this thread busy-waits.
  const refl = new ProbeReflector({ log });
  const { port } = await refl.start();
  t.teardown(() => refl.stop());
  const requests = [0, 1, 2, 3, 4].map((seq) =>
    encodeProbeRequest({ senderId: 1, sessionId: 1, seq, t1: 0 }),
  );
  const peer = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const dgram = require('node:dgram');
     const sock = dgram.createSocket('udp4');
     const sent = [], replies = [];
     sock.on('message', (m) => {
       replies.push(m);
       if (replies.length === workerData.requests.length) {
         parentPort.postMessage({ sent, replies });
         sock.close();
       }
     });
     sock.bind(0, '127.0.0.1', () => {
       parentPort.postMessage('ready');
       parentPort.once('message', () => {
         workerData.requests.forEach((r, i) => setTimeout(() => {
           sent[i] = Math.round((performance.timeOrigin + performance.now()) * 1000);
           sock.send(Buffer.from(r), workerData.port, '127.0.0.1');
         }, 100 * i));
       });
     });`,
    { eval: true, workerData: { port, requests } },
  );
  t.teardown(() => peer.terminate());
  const result = new Promise<{ sent: number[]; replies: Uint8Array[] }>((resolve) =>
    peer.on('message', (m: 'ready' | { sent: number[]; replies: Uint8Array[] }) => {
      if (m !== 'ready') resolve(m);
    }),
  );
  await new Promise<void>((resolve) => peer.once('message', () => resolve()));
  peer.postMessage('go');
  const blockMs = 1000;
  const start = nowUs();
  while (nowUs() - start < blockMs * 1000) {
    // busy: this thread runs no callbacks while the peer probes
  }
  const { sent, replies } = await result;
  t.equal(replies.length, 5, 'every probe answered');
  const waited = replies.map((b) => {
    const p = parseProbe(Buffer.from(b));
    return p.ok && p.packet.type === 'reply' ? (p.packet.t2 - sent[p.packet.seq]!) / 1000 : Infinity;
  });
  // On the agent's thread the first probe would have been read only after the block (~1000 ms).
  t.ok(
    Math.max(...waited) < blockMs / 2,
    `answered while blocked (longest wait ${Math.max(...waited).toFixed(1)} ms)`,
  );
  t.equal(refl.counters().reflected, 5);
});

t.test('a probe port already taken is a typed bind error', async (t) => {
  const a = new ProbeReflector({ log });
  const { port } = await a.start();
  t.teardown(() => a.stop());
  const b = new ProbeReflector({ log, port });
  await t.rejects(b.start(), { code: 'AGENT_ERR_PROBE_BIND' });
  t.ok(b.closed);
  // The counters survive a restart of the reflector.
  await sendRaw(port, Buffer.from('x'));
  t.ok(await until(() => a.counters().malformed === 1));
  await a.stop();
  await a.start();
  t.equal(a.counters().malformed, 1);
});
