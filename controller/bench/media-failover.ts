/**
 * `npm run bench:media`: media node failover with real mediasoup nodes and real RTP.
 *
 * Nodes at two sites (bj1: one node, sh1: the egress node plus a spare), S concurrent sessions
 * (default 50) each carrying 50 packets/s of RTP from a sender to its own sink. Then the egress node
 * carrying every session is killed with SIGKILL, and we measure per session: the gap at the sink
 * (p50/p99/max), packets lost, time to detect (stream loss) and to re-steer; also steering time per
 * session at creation and sessions per node.
 *
 * Then a spare joins at bj1 and the ingress node is killed: time to `media.session.moved` per
 * session, and the gap at the sinks when each source re-targets on that event.
 *
 * Baseline (same run): the largest inter-packet gap at the sinks over an equal window before the
 * kill, with no failure: what the sender/loopback/event loop alone produce.
 *
 * With --standby, every session keeps a warm standby egress on the spare (steering `warmStandby`):
 * the egress failure then costs one activation order per session.
 *
 * Usage: node controller/dist/bench/media-failover.js [--sessions S] [--workers N] [--standby]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { MediaGateway } from '../src/media-gateway';
import { MediaSteering } from '../src/media-steering';
import { RtpReceiver, RtpSender, type ReceivedPacket } from '@meridian/media';
import { pct } from './stats';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'bin', 'meridian.js');
const TOKEN = 'bench-token';

function maxGap(packets: ReceivedPacket[], from: number, to: number): number {
  let gap = 0;
  let prev = from;
  for (const p of packets) {
    if (p.at < from || p.at > to) continue;
    gap = Math.max(gap, p.at - prev);
    prev = p.at;
  }
  return Math.max(gap, to - prev);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, pred: () => boolean, timeoutMs = 30000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string', default: '50' },
      workers: { type: 'string', default: '1' },
      standby: { type: 'boolean', default: false },
    },
  });
  const S = Number(values.sessions);
  const workers = values.workers ?? '1';
  const log = pino({ level: process.env.BENCH_LOG ?? 'silent' });
  const detectedAt: number[] = [];
  const gateway = new MediaGateway({
    token: TOKEN,
    log,
    loadIntervalMs: 500,
    healthIntervalMs: 250,
    sessionsToDrop: (n, a) => steering.sessionsToDrop(n, a),
  });
  const steering: MediaSteering = new MediaSteering({ gateway, log, warmStandby: values.standby === true });
  const resteers: Array<{ ms: number; ok: boolean }> = [];
  steering.on('resteered', (r) => resteers.push(r));
  gateway.on('nodedown', () => detectedAt.push(Date.now()));

  const server = new grpc.Server();
  server.addService(gateway.definition, gateway.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  const procs = new Map<string, ChildProcess>();
  const start = (id: string, site: string): void => {
    procs.set(
      id,
      spawn(
        process.execPath,
        [
          CLI,
          'media',
          '--node',
          id,
          '--site',
          site,
          '--controller',
          `127.0.0.1:${port}`,
          '--workers',
          workers,
        ],
        {
          env: { ...process.env, MERIDIAN_AGENT_TOKEN: TOKEN, MERIDIAN_LOG_LEVEL: 'warn' },
          stdio: ['ignore', 'ignore', 'inherit'],
        },
      ),
    );
  };
  const senders: RtpSender[] = [];
  const sinks: RtpReceiver[] = [];
  try {
    start('bj-a', 'bj1');
    start('sh-a', 'sh1');
    await waitUntil('2 nodes', () => gateway.nodes().filter((n) => n.connected && n.load).length === 2);

    // S sessions bj1 -> sh1, all on sh-a (the only sh1 node so far).
    const steerMs: number[] = [];
    const ids: string[] = [];
    for (let i = 0; i < S; i++) {
      const sink = new RtpReceiver();
      const sinkTuple = await sink.bind();
      const sender = new RtpSender({ ssrc: 10000 + i, payloadType: 111 });
      await sender.bind();
      sinks.push(sink);
      senders.push(sender);
      const t0 = performance.now();
      const r = await steering.create({
        ingressSite: 'bj1',
        egressSite: 'sh1',
        codec: 'opus',
        payloadType: 111,
        ssrc: 10000 + i,
        sink: sinkTuple,
      });
      steerMs.push(performance.now() - t0);
      if (!r.ok) throw new Error(`session ${i}: ${r.error.message}`);
      ids.push(r.value.id);
      sender.start(r.value.ingress);
    }
    await waitUntil('RTP at every sink', () => sinks.every((s) => s.packets.length >= 10));

    // The spare joins; then the egress node dies.
    start('sh-b', 'sh1');
    await waitUntil(
      'spare node',
      () => gateway.node('sh-b')?.connected === true && gateway.node('sh-b')?.load !== undefined,
    );
    if (values.standby === true) {
      await waitUntil(
        'a warm standby for every session',
        () => ids.every((id) => steering.get(id)?.standby === 'sh-b'),
        60000,
      );
    }
    await sleep(2000);
    const baselineFrom = Date.now() - 2000;
    const sentAtKill = senders.map((x) => x.sent);
    const killAt = Date.now();
    procs.get('sh-a')?.kill('SIGKILL');
    await waitUntil('re-steer of every session', () => resteers.length >= S, 30000);
    await sleep(2000);
    const end = Date.now();
    const sentAtEnd = senders.map((x) => x.sent);

    const baseline = sinks.map((s) => maxGap(s.packets, baselineFrom, killAt));
    const gaps = sinks.map((s) => maxGap(s.packets, killAt, end));
    // Lost = sent by the sender between the kill and the end, minus received at the sink in the
    // same window (packets in flight at either edge make this +-1).
    const lost = sinks.map((sink, i) =>
      Math.max(
        0,
        (sentAtEnd[i] ?? 0) -
          (sentAtKill[i] ?? 0) -
          sink.packets.filter((p) => p.at >= killAt && p.at <= end).length,
      ),
    );
    const detect = (detectedAt[0] ?? NaN) - killAt;
    const resteerMs = resteers.map((r) => r.ms);
    const perNode = gateway
      .nodes()
      .filter((n) => n.connected)
      .map((n) => `${n.id}:${n.load?.sessions ?? '?'}`);
    const out = {
      machine: `${os.cpus().length} vCPU ${os.cpus()[0]?.model ?? ''}, Node ${process.version}`,
      sessions: S,
      workersPerNode: Number(workers),
      warmStandby: values.standby === true,
      steeringMsPerSession: {
        p50: +pct(steerMs, 50).toFixed(1),
        p99: +pct(steerMs, 99).toFixed(1),
        max: +Math.max(...steerMs).toFixed(1),
      },
      baselineGapMs: { p50: pct(baseline, 50), p99: pct(baseline, 99), max: Math.max(...baseline) },
      failoverGapMs: { p50: pct(gaps, 50), p99: pct(gaps, 99), max: Math.max(...gaps) },
      lostPacketsPerSession: { p50: pct(lost, 50), p99: pct(lost, 99), max: Math.max(...lost) },
      detectMs: detect,
      resteerMsFromDetection: {
        p50: pct(resteerMs, 50),
        p99: pct(resteerMs, 99),
        max: Math.max(...resteerMs),
      },
      resteerFailures: resteers.filter((r) => !r.ok).length,
      sessionsPerNodeAfter: perNode,
      ingressFailure: {} as Record<string, unknown>,
    };

    // Ingress failure: a spare joins at bj1, the ingress node dies; each sender re-targets as soon
    // as its session's media.session.moved arrives (an instant source, so the gap is steering only).
    start('bj-b', 'bj1');
    await waitUntil(
      'bj1 spare',
      () => gateway.node('bj-b')?.connected === true && gateway.node('bj-b')?.load !== undefined,
    );
    await sleep(1000);
    const index = new Map(ids.map((id, i) => [id, i]));
    const movedAt = new Map<string, number>();
    steering.on('event', (ev) => {
      if (ev.type !== 'media.session.moved') return;
      const id = String(ev.data.id);
      const i = index.get(id);
      if (i === undefined || movedAt.has(id)) return;
      movedAt.set(id, Date.now());
      senders[i]?.retarget(ev.data.ingress as { ip: string; port: number });
    });
    const sentAtKill2 = senders.map((x) => x.sent);
    const kill2 = Date.now();
    procs.get('bj-a')?.kill('SIGKILL');
    await waitUntil('media.session.moved for every session', () => movedAt.size >= S, 30000);
    await sleep(2000);
    const end2 = Date.now();
    const sentAtEnd2 = senders.map((x) => x.sent);
    const moved = [...movedAt.values()].map((t) => t - kill2);
    const gaps2 = sinks.map((x) => maxGap(x.packets, kill2, end2));
    const lost2 = sinks.map((sink, i) =>
      Math.max(
        0,
        (sentAtEnd2[i] ?? 0) -
          (sentAtKill2[i] ?? 0) -
          sink.packets.filter((p) => p.at >= kill2 && p.at <= end2).length,
      ),
    );
    out.ingressFailure = {
      movedEventMs: { p50: pct(moved, 50), p99: pct(moved, 99), max: Math.max(...moved) },
      gapAtSinkMs: { p50: pct(gaps2, 50), p99: pct(gaps2, 99), max: Math.max(...gaps2) },
      lostPacketsPerSession: { p50: pct(lost2, 50), p99: pct(lost2, 99), max: Math.max(...lost2) },
      sessionsPerNodeAfter: gateway
        .nodes()
        .filter((n) => n.connected)
        .map((n) => `${n.id}:${n.load?.sessions ?? '?'}`),
    };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } finally {
    for (const s of senders) s.close();
    for (const s of sinks) s.close();
    for (const c of procs.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await sleep(300);
    for (const c of procs.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    gateway.close();
    server.forceShutdown();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:media failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
