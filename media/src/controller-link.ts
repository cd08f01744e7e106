/**
 * The media node's link to the controller: one `MediaControl.Connect` stream. It says hello (with
 * every session the node still carries, so a reconnect re-registers them), waits for welcome, runs
 * the orders it receives and answers each with a result, and streams load, leg health and events.
 * A lost stream is retried with exponential backoff and jitter; a refusal without `retry` (bad
 * token) stops the link.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import pino, { type Logger } from 'pino';
import type { MediaNode } from './media-node';
import { answerOrder } from './media-orders';
import {
  loadMediaControl,
  type PbControllerMessage,
  type PbHello,
  type PbLegHealth,
  type PbNodeEvent,
  type PbNodeMessage,
  type PbOrder,
  type PbOrderResult,
  type PbRefusal,
  type PbSessionState,
  type PbWelcome,
} from './media-proto';
import type { LegHealth } from './rtp-monitor';
import type { SessionInfo } from './session-legs';

export interface ControllerLinkOptions {
  node: MediaNode;
  /** Controller gRPC address `host:port`. */
  address: string;
  /** MERIDIAN_AGENT_TOKEN. */
  token: string;
  /** Address the node's legs announce (reported in hello). */
  rtpIp: string;
  workers: number;
  rtpPorts?: { min: number; max: number };
  maxSessionsPerWorker?: number;
  version?: string;
  /** First retry delay and cap (ms); each failure doubles the delay, with jitter. Default 200 / 5000. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Give up on a stream that got no welcome after this long. Default 5000 ms. */
  welcomeTimeoutMs?: number;
  credentials?: grpc.ChannelCredentials;
  log?: Logger;
}

export type ControllerLinkEvents = {
  /** The controller welcomed the node (after every (re)connection). */
  connected: [PbWelcome];
  /** The stream was lost; a retry is scheduled in `retryInMs`. */
  disconnected: [{ error: string; retryInMs: number }];
  /** The controller refused the node; without `retry` the link stops. */
  refused: [PbRefusal];
  /** An order was run and answered. */
  order: [PbOrder, PbOrderResult];
  close: [];
};

const VERSION = '0.1.0';

type NodeCall = grpc.ClientDuplexStream<PbNodeMessage, PbControllerMessage>;
type MediaControlClient = grpc.Client & { Connect(metadata: grpc.Metadata): NodeCall };

/** The node's gRPC client to the controller. */
export class ControllerLink extends EventEmitter<ControllerLinkEvents> {
  readonly #opts: ControllerLinkOptions;
  readonly #log: Logger;
  readonly #client: MediaControlClient;
  readonly #instanceId = randomUUID();
  #call: NodeCall | undefined;
  #welcomed = false;
  #attempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #welcomeTimer: NodeJS.Timeout | undefined;
  #loadTimer: NodeJS.Timeout | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #observer = new EventEmitter<ControllerLinkEvents>();
  readonly #nodeListeners: Array<() => void> = [];

