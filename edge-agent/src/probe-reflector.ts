import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { AgentError } from './errors';
import { nowUs, parseProbe, stampReply } from './probe-packet';

export interface ProbeReflectorOptions {
  /** Address to bind; default 127.0.0.1. */
  readonly host?: string;
  /** Port to bind; 0 (default) picks a free one, see {@link ProbeReflector.address}. */
  readonly port?: number;
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

/**
 * Answers probe requests on the agent's probe port at once: stamps its receive and send times and
 * sends the same bytes back. Anything else is counted and dropped; nothing on this port can make
 * it throw.
 */
export class ProbeReflector extends EventEmitter<ProbeReflectorEvents> {
  readonly #opts: ProbeReflectorOptions;
  readonly #log: Logger;
  #socket: dgram.Socket | undefined;
  #address: { host: string; port: number } | undefined;
  readonly #counters: ReflectorCounters = { reflected: 0, malformed: 0, foreign: 0, sendErrors: 0 };

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
    const socket = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(
          new AgentError(
            'AGENT_ERR_PROBE_BIND',
            `cannot bind the probe port ${host}:${port}: ${err.message}`,
            {
              cause: err,
            },
          ),
        );
      socket.once('error', onError);
      socket.bind(port, host, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    socket.on('error', (err) => {
      // A bound UDP socket only reports send-side trouble here; keep serving.
      this.#log.warn({ err }, 'probe socket error');
    });
    socket.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo));
    this.#socket = socket;
    const a = socket.address();
    this.#address = { host: a.address, port: a.port };
    this.#log.info({ host: a.address, port: a.port }, 'probe reflector listening');
    return this.#address;
  }

  /** The bound address, once started. */
  get address(): { host: string; port: number } | undefined {
    return this.#address;
  }

  get closed(): boolean {
    return this.#socket === undefined;
  }

  /** A copy of the counters. */
  counters(): ReflectorCounters {
    return { ...this.#counters };
  }

  async stop(): Promise<void> {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#address = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  #onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const t2 = nowUs();
    const parsed = parseProbe(msg);
    if (!parsed.ok) {
      this.#counters.malformed++;
      return;
    }
    if (parsed.packet.type !== 'request') {
      this.#counters.foreign++;
      return;
    }
    const socket = this.#socket;
    if (!socket) return;
    stampReply(msg, t2, nowUs());
    socket.send(msg, rinfo.port, rinfo.address, (err) => {
      if (err) this.#counters.sendErrors++;
    });
    this.#counters.reflected++;
  }
}
