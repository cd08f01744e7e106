/**
 * A userspace netem for the lab. The kernel here has no `netem` and no NFQUEUE, so each lab link
 * is a pair of TUN devices (one per site namespace) attached by `socat` to UDP sockets, and this
 * process relays the datagrams between the two ends, applying per direction a delay, a jitter, a
 * random loss, or dropping everything while the link is down. Packets of one direction leave in
 * the order they came (a link does not reorder): with jitter, a packet waits at least until the
 * previous one left.
 *
 * Control: a Unix socket taking one JSON request per line (`{"op":"set","link":"L",…}`,
 * `{"op":"status"}`), answering one JSON line.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { existsSync, unlinkSync } from 'node:fs';

/** The impairments of one direction (or both) of a link. */
export interface Impairment {
  delayMs: number;
  jitterMs: number;
  lossPct: number;
  up: boolean;
}

/** One emulated link: its two UDP ends (where each site's socat talks to us). */
export interface EmulatedLinkConfig {
  readonly id: string;
  /** Our socket facing site a, and site a's socat address. */
  readonly a: {
    readonly bind: string;
    readonly port: number;
    readonly peer: string;
    readonly peerPort: number;
  };
  readonly b: {
    readonly bind: string;
    readonly port: number;
    readonly peer: string;
    readonly peerPort: number;
  };
  readonly nominal: { readonly delayMs: number; readonly jitterMs: number; readonly lossPct: number };
}

export interface EmulatorConfig {
  readonly links: readonly EmulatedLinkConfig[];
  readonly controlSocket: string;
}

/** Counters of one direction. */
export interface DirectionStats {
  received: number;
  forwarded: number;
  dropped: number;
  queued: number;
}

class Direction {
  readonly params: Impairment;
  readonly stats: DirectionStats = { received: 0, forwarded: 0, dropped: 0, queued: 0 };
  readonly #queue: { at: number; data: Buffer }[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | null = null;
  #lastAt = 0;
  readonly #send: (data: Buffer) => void;

  constructor(nominal: EmulatedLinkConfig['nominal'], send: (data: Buffer) => void) {
    this.params = { ...nominal, up: true };
    this.#send = send;
  }

