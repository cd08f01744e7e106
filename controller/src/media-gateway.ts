/**
 * The controller end of `meridian.v1.MediaControl` (proto/media.proto): one stream per media node.
 * It checks the node's token, welcomes it (telling it which announced sessions to drop), keeps the
 * latest load and leg health of every node, sends steering orders and matches their results by
 * order id, and reports a node down the moment its stream breaks (a killed process closes its TCP
 * connection at once), which is what makes sub-second failover possible.
 *
 * Plug it into the controller with `controller.addGrpcService(gw.definition, gw.implementation)`,
 * or into any grpc.Server.
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { timingSafeEqual, createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from 'pino';

// ---------------------------------------------------------------- contract shapes (as decoded)

export interface MediaTuple {
  ip: string;
  port: number;
}

export interface MediaLegHealthMsg {
  sessionId: string;
  legId: string;
  kind: string;
  peer: string;
  state: string;
  stalled: boolean;
  packets: number;
  packetRate: number;
  silentMs: number;
  sampledAtMs: number;
  packetsLost: number;
  jitterMs: number;
}

export interface MediaWorkerLoadMsg {
  index: number;
  pid: number;
  alive: boolean;
  restarts: number;
  sessions: number;
  routers: number;
  transports: number;
  producers: number;
  consumers: number;
  cpuPercent: number;
}

export interface MediaLoadMsg {
  sentAtMs: number;
  sessions: number;
  freeSessions: number;
  workers: MediaWorkerLoadMsg[];
}

export interface MediaHelloMsg {
  nodeId: string;
  site: string;
  version: string;
  token: string;
  rtpIp: string;
  workers: number;
  /** null when a (broken) node leaves it out. */
  capacity: {
    maxSessionsPerWorker: number;
    freeSessions: number;
    rtpPortMin: number;
    rtpPortMax: number;
  } | null;
  instanceId: string;
  sessions: MediaSessionStateMsg[];
}

/** A session as a node announces it in hello (what it still carries). */
export interface MediaSessionStateMsg {
  sessionId: string;
  workerIndex: number;
  ingress?: { local: MediaTuple; codec: string; payloadType: number; ssrc: number } | null;
  pipeIns: Array<{ peer: string; local: MediaTuple; remote?: MediaTuple | null; connected: boolean }>;
  pipeOuts: Array<{ peer: string; local: MediaTuple; remote?: MediaTuple | null; connected: boolean }>;
  egress?: { local: MediaTuple; sink: MediaTuple; consuming: boolean; standby?: boolean } | null;
}

export interface MediaNodeEventMsg {
  atMs: number;
  body?: 'workerDied' | 'workerRestarted' | 'sessionLost' | 'legStalled' | 'legResumed';
  workerDied?: { index: number; pid: number; error: string; sessionIds: string[] } | null;
  workerRestarted?: { index: number; pid: number; restarts: number } | null;
  sessionLost?: { sessionId: string; code: string; message: string } | null;
  legStalled?: MediaLegHealthMsg | null;
  legResumed?: MediaLegHealthMsg | null;
}

interface NodeMessage {
  body?: 'hello' | 'load' | 'health' | 'result' | 'event';
  hello?: MediaHelloMsg | null;
  load?: MediaLoadMsg | null;
  health?: { sentAtMs: number; legs: MediaLegHealthMsg[] } | null;
  result?: MediaOrderResult | null;
  event?: MediaNodeEventMsg | null;
}

/** One order's action: exactly one member set. */
export type MediaOrderAction =
  | { createIngress: { codec: string; payloadType: number; ssrc: number } }
  | { createPipeIn: { peer: string; codec?: string; payloadType?: number } }
  | { createPipeOut: { peer: string; remote: MediaTuple } }
  | { connectPipeIn: { peer: string; remote: MediaTuple; kind: string; rtpParametersJson: string } }
  | { createEgress: { sink: MediaTuple; standby?: boolean } }
  | { tearDown: Record<string, never> }
  | { closePipeOut: { peer: string } };

export interface MediaOrderResult {
  orderId: string;
  sessionId: string;
  outcome?: 'ok' | 'error';
  ok?: { tuple?: MediaTuple | null; kind?: string; rtpParametersJson?: string; existed?: boolean } | null;
  error?: { code: string; message: string } | null;
}

type NodeCall = grpc.ServerDuplexStream<NodeMessage, Record<string, unknown>>;

// ---------------------------------------------------------------- gateway

