/**
 * Relays: when the voice route from the ingress site to the egress site crosses an intermediate
 * site with a media node, the session is piped through it (three real `meridian media`
 * processes in a chain); killing the relay re-pipes the session through another node, and so
 * does a link-state change that leaves the relay's site unreachable.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import t from 'tap';
import { MediaGateway } from '../src/media-gateway';
import { MediaSteering } from '../src/media-steering';
import { RtpReceiver, RtpSender } from '@meridian/media';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'meridian.js');
const MEDIA_DIST = path.join(ROOT, 'media', 'dist', 'src', 'index.js');
const WORKER = path.join(ROOT, 'node_modules', 'mediasoup', 'worker', 'out', 'Release', 'mediasoup-worker');
const TOKEN = 'media-relay-token';

const skip = !existsSync(process.env.MEDIASOUP_WORKER_BIN ?? WORKER)
  ? `mediasoup worker not built (${WORKER}); run 'npm run build'`
  : !existsSync(MEDIA_DIST)
    ? `@meridian/media is not built (${MEDIA_DIST}); run 'npx tsc -b media'`
    : undefined;

const waitUntil = async (what: string, pred: () => boolean, timeoutMs = 20000): Promise<void> => {
  const until = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

if (skip !== undefined) {
  console.log(`# SKIP media relay tests: ${skip}`);
  t.plan(0, skip);
} else {
  const log = pino({ level: process.env.MEDIA_TEST_LOG ?? 'silent' });
  // bj1 -- gz1 -- sh1: the voice route from bj1 to sh1 crosses gz1.
  const sitesOnRoute: Record<string, string[]> = { 'bj1>sh1': ['gz1'] };
  const dist: Record<string, number> = { 'bj1>gz1': 10, 'gz1>sh1': 10, 'bj1>sh1': 20 };
  const distance = (a: string, b: string): number =>
    a === b ? 0 : (dist[`${a}>${b}`] ?? dist[`${b}>${a}`] ?? 50);
  const gateway = new MediaGateway({
    token: TOKEN,
    log,
    loadIntervalMs: 300,
    healthIntervalMs: 100,
    sessionsToDrop: (n, a) => steering.sessionsToDrop(n, a),
  });
  // Link state as telemetry would report it: site pairs that cannot reach each other.
  const cut = new Set<string>();
  const steering: MediaSteering = new MediaSteering({
    gateway,
    log,
    distance,
    reachable: (a, b) => !cut.has(`${a}|${b}`) && !cut.has(`${b}|${a}`),
    relaySites: (a, b) => sitesOnRoute[`${a}>${b}`] ?? [],
  });
  const server = new grpc.Server();
  server.addService(gateway.definition, gateway.implementation);
  const procs = new Map<string, ChildProcess>();

  t.before(async () => {
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    for (const [id, site] of [
      ['bj', 'bj1'],
      ['gz-a', 'gz1'],
      ['gz-b', 'gz1'],
      ['sh', 'sh1'],
      ['sh-2', 'sh1'],
    ] as const) {
      procs.set(
        id,
        spawn(
          process.execPath,
          [CLI, 'media', '--node', id, '--site', site, '--controller', `127.0.0.1:${port}`, '--workers', '1'],
          {
            env: { ...process.env, MERIDIAN_AGENT_TOKEN: TOKEN, MERIDIAN_LOG_LEVEL: 'warn' },
            stdio: ['ignore', 'ignore', 'inherit'],
          },
        ),
      );
    }
    await waitUntil('5 media nodes', () => gateway.nodes().filter((n) => n.connected && n.load).length === 5);
  });
  t.teardown(async () => {
    for (const c of procs.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    for (const c of procs.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    gateway.close();
    server.forceShutdown();
  });

  t.test('a session crosses a relay at the intermediate site and survives its death', async (t) => {
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 777, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const r = await steering.create({
      ingressSite: 'bj1',
      egressSite: 'sh1',
      codec: 'opus',
      payloadType: 111,
      ssrc: 777,
      sink: sinkTuple,
    });
    if (!r.ok) throw new Error(r.error.message);
    const s = r.value;
    t.equal(s.nodes.length, 3, `path ${s.nodes.join(' -> ')}`);
    t.same(s.sites, ['bj1', 'gz1', 'sh1'], 'the relay sits at gz1');
    sender.start(s.ingress);
    await sink.waitFor(20);
    await waitUntil('relay legs reported', () =>
      (steering.get(s.id)?.legs ?? []).some(
        (l) => l.node === s.nodes[1] && l.kind === 'pipe-out' && l.packets > 0,
      ),
    );
    t.ok(steering.get(s.id)?.quality.delayMs, 'quality estimated along the path');

    const relay = s.nodes[1] as string;
    const killedAt = Date.now();
    procs.get(relay)?.kill('SIGKILL');
    await waitUntil('RTP after the relay death', () => sink.packets.some((p) => p.at > killedAt + 100));
    await sink.waitFor(10);
    const after = steering.get(s.id);
    t.equal(after?.nodes.length, 3);
    t.not(after?.nodes[1], relay, 'a new relay');
    t.same(after?.sites, ['bj1', 'gz1', 'sh1'], 'the other gz1 node relays');
    t.equal(after?.nodes[0], s.nodes[0], 'the ingress did not move (no re-targeting needed)');
    let gap = 0;
    let prev = killedAt - 40;
    for (const p of sink.packets) {
      if (p.at < prev) continue;
      gap = Math.max(gap, p.at - prev);
      prev = p.at;
    }
    console.log(`# relay death: largest gap at the sink ${gap} ms`);
    sender.stop();
    t.equal(await steering.remove(s.id), true);
  });

  t.test('a pipe whose path is cut (link state) is re-steered through a reachable node', async (t) => {
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 888, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
      cut.clear();
    });
    const r = await steering.create({
      ingressSite: 'bj1',
      egressSite: 'sh1',
      codec: 'opus',
      payloadType: 111,
      ssrc: 888,
      sink: sinkTuple,
    });
    if (!r.ok) throw new Error(r.error.message);
    t.same(r.value.sites, ['bj1', 'gz1', 'sh1']);
    sender.start(r.value.ingress);
    await sink.waitFor(10);
    t.equal(steering.recheckPaths(), 0, 'nothing to do while every path is up');
    cut.add('bj1|gz1');
    const cutAt = Date.now();
    t.equal(steering.recheckPaths('link bj1-gz1 down'), 1, 'one pipe lost its path');
    await waitUntil('re-steered', () => steering.get(r.value.id)?.sites[1] !== 'gz1');
    await waitUntil('RTP after the re-steer', () => sink.packets.some((p) => p.at > cutAt + 100));
    const after = steering.get(r.value.id);
    t.equal(after?.nodes[0], r.value.nodes[0], 'the ingress stays');
    t.not(after?.sites[1], 'gz1', `the relay moved off gz1 (${after?.nodes.join(' -> ')})`);
    t.equal(after?.status, 'active');
    sender.stop();
  });

  t.test('warm standby: an egress failure costs one activation order', async (t) => {
    const warm = new MediaSteering({ gateway, log, warmStandby: true });
    t.teardown(() => warm.close());
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 999, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const r = await warm.create({
      ingressSite: 'bj1',
      egressSite: 'sh1',
      codec: 'opus',
      payloadType: 111,
      ssrc: 999,
      sink: sinkTuple,
    });
    if (!r.ok) throw new Error(r.error.message);
    t.same(r.value.sites, ['bj1', 'sh1']);
    sender.start(r.value.ingress);
    await sink.waitFor(10);
    await waitUntil('standby built', () => warm.get(r.value.id)?.standby !== undefined);
    const standby = warm.get(r.value.id)?.standby as string;
    const egress = r.value.nodes[1] as string;
    t.not(standby, egress);
    t.equal(gateway.node(standby)?.site, 'sh1', 'the standby is at the egress site');
    await new Promise((res) => setTimeout(res, 300));
    t.equal(new Set(sink.packets.map((p) => p.ssrc)).size, 1, 'the standby sends nothing to the sink');

    const killedAt = Date.now();
    procs.get(egress)?.kill('SIGKILL');
    await waitUntil('RTP after the egress death', () => sink.packets.some((p) => p.at > killedAt + 100));
    t.equal(warm.get(r.value.id)?.nodes[1], standby, 'the standby became the egress');
    let gap = 0;
    let prev = killedAt - 40;
    for (const p of sink.packets) {
      if (p.at < prev) continue;
      gap = Math.max(gap, p.at - prev);
      prev = p.at;
    }
    console.log(`# warm standby egress death: largest gap at the sink ${gap} ms`);
    sender.stop();
  });
}
