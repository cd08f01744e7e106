/**
 * Media steering inside the real Controller (attachMediaSteering): media nodes register on the
 * controller's own gRPC server with the agent token, the sessions API sits behind the bearer token,
 * placement falls back to the nearest site by topology latency, and after a controller restart the
 * nodes re-register and drop the sessions the new controller does not know.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { Controller } from '../src/controller';
import { attachMediaSteering, siteLatencies, type MediaSteeringService } from '../src/media-service';
import { AGENT_TOKEN, API_TOKEN, eventually, quietLog, smallTopology } from './helpers';
import { RtpReceiver, RtpSender } from '@meridian/media';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'meridian.js');
const MEDIA_DIST = path.join(ROOT, 'media', 'dist', 'src', 'index.js');
const WORKER = path.join(ROOT, 'node_modules', 'mediasoup', 'worker', 'out', 'Release', 'mediasoup-worker');

const skip = !existsSync(process.env.MEDIASOUP_WORKER_BIN ?? WORKER)
  ? `mediasoup worker not built (${WORKER}); run 'npm run build'`
  : !existsSync(MEDIA_DIST)
    ? `@meridian/media is not built (${MEDIA_DIST}); run 'npx tsc -b media'`
    : undefined;

async function newController(grpcPort = 0): Promise<{ c: Controller; media: MediaSteeringService }> {
  const c = new Controller({
    topology: smallTopology(),
    apiToken: API_TOKEN,
    agentToken: AGENT_TOKEN,
    grpc: { host: '127.0.0.1', port: grpcPort },
    http: { host: '127.0.0.1', port: 0 },
    log: quietLog,
  });
  const media = attachMediaSteering(c, { agentToken: AGENT_TOKEN, adoptGraceMs: 1500 });
  await c.start();
  return { c, media };
}

t.test('site distances follow the topology latency', (t) => {
  const d = siteLatencies(smallTopology());
  t.equal(d('bj1', 'bj1'), 0);
  t.equal(d('bj1', 'sh1'), 10);
  t.equal(d('sh1', 'sh2'), 10);
  t.equal(d('bj1', 'nowhere'), Infinity);
  t.end();
});

if (skip !== undefined) {
  console.log(`# SKIP media controller tests: ${skip}`);
} else {
  const procs: ChildProcess[] = [];
  let ctl: { c: Controller; media: MediaSteeringService };
  const api = (p: string, init: RequestInit = {}, token: string | null = API_TOKEN) =>
    fetch(`http://127.0.0.1:${ctl.c.ports.http}/api/v1${p}`, {
      ...init,
      headers: {
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
        ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
    });
  const startNode = (id: string, site: string, token = AGENT_TOKEN): ChildProcess => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        'media',
        '--node',
        id,
        '--site',
        site,
        '--controller',
        `127.0.0.1:${ctl.c.ports.grpc}`,
        '--workers',
        '1',
      ],
      {
        env: { ...process.env, MERIDIAN_AGENT_TOKEN: token, MERIDIAN_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'ignore', 'ignore'],
      },
    );
    procs.push(child);
    return child;
  };

  t.before(async () => {
    ctl = await newController();
    startNode('n-bj', 'bj1');
    startNode('n-sh', 'sh1');
    await eventually(
      () => ctl.media.gateway.nodes().filter((n) => n.connected).length === 2,
      20000,
      'two media nodes',
    );
  });
  t.teardown(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await ctl.c.stop();
  });

  t.test('the media API needs the bearer token', async (t) => {
    t.equal((await api('/media/nodes', {}, null)).status, 401);
    const r = await api('/media/nodes');
    t.equal(r.status, 200);
    const body = (await r.json()) as { nodes: Array<{ id: string; site: string; healthy: boolean }> };
    t.same(body.nodes.map((n) => `${n.id}@${n.site}:${n.healthy}`).sort(), [
      'n-bj@bj1:true',
      'n-sh@sh1:true',
    ]);
  });

  t.test('a session to a site without a node is placed at the nearest one and carries RTP', async (t) => {
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 1234, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const r = await api('/media/sessions', {
      method: 'POST',
      body: JSON.stringify({
        ingressSite: 'bj1',
        egressSite: 'sh2',
        codec: 'opus',
        payloadType: 111,
        ssrc: 1234,
        sink: sinkTuple,
      }),
    });
    t.equal(r.status, 201);
    const s = (await r.json()) as {
      id: string;
      ingress: { ip: string; port: number };
      nodes: string[];
      sites: string[];
    };
    t.same(s.nodes, ['n-bj', 'n-sh']);
    t.same(s.sites, ['bj1', 'sh1'], 'sh2 has no node: the egress is at sh1, 10 ms away');
    sender.start(s.ingress);
    await sink.waitFor(20);
    t.pass('RTP at the sink');
    await eventually(
      async () => {
        const v = (await (await api(`/media/sessions/${s.id}`)).json()) as {
          legs: Array<{ kind: string; packets: number }>;
          quality: { mos: number; delayMs: number; lossPct: number };
        };
        return v.legs.some((l) => l.kind === 'ingress' && l.packets > 0) && v.quality.mos > 4 ? v : undefined;
      },
      10000,
      'session legs and quality',
    );
    const history = ctl.c.history as unknown as {
      recent(): Array<{ measurement: string; tags: Record<string, string> }>;
    };
    await eventually(
      () => history.recent().some((p) => p.measurement === 'media_session' && p.tags.session === s.id),
      5000,
      'a media_session point',
    );
    t.ok(
      history.recent().some((p) => p.measurement === 'media_node' && p.tags.node === 'n-bj'),
      'media_node points',
    );
    const bad = await api('/media/sessions', {
      method: 'POST',
      body: JSON.stringify({ ingressSite: 'bj1' }),
    });
    t.equal(bad.status, 400);
    sender.stop();
  });

  t.test('a media node with a wrong token is refused', async (t) => {
    const p = startNode('n-bad', 'bj1', 'wrong-token');
    const code = await new Promise<number | null>((resolve) => p.once('exit', resolve));
    t.equal(code, 1, 'the node exits 1');
    t.notOk(ctl.media.gateway.node('n-bad'), 'never registered');
  });

  t.test(
    'a controller restart keeps calls up: nodes re-register, sessions are adopted, fragments dropped',
    async (t) => {
      const sink = new RtpReceiver();
      const sinkTuple = await sink.bind();
      const sender = new RtpSender({ ssrc: 4321, payloadType: 0 });
      await sender.bind();
      t.teardown(() => {
        sender.close();
        sink.close();
      });
      const r = await api('/media/sessions', {
        method: 'POST',
        body: JSON.stringify({
          ingressSite: 'bj1',
          egressSite: 'sh1',
          codec: 'pcmu',
          payloadType: 0,
          ssrc: 4321,
          sink: sinkTuple,
        }),
      });
      t.equal(r.status, 201);
      const s = (await r.json()) as { id: string; ingress: { ip: string; port: number }; nodes: string[] };
      sender.start(s.ingress);
      await sink.waitFor(10);
      // A fragment no chain will ever complete (a pipe-in waiting for an upstream that is gone).
      const frag = await ctl.media.gateway.order('n-sh', 'orphan-1', { createPipeIn: { peer: 'gone' } });
      t.equal(frag.outcome, 'ok');

      const grpcPort = ctl.c.ports.grpc;
      await ctl.c.stop();
      ctl = await newController(grpcPort);
      const restartedAt = Date.now();
      await eventually(
        () => ctl.media.gateway.nodes().filter((n) => n.connected).length === 2,
        20000,
        're-registration',
      );
      await eventually(() => ctl.media.steering.get(s.id), 10000, 'the session adopted');
      const adopted = ctl.media.steering.get(s.id);
      t.same(adopted?.nodes, s.nodes, 'same nodes');
      t.same(adopted?.ingress, s.ingress, 'same ingress address');
      t.match(adopted?.request, { codec: 'pcmu', payloadType: 0, ssrc: 4321, sink: sinkTuple });
      await sink.waitFor(10);
      t.pass('RTP kept flowing through the controller restart');
      const list = (await (await api('/media/sessions')).json()) as { sessions: Array<{ id: string }> };
      t.ok(
        list.sessions.some((x) => x.id === s.id),
        'listed by the new controller',
      );
      await eventually(
        () => ctl.media.gateway.node('n-sh')?.load?.sessions === list.sessions.length,
        10000,
        'the orphan fragment torn down',
      );
      t.pass(`orphan dropped ${Date.now() - restartedAt} ms after the restart`);
      const del = await api(`/media/sessions/${s.id}`, { method: 'DELETE' });
      t.equal(del.status, 204, 'the adopted session is managed like any other');
      sender.stop();
    },
  );

  t.test('draining with no spare path moves the ingress alone, and reports what cannot move', async (t) => {
    startNode('n-bj2', 'bj1');
    await eventually(() => ctl.media.gateway.node('n-bj2')?.load, 20000, 'a second bj1 node');
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 55, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const r = await api('/media/sessions', {
      method: 'POST',
      body: JSON.stringify({
        ingressSite: 'bj1',
        egressSite: 'sh1',
        codec: 'opus',
        payloadType: 111,
        ssrc: 55,
        sink: sinkTuple,
      }),
    });
    t.equal(r.status, 201);
    const s = (await r.json()) as { id: string; ingress: { ip: string; port: number }; nodes: string[] };
    sender.start(s.ingress);
    await sink.waitFor(10);
    const moved = new Promise<{ ip: string; port: number }>((resolve) =>
      ctl.media.steering.on('event', (ev) => {
        if (ev.type === 'media.session.moved' && ev.data.id === s.id)
          resolve(ev.data.ingress as { ip: string; port: number });
      }),
    );
    const d = await api(`/media/nodes/${s.nodes[0]}/drain`, { method: 'POST' });
    t.equal(d.status, 202);
    t.same(await d.json(), { id: s.nodes[0], moved: 1, remaining: 0 });
    sender.retarget(await moved);
    const at = Date.now();
    await eventually(() => sink.packets.some((p) => p.at > at + 50), 10000, 'RTP after re-targeting');
    t.not(ctl.media.steering.get(s.id)?.nodes[0], s.nodes[0], 'the ingress left the drained node');
    const d2 = await api('/media/nodes/n-sh/drain', { method: 'POST' });
    const b2 = (await d2.json()) as { id: string; moved: number; remaining: number };
    // n-sh also carries the session adopted after the restart: neither can move.
    t.match(b2, { id: 'n-sh', moved: 0 }, 'no other node can take the egress');
    t.ok(b2.remaining >= 1, `remaining ${b2.remaining}`);
    sender.stop();
  });
}