/** What the controller knows about one media node. */
export interface MediaNodeRecord {
  id: string;
  site: string;
  rtpIp: string;
  version: string;
  instanceId: string;
  workers: number;
  connected: boolean;
  draining: boolean;
  connectedAt: number;
  load: MediaLoadMsg | undefined;
  /** Latest health of every leg, by leg id. */
  legs: Map<string, MediaLegHealthMsg>;
  maxSessionsPerWorker: number;
  /** Sessions the node announced in its last hello (what it carried when it (re)connected). */
  announced: MediaSessionStateMsg[];
}

export interface MediaGatewayOptions {
  /** MERIDIAN_AGENT_TOKEN: nodes must present it in hello. */
  token: string;
  log: Logger;
  /** Order timeout (ms). Default 2000. */
  orderTimeoutMs?: number;
  loadIntervalMs?: number;
  healthIntervalMs?: number;
  /** Which announced sessions a (re)connecting node must drop. Default: none. */
  sessionsToDrop?: (nodeId: string, announced: string[]) => string[];
}

export type MediaGatewayEvents = {
  nodeup: [MediaNodeRecord];
  nodedown: [MediaNodeRecord, string];
  nodeevent: [MediaNodeRecord, MediaNodeEventMsg];
  load: [MediaNodeRecord];
  /** A node reported the health of its legs (`record.legs` is up to date). */
  health: [MediaNodeRecord];
};

