/**
 * MediaGateway on a real gRPC server with raw clients (no mediasoup needed): token and hello
 * checks, a hello missing optional parts, orders to absent or silent nodes, stray messages, and
 * the node-down signal when a stream ends.
 */
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import pino from 'pino';
import t from 'tap';
import { MediaGateway, type MediaNodeRecord } from '../src/media-gateway';
import { MediaSteering } from '../src/media-steering';

const TOKEN = 'gw-token';
const log = pino({ level: process.env.TEST_LOG ?? 'silent' });

type Msg = Record<string, unknown> & { body?: string };
type Call = grpc.ClientDuplexStream<Msg, Msg>;

const def = protoLoader.loadSync(path.resolve(__dirname, '..', 'proto', 'media.proto'), {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const Client = (
  grpc.loadPackageDefinition(def) as unknown as {
    meridian: { v1: { MediaControl: grpc.ServiceClientConstructor } };
  }
).meridian.v1.MediaControl;

const gateway = new MediaGateway({ token: TOKEN, log, orderTimeoutMs: 300 });
const server = new grpc.Server();
server.addService(gateway.definition, gateway.implementation);
let port = 0;
const clients: grpc.Client[] = [];

function open(): { call: Call; received: Msg[]; ended: Promise<void> } {
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  clients.push(client);
  const call = (client as unknown as { Connect(): Call }).Connect();
  const received: Msg[] = [];
  call.on('data', (m: Msg) => received.push(m));
  const ended = new Promise<void>((resolve) => {
    call.on('end', () => resolve());
    call.on('error', () => resolve());
  });
  return { call, received, ended };
}

const until = async (what: string, pred: () => boolean): Promise<void> => {
  const end = Date.now() + 5000;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

t.before(async () => {
  port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
});
t.teardown(() => {
  for (const c of clients) c.close();
  gateway.close();
  server.forceShutdown();
});

t.test('a wrong token is refused for good', async (t) => {
  const s = open();
  s.call.write({ hello: { nodeId: 'x', site: 'bj1', token: 'nope' } });
  await s.ended;
  t.match(s.received[0], { body: 'refusal', refusal: { code: 'CTRL_ERR_UNAUTHENTICATED', retry: false } });
  t.notOk(gateway.node('x'));
});

t.test('a hello with a bad node id is refused', async (t) => {
  const s = open();
  s.call.write({ hello: { nodeId: 'bad id!', site: 'bj1', token: TOKEN } });
  await s.ended;
  t.match(s.received[0], { body: 'refusal', refusal: { code: 'CTRL_ERR_INVALID_MESSAGE' } });
});

t.test(
  'a minimal hello is welcomed; stray messages are ignored; orders time out; end = node down',
  async (t) => {
    const s = open();
    const up = new Promise<MediaNodeRecord>((resolve) => gateway.once('nodeup', resolve));
    s.call.write({ hello: { nodeId: 'm1', site: 'bj1', token: TOKEN } }); // no capacity, no sessions
    const rec = await up;
    t.match(rec, { id: 'm1', site: 'bj1', connected: true, maxSessionsPerWorker: 0, announced: [] });
    await until('welcome', () => s.received.length > 0);
    t.match(s.received[0], { body: 'welcome', welcome: { dropSessionIds: [] } });

    s.call.write({ hello: { nodeId: 'm1', site: 'bj1', token: TOKEN } }); // a second hello: ignored
    s.call.write({ result: { orderId: 'unknown', sessionId: 's' } }); // matches no order
    s.call.write({ event: { atMs: 1 } }); // an event with no body
    s.call.write({
      health: { legs: [{ sessionId: 's', legId: 's/ingress', kind: 'ingress', state: 'flowing' }] },
    });
    await until('health recorded', () => gateway.node('m1')?.legs.has('s/ingress') === true);

    const silent = await gateway.order('m1', 's', { tearDown: {} });
    t.match(silent, { outcome: 'error', error: { code: 'MEDIA_ERR_TIMEOUT' } }, 'a node that never answers');
    await until('the order reached the node', () => s.received.some((m) => m.body === 'order'));
    const absent = await gateway.order('nobody', 's', { tearDown: {} });
    t.match(absent, { outcome: 'error', error: { code: 'MEDIA_ERR_CLOSED' } }, 'an unknown node');

    // An answered order.
    const pending = gateway.order('m1', 's2', { createPipeIn: { peer: 'x' } });
    await until('second order', () => s.received.filter((m) => m.body === 'order').length === 2);
    const order = s.received.filter((m) => m.body === 'order')[1]?.order as { orderId: string };
    s.call.write({
      result: { orderId: order.orderId, sessionId: 's2', ok: { tuple: { ip: '127.0.0.1', port: 5000 } } },
    });
    t.match(await pending, { outcome: 'ok', ok: { tuple: { ip: '127.0.0.1', port: 5000 } } });

    const down = new Promise<[MediaNodeRecord, string]>((resolve) =>
      gateway.once('nodedown', (n, why) => resolve([n, why])),
    );
    s.call.end();
    const [n] = await down;
    t.equal(n.id, 'm1');
    t.equal(gateway.node('m1')?.connected, false);
  },
);

/**
 * A protocol-level fake media node: answers every order at once (a pipe consumer's RTP parameters
 * are a fixed JSON), refusing the actions listed in `refuse` with the given code.
 */
function fakeNode(id: string, site: string, refuse: Record<string, string> = {}): { call: Call } {
  const s = open();
  let port = 20000;
  s.call.on('data', (m: Msg) => {
    if (m.body !== 'order') return;
    const o = m.order as Record<string, unknown> & { orderId: string; sessionId: string; action: string };
    const code = refuse[o.action];
    const tuple = { ip: '127.0.0.1', port: port++ };
    const ok =
      o.action === 'createPipeOut'
        ? { tuple, kind: 'audio', rtpParametersJson: '{"codecs":[]}' }
        : o.action === 'tearDown' || o.action === 'closePipeOut'
          ? { existed: true }
          : { tuple };
    s.call.write({
      result: code
        ? {
            orderId: o.orderId,
            sessionId: o.sessionId,
            error: { code, message: `${id} refuses ${o.action}` },
          }
        : { orderId: o.orderId, sessionId: o.sessionId, ok },
    });
  });
  s.call.write({
    hello: {
      nodeId: id,
      site,
      token: TOKEN,
      workers: 1,
      capacity: { maxSessionsPerWorker: 10, freeSessions: 10 },
    },
  });
  return s;
}

t.test('placement avoids a node that refuses for capacity and retries elsewhere', async (t) => {
  const gw = new MediaGateway({ token: TOKEN, log, orderTimeoutMs: 1000 });
  const srv = new grpc.Server();
  srv.addService(gw.definition, gw.implementation);
  const p = await new Promise<number>((resolve, reject) =>
    srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, n) =>
      e ? reject(e) : resolve(n),
    ),
  );
  const saved = port;
  port = p;
  t.teardown(() => {
    port = saved;
    gw.close();
    srv.forceShutdown();
  });
  const steering = new MediaSteering({ gateway: gw, log });
  fakeNode('in', 'bj1');
  fakeNode('full', 'sh1', { createPipeIn: 'MEDIA_ERR_CAPACITY', createEgress: 'MEDIA_ERR_CAPACITY' });
  await until('two nodes', () => gw.nodes().filter((n) => n.connected).length === 2);
  const req = {
    ingressSite: 'bj1',
    egressSite: 'sh1',
    codec: 'opus',
    payloadType: 111,
    ssrc: 1,
    sink: { ip: '127.0.0.1', port: 9 },
  };
  // Only the full node at sh1: the egress falls back to the ingress node itself (one-node path).
  const one = await steering.create(req);
  t.match(one, { ok: true, value: { nodes: ['in'] } }, 'the full node was avoided');
  fakeNode('spare', 'sh1');
  await until('three nodes', () => gw.nodes().filter((n) => n.connected).length === 3);
  const two = await steering.create(req);
  t.match(two, { ok: true, value: { sites: ['bj1', 'sh1'] } });
  t.ok(two.ok && two.value.nodes[1] === 'spare', 'egress on the node with room');
  const none = await new MediaSteering({ gateway: new MediaGateway({ token: TOKEN, log }), log }).create(req);
  t.match(none, { ok: false, error: { status: 503, code: 'CTRL_ERR_MEDIA_NO_CAPACITY' } });
});
