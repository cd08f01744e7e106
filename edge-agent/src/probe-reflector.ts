import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { AgentError } from './errors';
import {
  COUNTER_SLOTS,
  FOREIGN,
  MALFORMED,
  REFLECTED,
  SEND_ERRORS,
  WORKER_KIND,
  type ReflectorWorkerData,
} from './probe-reflector-worker';

export interface ProbeReflectorOptions {
  /** Address to bind; default 127.0.0.1. */
  readonly host?: string;
  /** Port to bind; 0 (default) picks a free one, see {@link ProbeReflector.address}. */
  readonly port?: number;
  /**
   * Nice value for the reflector's thread (Linux sets it per thread; below 0 needs root), or
   * null (default) to leave it at the process's. When it cannot be set, a warning is logged and
   * the reflector runs anyway.
   */
  readonly threadNice?: number | null;
  readonly log: Logger;
}

/** What the reflector has seen since it started. */
export interface ReflectorCounters {
  /** Requests answered. */
  reflected: number;
  /** Datagrams that are not probe packets at all (short, bad magic, bad version or type). */
  malformed: number;
  /** Well-formed probe packets that are not requests (a reply sent to the reflector port). */
  foreign: number;
  /** Replies the kernel refused to send. */
  sendErrors: number;
}

export type ProbeReflectorEvents = { error: [Error] };

/** The worker's script: compiled JavaScript next to this file, or the TypeScript source under a TS loader. */
function workerScript(): string {
  const js = join(__dirname, 'probe-reflector-worker.js');
  return existsSync(js) ? js : join(__dirname, 'probe-reflector-worker.ts');
}

/**
 * Answers probe requests on the agent's probe port at once: stamps its receive and send times and
 * sends the same bytes back. Anything else is counted and dropped; nothing on this port can make
 * it throw.
 *
 * It runs on its own thread. Peers read this reflector's answer time as the link's delay and its
 * silence as the link dying: on the agent's thread, every stall there (a policy apply forking `ip`
 * and `nft`, a large gRPC message, a GC pause) was felt by every neighbour at once — in the lab,
 * a policy push to all ten agents on two CPUs once stalled them ~100 ms together and every link
 * was declared down. On its own thread only CPU contention can delay it, and `threadNice` lifts it
 * above the agent's other work, the way routers run BFD apart from their control plane.
 */
export class ProbeReflector extends EventEmitter<ProbeReflectorEvents> {
  readonly #opts: ProbeReflectorOptions;
  readonly #log: Logger;
  #worker: Worker | undefined;
  #address: { host: string; port: number } | undefined;
  #counters = new Float64Array(new SharedArrayBuffer(COUNTER_SLOTS * 8));
  /** Counts of workers that stopped before this one (a restart keeps the totals). */
  readonly #base: ReflectorCounters = { reflected: 0, malformed: 0, foreign: 0, sendErrors: 0 };

  constructor(opts: ProbeReflectorOptions) {
    super();
    this.#opts = opts;
    this.#log = opts.log.child({ module: 'probe-reflector' });
  }

  /** Binds the probe port; resolves to the bound address (the real port when 0 was asked). */
  async start(): Promise<{ host: string; port: number }> {
    if (this.#address) return this.#address;
    const host = this.#opts.host ?? '127.0.0.1';
    const port = this.#opts.port ?? 0;
    const data: ReflectorWorkerData = {
      kind: WORKER_KIND,
      host,
      port,
      counters: this.#counters.buffer,
      nice: this.#opts.threadNice ?? null,
    };
    const worker = new Worker(workerScript(), { workerData: data, name: 'probe-reflector' });
    const bound = await new Promise<{ host: string; port: number }>((resolve, reject) => {
      const fail = (message: string, cause?: Error): void =>
        reject(
          new AgentError('AGENT_ERR_PROBE_BIND', `cannot bind the probe port ${host}:${port}: ${message}`, {
            ...(cause !== undefined ? { cause } : {}),
          }),
        );
      worker.on('message', (m: { type: string; host?: string; port?: number; message?: string }) => {
        switch (m.type) {
          case 'listening':
            resolve({ host: m.host ?? host, port: m.port ?? port });
            break;
          case 'bind-error':
            fail(m.message ?? 'unknown error');
            break;
          case 'warn':
            this.#log.warn({ worker: 'probe-reflector' }, m.message ?? '');
            break;
          default:
            break;
        }
      });
      worker.once('error', (err) => fail(`the reflector thread failed: ${err.message}`, err));
      worker.once('exit', (code) => fail(`the reflector thread exited (${code}) before binding`));
    });
    worker.on('error', (err) => {
      // Not expected (the thread catches what the network can send it); the agent decides.
      this.#log.error({ err }, 'probe reflector thread failed');
      this.emit('error', err);
    });
    this.#worker = worker;
    this.#address = bound;
    this.#log.info({ ...bound, threadNice: this.#opts.threadNice ?? null }, 'probe reflector listening');
    return this.#address;
  }

  /** The bound address, once started. */
  get address(): { host: string; port: number } | undefined {
    return this.#address;
  }

  get closed(): boolean {
    return this.#worker === undefined;
  }

  /** A copy of the counters (read from the reflector thread's shared buffer). */
  counters(): ReflectorCounters {
    const c = this.#counters;
    return {
      reflected: this.#base.reflected + (c[REFLECTED] ?? 0),
      malformed: this.#base.malformed + (c[MALFORMED] ?? 0),
      foreign: this.#base.foreign + (c[FOREIGN] ?? 0),
      sendErrors: this.#base.sendErrors + (c[SEND_ERRORS] ?? 0),
    };
  }

  async stop(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    this.#address = undefined;
    if (worker === undefined) return;
    const gone = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage('stop');
    // The thread closes its socket and ends; if it does not within a second, it is ended.
    const timer = setTimeout(() => void worker.terminate(), 1000);
    await gone;
    clearTimeout(timer);
    // A restart starts from fresh shared counters; keep the totals.
    Object.assign(this.#base, this.counters());
    this.#counters = new Float64Array(new SharedArrayBuffer(COUNTER_SLOTS * 8));
  }
}