  constructor(options: ControllerLinkOptions) {
    super();
    this.#opts = options;
    this.#log = (options.log ?? pino()).child({ module: 'controller-link', controller: options.address });
    const { client } = loadMediaControl();
    this.#client = new client(options.address, options.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 10000,
      'grpc.keepalive_timeout_ms': 5000,
      'grpc.initial_reconnect_backoff_ms': options.backoff?.initialMs ?? 200,
      'grpc.max_reconnect_backoff_ms': options.backoff?.maxMs ?? 5000,
    }) as unknown as MediaControlClient;
    this.#forwardNodeEvents();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True between welcome and the loss of the stream. */
  get connected(): boolean {
    return this.#welcomed;
  }

  get observer(): EventEmitter<ControllerLinkEvents> {
    return this.#observer;
  }

  /** Opens the stream (and keeps it open until close()). */
  start(): void {
    if (this.#closed || this.#call !== undefined) return;
    this.#connect();
  }

  /** Ends the stream and stops reconnecting. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopTimers();
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    for (const off of this.#nodeListeners) off();
    const call = this.#call;
    this.#call = undefined;
    this.#welcomed = false;
    if (call !== undefined) {
      try {
        call.end();
      } catch {
        // already ended
      }
      call.cancel();
    }
    this.#client.close();
    this.#emit('close');
  }

  #emit<K extends keyof ControllerLinkEvents>(event: K, ...args: ControllerLinkEvents[K]): void {
    (this.emit as (e: K, ...a: ControllerLinkEvents[K]) => boolean)(event, ...args);
    (this.#observer.emit as (e: K, ...a: ControllerLinkEvents[K]) => boolean)(event, ...args);
  }

  #connect(): void {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${this.#opts.token}`);
    const call = this.#client.Connect(md);
    this.#call = call;
    this.#welcomed = false;
    call.on('data', (msg: PbControllerMessage) => this.#onMessage(call, msg));
    call.on('error', (err: Error) => this.#onDown(call, err.message));
    call.on('end', () => this.#onDown(call, 'the controller ended the stream'));
    this.#welcomeTimer = setTimeout(() => {
      if (this.#call === call && !this.#welcomed) {
        this.#onDown(call, `no welcome within ${this.#opts.welcomeTimeoutMs ?? 5000} ms`);
        call.cancel();
      }
    }, this.#opts.welcomeTimeoutMs ?? 5000);
    void this.#sendHello(call);
  }

  async #sendHello(call: NodeCall): Promise<void> {
    const node = this.#opts.node;
    const load = await node.load().catch(() => undefined);
    if (this.#call !== call) return;
    const hello: PbHello = {
      nodeId: node.nodeId,
      site: node.site,
      version: this.#opts.version ?? VERSION,
      token: this.#opts.token,
      rtpIp: this.#opts.rtpIp,
      workers: this.#opts.workers,
      capacity: {
        maxSessionsPerWorker: load?.maxSessionsPerWorker ?? this.#opts.maxSessionsPerWorker ?? 0,
        freeSessions: load?.freeSessions ?? 0,
        rtpPortMin: this.#opts.rtpPorts?.min ?? 0,
        rtpPortMax: this.#opts.rtpPorts?.max ?? 0,
      },
      instanceId: this.#instanceId,
      sessions: node.sessions().map(toPbSession),
    };
    this.#write(call, { hello });
  }

  #onMessage(call: NodeCall, msg: PbControllerMessage): void {
    if (this.#call !== call || this.#closed) return;
    switch (msg.body) {
      case 'welcome': {
        const welcome = msg.welcome;
        if (welcome === undefined || welcome === null) return;
        if (this.#welcomeTimer !== undefined) clearTimeout(this.#welcomeTimer);
        this.#welcomed = true;
        this.#attempt = 0;
        this.#log.info(
          { controllerId: welcome.controllerId, drop: welcome.dropSessionIds.length },
          'registered',
        );
        for (const id of welcome.dropSessionIds) void this.#opts.node.closeSession(id).catch(() => false);
        this.#startTimers(call, welcome);
        this.#emit('connected', welcome);
        return;
      }
      case 'order': {
        const order = msg.order;
        if (order === undefined || order === null) return;
        if (!this.#welcomed) {
          this.#log.warn({ orderId: order.orderId }, 'order before welcome ignored');
          return;
        }
        void answerOrder(this.#opts.node, order).then(
          (result) => {
            this.#write(call, { result });
            this.#emit('order', order, result);
          },
          (err: unknown) => {
            // A bug, not a refusal: answer anyway so the controller is not left waiting.
            const message = err instanceof Error ? err.message : String(err);
            this.#log.error({ orderId: order.orderId, err: message }, 'order failed');
            this.#write(call, {
              result: {
                orderId: order.orderId,
                sessionId: order.sessionId,
                error: { code: 'MEDIA_ERR_MEDIASOUP', message },
              },
            });
          },
        );
        return;
      }
      case 'refusal': {
        const refusal = msg.refusal;
        if (refusal === undefined || refusal === null) return;
        this.#log.error(
          { code: refusal.code, reason: refusal.message, retry: refusal.retry },
          'controller refused the node',
        );
        this.#emit('refused', refusal);
        if (!refusal.retry) this.close();
        return;
      }
      case undefined:
        return;
      default: {
        const never: never = msg.body;
        this.#log.warn({ body: String(never) }, 'unknown controller message');
      }
    }
  }

  #onDown(call: NodeCall, error: string): void {
    if (this.#call !== call || this.#closed) return;
    this.#call = undefined;
    this.#welcomed = false;
    this.#stopTimers();
    const initial = this.#opts.backoff?.initialMs ?? 200;
    const max = this.#opts.backoff?.maxMs ?? 5000;
    // Exponential backoff with "equal jitter": half fixed, half random, so a restarted controller
    // is not hit by every node at the same instant.
    const base = Math.min(max, initial * 2 ** Math.min(this.#attempt, 20));
    const retryInMs = Math.round(base / 2 + Math.random() * (base / 2));
    this.#attempt += 1;
    this.#log.warn({ err: error, retryInMs, attempt: this.#attempt }, 'controller stream lost');
    this.#emit('disconnected', { error, retryInMs });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#closed) this.#connect();
    }, retryInMs);
  }

  #startTimers(call: NodeCall, welcome: PbWelcome): void {
    this.#stopTimers();
    const loadMs = welcome.loadIntervalMs > 0 ? welcome.loadIntervalMs : 1000;
    const healthMs = welcome.healthIntervalMs > 0 ? welcome.healthIntervalMs : 250;
    const sendLoad = (): void => {
      void this.#opts.node.load().then((l) => {
        if (this.#call !== call || !this.#welcomed) return;
        this.#write(call, {
          load: {
            sentAtMs: Date.now(),
            sessions: l.sessions,
            freeSessions: l.freeSessions,
            workers: l.workers,
          },
        });
      });
    };
    sendLoad();
    this.#loadTimer = setInterval(sendLoad, loadMs);
    this.#healthTimer = setInterval(() => {
      this.#write(call, { health: { sentAtMs: Date.now(), legs: this.#opts.node.health().map(toPbHealth) } });
    }, healthMs);
  }

  #stopTimers(): void {
    if (this.#welcomeTimer !== undefined) clearTimeout(this.#welcomeTimer);
    if (this.#loadTimer !== undefined) clearInterval(this.#loadTimer);
    if (this.#healthTimer !== undefined) clearInterval(this.#healthTimer);
    this.#welcomeTimer = this.#loadTimer = this.#healthTimer = undefined;
  }

  #write(call: NodeCall, msg: PbNodeMessage): void {
    if (this.#call !== call) return;
    try {
      call.write(msg);
    } catch (err) {
      this.#log.warn({ err: err instanceof Error ? err.message : String(err) }, 'write failed');
    }
  }

  #sendEvent(event: Omit<PbNodeEvent, 'atMs'>): void {
    const call = this.#call;
    // While disconnected, events are dropped: the next hello re-announces the node's sessions.
    if (call === undefined || !this.#welcomed) return;
    this.#write(call, { event: { atMs: Date.now(), ...event } });
  }

  #forwardNodeEvents(): void {
    const node = this.#opts.node;
    const on = <K extends 'workerdied' | 'workerrestarted' | 'sessionlost' | 'stall' | 'resume'>(
      event: K,
      fn: (...args: never[]) => void,
    ): void => {
      node.on(event, fn as never);
      this.#nodeListeners.push(() => node.off(event, fn as never));
    };
    on('workerdied', (d: { index: number; pid: number; error: string; sessionIds: string[] }) =>
      this.#sendEvent({
        workerDied: { index: d.index, pid: d.pid, error: d.error, sessionIds: d.sessionIds },
      }),
    );
    on('workerrestarted', (r: { index: number; pid: number; restarts: number }) =>
      this.#sendEvent({ workerRestarted: { index: r.index, pid: r.pid, restarts: r.restarts } }),
    );
    on('sessionlost', (l: { sessionId: string; error: { code: string; message: string } }) =>
      this.#sendEvent({
        sessionLost: { sessionId: l.sessionId, code: l.error.code, message: l.error.message },
      }),
    );
    on('stall', (h: LegHealth) => this.#sendEvent({ legStalled: toPbHealth(h) }));
    on('resume', (h: LegHealth) => this.#sendEvent({ legResumed: toPbHealth(h) }));
  }
}

function toPbHealth(h: LegHealth): PbLegHealth {
  return {
    sessionId: h.sessionId,
    legId: h.legId,
    kind: h.kind,
    peer: h.peer,
    state: h.state,
    stalled: h.stalled,
    packets: h.packets,
    packetRate: h.packetRate,
    silentMs: h.silentMs,
    sampledAtMs: h.sampledAt,
    packetsLost: h.packetsLost,
    jitterMs: h.jitterMs,
  };
}

function toPbSession(s: SessionInfo): PbSessionState {
  return {
    sessionId: s.sessionId,
    workerIndex: s.workerIndex,
    ingress:
      s.ingress === undefined
        ? null
        : {
            local: { ip: s.ingress.ip, port: s.ingress.port },
            codec: s.ingress.codec,
            payloadType: s.ingress.payloadType,
            ssrc: s.ingress.ssrc,
          },
    pipeIns: s.pipeIns.map((p) => ({
      peer: p.peer,
      local: p.local,
      remote: p.remote ?? null,
      connected: p.connected,
    })),
    pipeOuts: s.pipeOuts.map((p) => ({ peer: p.peer, local: p.local, remote: p.remote, connected: true })),
    egress:
      s.egress === undefined
        ? null
        : {
            local: s.egress.local,
            sink: s.egress.sink,
            consuming: s.egress.consuming,
            standby: s.egress.standby,
          },
  };
}
