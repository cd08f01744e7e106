/**
 * Where the controller keeps the current state others read: link state, agent presence and
 * interface counters as flat string hashes under the `meridian:` prefix, plus change events on a
 * pub/sub channel. Two implementations behind one interface: Redis (`state-store-redis.ts`) and
 * the embedded in-memory store below (quick start without Redis).
 *
 * The controller's own reads (HTTP API) never go through the store: they come from memory, so the
 * API keeps answering while Redis is down.
 */
import type { LinkSnapshot } from './link-estimator';

/** `up`/`down`: Redis reachable or not; `embedded`: no Redis configured. */
export type StoreHealth = 'up' | 'down' | 'embedded';

/** Key of a link's hash. */
export const linkKey = (id: string): string => `meridian:link:${id}`;
/** Key of an agent's presence hash. */
export const agentKey = (site: string): string => `meridian:agent:${site}`;
/** Key of an interface's counters hash. */
export const interfaceKey = (device: string, ifName: string): string => `meridian:if:${device}:${ifName}`;
/** Pub/sub channel of change events (JSON, `type` field: `link-change`, `agent`). */
export const EVENTS_CHANNEL = 'meridian:events';

/** Flat hash of strings (numbers in decimal, `null` as the string `null`, times ISO 8601). */
export type StoreRecord = Readonly<Record<string, string>>;

/** Persisted current state. Writes are fire-and-forget: implementations never throw from them. */
export interface StateStore {
  readonly kind: 'redis' | 'embedded';
  health(): StoreHealth;
  /** Connects (Redis); resolves even when Redis is down (it keeps retrying). */
  start(): Promise<void>;
  /**
   * Replaces the hash at `key`. Writes are coalesced per key; `urgent` (a liveness change) asks
   * for a write at once instead of at the next flush.
   */
  put(key: string, record: StoreRecord, urgent?: boolean): void;
  /** Publishes an event on `meridian:events` (dropped, and counted, while Redis is down). */
  publish(event: object): void;
  /** The last record put at `key` (from memory). */
  get(key: string): StoreRecord | undefined;
  /** Flushes pending writes and disconnects. */
  close(): Promise<void>;
}

const str = (x: number | boolean | string | null): string => (x === null ? 'null' : String(x));

/** ISO time of a ms timestamp, `null` for 0. */
export function isoOrNull(ms: number): string | null {
  return ms > 0 ? new Date(ms).toISOString() : null;
}

/** The hash of `meridian:link:<id>`. */
export function linkRecord(s: LinkSnapshot): StoreRecord {
  return {
    id: s.id,
    a: s.a,
    b: s.b,
    up: str(s.up),
    stale: str(s.stale),
    latencyMs: str(s.latencyMs),
    rttMs: str(s.rttMs),
    rttMinMs: str(s.rttMinMs),
    rttP50Ms: str(s.rttP50Ms),
    rttP95Ms: str(s.rttP95Ms),
    jitterMs: str(s.jitterMs),
    lossPct: str(s.lossPct),
    utilPct: str(s.utilPct),
    samples: str(s.samples),
    src: str(s.src),
    updatedAt: str(isoOrNull(s.updatedAtMs)),
  };
}

/** The embedded store: a map in memory, nothing leaves the process. */
export class MemoryStateStore implements StateStore {
  readonly kind = 'embedded';
  readonly #records = new Map<string, StoreRecord>();
  /** Recent published events (bounded), for inspection. */
  readonly events: object[] = [];
  readonly #maxEvents: number;

  constructor(opts: { maxEvents?: number } = {}) {
    this.#maxEvents = opts.maxEvents ?? 1000;
  }

  health(): StoreHealth {
    return 'embedded';
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  put(key: string, record: StoreRecord): void {
    this.#records.set(key, record);
  }

  publish(event: object): void {
    this.events.push(event);
    if (this.events.length > this.#maxEvents) this.events.splice(0, this.events.length - this.#maxEvents);
  }

  get(key: string): StoreRecord | undefined {
    return this.#records.get(key);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
