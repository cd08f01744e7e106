/**
 * A media node: N mediasoup workers (one per core by default), one router per session on the least
 * loaded worker, session legs created by steering orders, an RTP monitor over every leg, load
 * reports, and a worker that dies is restarted at once (its sessions are reported lost so the
 * controller can re-steer them).
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as mediasoup from 'mediasoup';
import type { types as ms } from 'mediasoup';
import pino, { type Logger } from 'pino';
import { CODEC_NAMES, isCodecName, routerMediaCodecs, type CodecName } from './codecs';
import { MediaError, toMediaError } from './errors';
import type { Tuple } from './media-leg';
import { RtpMonitor, type LegHealth } from './rtp-monitor';
import { SessionLegs, type IngressSpec, type PipeOutInfo, type SessionInfo } from './session-legs';

export interface MediaNodeOptions {
  nodeId: string;
  site: string;
  /** Number of mediasoup workers. Default: one per core. */
  workers?: number;
  /** Address the transports listen on. Default 127.0.0.1. */
  rtpIp?: string;
  /** Address announced in tuples instead of `rtpIp` (behind NAT). */
  announcedIp?: string;
  /** UDP port range of the transports. Default mediasoup's (10000-59999). */
  rtpPorts?: { min: number; max: number };
  /** Sessions one worker may carry; orders beyond are refused with MEDIA_ERR_CAPACITY. Default 500. */
  maxSessionsPerWorker?: number;
  /** RTP monitor tuning (poll period and stall threshold, ms). */
  monitor?: { intervalMs?: number; stallMs?: number };
  /** Delay before restarting a dead worker; doubles per failed attempt up to 5 s. Default 0. */
  restartDelayMs?: number;
  log?: Logger;
}

/** Load of one worker. */
export interface WorkerLoad {
  index: number;
  pid: number;
  alive: boolean;
  restarts: number;
  sessions: number;
  routers: number;
  transports: number;
  producers: number;
  consumers: number;
  /** CPU of the worker process since the previous load() call, in percent of one core. */
  cpuPercent: number;
}

/** Load of the whole node, as reported to the controller. */
export interface NodeLoad {
  nodeId: string;
  site: string;
  sessions: number;
  /** Sessions the node can still take. */
  freeSessions: number;
  maxSessionsPerWorker: number;
  workers: WorkerLoad[];
}

export interface WorkerDiedInfo {
  index: number;
  pid: number;
  error: string;
  /** Sessions that were on the worker (already reported by `sessionlost`). */
  sessionIds: string[];
}

export interface WorkerRestartedInfo {
  index: number;
  pid: number;
  restarts: number;
}

export type MediaNodeEvents = {
  workerdied: [WorkerDiedInfo];
  workerrestarted: [WorkerRestartedInfo];
  /** A session vanished without a teardown order (its worker died). */
  sessionlost: [{ sessionId: string; error: MediaError }];
  stall: [LegHealth];
  resume: [LegHealth];
  close: [];
};

export type MediaNodeObserverEvents = MediaNodeEvents & {
  newsession: [SessionLegs];
};

interface WorkerSlot {
  index: number;
  worker: ms.Worker | undefined;
  pid: number;
  restarts: number;
  sessions: Set<string>;
  /** Sessions lost when the worker died, collected until its 'died' event reports them. */
  lost: string[];
  usage: { at: number; cpuMs: number } | undefined;
}

/** Where mediasoup looks for its worker binary (MEDIASOUP_WORKER_BIN wins, as in mediasoup). */
export function mediasoupWorkerBin(): { path: string; exists: boolean } {
  const bin =
    process.env.MEDIASOUP_WORKER_BIN ??
    path.join(
      path.dirname(require.resolve('mediasoup/package.json')),
      'worker',
      'out',
      'Release',
      'mediasoup-worker',
    );
  return { path: bin, exists: fs.existsSync(bin) };
}

