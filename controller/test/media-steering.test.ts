/**
 * Media steering end to end: four real `meridian media` processes (sites bj1 and sh1, two nodes
 * each) register with the MediaGateway over gRPC; sessions are created through the HTTP API and
 * carry real RTP from a test sender to a test sink; the egress node and then the ingress node are
 * killed with SIGKILL, a node is drained, and the sink must hear RTP again each time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import Fastify, { type FastifyInstance } from 'fastify';
import pino from 'pino';
import t from 'tap';
import { MediaGateway } from '../src/media-gateway';
import { mediaRoutes } from '../src/media-routes';
import { MediaSteering } from '../src/media-steering';
import { RtpReceiver, RtpSender, type ReceivedPacket } from '@meridian/media';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'meridian.js');
const MEDIA_DIST = path.join(ROOT, 'media', 'dist', 'src', 'index.js');
const WORKER = path.join(ROOT, 'node_modules', 'mediasoup', 'worker', 'out', 'Release', 'mediasoup-worker');
const TOKEN = 'media-steering-token';

const skip = !existsSync(process.env.MEDIASOUP_WORKER_BIN ?? WORKER)
  ? `mediasoup worker not built (${WORKER}); run 'npm run build'`
  : !existsSync(MEDIA_DIST)
    ? `@meridian/media is not built (${MEDIA_DIST}); run 'npx tsc -b media'`
    : undefined;

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

if (skip !== undefined) {
  console.log(`# SKIP media steering tests: ${skip}`);
  t.plan(0, skip);
} else {
  const log = pino({ level: process.env.MEDIA_TEST_LOG ?? 'silent' });
  const gateway = new MediaGateway({
    token: TOKEN,
    log,
    loadIntervalMs: 300,
    healthIntervalMs: 100,
    sessionsToDrop: (n, a) => steering.sessionsToDrop(n, a),
  });
  const steering: MediaSteering = new MediaSteering({ gateway, log });
  const server = new grpc.Server();
  server.addService(gateway.definition, gateway.implementation);
  const app: FastifyInstance = Fastify();
  const procs = new Map<string, ChildProcess>();
  let httpBase = '';
  let grpcPort = 0;

  const startNode = (id: string, site: string, port: number): void => {
    const child = spawn(
      process.execPath,
      [CLI, 'media', '--node', id, '--site', site, '--controller', `127.0.0.1:${port}`, '--workers', '1'],
      {
        env: { ...process.env, MERIDIAN_AGENT_TOKEN: TOKEN, MERIDIAN_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    procs.set(id, child);
  };

  const waitUntil = async (what: string, pred: () => boolean, timeoutMs = 20000): Promise<void> => {
    const until = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  /** Collects server-sent events from GET /api/v1/events. */
  const events: Array<{ type: string; data: Record<string, unknown>; at: number }> = [];
  let sse: http.ClientRequest | undefined;

  t.before(async () => {
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    await app.register(mediaRoutes(steering), { prefix: '/api/v1' });
    httpBase = await app.listen({ host: '127.0.0.1', port: 0 });
    sse = http.get(`${httpBase}/api/v1/events`, (res) => {
      let buf = '';
      res.on('data', (chunk: Buffer) => {
        buf += chunk.toString();
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const type = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (type !== undefined && data !== undefined)
            events.push({ type, data: JSON.parse(data), at: Date.now() });
        }
      });
    });
    sse.on('error', () => undefined);
    grpcPort = port;
    startNode('bj-a', 'bj1', port);
    startNode('bj-b', 'bj1', port);
    startNode('sh-a', 'sh1', port);
    startNode('sh-b', 'sh1', port);
    await waitUntil(
      '4 media nodes',
      () => gateway.nodes().filter((n) => n.connected && n.load !== undefined).length === 4,
    );
  });

  t.teardown(async () => {
    sse?.destroy();
    for (const c of procs.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    for (const c of procs.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    gateway.close();
    server.forceShutdown();
    await app.close();
  });

  const post = async (body: unknown) =>
    app.inject({ method: 'POST', url: '/api/v1/media/sessions', payload: body as Record<string, unknown> });

  t.test('bad session requests are 400 with the field named', async (t) => {
    const base = {
      ingressSite: 'bj1',
      egressSite: 'sh1',
      codec: 'opus',
      payloadType: 111,
      ssrc: 1,
      sink: { ip: '127.0.0.1', port: 5000 },
    };
    const r1 = await post({ ...base, payloadType: 200 });
    t.equal(r1.statusCode, 400);
    t.match(r1.json(), { error: { code: 'CTRL_ERR_BAD_REQUEST', message: /payloadType/ } });
    const r2 = await post({ ...base, sink: { ip: 'sink', port: 5000 } });
    t.equal(r2.statusCode, 400);
    t.match(r2.json().error.message, /sink\.ip/);
    const r3 = await post({ ...base, codec: 'g729' });
    t.equal(r3.statusCode, 400);
    t.match(r3.json().error.message, /codec/);
    const r4 = await post({ ingressSite: 'bj1' });
    t.equal(r4.statusCode, 400);
    const lonely = new MediaSteering({ gateway: new MediaGateway({ token: 'x', log }), log });
    const r5 = await lonely.create(base);
    t.match(
      r5,
      { ok: false, error: { status: 503, code: 'CTRL_ERR_MEDIA_NO_CAPACITY' } },
      'no node: 503 with a reason',
    );
  });

  t.test('nodes are listed with health and load', async (t) => {
    const r = await app.inject({ method: 'GET', url: '/api/v1/media/nodes' });
    t.equal(r.statusCode, 200);
    const nodes = r.json().nodes as Array<{
      id: string;
      site: string;
      healthy: boolean;
      load: { workers: unknown[] };
    }>;
    t.same(nodes.map((n) => n.id).sort(), ['bj-a', 'bj-b', 'sh-a', 'sh-b']);
    t.ok(nodes.every((n) => n.healthy && n.load.workers.length === 1));
  });

  t.test('sessions carry RTP across nodes and survive egress and ingress node deaths', async (t) => {
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 4242, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const res = await post({
      ingressSite: 'bj1',
      egressSite: 'sh1',
      codec: 'opus',
      payloadType: 111,
      ssrc: 4242,
      sink: sinkTuple,
    });
    t.equal(res.statusCode, 201, res.body);
    const created = res.json<{
      id: string;
      ingress: { ip: string; port: number };
      nodes: string[];
      sites: string[];
    }>();
    t.same(created.sites, ['bj1', 'sh1'], 'ingress at bj1, egress at sh1');
    t.equal(created.nodes.length, 2);
    sender.start(created.ingress);
    await sink.waitFor(20);

    const view = await app.inject({ method: 'GET', url: `/api/v1/media/sessions/${created.id}` });
    t.equal(view.statusCode, 200);
    await waitUntil('leg counts', () => (steering.get(created.id)?.legs.length ?? 0) >= 3);
    const legs = steering.get(created.id)?.legs ?? [];
    t.ok(
      legs.some((l) => l.kind === 'egress' && l.packets > 0),
      'egress leg counts packets',
    );

    // Egress node killed: the ingress node pipes to the other sh1 node.
    const egress = created.nodes[1] as string;
    const killedAt = Date.now();
    procs.get(egress)?.kill('SIGKILL');
    await waitUntil(
      'RTP after egress death',
      () => sink.packets.some((p) => p.at > killedAt + 100) && steering.get(created.id)?.nodes[1] !== egress,
    );
    await sink.waitFor(10);
    const gap1 = maxGapAfter(sink.packets, killedAt - 40);
    const after1 = steering.get(created.id);
    t.not(after1?.nodes[1], egress, 'moved to another egress node');
    t.equal(after1?.sites[1], 'sh1', 'still at the egress site');
    console.log(`# egress node death: largest gap at the sink ${gap1} ms`);

    // Ingress node killed: a new ingress, announced as media.session.moved; the source re-targets.
    const ingress = created.nodes[0] as string;
    const killedIn = Date.now();
    procs.get(ingress)?.kill('SIGKILL');
    await waitUntil('media.session.moved', () =>
      events.some((e) => e.type === 'media.session.moved' && e.data.id === created.id),
    );
    const moved = events.find((e) => e.type === 'media.session.moved' && e.data.id === created.id);
    const newIngress = moved?.data.ingress as { ip: string; port: number };
    t.not(newIngress.port, created.ingress.port, 'a new ingress address');
    console.log(`# ingress node death: media.session.moved after ${(moved?.at ?? 0) - killedIn} ms`);
    sender.retarget(newIngress);
    const retargetedAt = Date.now();
    await waitUntil('RTP after re-targeting', () => sink.packets.some((p) => p.at > retargetedAt + 50));
    t.pass('RTP resumes at the sink after re-targeting');
    const after2 = steering.get(created.id);
    t.same(after2?.sites, ['bj1', 'sh1']);
    t.equal(after2?.status, 'active');

    const del = await app.inject({ method: 'DELETE', url: `/api/v1/media/sessions/${created.id}` });
    t.equal(del.statusCode, 204);
    t.equal(
      (await app.inject({ method: 'GET', url: `/api/v1/media/sessions/${created.id}` })).statusCode,
      404,
    );
    sender.stop();
  });

  t.test('a worker killed inside the egress node: the session is rebuilt and RTP resumes', async (t) => {
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 321, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const res = await post({
      ingressSite: 'bj1',
      egressSite: 'sh1',
      codec: 'opus',
      payloadType: 111,
      ssrc: 321,
      sink: sinkTuple,
    });
    t.equal(res.statusCode, 201, res.body);
    const s = res.json<{ id: string; ingress: { ip: string; port: number }; nodes: string[] }>();
    sender.start(s.ingress);
    await sink.waitFor(10);
    const egress = gateway.node(s.nodes[1] as string);
    await waitUntil('a load report with the session', () => (egress?.load?.sessions ?? 0) >= 1);
    const pid = egress?.load?.workers[0]?.pid ?? 0;
    t.ok(pid > 0, 'worker pid from the load report');
    const moves = steering.get(s.id)?.moves ?? 0;
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    await waitUntil('re-steer after the worker death', () => (steering.get(s.id)?.moves ?? 0) > moves);
    await waitUntil('RTP after the worker death', () => sink.packets.some((p) => p.at > killedAt + 100));
    t.equal(steering.get(s.id)?.status, 'active');
    console.log(`# worker death: largest gap at the sink ${maxGapAfter(sink.packets, killedAt - 40)} ms`);
    const del = await app.inject({ method: 'DELETE', url: `/api/v1/media/sessions/${s.id}` });
    t.equal(del.statusCode, 204);
    sender.stop();
  });

  t.test(
    'draining the ingress node, then the egress node, moves the session without a long gap',
    async (t) => {
      const alive = gateway
        .nodes()
        .filter((n) => n.connected)
        .map((n) => n.id);
      t.equal(alive.length, 2, `two nodes left (${alive.join(', ')})`);
      // Restart the two killed nodes so each site has a spare again.
      for (const [id, c] of procs)
        if (c.signalCode === 'SIGKILL') startNode(id, id.startsWith('bj') ? 'bj1' : 'sh1', grpcPort);
      await waitUntil('4 nodes again', () => gateway.nodes().filter((n) => n.connected).length === 4);

      const sink = new RtpReceiver();
      const sinkTuple = await sink.bind();
      const sender = new RtpSender({ ssrc: 99, payloadType: 111 });
      await sender.bind();
      t.teardown(() => {
        sender.close();
        sink.close();
      });
      const res = await post({
        ingressSite: 'bj1',
        egressSite: 'sh1',
        codec: 'opus',
        payloadType: 111,
        ssrc: 99,
        sink: sinkTuple,
      });
      t.equal(res.statusCode, 201, res.body);
      const s = res.json<{ id: string; ingress: { ip: string; port: number }; nodes: string[] }>();
      sender.start(s.ingress);
      await sink.waitFor(15);

      // Drain the ingress node: a complete new path on the spare nodes, announced with
      // media.session.moved; the old path carries RTP until the source has re-targeted.
      const oldIngress = s.nodes[0] as string;
      const oldEgress = s.nodes[1] as string;
      const dIn = await app.inject({ method: 'POST', url: `/api/v1/media/nodes/${oldIngress}/drain` });
      t.equal(dIn.statusCode, 202);
      await waitUntil('moved on drain', () =>
        events.some((e) => e.type === 'media.session.moved' && e.data.id === s.id),
      );
      const mv = events.filter((e) => e.type === 'media.session.moved' && e.data.id === s.id).pop();
      const retargetAt = Date.now();
      await sink.waitFor(5); // still flowing through the old path before the source re-targets
      t.pass('the old path carries RTP until the source re-targets');
      sender.retarget(mv?.data.ingress as { ip: string; port: number });
      await waitUntil('old path retired', () => gateway.node(oldIngress)?.load?.sessions === 0, 15000);
      t.ok(
        (steering.get(s.id)?.nodes ?? []).every((n) => n !== oldIngress && n !== oldEgress),
        `new path ${steering.get(s.id)?.nodes.join(' -> ')}`,
      );
      console.log(
        `# ingress drain: largest gap at the sink ${maxGapAfter(sink.packets, retargetAt - 40)} ms`,
      );

      const egress = steering.get(s.id)?.nodes[1] as string;
      const drainAt = Date.now();
      const d = await app.inject({ method: 'POST', url: `/api/v1/media/nodes/${egress}/drain` });
      t.equal(d.statusCode, 202);
      t.match(d.json(), { id: egress, moved: 1 });
      await sink.waitFor(15);
      t.not(steering.get(s.id)?.nodes[1], egress, 'egress moved off the drained node');
      const nodes = (await app.inject({ method: 'GET', url: '/api/v1/media/nodes' })).json().nodes as Array<{
        id: string;
        healthy: boolean;
      }>;
      t.equal(
        nodes.find((n) => n.id === egress)?.healthy,
        false,
        'a draining node is not healthy for placement',
      );
      console.log(`# drain: largest gap at the sink ${maxGapAfter(sink.packets, drainAt - 40)} ms`);
      const unknown = await app.inject({ method: 'POST', url: '/api/v1/media/nodes/nope/drain' });
      t.equal(unknown.statusCode, 404);
      sender.stop();
    },
  );
}
