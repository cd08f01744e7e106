/**
 * Media sessions follow the controller's voice route: a real Controller with a route loop, four
 * real `meridian media` processes (one per site), real RTP. The voice route bj1 -> sh1 goes through
 * gz1, so the session is relayed there; then a raw agent stream for bj1 reports link bj1-gz1 dead
 * (`alive: false`), the estimator takes it down, and the session is re-steered through hz1 (the new
 * voice route) while the sink keeps hearing RTP; then the link is back but slow, the route loop
 * moves voice to hz1 (`routes-changed`, no link down) and the session follows. Also: the SSE
 * events route accepts `?token=`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import t from 'tap';
import type { Topology } from '@meridian/topology';
import { Controller } from '../src/controller';
import { attachMediaSteering, voiceRoutes, type MediaSteeringService } from '../src/media-service';
import {
  AGENT_TOKEN,
  API_TOKEN,
  eventually,
  hello,
  openStream,
  quietLog,
  report,
  type TestStream,
} from './helpers';
import { RtpReceiver, RtpSender, type ReceivedPacket } from '@meridian/media';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'meridian.js');
const MEDIA_DIST = path.join(ROOT, 'media', 'dist', 'src', 'index.js');
const WORKER = path.join(ROOT, 'node_modules', 'mediasoup', 'worker', 'out', 'Release', 'mediasoup-worker');

const skip = !existsSync(process.env.MEDIASOUP_WORKER_BIN ?? WORKER)
  ? `mediasoup worker not built (${WORKER}); run 'npm run build'`
  : !existsSync(MEDIA_DIST)
    ? `@meridian/media is not built (${MEDIA_DIST}); run 'npx tsc -b media'`
    : undefined;

/** bj1 -> sh1: via gz1 (20 ms) or via hz1 (30 ms); voice minimises latency. */
function diamond(): Topology {
  const site = (id: string, n: number) => ({
    id,
    kind: 'dc' as const,
    region: 'cn',
    prefixes: [`10.${n}.0.0/16`],
  });
  const link = (a: string, b: string, latencyMs: number) => ({
    id: `${a}-${b}`,
    a,
    b,
    transport: 'fiber' as const,
    capacityMbps: 1000,
    latencyMs,
    jitterMs: 1,
    lossPct: 0,
    cost: 10,
  });
  return {
    version: 1,
    source: '<media-route test>',
    sites: [site('bj1', 1), site('gz1', 2), site('hz1', 3), site('sh1', 4)],
    links: [link('bj1', 'gz1', 10), link('gz1', 'sh1', 10), link('bj1', 'hz1', 15), link('hz1', 'sh1', 15)],
    classes: [
      {
        id: 'voice',
        sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 },
        objective: 'latency',
        maxUtilPct: 80,
        priority: 1,
      },
    ],
    devices: [],
  };
}

/** Largest silence at the sink after `from` (ms), up to the last packet. */
function maxGapAfter(packets: ReceivedPacket[], from: number): number {
  let gap = 0;
  let prev = from;
  for (const p of packets) {
    if (p.at < from) continue;
    gap = Math.max(gap, p.at - prev);
    prev = p.at;
  }
  return gap;
}

t.test('voice routes come from the route loop, and avoid a link already down', async (t) => {
  const c = new Controller({
    topology: diamond(),
    apiToken: API_TOKEN,
    agentToken: AGENT_TOKEN,
    grpc: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    log: quietLog,
  });
  await c.start();
  t.teardown(() => c.stop());
  const v = voiceRoutes(c);
  t.same(v.route('bj1', 'sh1')?.sites, ['bj1', 'gz1', 'sh1']);
  t.same(v.route('bj1', 'sh1')?.links, ['bj1-gz1', 'gz1-sh1']);
  t.equal(v.route('bj1', 'sh1')?.latencyMs, 20);
  t.same(v.route('bj1', 'bj1')?.sites, ['bj1']);
  t.equal(v.route('bj1', 'nowhere'), null);
  const s = openStream(c.ports.grpc);
  t.teardown(() => s.close());
  s.call.write(hello('bj1', 9000));
  await s.waitFor((m) => 'welcome' in m && !!m.welcome);
  s.call.write(report('bj1-gz1', 'gz1', 0, 0, 3));
  await eventually(() => c.estimator.snapshot('bj1-gz1')?.up === false, 5000, 'bj1-gz1 down');
  v.invalidate();
  t.same(v.route('bj1', 'sh1')?.sites, ['bj1', 'hz1', 'sh1'], 'recomputed around the down link');
});