/** Loads `meridian.v1.MediaControl` from controller/proto/media.proto (src or dist layout). */
export function loadMediaControlDefinition(): grpc.ServiceDefinition {
  const candidates = [path.resolve(__dirname, '..', 'proto'), path.resolve(__dirname, '..', '..', 'proto')];
  const dir = candidates.find((d) => existsSync(path.join(d, 'media.proto')));
  if (dir === undefined) throw new Error(`media.proto not found in ${candidates.join(', ')}`);
  const def = protoLoader.loadSync(path.join(dir, 'media.proto'), {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    meridian: { v1: { MediaControl: grpc.ServiceClientConstructor } };
  };
  return pkg.meridian.v1.MediaControl.service;
}

export class MediaGateway extends EventEmitter<MediaGatewayEvents> {
  readonly definition: grpc.ServiceDefinition = loadMediaControlDefinition();
  readonly implementation: grpc.UntypedServiceImplementation;
  readonly #opts: MediaGatewayOptions;
  readonly #log: Logger;
  readonly #token: Buffer;
  readonly #nodes = new Map<string, MediaNodeRecord>();
  readonly #calls = new Map<string, NodeCall>();
  readonly #pending = new Map<
    string,
    { resolve: (r: MediaOrderResult) => void; timer: NodeJS.Timeout; nodeId: string }
  >();
  #seq = 0;
  #closed = false;

  constructor(options: MediaGatewayOptions) {
    super();
    this.#opts = options;
    this.#log = options.log.child({ module: 'media-gateway' });
    this.#token = createHash('sha256').update(options.token).digest();
    this.implementation = { Connect: (call: NodeCall) => this.#onCall(call) };
  }

  get closed(): boolean {
    return this.#closed;
  }

  node(id: string): MediaNodeRecord | undefined {
    return this.#nodes.get(id);
  }

  nodes(): MediaNodeRecord[] {
    return [...this.#nodes.values()];
  }

  /**
   * Sends an order and resolves with its result; a node that is down, or that does not answer
   * within the order timeout, yields a MEDIA_ERR_CLOSED / timeout error result (never a rejection).
   */
  order(nodeId: string, sessionId: string, action: MediaOrderAction): Promise<MediaOrderResult> {
    const call = this.#calls.get(nodeId);
    const orderId = `m${++this.#seq}`;
    if (call === undefined) {
      return Promise.resolve({
        orderId,
        sessionId,
        outcome: 'error',
        error: { code: 'MEDIA_ERR_CLOSED', message: `media node ${nodeId} is not connected` },
      });
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(orderId);
        resolve({
          orderId,
          sessionId,
          outcome: 'error',
          error: {
            code: 'MEDIA_ERR_TIMEOUT',
            message: `media node ${nodeId} did not answer order ${orderId} in time`,
          },
        });
      }, this.#opts.orderTimeoutMs ?? 2000);
      this.#pending.set(orderId, { resolve, timer, nodeId });
      try {
        call.write({ order: { orderId, sessionId, ...action } });
      } catch (err) {
        clearTimeout(timer);
        this.#pending.delete(orderId);
        resolve({
          orderId,
          sessionId,
          outcome: 'error',
          error: { code: 'MEDIA_ERR_CLOSED', message: `write to ${nodeId} failed: ${String(err)}` },
        });
      }
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const call of this.#calls.values()) call.end();
    this.#calls.clear();
  }

  #checkToken(token: string): boolean {
    return timingSafeEqual(createHash('sha256').update(token).digest(), this.#token);
  }

  #onCall(call: NodeCall): void {
    let record: MediaNodeRecord | undefined;
    const down = (why: string): void => {
      if (record === undefined || this.#calls.get(record.id) !== call) return;
      this.#calls.delete(record.id);
      record.connected = false;
      for (const [id, p] of this.#pending) {
        if (p.nodeId !== record.id) continue;
        clearTimeout(p.timer);
        this.#pending.delete(id);
        p.resolve({
          orderId: id,
          sessionId: '',
          outcome: 'error',
          error: { code: 'MEDIA_ERR_CLOSED', message: why },
        });
      }
      this.#log.warn({ node: record.id, why }, 'media node down');
      this.emit('nodedown', record, why);
    };
    call.on('data', (m: NodeMessage) => {
      try {
        if (m.body === 'hello' && m.hello) {
          if (record !== undefined) return; // one hello per stream
          record = this.#onHello(call, m.hello);
          return;
        }
        if (record === undefined || this.#calls.get(record.id) !== call) return;
        this.#onNodeMessage(record, m);
      } catch (err) {
        this.#log.error({ err }, 'bad media node message');
      }
    });
    call.on('error', (err: Error) => down(`stream error: ${err.message}`));
    call.on('cancelled', () => down('stream cancelled'));
    call.on('end', () => {
      down('stream ended');
      call.end();
    });
    call.on('close', () => down('stream closed'));
  }

  #onHello(call: NodeCall, hello: MediaHelloMsg): MediaNodeRecord | undefined {
    if (this.#closed || !this.#checkToken(hello.token)) {
      this.#log.warn({ node: hello.nodeId }, 'media node refused: bad token');
      call.write({ refusal: { code: 'CTRL_ERR_UNAUTHENTICATED', message: 'bad token', retry: false } });
      call.end();
      return undefined;
    }
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(hello.nodeId) || hello.site === '') {
      call.write({
        refusal: {
          code: 'CTRL_ERR_INVALID_MESSAGE',
          message: 'hello: node_id and site are required',
          retry: false,
        },
      });
      call.end();
      return undefined;
    }
    const old = this.#calls.get(hello.nodeId);
    if (old !== undefined && old !== call) {
      // The node reconnected before we saw its old stream die: the new stream wins.
      this.#calls.delete(hello.nodeId);
      old.end();
    }
    const prev = this.#nodes.get(hello.nodeId);
    const record: MediaNodeRecord = {
      id: hello.nodeId,
      site: hello.site,
      rtpIp: hello.rtpIp,
      version: hello.version,
      instanceId: hello.instanceId,
      workers: hello.workers,
      connected: true,
      draining: prev?.draining ?? false,
      connectedAt: Date.now(),
      load: undefined,
      legs: new Map(),
      maxSessionsPerWorker: hello.capacity?.maxSessionsPerWorker ?? 0,
      announced: Array.isArray(hello.sessions) ? hello.sessions : [],
    };
    this.#nodes.set(record.id, record);
    this.#calls.set(record.id, call);
    const announced = record.announced.map((s) => s.sessionId);
    const drop = this.#opts.sessionsToDrop?.(record.id, announced) ?? [];
    call.write({
      welcome: {
        controllerId: 'meridian',
        loadIntervalMs: this.#opts.loadIntervalMs ?? 1000,
        healthIntervalMs: this.#opts.healthIntervalMs ?? 250,
        dropSessionIds: drop,
      },
    });
    this.#log.info(
      { node: record.id, site: record.site, announced: announced.length, drop: drop.length },
      'media node up',
    );
    this.emit('nodeup', record);
    return record;
  }

  #onNodeMessage(record: MediaNodeRecord, m: NodeMessage): void {
    switch (m.body) {
      case 'load':
        if (m.load) {
          record.load = m.load;
          this.emit('load', record);
        }
        return;
      case 'health':
        if (m.health) {
          record.legs.clear();
          for (const leg of m.health.legs) record.legs.set(leg.legId, leg);
          this.emit('health', record);
        }
        return;
      case 'result': {
        const r = m.result;
        if (!r) return;
        const p = this.#pending.get(r.orderId);
        if (p === undefined) return;
        clearTimeout(p.timer);
        this.#pending.delete(r.orderId);
        p.resolve(r);
        return;
      }
      case 'event':
        if (m.event) {
          const leg = m.event.legStalled ?? m.event.legResumed;
          if (leg) record.legs.set(leg.legId, leg);
          this.emit('nodeevent', record, m.event);
        }
        return;
      case 'hello':
      case undefined:
        return;
      default: {
        const never: never = m.body;
        this.#log.warn({ body: String(never) }, 'unknown media node message');
      }
    }
  }
}
