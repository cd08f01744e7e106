/**
 * RTP health of every leg, sampled fast. `producer.on('score')` needs about 1.5 s without RTP to
 * drop, far too slow for sub-second failover, so the monitor polls each leg's packet counter
 * (`getStats()` of its producer or consumer) every `intervalMs` (50 ms by default) and:
 *  - derives a packet rate over the last `rateWindowMs`;
 *  - marks a leg `stalled` as soon as its counter has not moved for `stallMs` (100 ms by default)
 *    after it had been flowing, and emits `stall` at that sample; `resume` when packets come back.
 * A leg that never saw a packet is `idle`, not stalled: an idle egress waiting for its pipe is normal.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { MediaLeg, MediaLegKind } from './media-leg';

export type LegState = 'idle' | 'flowing' | 'stalled';

/** One leg's health, as reported to the controller. */
export interface LegHealth {
  sessionId: string;
  legId: string;
  kind: MediaLegKind;
  peer: string;
  state: LegState;
  stalled: boolean;
  /** Packets counted by the leg since it was created. */
  packets: number;
  /** Packets lost before this leg (receiving legs: ingress, pipe-in), since it was created. */
  packetsLost: number;
  /** Interarrival jitter seen by a receiving leg (ms). */
  jitterMs: number;
  /** Packets per second over the rate window. */
  packetRate: number;
  /** Milliseconds since the counter last moved (0 while flowing; since creation when idle). */
  silentMs: number;
  /** Wall-clock time of the sample (ms since the epoch). */
  sampledAt: number;
}

export interface RtpMonitorOptions {
  /** Poll period. Default 50 ms. */
  intervalMs?: number;
  /** Silence after which a flowing leg is stalled. Default 100 ms. */
  stallMs?: number;
  /** Window of the packet rate. Default 1000 ms. */
  rateWindowMs?: number;
  log: Logger;
}

export type RtpMonitorEvents = {
  /** A flowing leg went silent for `stallMs`. */
  stall: [LegHealth];
  /** A stalled leg received (or sent) packets again. */
  resume: [LegHealth];
  /** Every completed sampling round (used by tests and the periodic health report). */
  sample: [LegHealth[]];
};

interface Watched {
  leg: MediaLeg;
  state: LegState;
  packets: number;
  lost: number;
  jitterMs: number;
  /** (time, count) samples inside the rate window, oldest first. */
  history: Array<[number, number]>;
  lastChangeAt: number;
  createdAt: number;
}

/** Polls the packet counters of the legs it watches and flags stalls. */
export class RtpMonitor extends EventEmitter<RtpMonitorEvents> {
  readonly #intervalMs: number;
  readonly #stallMs: number;
  readonly #rateWindowMs: number;
  readonly #log: Logger;
  readonly #watched = new Map<MediaLeg, Watched>();
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #closed = false;
  readonly #observer = new EventEmitter<RtpMonitorEvents>();

  constructor(options: RtpMonitorOptions) {
    super();
    this.#intervalMs = options.intervalMs ?? 50;
    this.#stallMs = options.stallMs ?? 100;
    this.#rateWindowMs = options.rateWindowMs ?? 1000;
    this.#log = options.log.child({ module: 'rtp-monitor' });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get observer(): EventEmitter<RtpMonitorEvents> {
    return this.#observer;
  }

  get stallMs(): number {
    return this.#stallMs;
  }

  /** Starts watching a leg until it closes. */
  watch(leg: MediaLeg): void {
    if (this.#closed || leg.closed || this.#watched.has(leg)) return;
    const now = Date.now();
    this.#watched.set(leg, {
      leg,
      state: 'idle',
      packets: 0,
      lost: 0,
      jitterMs: 0,
      history: [],
      lastChangeAt: now,
      createdAt: now,
    });
    leg.once('close', () => this.#watched.delete(leg));
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#tick(), this.#intervalMs);
      this.#timer.unref();
    }
  }

  /** The latest health of every watched leg (of one session when `sessionId` is given). */
  health(sessionId?: string): LegHealth[] {
    const now = Date.now();
    const out: LegHealth[] = [];
    for (const w of this.#watched.values()) {
      if (sessionId === undefined || w.leg.sessionId === sessionId) out.push(this.#health(w, now));
    }
    return out;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#watched.clear();
  }

  #tick(): void {
    // A slow worker must not pile up getStats() requests: skip a round while one is running.
    if (this.#busy || this.#closed) return;
    if (this.#watched.size === 0) {
      if (this.#timer !== undefined) clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    this.#busy = true;
    this.#sample()
      .catch((err: unknown) =>
        this.#log.warn({ err: err instanceof Error ? err.message : String(err) }, 'sampling failed'),
      )
      .finally(() => {
        this.#busy = false;
      });
  }

  async #sample(): Promise<void> {
    const entries = [...this.#watched.values()];
    const counts = await Promise.all(
      entries.map((w) => w.leg.counters().catch(() => undefined)), // a leg closing mid-poll
    );
    if (this.#closed) return;
    const now = Date.now();
    const round: LegHealth[] = [];
    entries.forEach((w, i) => {
      const c = counts[i];
      if (c === undefined || w.leg.closed || !this.#watched.has(w.leg)) return;
      const count = c.packets;
      w.lost = c.lost;
      w.jitterMs = c.jitterMs;
      if (count !== w.packets) {
        w.packets = count;
        w.lastChangeAt = now;
      }
      w.history.push([now, count]);
      while (w.history.length > 2 && (w.history[0]?.[0] ?? now) < now - this.#rateWindowMs) w.history.shift();

      const before = w.state;
      if (count > 0 && now - w.lastChangeAt < this.#stallMs) w.state = 'flowing';
      else if (before !== 'idle' && now - w.lastChangeAt >= this.#stallMs) w.state = 'stalled';
      const h = this.#health(w, now);
      round.push(h);
      if (before !== 'stalled' && w.state === 'stalled') {
        this.emit('stall', h);
        this.#observer.emit('stall', h);
      } else if (before === 'stalled' && w.state === 'flowing') {
        this.emit('resume', h);
        this.#observer.emit('resume', h);
      }
    });
    this.emit('sample', round);
    this.#observer.emit('sample', round);
  }

  #health(w: Watched, now: number): LegHealth {
    const first = w.history[0];
    const last = w.history[w.history.length - 1];
    let packetRate = 0;
    if (first !== undefined && last !== undefined && last[0] > first[0]) {
      packetRate = ((last[1] - first[1]) * 1000) / (last[0] - first[0]);
    }
    return {
      sessionId: w.leg.sessionId,
      legId: w.leg.id,
      kind: w.leg.kind,
      peer: w.leg.peer,
      state: w.state,
      stalled: w.state === 'stalled',
      packets: w.packets,
      packetsLost: w.lost,
      jitterMs: Math.round(w.jitterMs * 100) / 100,
      packetRate: Math.round(packetRate * 10) / 10,
      silentMs: w.state === 'flowing' ? 0 : now - w.lastChangeAt,
      sampledAt: now,
    };
  }
}
