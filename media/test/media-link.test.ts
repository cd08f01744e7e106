/**
 * The node protocol end to end: two `meridian media` processes (each with its own mediasoup
 * workers) register with a test controller over real gRPC, a session is steered across them
 * (ingress on A, pipe A -> B joined by exchanging tuples, egress on B) and real RTP reaches the
 * sink; stalls, refused orders, a killed worker, a wrong token and a controller restart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { mediasoupWorkerBin, type PbOrderResult } from '../src/index';
import { ControllerHarness } from './controller-harness';
import { RtpReceiver, RtpSender } from '../src/index';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'meridian.js');
const DIST = path.join(ROOT, 'media', 'dist', 'src', 'command-media.js');
const TOKEN = 'test-token';

const bin = mediasoupWorkerBin();
const skip = !bin.exists
  ? `mediasoup worker not built (${bin.path}); run 'npm run build'`
  : !existsSync(DIST)
    ? `media is not built (${DIST}); run 'npx tsc -b media'`
    : undefined;

interface NodeProc {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

function startNode(args: string[], token = TOKEN): NodeProc {
  const child = spawn(process.execPath, [CLI, 'media', ...args], {
    env: { ...process.env, MERIDIAN_AGENT_TOKEN: token, MERIDIAN_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout?.on('data', (b: Buffer) => output.push(b.toString()));
  child.stderr?.on('data', (b: Buffer) => output.push(b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output, exited };
}

function ok(r: PbOrderResult): NonNullable<PbOrderResult['ok']> {
  if (r.outcome !== 'ok' || !r.ok) throw new Error(`order refused: ${JSON.stringify(r.error)}`);
  return r.ok;
}

if (skip !== undefined) {
  console.log(`# SKIP media-link tests: ${skip}`);
  t.plan(0, skip);
} else {
  let harness = new ControllerHarness(TOKEN);
  const procs: NodeProc[] = [];
  let port = 0;

  t.before(async () => {
    port = await harness.listen();
  });
  t.teardown(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGTERM');
    await Promise.race([Promise.all(procs.map((p) => p.exited)), new Promise((r) => setTimeout(r, 5000))]);
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    harness.close();
  });

  const launch = (id: string, site: string): NodeProc => {
    const p = startNode([
      '--node',
      id,
      '--site',
      site,
      '--controller',
      `127.0.0.1:${port}`,
      '--workers',
      '1',
    ]);
    procs.push(p);
    return p;
  };

  /** Steers session `id` from node a (ingress) to node b (egress to sink), the way the controller does. */
  async function steer(id: string, ssrc: number, sink: { ip: string; port: number }) {
    const ingress = ok(
      await harness.order('a', id, { createIngress: { codec: 'opus', payloadType: 111, ssrc } }),
    );
    const pipeIn = ok(await harness.order('b', id, { createPipeIn: { peer: 'a' } }));
    const out = ok(await harness.order('a', id, { createPipeOut: { peer: 'b', remote: pipeIn.tuple } }));
    ok(
      await harness.order('b', id, {
        connectPipeIn: {
          peer: 'a',
          remote: out.tuple,
          kind: out.kind ?? '',
          rtpParametersJson: out.rtpParametersJson ?? '',
        },
      }),
    );
    ok(await harness.order('b', id, { createEgress: { sink } }));
    return { ingress: ingress.tuple!, pipeIn: pipeIn.tuple!, out };
  }

  t.test('two node processes register with hello and report load', async (t) => {
    launch('a', 'bj1');
    launch('b', 'sh1');
    const [a, b] = await Promise.all([harness.waitNode('a'), harness.waitNode('b')]);
    t.match(a.hello, {
      nodeId: 'a',
      site: 'bj1',
      token: TOKEN,
      rtpIp: '127.0.0.1',
      workers: 1,
      sessions: [],
    });
    t.match(b.hello, { nodeId: 'b', site: 'sh1', workers: 1 });
    t.ok(a.hello.capacity.freeSessions > 0, 'capacity announced');
    const load = await harness.waitMessage('b', (m) => m.body === 'load');
    t.equal(load.load?.workers.length, 1);
    t.ok((load.load?.workers[0]?.pid ?? 0) > 0, 'worker pid reported');
  });

  t.test('a session crosses the two processes and RTP reaches the sink', async (t) => {
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 1234, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const s = await steer('s1', 1234, sinkTuple);
    t.equal(s.ingress.ip, '127.0.0.1');
    sender.start(s.ingress);
    await sink.waitFor(25);
    t.ok(sink.packets.length >= 25, `sink got ${sink.packets.length} packets`);
    const health = await harness.waitMessage(
      'b',
      (m) =>
        m.body === 'health' &&
        (m.health?.legs.some((l) => l.kind === 'egress' && l.state === 'flowing') ?? false),
    );
    const kinds = health.health?.legs
      .filter((l) => l.sessionId === 's1')
      .map((l) => l.kind)
      .sort();
    t.same(kinds, ['egress', 'pipe-in']);

    // The same order again: same answer, nothing new.
    const again = ok(
      await harness.order('a', 's1', { createIngress: { codec: 'opus', payloadType: 111, ssrc: 1234 } }),
    );
    t.same(again.tuple, s.ingress, 'idempotent ingress');

    // Stop the source: node a reports the ingress stalled at once (an event, before any report).
    const stalled = harness.waitMessage('a', (m) => m.event?.body === 'legStalled');
    sender.stop();
    const ev = await stalled;
    t.match(ev.event?.legStalled, { sessionId: 's1', kind: 'ingress', stalled: true, state: 'stalled' });
    const resumed = harness.waitMessage('a', (m) => m.event?.body === 'legResumed');
    sender.start(s.ingress);
    t.match((await resumed).event?.legResumed, { sessionId: 's1', kind: 'ingress', stalled: false });
    sender.stop();
  });

  t.test('orders the node cannot meet come back as typed errors', async (t) => {
    const bad = await harness.order('a', 's-bad', {
      createIngress: { codec: 'opus', payloadType: 300, ssrc: 1 },
    });
    t.equal(bad.outcome, 'error');
    t.equal(bad.error?.code, 'MEDIA_ERR_INVALID');
    t.match(bad.error?.message, /createIngress\.payloadType/, 'names the field');
    const codec = await harness.order('a', 's-bad', {
      createIngress: { codec: 'g729', payloadType: 18, ssrc: 1 },
    });
    t.equal(codec.error?.code, 'MEDIA_ERR_INVALID');
    const unknown = await harness.order('a', 'nope', {
      createPipeOut: { peer: 'b', remote: { ip: '127.0.0.1', port: 4000 } },
    });
    t.equal(unknown.error?.code, 'MEDIA_ERR_UNKNOWN_SESSION');
    const noAction = await harness.order('a', 's-bad', {});
    t.equal(noAction.error?.code, 'MEDIA_ERR_INVALID');
    const conflict = await harness.order('a', 's1', {
      createIngress: { codec: 'opus', payloadType: 111, ssrc: 999 },
    });
    t.equal(conflict.error?.code, 'MEDIA_ERR_ORDER_CONFLICT');
    const json = await harness.order('b', 's-json', { createPipeIn: { peer: 'x' } });
    t.equal(json.outcome, 'ok');
    const badJson = await harness.order('b', 's-json', {
      connectPipeIn: {
        peer: 'x',
        remote: { ip: '127.0.0.1', port: 4000 },
        kind: 'audio',
        rtpParametersJson: '{nope',
      },
    });
    t.equal(badJson.error?.code, 'MEDIA_ERR_INVALID');
    const down = await harness.order('b', 's-json', { tearDown: {} });
    t.same(down.ok?.existed, true);
    const down2 = await harness.order('b', 's-json', { tearDown: {} });
    t.same(down2.ok?.existed, false, 'teardown is idempotent');
  });

  t.test('a killed worker is restarted and reported with its sessions', async (t) => {
    const load = await harness.waitMessage('b', (m) => m.body === 'load');
    const pid = load.load?.workers[0]?.pid ?? 0;
    t.ok(pid > 0);
    const died = harness.waitMessage('b', (m) => m.event?.body === 'workerDied');
    const restarted = harness.waitMessage('b', (m) => m.event?.body === 'workerRestarted');
    const lost = harness.waitMessage('b', (m) => m.event?.body === 'sessionLost');
    process.kill(pid, 'SIGKILL');
    t.match((await lost).event?.sessionLost, { sessionId: 's1', code: 'MEDIA_ERR_WORKER_DIED' });
    t.match((await died).event?.workerDied, { index: 0, pid, sessionIds: ['s1'] });
    const r = (await restarted).event?.workerRestarted;
    t.equal(r?.index, 0);
    t.not(r?.pid, pid);
    // The controller re-steers onto the restarted worker.
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 77, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    ok(await harness.order('a', 's1', { tearDown: {} }));
    const s = await steer('s1', 77, sinkTuple);
    sender.start(s.ingress);
    await sink.waitFor(10);
    t.pass('RTP flows again after the re-steer');
    sender.stop();
  });

  t.test('after a controller restart the nodes re-register and re-announce their sessions', async (t) => {
    // A real restart: the server goes away (streams cut), a new one binds the same port.
    harness.close();
    harness = new ControllerHarness(TOKEN);
    await harness.listen(port);
    await Promise.all([harness.waitNode('a'), harness.waitNode('b')]);
    const helloCount = 0;
    const hellos = harness.hellos.slice(helloCount);
    const a = hellos.find((h) => h.nodeId === 'a');
    const b = hellos.find((h) => h.nodeId === 'b');
    t.ok(
      a?.sessions.some((s) => s.sessionId === 's1' && s.ingress?.ssrc === 77),
      'a re-announces its ingress',
    );
    t.ok(
      b?.sessions.some((s) => s.sessionId === 's1' && s.egress !== null && s.pipeIns[0]?.peer === 'a'),
      'b re-announces its pipe-in and egress',
    );
    const r = await harness.order('a', 's1', {
      createIngress: { codec: 'opus', payloadType: 111, ssrc: 77 },
    });
    t.equal(r.outcome, 'ok', 'orders flow on the new stream');
  });

  t.test('a node with a wrong token is refused and exits 1', async (t) => {
    const p = startNode(
      ['--node', 'x', '--site', 'bj1', '--controller', `127.0.0.1:${port}`, '--workers', '1'],
      'wrong',
    );
    procs.push(p);
    const code = await p.exited;
    t.equal(code, 1);
    t.notOk(harness.nodes.has('x'));
  });

  t.test('bad command lines exit 2 with a message', async (t) => {
    const p = startNode(['--node', 'y', '--site', 'bj1', '--controller', 'nohost']);
    procs.push(p);
    t.equal(await p.exited, 2);
    t.match(p.output.join(''), /--controller must be HOST:PORT/);
    const q = startNode([
      '--node',
      'y',
      '--site',
      'bj1',
      '--controller',
      '127.0.0.1:1',
      '--rtp-ports',
      '9-5',
    ]);
    procs.push(q);
    t.equal(await q.exited, 2);
    const r = startNode(['--node', 'y', '--site', 'bj1', '--controller', '127.0.0.1:1'], '');
    procs.push(r);
    t.equal(await r.exited, 2);
    t.match(r.output.join(''), /MERIDIAN_AGENT_TOKEN/);
  });
}
