/**
 * The shipped daemons together, as an operator runs them: `meridian controller` and `meridian media`
 * as separate processes, a media session created over the HTTP API, real RTP in at the ingress and
 * out at the sink, and the events stream readable with `?token=` (browser EventSource).
 */
import t from 'tap';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { startControllerDaemon, startDaemon } from '../src/index';

function workerBuilt(): string | null {
  try {
    const pkg = require.resolve('mediasoup/package.json');
    const bin = path.join(path.dirname(pkg), 'worker', 'out', 'Release', 'mediasoup-worker');
    return existsSync(bin) ? null : `mediasoup worker not built (${bin}); run 'npm run build'`;
  } catch {
    return 'mediasoup is not installed';
  }
}

function rtp(seq: number, ssrc: number): Buffer {
  const b = Buffer.alloc(12 + 40);
  b[0] = 0x80;
  b[1] = 111;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((seq * 960) >>> 0, 4);
  b.writeUInt32BE(ssrc, 8);
  return b;
}

const skip = workerBuilt();
t.test(
  'meridian controller + meridian media processes carry a session end to end',
  { skip: skip ?? false },
  async (t) => {
    const env = { MERIDIAN_API_TOKEN: 'daemons-api', MERIDIAN_AGENT_TOKEN: 'daemons-agent' };
    const { daemon: controller, address } = await startControllerDaemon({
      args: ['--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'],
      env,
    });
    t.teardown(() => controller.stop());
    const node = startDaemon('media n1', {
      args: ['media', '--node', 'n1', '--site', 'bj-a', '--controller', address.grpc, '--workers', '1'],
      env,
    });
    t.teardown(() => node.stop());
    const api = `http://${address.http}/api/v1`;
    const auth = { authorization: 'Bearer daemons-api', 'content-type': 'application/json' };

    let nodes: { id: string; site: string; healthy: boolean }[] = [];
    for (let i = 0; i < 150 && !nodes.some((n) => n.id === 'n1' && n.healthy); i++) {
      await new Promise((r) => setTimeout(r, 200));
      const res = await fetch(`${api}/media/nodes`, { headers: auth });
      nodes = ((await res.json()) as { nodes: typeof nodes }).nodes;
    }
    t.same(
      nodes.map((n) => [n.id, n.site, n.healthy]),
      [['n1', 'bj-a', true]],
      'the media node registered with the controller',
    );

    const sink = dgram.createSocket('udp4');
    t.teardown(() => sink.close());
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
    let received = 0;
    sink.on('message', () => received++);
    const res = await fetch(`${api}/media/sessions`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({
        ingressSite: 'bj-a',
        egressSite: 'bj-a',
        codec: 'opus',
        payloadType: 111,
        ssrc: 1234,
        sink: { ip: '127.0.0.1', port: sink.address().port },
      }),
    });
    t.equal(res.status, 201, 'session created');
    const session = (await res.json()) as {
      id: string;
      ingress: { ip: string; port: number };
      nodes: string[];
    };
    t.same(session.nodes, ['n1']);

    const src = dgram.createSocket('udp4');
    t.teardown(() => src.close());
    for (let seq = 0; seq < 100 && received < 20; seq++) {
      src.send(rtp(seq, 1234), session.ingress.port, session.ingress.ip);
      await new Promise((r) => setTimeout(r, 20));
    }
    t.ok(received >= 20, `RTP came out at the sink (${received} packets)`);

    const bad = await fetch(`${api}/media/sessions`, {
      method: 'POST',
      headers: auth,
      body: '{"codec":"opus"}',
    });
    t.equal(bad.status, 400, 'a bad session request is a 400');

    const ac = new AbortController();
    const events = await fetch(`${api}/events?token=daemons-api`, { signal: ac.signal });
    t.equal(events.status, 200, 'the events stream accepts ?token= (EventSource cannot send headers)');
    t.match(events.headers.get('content-type') ?? '', /text\/event-stream/);
    ac.abort();
    const denied = await fetch(`${api}/events?token=wrong`);
    t.equal(denied.status, 401);
    await denied.body?.cancel();

    const del = await fetch(`${api}/media/sessions/${session.id}`, {
      method: 'DELETE',
      headers: { authorization: auth.authorization },
    });
    t.ok(del.status === 200 || del.status === 204, `session deleted (${del.status})`);
  },
);
