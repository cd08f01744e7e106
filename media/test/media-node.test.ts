/**
 * MediaNode with real mediasoup workers and real RTP over UDP on 127.0.0.1: ingress -> pipe ->
 * second node -> egress -> sink; idempotent and refused orders; a worker killed with SIGKILL;
 * stall detection by the RTP monitor.
 */
import t from 'tap';
import pino from 'pino';
import { MediaNode, mediasoupWorkerBin, type LegHealth, type MediaError } from '../src/index';
import { RtpReceiver, RtpSender } from '../src/index';

const bin = mediasoupWorkerBin();
if (!bin.exists) {
  console.log(`# SKIP media-node tests: mediasoup worker not built (${bin.path}); run 'npm run build'`);
  t.plan(0, `mediasoup worker not built (${bin.path}); run 'npm run build'`);
} else {
  const log = pino({ level: process.env.MEDIA_TEST_LOG ?? 'silent' });
  let nodeA: MediaNode;
  let nodeB: MediaNode;

  t.before(async () => {
    nodeA = await MediaNode.create({ nodeId: 'a', site: 'bj1', workers: 1, log });
    nodeB = await MediaNode.create({ nodeId: 'b', site: 'sh1', workers: 2, log });
  });
  t.teardown(() => {
    nodeA?.close();
    nodeB?.close();
  });

  /** Builds ingress on A, pipe A -> B, egress on B to a fresh sink; returns the pieces. */
  async function session(t: { teardown(fn: () => void): void }, id: string, ssrc: number) {
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const ingress = await nodeA.createIngress(id, { codec: 'opus', payloadType: 111, ssrc });
    const pipeIn = await nodeB.createPipeIn(id, 'a');
    const out = await nodeA.createPipeOut(id, 'b', pipeIn);
    await nodeB.connectPipeIn(id, 'a', out, { kind: out.kind, rtpParameters: out.rtpParameters });
    await nodeB.createEgress(id, sinkTuple);
    return { sink, sender, ingress, pipeIn, out, sinkTuple };
  }

  t.test('RTP flows ingress -> pipe -> second node -> egress -> sink', async (t) => {
    const s = await session(t, 's-e2e', 1234);
    t.equal(s.ingress.ip, '127.0.0.1');
    t.ok(s.ingress.port > 0, 'ingress has a port');
    s.sender.start(s.ingress);
    await s.sink.waitFor(25);
    const seqs = s.sink.packets.map((p) => p.seq);
    t.ok(seqs.length >= 25, `sink received ${seqs.length} packets`);
    t.equal(new Set(s.sink.packets.map((p) => p.ssrc)).size, 1, 'one SSRC at the sink');

    const health = [...nodeA.health('s-e2e'), ...nodeB.health('s-e2e')];
    t.same(health.map((h) => h.kind).sort(), ['egress', 'ingress', 'pipe-in', 'pipe-out']);
    t.ok(
      health.every((h) => h.packets > 0),
      'every leg counted packets',
    );

    const loadB = await nodeB.load();
    const w = loadB.workers.find((x) => x.sessions === 1);
    t.ok(w, 'the session sits on one worker of B');
    t.match(w, { routers: 1, transports: 2, producers: 1, consumers: 1, alive: true });
    t.equal(nodeB.sessions()[0]?.egress?.sink.port, s.sinkTuple.port);
    s.sender.stop();
    await nodeA.closeSession('s-e2e');
    await nodeB.closeSession('s-e2e');
  });

  t.test('orders are idempotent per session id', async (t) => {
    const s = await session(t, 's-idem', 42);
    const before = await nodeB.load();
    t.same(await nodeA.createIngress('s-idem', { codec: 'opus', payloadType: 111, ssrc: 42 }), s.ingress);
    t.same(await nodeB.createPipeIn('s-idem', 'a'), s.pipeIn);
    const out2 = await nodeA.createPipeOut('s-idem', 'b', s.pipeIn);
    t.same({ ip: out2.ip, port: out2.port }, { ip: s.out.ip, port: s.out.port });
    t.same(out2.rtpParameters, s.out.rtpParameters, 'same pipe consumer');
    await nodeB.connectPipeIn('s-idem', 'a', out2, { kind: out2.kind, rtpParameters: out2.rtpParameters });
    await nodeB.createEgress('s-idem', s.sinkTuple);
    const after = await nodeB.load();
    const sum = (l: typeof before) =>
      l.workers.reduce((n, w) => n + w.transports + w.producers + w.consumers, 0);
    t.equal(sum(after), sum(before), 'no duplicate transports, producers or consumers');
    s.sender.start(s.ingress);
    await s.sink.waitFor(10);
    s.sender.stop();
    const lost: string[] = [];
    const onLost = (l: { sessionId: string }) => lost.push(l.sessionId);
    nodeB.on('sessionlost', onLost);
    t.equal(await nodeB.closeSession('s-idem'), true);
    nodeB.off('sessionlost', onLost);
    t.same(lost, [], 'a teardown is not reported as a lost session');
    t.equal(await nodeB.closeSession('s-idem'), false, 'second teardown is a no-op');
    t.equal(await nodeA.closePipeOut('s-idem', 'b'), true, 'pipe-out closed');
    t.equal(await nodeA.closePipeOut('s-idem', 'b'), false, 'closing it again is a no-op');
    t.same(
      nodeA.health('s-idem').map((h) => h.kind),
      ['ingress'],
      'only the ingress is left on a',
    );
    t.equal(await nodeA.closeSession('s-idem'), true);
  });

  t.test('a standby egress consumes paused and starts on activation', async (t) => {
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 31, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const ingress = await nodeA.createIngress('s-sb', { codec: 'opus', payloadType: 111, ssrc: 31 });
    const pipeIn = await nodeB.createPipeIn('s-sb', 'a');
    const out = await nodeA.createPipeOut('s-sb', 'b', pipeIn);
    await nodeB.connectPipeIn('s-sb', 'a', out, { kind: out.kind, rtpParameters: out.rtpParameters });
    const tuple = await nodeB.createEgress('s-sb', sinkTuple, true);
    sender.start(ingress);
    await new Promise<void>((resolve) => {
      const on = (h: LegHealth) => {
        if (h.sessionId === 's-sb' && h.kind === 'pipe-in' && h.packets > 10) resolve();
      };
      nodeB.monitor.on('sample', (round) => round.forEach(on));
    });
    t.equal(sink.packets.length, 0, 'nothing reaches the sink while on standby');
    t.match(nodeB.sessions().find((x) => x.sessionId === 's-sb')?.egress, { standby: true, consuming: true });
    t.same(await nodeB.createEgress('s-sb', sinkTuple, true), tuple, 'standby again: same leg, still paused');
    t.same(await nodeB.createEgress('s-sb', sinkTuple), tuple, 'activation keeps the same leg');
    await sink.waitFor(10);
    t.pass('RTP at the sink after activation');
    t.same(
      await nodeB.createEgress('s-sb', sinkTuple, true),
      tuple,
      'a standby order never pauses a live egress',
    );
    const n = sink.packets.length;
    await sink.waitFor(5);
    t.ok(sink.packets.length > n, 'still flowing');
    sender.stop();
    await nodeA.closeSession('s-sb');
    await nodeB.closeSession('s-sb');
  });

  t.test('orders it cannot meet are refused with typed errors', async (t) => {
    await nodeA.createIngress('s-bad', { codec: 'opus', payloadType: 111, ssrc: 7 });
    await t.rejects(nodeA.createIngress('s-bad', { codec: 'opus', payloadType: 111, ssrc: 8 }), {
      code: 'MEDIA_ERR_ORDER_CONFLICT',
    });
    await t.rejects(nodeA.createPipeIn('s-bad', 'x'), { code: 'MEDIA_ERR_ORDER_CONFLICT' });
    await t.rejects(nodeA.createPipeOut('nope', 'b', { ip: '127.0.0.1', port: 9 }), {
      code: 'MEDIA_ERR_UNKNOWN_SESSION',
    });
    await nodeB.createPipeIn('s-bad2', 'a');
    await t.rejects(nodeB.createPipeOut('s-bad2', 'c', { ip: '127.0.0.1', port: 9 }), {
      code: 'MEDIA_ERR_BAD_ORDER',
    });
    await t.rejects(
      nodeB.connectPipeIn(
        's-bad2',
        'other',
        { ip: '127.0.0.1', port: 9 },
        { kind: 'audio', rtpParameters: { codecs: [] } },
      ),
      { code: 'MEDIA_ERR_BAD_ORDER' },
    );
    await t.rejects(
      nodeB.connectPipeIn(
        's-bad2',
        'a',
        { ip: '127.0.0.1', port: 9 },
        { kind: 'audio', rtpParameters: { codecs: [] } },
      ),
      { code: 'MEDIA_ERR_INVALID' },
    );
    await nodeB.createEgress('s-bad2', { ip: '127.0.0.1', port: 9 });
    await t.rejects(nodeB.createEgress('s-bad2', { ip: '127.0.0.1', port: 10 }), {
      code: 'MEDIA_ERR_ORDER_CONFLICT',
    });
    await t.rejects(nodeA.createEgress('s-port', { ip: '127.0.0.1', port: 0 }), {
      code: 'MEDIA_ERR_INVALID',
    });
    await t.rejects(nodeA.createEgress('s-port', { ip: 'sink.example', port: 5000 }), {
      code: 'MEDIA_ERR_INVALID',
    });
    await t.rejects(nodeA.createIngress('s-port', { codec: 'g729' as 'opus', payloadType: 18, ssrc: 1 }), {
      code: 'MEDIA_ERR_INVALID',
    });
    await t.rejects(nodeA.createIngress('s-port', { codec: 'opus', payloadType: 128, ssrc: 1 }), {
      code: 'MEDIA_ERR_INVALID',
    });
    await t.rejects(nodeA.createIngress('', { codec: 'opus', payloadType: 111, ssrc: 1 }), {
      code: 'MEDIA_ERR_INVALID',
    });
    t.notOk(nodeA.hasSession('s-port'), 'a refused first order leaves no session behind');
    await nodeA.closeSession('s-bad');
    await nodeB.closeSession('s-bad2');
  });

  t.test('capacity per worker is enforced', async (t) => {
    const node = await MediaNode.create({
      nodeId: 'cap',
      site: 'sh1',
      workers: 2,
      log,
      maxSessionsPerWorker: 2,
    });
    t.teardown(() => node.close());
    const ids = ['c1', 'c2', 'c3', 'c4'];
    for (const id of ids) await node.createPipeIn(id, 'a');
    const load = await node.load();
    t.same(
      load.workers.map((w) => w.sessions),
      [2, 2],
      'sessions spread over both workers',
    );
    t.equal(load.freeSessions, 0);
    await t.rejects(node.createPipeIn('c5', 'a'), { code: 'MEDIA_ERR_CAPACITY' });
    t.equal(
      await node.createPipeIn('c1', 'a').then(() => 'ok'),
      'ok',
      'an existing session still takes orders',
    );
    await node.closeSession('c2');
    t.ok((await node.createPipeIn('c5', 'a')).port > 0, 'a freed slot takes a new session');
  });

  t.test('a stalled leg is flagged as soon as RTP stops, and resumes', async (t) => {
    const s = await session(t, 's-stall', 99);
    s.sender.start(s.ingress);
    await s.sink.waitFor(10);
    const stalled = new Promise<LegHealth>((resolve) => {
      const on = (h: LegHealth) => {
        if (h.sessionId === 's-stall' && h.kind === 'ingress') {
          nodeA.off('stall', on);
          resolve(h);
        }
      };
      nodeA.on('stall', on);
    });
    s.sender.stop();
    const h = await stalled;
    t.equal(h.stalled, true);
    t.equal(h.state, 'stalled');
    t.ok(h.silentMs >= 100, `silent for ${h.silentMs} ms when flagged`);
    t.ok(
      nodeA.health('s-stall').some((x) => x.kind === 'ingress' && x.stalled),
      'health() shows the stall',
    );
    const resumed = new Promise<LegHealth>((resolve) => nodeA.once('resume', resolve));
    s.sender.start(s.ingress);
    const r = await resumed;
    t.equal(r.stalled, false);
    t.equal(r.state, 'flowing');
    s.sender.stop();
    await nodeA.closeSession('s-stall');
    await nodeB.closeSession('s-stall');
  });

  t.test('transports use the configured port range; load reports worker CPU', async (t) => {
    const node = await MediaNode.create({
      nodeId: 'ports',
      site: 'bj1',
      workers: 1,
      log,
      rtpPorts: { min: 41000, max: 41050 },
    });
    t.teardown(() => node.close());
    const tuple = await node.createIngress('s-ports', { codec: 'pcma', payloadType: 8, ssrc: 3 });
    t.ok(tuple.port >= 41000 && tuple.port <= 41050, `port ${tuple.port} in 41000-41050`);
    const first = await node.load();
    t.equal(first.workers[0]?.cpuPercent, 0, 'no CPU figure before a second sample');
    await new Promise((r) => setTimeout(r, 200));
    const second = await node.load();
    t.type(second.workers[0]?.cpuPercent, 'number');
    t.ok((second.workers[0]?.cpuPercent ?? -1) >= 0, `cpu ${second.workers[0]?.cpuPercent}%`);
    t.match(second, { nodeId: 'ports', site: 'bj1', sessions: 1, maxSessionsPerWorker: 500 });
  });

  t.test('a killed worker is restarted and its sessions reported lost', async (t) => {
    const node = await MediaNode.create({ nodeId: 'k', site: 'bj1', workers: 1, log });
    t.teardown(() => node.close());
    await node.createIngress('s-kill', { codec: 'opus', payloadType: 111, ssrc: 5 });
    const pid = node.workerPids()[0] ?? 0;
    t.ok(pid > 0);
    const lost = new Promise<{ sessionId: string; error: MediaError }>((resolve) =>
      node.once('sessionlost', resolve),
    );
    const died = new Promise<{ index: number; pid: number; sessionIds: string[] }>((resolve) =>
      node.once('workerdied', resolve),
    );
    const restarted = new Promise<{ index: number; pid: number }>((resolve) =>
      node.once('workerrestarted', resolve),
    );
    process.kill(pid, 'SIGKILL');
    const l = await lost;
    t.equal(l.sessionId, 's-kill');
    t.equal(l.error.code, 'MEDIA_ERR_WORKER_DIED');
    const d = await died;
    t.match(d, { index: 0, pid, sessionIds: ['s-kill'] });
    const r = await restarted;
    t.equal(r.index, 0);
    t.not(r.pid, pid, 'a new worker process');
    t.notOk(node.hasSession('s-kill'));
    const again = await node.createIngress('s-kill', { codec: 'opus', payloadType: 111, ssrc: 5 });
    t.ok(again.port > 0, 'the restarted worker takes the session again');
    const load = await node.load();
    t.match(load.workers[0], { alive: true, restarts: 1, sessions: 1 });
  });
}