if (skip !== undefined) {
  console.log(`# SKIP media route tests: ${skip}`);
} else {
  const procs: ChildProcess[] = [];
  let c: Controller;
  let media: MediaSteeringService;
  let agent: TestStream | undefined;
  let keepDown: NodeJS.Timeout | undefined;

  t.before(async () => {
    c = new Controller({
      topology: diamond(),
      apiToken: API_TOKEN,
      agentToken: AGENT_TOKEN,
      grpc: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      log: quietLog,
    });
    media = attachMediaSteering(c, { agentToken: AGENT_TOKEN, apiToken: API_TOKEN });
    await c.start();
    for (const [id, site] of [
      ['n-bj', 'bj1'],
      ['n-gz', 'gz1'],
      ['n-hz', 'hz1'],
      ['n-sh', 'sh1'],
    ] as const) {
      procs.push(
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
            `127.0.0.1:${c.ports.grpc}`,
            '--workers',
            '1',
          ],
          {
            env: { ...process.env, MERIDIAN_AGENT_TOKEN: AGENT_TOKEN, MERIDIAN_LOG_LEVEL: 'warn' },
            stdio: ['ignore', 'ignore', 'inherit'],
          },
        ),
      );
    }
    await eventually(
      () => media.gateway.nodes().filter((n) => n.connected && n.load).length === 4,
      30000,
      'four media nodes',
    );
  });
  t.teardown(async () => {
    if (keepDown) clearInterval(keepDown);
    agent?.close();
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    media.close();
    await c.stop();
  });

  t.test('the SSE events route takes the token as ?token= (EventSource), nowhere else', async (t) => {
    const get = (p: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; type: string; first: string }>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: c.ports.http, path: p, headers }, (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            resolve({ status: res.statusCode ?? 0, type: '', first: '' });
            return;
          }
          res.once('data', (chunk: Buffer) => {
            resolve({ status: 200, type: String(res.headers['content-type']), first: chunk.toString() });
            req.destroy();
          });
        });
        req.on('error', reject);
      });
    const ok = await get(`/api/v1/events?token=${encodeURIComponent(API_TOKEN)}`);
    t.equal(ok.status, 200);
    t.match(ok.type, /text\/event-stream/);
    t.match(ok.first, /meridian events/);
    t.equal((await get('/api/v1/events', { authorization: `Bearer ${API_TOKEN}` })).status, 200, 'header');
    t.equal((await get('/api/v1/events?token=wrong')).status, 401);
    t.equal((await get('/api/v1/events')).status, 401);
    t.equal((await get(`/api/v1/media/nodes?token=${API_TOKEN}`)).status, 401, 'only the events route');
  });

  t.test(
    'a session follows the voice route: relayed at gz1, re-steered via hz1 when bj1-gz1 dies',
    async (t) => {
      const sink = new RtpReceiver();
      const sinkTuple = await sink.bind();
      const sender = new RtpSender({ ssrc: 4242, payloadType: 111 });
      await sender.bind();
      t.teardown(() => {
        sender.close();
        sink.close();
      });
      const r = await media.steering.create({
        ingressSite: 'bj1',
        egressSite: 'sh1',
        codec: 'opus',
        payloadType: 111,
        ssrc: 4242,
        sink: sinkTuple,
      });
      if (!r.ok) throw new Error(r.error.message);
      t.same(r.value.nodes, ['n-bj', 'n-gz', 'n-sh'], 'relayed where the voice route goes');
      t.same(r.value.sites, ['bj1', 'gz1', 'sh1']);
      sender.start(r.value.ingress);
      await sink.waitFor(20);

      const rerouted = new Promise<string[]>((resolve) =>
        media.steering.on('event', (ev) => {
          if (ev.type === 'media.session.rerouted' && ev.data.id === r.value.id)
            resolve(ev.data.nodes as string[]);
        }),
      );
      const resteered = new Promise<number>((resolve) =>
        media.steering.on('resteered', (x) => {
          if (x.id === r.value.id && x.ok) resolve(x.ms);
        }),
      );
      // The bj1 agent reports the link dead; keep reporting so it does not go stale (back to nominal).
      agent = openStream(c.ports.grpc);
      agent.call.write(hello('bj1', 9000));
      await agent.waitFor((m) => 'welcome' in m && !!m.welcome);
      const downAt = Date.now();
      const a = agent;
      a.call.write(report('bj1-gz1', 'gz1', 0, 0, 3));
      keepDown = setInterval(() => a.call.write(report('bj1-gz1', 'gz1', 0, 0, 3)), 500);
      t.same(await rerouted, ['n-bj', 'n-hz', 'n-sh'], 'the relay moved to hz1');
      const ms = await resteered;
      await eventually(() => sink.packets.some((p) => p.at > downAt + 300), 10000, 'RTP after the re-steer');
      await sink.waitFor(10);
      const v = media.steering.get(r.value.id);
      t.same(v?.sites, ['bj1', 'hz1', 'sh1']);
      t.equal(v?.status, 'active');
      t.same(
        [...new Set(sink.packets.map((p) => p.payloadType))],
        [111],
        "the sink hears the source's payload type, before and after the re-steer",
      );
      const gap = maxGapAfter(sink.packets, downAt - 40);
      console.log(`# link bj1-gz1 down: re-steered in ${ms} ms, largest gap at the sink ${gap} ms`);
      // The route loop's own change arrives after the link change: nothing more moves.
      await new Promise((res) => setTimeout(res, 300));
      t.same(media.steering.get(r.value.id)?.nodes, ['n-bj', 'n-hz', 'n-sh'], 'stable after routes-changed');
      await eventually(
        () => media.gateway.node('n-gz')?.load?.sessions === 0,
        10000,
        'the old relay torn down',
      );
      sender.stop();
      t.equal(await media.steering.remove(r.value.id), true);
    },
  );

  t.test('a session follows a voice route change from the route loop (latency, no link down)', async (t) => {
    // bj1-gz1 comes back fast (2 ms RTT): the voice route is via gz1 again.
    if (keepDown) clearInterval(keepDown);
    keepDown = undefined;
    const a = agent as TestStream;
    a.call.write(report('bj1-gz1', 'gz1', 20, 2));
    await eventually(
      () =>
        c.routes.find((r) => r.class === 'voice' && r.src === 'bj1' && r.dst === 'sh1')?.primary?.sites[1] ===
        'gz1',
      10000,
      'the voice route back via gz1',
    );
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 4343, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const r = await media.steering.create({
      ingressSite: 'bj1',
      egressSite: 'sh1',
      codec: 'opus',
      payloadType: 111,
      ssrc: 4343,
      sink: sinkTuple,
    });
    if (!r.ok) throw new Error(r.error.message);
    t.same(r.value.sites, ['bj1', 'gz1', 'sh1']);
    sender.start(r.value.ingress);
    await sink.waitFor(10);
    const rerouted = new Promise<{ nodes: string[]; reason: string }>((resolve) =>
      media.steering.on('event', (ev) => {
        if (ev.type === 'media.session.rerouted' && ev.data.id === r.value.id)
          resolve({ nodes: ev.data.nodes as string[], reason: String(ev.data.reason) });
      }),
    );
    // Now bj1-gz1 is alive but slow (200 ms RTT, 100 ms one way): the route loop moves voice to hz1.
    const changedAt = Date.now();
    const slow = setInterval(() => a.call.write(report('bj1-gz1', 'gz1', 20, 200)), 300);
    t.teardown(() => clearInterval(slow));
    a.call.write(report('bj1-gz1', 'gz1', 20, 200));
    const ev = await rerouted;
    t.same(ev.nodes, ['n-bj', 'n-hz', 'n-sh'], 'the relay follows the new voice route');
    t.equal(ev.reason, 'voice route changed');
    t.equal(c.estimator.snapshot('bj1-gz1')?.up, true, 'no link went down');
    await eventually(() => sink.packets.some((p) => p.at > changedAt + 300), 10000, 'RTP after the move');
    console.log(
      `# voice route change: largest gap at the sink ${maxGapAfter(sink.packets, changedAt - 40)} ms (make-before-break)`,
    );
    sender.stop();
    t.equal(await media.steering.remove(r.value.id), true);
  });
}