  push(data: Buffer): void {
    this.stats.received++;
    const p = this.params;
    if (!p.up || (p.lossPct > 0 && Math.random() * 100 < p.lossPct)) {
      this.stats.dropped++;
      return;
    }
    const now = performance.now();
    const jitter = p.jitterMs > 0 ? (Math.random() * 2 - 1) * p.jitterMs : 0;
    const at = Math.max(now + Math.max(0, p.delayMs + jitter), this.#lastAt);
    this.#lastAt = at;
    if (at <= now && this.#queue.length === this.#head) {
      this.stats.forwarded++;
      this.#send(data);
      return;
    }
    this.#queue.push({ at, data });
    this.stats.queued = this.#queue.length - this.#head;
    this.#arm();
  }

  /** Drops what is queued (the link went down with packets in flight). */
  flush(): void {
    this.stats.dropped += this.#queue.length - this.#head;
    this.#queue.length = 0;
    this.#head = 0;
    this.stats.queued = 0;
  }

  #arm(): void {
    if (this.#timer !== null) return;
    const next = this.#queue[this.#head];
    if (next === undefined) return;
    this.#timer = setTimeout(() => this.#drain(), Math.max(0, next.at - performance.now()));
  }

  #drain(): void {
    this.#timer = null;
    const now = performance.now();
    for (;;) {
      const next = this.#queue[this.#head];
      if (next === undefined || next.at > now + 0.5) break;
      this.#head++;
      this.stats.forwarded++;
      this.#send(next.data);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    this.stats.queued = this.#queue.length - this.#head;
    this.#arm();
  }

  close(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}

class EmulatedLink {
  readonly id: string;
  readonly aToB: Direction;
  readonly bToA: Direction;
  readonly #sockA: Socket;
  readonly #sockB: Socket;
  readonly #nominal: EmulatedLinkConfig['nominal'];

  constructor(cfg: EmulatedLinkConfig) {
    this.id = cfg.id;
    this.#nominal = cfg.nominal;
    this.#sockA = createSocket('udp4');
    this.#sockB = createSocket('udp4');
    this.aToB = new Direction(cfg.nominal, (d) => this.#sockB.send(d, cfg.b.peerPort, cfg.b.peer));
    this.bToA = new Direction(cfg.nominal, (d) => this.#sockA.send(d, cfg.a.peerPort, cfg.a.peer));
    this.#sockA.on('message', (d) => this.aToB.push(d));
    this.#sockB.on('message', (d) => this.bToA.push(d));
    // A peer whose TUN is not up yet answers with ICMP unreachable: not our problem.
    this.#sockA.on('error', () => undefined);
    this.#sockB.on('error', () => undefined);
  }

  async bind(cfg: EmulatedLinkConfig): Promise<void> {
    await Promise.all([
      new Promise<void>((res, rej) => {
        this.#sockA.once('error', rej);
        this.#sockA.bind(cfg.a.port, cfg.a.bind, () => res());
      }),
      new Promise<void>((res, rej) => {
        this.#sockB.once('error', rej);
        this.#sockB.bind(cfg.b.port, cfg.b.bind, () => res());
      }),
    ]);
  }

  set(dir: 'both' | 'ab' | 'ba', change: Partial<Impairment> | 'clear'): void {
    const dirs = dir === 'both' ? [this.aToB, this.bToA] : dir === 'ab' ? [this.aToB] : [this.bToA];
    for (const d of dirs) {
      if (change === 'clear') Object.assign(d.params, { ...this.#nominal, up: true });
      else Object.assign(d.params, change);
      if (!d.params.up) d.flush();
    }
  }

  status(): object {
    return {
      id: this.id,
      ab: { ...this.aToB.params, ...this.aToB.stats },
      ba: { ...this.bToA.params, ...this.bToA.stats },
    };
  }

  close(): void {
    this.aToB.close();
    this.bToA.close();
    this.#sockA.close();
    this.#sockB.close();
  }
}

/** A control request; answers are `{ ok: true, … }` or `{ ok: false, error }`. */
export type EmulatorRequest =
  | { op: 'status' }
  | {
      op: 'set';
      link: string;
      dir?: 'both' | 'ab' | 'ba';
      clear?: boolean;
      up?: boolean;
      delayMs?: number;
      jitterMs?: number;
      lossPct?: number;
    };

/** The emulator: all links of a lab in one process, one control socket. */
export class LinkEmulator {
  readonly #links = new Map<string, EmulatedLink>();
  #server: Server | null = null;
  readonly #config: EmulatorConfig;

  constructor(config: EmulatorConfig) {
    this.#config = config;
  }

  async start(): Promise<void> {
    for (const cfg of this.#config.links) {
      const link = new EmulatedLink(cfg);
      await link.bind(cfg);
      this.#links.set(cfg.id, link);
    }
    if (existsSync(this.#config.controlSocket)) unlinkSync(this.#config.controlSocket);
    this.#server = createServer((conn) => {
      let buf = '';
      conn.setEncoding('utf8');
      conn.on('error', () => undefined);
      conn.on('data', (chunk: string) => {
        buf += chunk;
        if (buf.length > 65536) conn.destroy();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          conn.write(JSON.stringify(this.handle(line)) + '\n');
        }
      });
    });
    const server = this.#server;
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(this.#config.controlSocket, () => res());
    });
  }

  /** Handles one control line; never throws on bad input. */
  handle(line: string): object {
    let req: EmulatorRequest;
    try {
      req = JSON.parse(line) as EmulatorRequest;
    } catch {
      return { ok: false, error: 'request is not JSON' };
    }
    if (req.op === 'status') return { ok: true, links: [...this.#links.values()].map((l) => l.status()) };
    if (req.op !== 'set') return { ok: false, error: `unknown op` };
    const link = this.#links.get(String(req.link));
    if (link === undefined) return { ok: false, error: `unknown link '${String(req.link)}'` };
    const num = (v: unknown, max: number): number | undefined =>
      typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max ? v : undefined;
    const change: Partial<Impairment> = {};
    if (req.up !== undefined) change.up = req.up === true;
    for (const [k, max] of [
      ['delayMs', 60000],
      ['jitterMs', 60000],
      ['lossPct', 100],
    ] as const) {
      if (req[k] === undefined) continue;
      const v = num(req[k], max);
      if (v === undefined) return { ok: false, error: `${k} must be a number in 0..${max}` };
      change[k] = v;
    }
    const dir = req.dir ?? 'both';
    if (dir !== 'both' && dir !== 'ab' && dir !== 'ba') return { ok: false, error: 'dir must be both|ab|ba' };
    link.set(dir, req.clear === true ? 'clear' : change);
    return { ok: true, link: link.status() };
  }

  async close(): Promise<void> {
    for (const l of this.#links.values()) l.close();
    this.#links.clear();
    const server = this.#server;
    this.#server = null;
    if (server !== null) await new Promise<void>((res) => server.close(() => res()));
  }
}