/** A media node around mediasoup workers. Create it with `MediaNode.create()`. */
export class MediaNode extends EventEmitter<MediaNodeEvents> {
  readonly #nodeId: string;
  readonly #site: string;
  readonly #listenIp: ms.TransportListenIp;
  readonly #workerSettings: ms.WorkerSettings;
  readonly #maxSessionsPerWorker: number;
  readonly #restartDelayMs: number;
  readonly #log: Logger;
  readonly #slots: WorkerSlot[] = [];
  readonly #sessions = new Map<string, SessionLegs>();
  /** Per-session order queue: orders of one session run one at a time, in arrival order. */
  readonly #queues = new Map<string, Promise<unknown>>();
  readonly #monitor: RtpMonitor;
  #closed = false;
  readonly #observer = new EventEmitter<MediaNodeObserverEvents>();

  /** Starts the workers and resolves when all of them run. */
  static async create(options: MediaNodeOptions): Promise<MediaNode> {
    const node = new MediaNode(options);
    const n =
      options.workers ??
      (typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);
    if (!Number.isInteger(n) || n < 1) {
      throw new MediaError('MEDIA_ERR_INVALID', `workers must be a positive integer, got ${n}`);
    }
    try {
      for (let i = 0; i < n; i++) await node.#startWorker(node.#newSlot(i));
    } catch (err) {
      node.close();
      throw toMediaError(
        err,
        `node ${options.nodeId}: start mediasoup worker (binary ${mediasoupWorkerBin().path})`,
      );
    }
    return node;
  }

