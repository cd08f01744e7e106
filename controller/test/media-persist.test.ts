/**
 * Media sessions kept in Redis (`meridian:media:session:<id>`): a real Redis, a real Controller with
 * `attachMediaSteering(..., { redisUrl })`, two real `meridian media` processes and real RTP. A
 * session asked for site sh2 (no node there) is placed at sh1; after a controller restart the nodes
 * re-announce it and the new controller adopts it with the requested sites (sh2), not the sites of
 * its nodes. Deleting the session deletes its key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import t from 'tap';
import { Controller } from '../src/controller';
import { attachMediaSteering, type MediaSteeringService } from '../src/media-service';
import { mediaSessionKey } from '../src/media-session-store';
import { AGENT_TOKEN, API_TOKEN, eventually, ops, quietLog, smallTopology } from './helpers';
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

if (skip !== undefined) {
  console.log(`# SKIP media persistence tests: ${skip}`);
  t.plan(0, skip);
} else {
  t.test('a restarted controller adopts sessions with their requested sites from Redis', async (t) => {
    const redis = await ops.startRedis();
    t.teardown(() => redis.dispose());
    const client = new Redis(redis.url);
    t.teardown(() => client.disconnect());
    const start = async (grpcPort = 0): Promise<{ c: Controller; media: MediaSteeringService }> => {
      const c = new Controller({
        topology: smallTopology(),
        apiToken: API_TOKEN,
        agentToken: AGENT_TOKEN,
        grpc: { host: '127.0.0.1', port: grpcPort },
        http: { host: '127.0.0.1', port: 0 },
        log: quietLog,
        redisUrl: redis.url,
      });
      const media = attachMediaSteering(c, {
        agentToken: AGENT_TOKEN,
        redisUrl: redis.url,
        adoptGraceMs: 1500,
      });
      await c.start();
      return { c, media };
    };
    let ctl = await start();
    const procs: ChildProcess[] = [];
    t.teardown(async () => {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      ctl.media.close();
      await ctl.c.stop();
    });
    for (const [id, site] of [
      ['p-bj', 'bj1'],
      ['p-sh', 'sh1'],
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
            `127.0.0.1:${ctl.c.ports.grpc}`,
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
      () => ctl.media.gateway.nodes().filter((n) => n.connected && n.load).length === 2,
      30000,
      'two media nodes',
    );
    const sink = new RtpReceiver();
    const sinkTuple = await sink.bind();
    const sender = new RtpSender({ ssrc: 2468, payloadType: 111 });
    await sender.bind();
    t.teardown(() => {
      sender.close();
      sink.close();
    });
    const request = {
      ingressSite: 'bj1',
      egressSite: 'sh2',
      codec: 'opus' as const,
      payloadType: 111,
      ssrc: 2468,
      sink: sinkTuple,
    };
    const r = await ctl.media.steering.create(request);
    if (!r.ok) throw new Error(r.error.message);
    t.same(r.value.sites, ['bj1', 'sh1'], 'sh2 has no node: placed at sh1');
    sender.start(r.value.ingress);
    await sink.waitFor(10);
    const stored = await eventually(
      async () => {
        const h = await client.hgetall(mediaSessionKey(r.value.id));
        return h.id === r.value.id ? h : undefined;
      },
      5000,
      'the session stored in Redis',
    );
    t.same(JSON.parse(stored.request ?? 'null'), request, 'the request as accepted');
    t.same(JSON.parse(stored.nodes ?? 'null'), ['p-bj', 'p-sh']);

    const grpcPort = ctl.c.ports.grpc;
    ctl.media.close();
    await ctl.c.stop();
    ctl = await start(grpcPort);
    const adopted = await eventually(() => ctl.media.steering.get(r.value.id), 20000, 'the session adopted');
    t.equal(adopted.request.egressSite, 'sh2', 'the requested egress site survives the restart');
    t.same(adopted.request, request);
    t.same(adopted.nodes, ['p-bj', 'p-sh']);
    t.equal(adopted.createdAt, r.value.createdAt, 'creation time kept');
    await sink.waitFor(10);
    t.pass('RTP kept flowing');

    t.equal(await ctl.media.steering.remove(r.value.id), true);
    await eventually(
      async () => (await client.exists(mediaSessionKey(r.value.id))) === 0,
      5000,
      'the key deleted with the session',
    );
    sender.stop();
  });
}
