/**
 * Time-series history of links and interfaces. The control loop hands points over with `write()`
 * and never waits: points go into a bounded buffer (oldest dropped and counted when full) that a
 * background flusher sends in batches. Two implementations: InfluxDB 1.x
 * (`history-writer-influx.ts`) and the embedded one below, which keeps recent points in memory.
 */
import type { StoreHealth } from './state-store';

/** Database and schema, a contract with dashboards and capacity reports. */
export const HISTORY_DATABASE = 'meridian';

/** `link_probe`: one point per link and flush period while agents report it. */
export interface LinkProbePoint {
  readonly measurement: 'link_probe';
  readonly tags: { readonly link: string; readonly src: string; readonly dst: string };
  /** `rtt_ms`/`jitter_ms` are absent until the link has answered a probe. */
  readonly fields: { readonly rtt_ms?: number; readonly jitter_ms?: number; readonly loss_pct: number };
  /** ms since epoch */
  readonly timestamp: number;
}

/** `if_counters`: one point per SNMP poll of an interface. */
export interface IfCountersPoint {
  readonly measurement: 'if_counters';
  readonly tags: { readonly device: string; readonly ifname: string; readonly link: string };
  readonly fields: {
    readonly in_bps: number;
    readonly out_bps: number;
    readonly util_pct: number;
    readonly oper_up: boolean;
  };
  readonly timestamp: number;
}

/** One media session's quality (media steering, about once a second). */
export interface MediaSessionPoint {
  readonly measurement: 'media_session';
  readonly tags: { readonly session: string; readonly ingress_node: string; readonly egress_node: string };
  readonly fields: {
    readonly mos: number;
    readonly loss_pct: number;
    readonly jitter_ms: number;
    readonly delay_ms: number;
    readonly packets: number;
  };
  readonly timestamp: number;
}

/** One media node's load (on each load report). */
export interface MediaNodePoint {
  readonly measurement: 'media_node';
  readonly tags: { readonly node: string; readonly site: string };
  readonly fields: {
    readonly sessions: number;
    readonly free_sessions: number;
    readonly cpu_pct: number;
    readonly transports: number;
    readonly producers: number;
    readonly consumers: number;
    readonly workers_alive: number;
  };
  readonly timestamp: number;
}

export type HistoryPoint = LinkProbePoint | IfCountersPoint | MediaSessionPoint | MediaNodePoint;

export interface HistoryStats {
  /** Points waiting to be written. */
  readonly buffered: number;
  /** Points dropped because the buffer was full (oldest first). */
  readonly dropped: number;
  /** Points written (to InfluxDB, or kept by the embedded writer). */
  readonly written: number;
}

export interface HistoryWriter {
  readonly kind: 'influx' | 'embedded';
  health(): StoreHealth;
  /** Creates the database and retention policies (retried in the background when InfluxDB is down). */
  start(): Promise<void>;
  /** Never blocks, never throws. */
  write(point: HistoryPoint): void;
  stats(): HistoryStats;
  /** Tries to write what is buffered, then stops. */
  close(): Promise<void>;
}

/**
 * A bounded FIFO of points: O(1) push, drop-oldest when full, batch take from the front and
 * put-back of a failed batch.
 */
export class PointBuffer {
  readonly #cap: number;
  #items: (HistoryPoint | undefined)[];
  #head = 0;
  #size = 0;
  dropped = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`buffer capacity ${capacity} must be >= 1`);
    this.#cap = capacity;
    this.#items = new Array<HistoryPoint | undefined>(capacity);
  }

  get size(): number {
    return this.#size;
  }

  push(p: HistoryPoint): void {
    if (this.#size === this.#cap) {
      // Full: the oldest point goes.
      this.#head = (this.#head + 1) % this.#cap;
      this.#size--;
      this.dropped++;
    }
    this.#items[(this.#head + this.#size) % this.#cap] = p;
    this.#size++;
  }

  /** Removes and returns up to `n` of the oldest points. */
  take(n: number): HistoryPoint[] {
    const k = Math.min(n, this.#size);
    const out = new Array<HistoryPoint>(k);
    for (let i = 0; i < k; i++) {
      const idx = (this.#head + i) % this.#cap;
      out[i] = this.#items[idx]!;
      this.#items[idx] = undefined;
    }
    this.#head = (this.#head + k) % this.#cap;
    this.#size -= k;
    return out;
  }

  /** Puts a batch that failed back at the front; what does not fit counts as dropped. */
  unshift(batch: readonly HistoryPoint[]): void {
    const room = this.#cap - this.#size;
    const keep = Math.min(room, batch.length);
    this.dropped += batch.length - keep;
    // Keep the newest of the batch when not all fit.
    for (let i = batch.length - 1; i >= batch.length - keep; i--) {
      this.#head = (this.#head - 1 + this.#cap) % this.#cap;
      this.#items[this.#head] = batch[i];
      this.#size++;
    }
  }
}

/** The embedded history: the last `capacity` points in memory, for a quick start without InfluxDB. */
export class MemoryHistoryWriter implements HistoryWriter {
  readonly kind = 'embedded';
  readonly #points: PointBuffer;
  #written = 0;

  constructor(opts: { capacity?: number } = {}) {
    this.#points = new PointBuffer(opts.capacity ?? 100_000);
  }

  health(): StoreHealth {
    return 'embedded';
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  write(point: HistoryPoint): void {
    this.#points.push(point);
    this.#written++;
  }

  /** Recent points, oldest first (a copy). */
  recent(): HistoryPoint[] {
    const all = this.#points.take(this.#points.size);
    for (const p of all) this.#points.push(p);
    return all;
  }

  stats(): HistoryStats {
    return { buffered: 0, dropped: 0, written: this.#written };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