  private constructor(options: MediaNodeOptions) {
    super();
    this.#nodeId = options.nodeId;
    this.#site = options.site;
    const ip = options.rtpIp ?? '127.0.0.1';
    this.#listenIp = options.announcedIp === undefined ? { ip } : { ip, announcedIp: options.announcedIp };
    this.#workerSettings = {
      logLevel: 'warn',
      ...(options.rtpPorts === undefined
        ? {}
        : { rtcMinPort: options.rtpPorts.min, rtcMaxPort: options.rtpPorts.max }),
    };
    this.#maxSessionsPerWorker = options.maxSessionsPerWorker ?? 500;
    this.#restartDelayMs = options.restartDelayMs ?? 0;
    this.#log = (options.log ?? pino({ level: 'info' })).child({
      module: 'media-node',
      node: options.nodeId,
    });
    this.#monitor = new RtpMonitor({ ...options.monitor, log: this.#log });
    this.#monitor.on('stall', (h) => {
      this.#log.warn({ leg: h.legId, silentMs: h.silentMs }, 'leg stalled');
      this.emit('stall', h);
      this.#observer.emit('stall', h);
    });
    this.#monitor.on('resume', (h) => {
      this.#log.info({ leg: h.legId }, 'leg resumed');
      this.emit('resume', h);
      this.#observer.emit('resume', h);
    });
  }

  get nodeId(): string {
    return this.#nodeId;
  }

  get site(): string {
    return this.#site;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get observer(): EventEmitter<MediaNodeObserverEvents> {
    return this.#observer;
  }

  get monitor(): RtpMonitor {
    return this.#monitor;
  }

  /** PIDs of the running workers, by index (0 when a worker is being restarted). */
  workerPids(): number[] {
    return this.#slots.map((s) => (s.worker !== undefined && !s.worker.closed ? s.pid : 0));
  }

  /** Creates (or returns) the ingress leg of a session: where the RTP source must send. */
  createIngress(sessionId: string, spec: IngressSpec): Promise<Tuple> {
    try {
      checkIngress(sessionId, spec); // before the router is shaped after it
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.#order(sessionId, { codec: spec.codec, payloadType: spec.payloadType }, (s) =>
      s.ensureIngress(spec),
    );
  }

  /**
   * Pipe step 1 (downstream node): a pipe-in from `peer`; returns its tuple for the upstream node.
   * `media` (the session's codec and payload type) shapes the router when the session is new here.
   */
  createPipeIn(sessionId: string, peer: string, media?: RouterCodec): Promise<Tuple> {
    return this.#order(sessionId, media ?? true, (s) => s.ensurePipeIn(peer));
  }

  /** Pipe step 2 (upstream node): a pipe-out to `peer`'s pipe-in at `remote`. */
  createPipeOut(sessionId: string, peer: string, remote: Tuple): Promise<PipeOutInfo> {
    return this.#order(sessionId, false, (s) => {
      checkTuple(sessionId, 'pipe-out remote', remote);
      return s.ensurePipeOut(peer, remote);
    });
  }

  /** Pipe step 3 (downstream node): connect the pipe-in to the upstream pipe-out. */
  connectPipeIn(
    sessionId: string,
    peer: string,
    remote: Tuple,
    media: { kind: ms.MediaKind; rtpParameters: ms.RtpParameters },
  ): Promise<void> {
    return this.#order(sessionId, false, (s) => {
      checkTuple(sessionId, 'pipe-in remote', remote);
      return s.connectPipeIn(peer, remote, media);
    });
  }

  /**
   * Creates (or returns) the egress leg of a session, sending its RTP to `sink`; `standby` keeps
   * it paused (warm), and the same call without it activates a standby egress.
   */
  createEgress(sessionId: string, sink: Tuple, standby = false): Promise<Tuple> {
    return this.#order(sessionId, true, (s) => {
      checkTuple(sessionId, 'egress sink', sink);
      return s.ensureEgress(sink, standby);
    });
  }

  /** Tears a session down on this node; resolves false when the node did not carry it. Idempotent. */
  closeSession(sessionId: string): Promise<boolean> {
    return this.#serial(sessionId, () => {
      const s = this.#sessions.get(sessionId);
      if (s === undefined) return Promise.resolve(false);
      s.close();
      return Promise.resolve(true);
    });
  }

  /** Closes the pipe-out of a session to `peer`; resolves false when there was none. Idempotent. */
  closePipeOut(sessionId: string, peer: string): Promise<boolean> {
    return this.#serial(sessionId, () =>
      Promise.resolve(this.#sessions.get(sessionId)?.closePipeOut(peer) ?? false),
    );
  }

  hasSession(sessionId: string): boolean {
    return this.#sessions.has(sessionId);
  }

  /** Every session and its legs (what the node re-announces after reconnecting). */
  sessions(): SessionInfo[] {
    return [...this.#sessions.values()].map((s) => s.describe());
  }

  /** RTP health of every leg (of one session when given). */
  health(sessionId?: string): LegHealth[] {
    return this.#monitor.health(sessionId);
  }

  /** Load per worker; CPU is measured since the previous call. */
  async load(): Promise<NodeLoad> {
    const workers = await Promise.all(this.#slots.map((slot) => this.#workerLoad(slot)));
    const alive = this.#slots.filter((s) => s.worker !== undefined && !s.worker.closed);
    let free = 0;
    for (const s of alive) free += Math.max(0, this.#maxSessionsPerWorker - s.sessions.size);
    return {
      nodeId: this.#nodeId,
      site: this.#site,
      sessions: this.#sessions.size,
      freeSessions: free,
      maxSessionsPerWorker: this.#maxSessionsPerWorker,
      workers,
    };
  }

  /** Closes every session and worker. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#monitor.close();
    for (const s of this.#sessions.values()) s.close();
    this.#sessions.clear();
    for (const slot of this.#slots) slot.worker?.close();
    this.emit('close');
    this.#observer.emit('close');
  }

  async #workerLoad(slot: WorkerSlot): Promise<WorkerLoad> {
    let transports = 0;
    let producers = 0;
    let consumers = 0;
    for (const id of slot.sessions) {
      const c = this.#sessions.get(id)?.counts();
      if (c === undefined) continue;
      transports += c.transports;
      producers += c.producers;
      consumers += c.consumers;
    }
    const w = slot.worker;
    const alive = w !== undefined && !w.closed;
    let cpuPercent = 0;
    if (alive) {
      try {
        const ru = await w.getResourceUsage();
        const now = Date.now();
        const cpuMs = ru.ru_utime + ru.ru_stime; // mediasoup reports both in ms
        if (slot.usage !== undefined && now > slot.usage.at) {
          cpuPercent = Math.round(((cpuMs - slot.usage.cpuMs) / (now - slot.usage.at)) * 1000) / 10;
        }
        slot.usage = { at: now, cpuMs };
      } catch {
        // The worker died between the check and the request: report it as not alive below.
      }
    }
    return {
      index: slot.index,
      pid: slot.pid,
      alive: alive && !w.closed,
      restarts: slot.restarts,
      sessions: slot.sessions.size,
      routers: slot.sessions.size,
      transports,
      producers,
      consumers,
      cpuPercent: Math.max(0, cpuPercent),
    };
  }

  #newSlot(index: number): WorkerSlot {
    const slot: WorkerSlot = {
      index,
      worker: undefined,
      pid: 0,
      restarts: 0,
      sessions: new Set(),
      lost: [],
      usage: undefined,
    };
    this.#slots[index] = slot;
    return slot;
  }

  async #startWorker(slot: WorkerSlot): Promise<void> {
    const worker = await mediasoup.createWorker({ ...this.#workerSettings, appData: { index: slot.index } });
    if (this.#closed) {
      worker.close();
      return;
    }
    slot.worker = worker;
    slot.pid = worker.pid;
    slot.usage = undefined;
    worker.on('died', (error: Error) => this.#onWorkerDied(slot, worker, error));
    this.#log.info({ worker: slot.index, pid: worker.pid }, 'worker running');
  }

  #onWorkerDied(slot: WorkerSlot, worker: ms.Worker, error: Error): void {
    if (slot.worker !== worker) return;
    // mediasoup closed the worker's routers before emitting 'died': the sessions already left
    // (see #adoptSession) and were reported as lost.
    const info: WorkerDiedInfo = {
      index: slot.index,
      pid: worker.pid,
      error: error.message,
      sessionIds: [...slot.lost, ...slot.sessions],
    };
    slot.lost = [];
    slot.sessions.clear();
    slot.worker = undefined;
    this.#log.error(info, 'worker died');
    this.emit('workerdied', info);
    this.#observer.emit('workerdied', info);
    if (this.#closed) return;
    void this.#restart(slot, this.#restartDelayMs);
  }

  async #restart(slot: WorkerSlot, delayMs: number): Promise<void> {
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    if (this.#closed) return;
    try {
      await this.#startWorker(slot);
    } catch (err) {
      const next = Math.min(5000, Math.max(100, delayMs * 2));
      this.#log.error(
        { worker: slot.index, err: err instanceof Error ? err.message : String(err), retryMs: next },
        'worker restart failed',
      );
      void this.#restart(slot, next);
      return;
    }
    if (this.#closed || slot.worker === undefined) return;
    slot.restarts += 1;
    const info: WorkerRestartedInfo = { index: slot.index, pid: slot.pid, restarts: slot.restarts };
    this.emit('workerrestarted', info);
    this.#observer.emit('workerrestarted', info);
  }

  /**
   * Runs an order on a session (creating the session first when `create` and it is new; a codec
   * given as `create` sets the new router's payload type for it).
   */
  #order<T>(
    sessionId: string,
    create: boolean | RouterCodec,
    fn: (s: SessionLegs) => Promise<T>,
  ): Promise<T> {
    return this.#serial(sessionId, async () => {
      if (this.#closed)
        throw new MediaError('MEDIA_ERR_CLOSED', `node ${this.#nodeId} is closing`, { sessionId });
      const session = this.#sessions.get(sessionId);
      if (session === undefined) {
        if (create === false) {
          throw new MediaError(
            'MEDIA_ERR_UNKNOWN_SESSION',
            `node ${this.#nodeId} carries no session '${sessionId}'`,
            {
              sessionId,
            },
          );
        }
        const created = await this.#newSession(sessionId, create === true ? undefined : create);
        try {
          return await fn(created);
        } catch (err) {
          // A refused first order leaves no empty session (and no router) behind.
          if (created.legs().length === 0) created.close();
          throw err;
        }
      }
      return fn(session);
    });
  }

  #serial<T>(sessionId: string, fn: () => Promise<T>): Promise<T> {
    if (sessionId.length === 0 || sessionId.length > 128) {
      return Promise.reject(
        new MediaError('MEDIA_ERR_INVALID', `session id must be 1-128 characters, got ${sessionId.length}`),
      );
    }
    const prev = this.#queues.get(sessionId) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#queues.set(sessionId, tail);
    void tail.then(() => {
      if (this.#queues.get(sessionId) === tail) this.#queues.delete(sessionId);
    });
    return run;
  }

  async #newSession(sessionId: string, media: RouterCodec | undefined): Promise<SessionLegs> {
    let best = this.#bestSlot();
    if (best === undefined && this.#slots.some((s) => s.worker === undefined)) {
      // A worker is being restarted (it died a moment ago): an order arriving now, typically the
      // controller re-steering the very sessions that died with it, waits for it briefly.
      await this.#waitRestart(2000);
      best = this.#bestSlot();
    }
    return this.#createSession(sessionId, best, media);
  }

  #bestSlot(): WorkerSlot | undefined {
    let best: WorkerSlot | undefined;
    for (const slot of this.#slots) {
      if (slot.worker === undefined || slot.worker.closed) continue;
      if (slot.sessions.size >= this.#maxSessionsPerWorker) continue;
      if (best === undefined || slot.sessions.size < best.sessions.size) best = slot;
    }
    return best;
  }

  #waitRestart(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('workerrestarted', done);
        this.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.once('workerrestarted', done);
      this.once('close', done);
    });
  }

  async #createSession(
    sessionId: string,
    best: WorkerSlot | undefined,
    media: RouterCodec | undefined,
  ): Promise<SessionLegs> {
    if (best === undefined) {
      const alive = this.#slots.filter((s) => s.worker !== undefined && !s.worker.closed).length;
      throw new MediaError(
        'MEDIA_ERR_CAPACITY',
        alive === 0
          ? `node ${this.#nodeId}: no mediasoup worker is running (restarting)`
          : `node ${this.#nodeId}: all ${alive} workers carry ${this.#maxSessionsPerWorker} sessions (the per-worker limit)`,
        { sessionId },
      );
    }
    const slot = best;
    const worker = slot.worker as ms.Worker;
    slot.sessions.add(sessionId); // reserve before awaiting, so concurrent sessions spread
    let router: ms.Router;
    try {
      router = await worker.createRouter({ mediaCodecs: routerMediaCodecs(media) });
    } catch (err) {
      slot.sessions.delete(sessionId);
      throw toMediaError(err, `node ${this.#nodeId}: create router on worker ${slot.index}`, sessionId);
    }
    const session = new SessionLegs({
      sessionId,
      workerIndex: slot.index,
      router,
      listenIp: this.#listenIp,
      log: this.#log,
    });
    session.on('leg', (leg) => this.#monitor.watch(leg));
    session.once('close', (error) => {
      if (this.#sessions.get(sessionId) === session) this.#sessions.delete(sessionId);
      slot.sessions.delete(sessionId);
      if (error?.code === 'MEDIA_ERR_WORKER_DIED') slot.lost.push(sessionId);
      if (error !== undefined && !this.#closed) {
        this.#log.warn({ session: sessionId, code: error.code }, 'session lost');
        this.emit('sessionlost', { sessionId, error });
        this.#observer.emit('sessionlost', { sessionId, error });
      }
    });
    this.#sessions.set(sessionId, session);
    this.#observer.emit('newsession', session);
    return session;
  }
}

// The gRPC edge validates shapes with TypeBox; these checks guard the library API itself, so a
// caller in the same process gets a typed refusal rather than a mediasoup exception.
function checkTuple(sessionId: string, what: string, t: Tuple): void {
  if (net.isIP(t.ip) === 0 || !Number.isInteger(t.port) || t.port < 1 || t.port > 65535) {
    throw new MediaError(
      'MEDIA_ERR_INVALID',
      `session ${sessionId}: ${what} must be an IP address and a port 1-65535, got ${t.ip}:${t.port}`,
      { sessionId },
    );
  }
}

/** The codec a new session's router is shaped after (see `routerMediaCodecs`). */
export interface RouterCodec {
  codec: CodecName;
  payloadType: number;
}

function checkIngress(sessionId: string, spec: IngressSpec): void {
  if (!isCodecName(spec.codec)) {
    throw new MediaError(
      'MEDIA_ERR_INVALID',
      `session ${sessionId}: codec must be one of ${CODEC_NAMES.join(', ')}, got '${String(spec.codec)}'`,
      { sessionId },
    );
  }
  if (!Number.isInteger(spec.payloadType) || spec.payloadType < 0 || spec.payloadType > 127) {
    throw new MediaError(
      'MEDIA_ERR_INVALID',
      `session ${sessionId}: payloadType must be an integer 0-127, got ${spec.payloadType}`,
      { sessionId },
    );
  }
  if (!Number.isInteger(spec.ssrc) || spec.ssrc < 0 || spec.ssrc > 0xffffffff) {
    throw new MediaError(
      'MEDIA_ERR_INVALID',
      `session ${sessionId}: ssrc must be an integer 0-4294967295, got ${spec.ssrc}`,
      { sessionId },
    );
  }
}
