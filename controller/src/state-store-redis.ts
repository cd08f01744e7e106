/**
 * The Redis state store (ioredis v6). The current value of every key is kept in memory and
 * written to Redis by a coalescing flusher: at most one write per key per `flushIntervalMs`, at
 * once for urgent (liveness) changes. Redis down at start or mid-run changes nothing for the
 * controller: writes stay pending, health reads `down`, ioredis keeps reconnecting, and on `ready`
 * every key is written back so Redis again holds the current state.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { EVENTS_CHANNEL, type StateStore, type StoreHealth, type StoreRecord } from './state-store';

export interface RedisStateStoreOptions {
  /** `redis://host:port[/db]` */
  readonly url: string;
  readonly log: Logger;
  /** Coalescing period of non-urgent writes (default 200 ms). */
  readonly flushIntervalMs?: number;
  /** Longest wait between reconnect attempts (default 1000 ms). */
  readonly maxReconnectDelayMs?: number;
}

export class RedisStateStore implements StateStore {
  readonly kind = 'redis';
  readonly #log: Logger;
  readonly #redis: Redis;
  readonly #records = new Map<string, StoreRecord>();
  readonly #dirty = new Set<string>();
  readonly #flushIntervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #flushing = false;
  #urgentQueued = false;
  #closed = false;
  #wasReady = false;
  /** Events not published because Redis was down. */
  droppedEvents = 0;
  /** Hash writes done (each key write counts once). */
  writes = 0;

  constructor(opts: RedisStateStoreOptions) {
    this.#log = opts.log.child({ module: 'state-store-redis' });
    this.#flushIntervalMs = opts.flushIntervalMs ?? 200;
    const maxDelay = opts.maxReconnectDelayMs ?? 1000;
    this.#redis = new Redis(opts.url, {
      // Fail fast while disconnected: pending state lives in #dirty, not in ioredis' queue.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), maxDelay),
      lazyConnect: true,
    });
    this.#redis.on('ready', () => {
      this.#log.info(
        { url: opts.url, writeBack: this.#records.size },
        'redis up: writing current state back',
      );
      this.#wasReady = true;
      for (const k of this.#records.keys()) this.#dirty.add(k);
      this.#flushSoon();
    });
    this.#redis.on('error', (err: Error) => {
      // ioredis emits an error per failed reconnect; log the transition only.
      if (this.#wasReady)
        this.#log.warn({ err: err.message }, 'redis down: serving from memory, reconnecting');
      this.#wasReady = false;
    });
    this.#redis.on('close', () => {
      if (this.#wasReady && !this.#closed) this.#log.warn('redis connection closed: reconnecting');
      this.#wasReady = false;
    });
  }

  health(): StoreHealth {
    return this.#redis.status === 'ready' ? 'up' : 'down';
  }

  async start(): Promise<void> {
    this.#timer = setInterval(() => this.#flush(), this.#flushIntervalMs);
    this.#timer.unref();
    try {
      await this.#redis.connect();
    } catch (err) {
      // Not fatal: ioredis keeps retrying and 'ready' writes everything back.
      this.#log.warn({ err: (err as Error).message }, 'redis unreachable at start: serving from memory');
    }
  }

  put(key: string, record: StoreRecord, urgent = false): void {
    this.#records.set(key, record);
    this.#dirty.add(key);
    if (urgent) this.#flushSoon();
  }

  get(key: string): StoreRecord | undefined {
    return this.#records.get(key);
  }

  publish(event: object): void {
    if (this.#redis.status !== 'ready') {
      this.droppedEvents++;
      return;
    }
    this.#redis.publish(EVENTS_CHANNEL, JSON.stringify(event)).catch(() => {
      this.droppedEvents++;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#redis.status === 'ready') {
      await this.#write();
      await this.#redis.quit().catch(() => undefined);
    }
    this.#redis.disconnect();
  }

  #flushSoon(): void {
    if (this.#urgentQueued) return;
    this.#urgentQueued = true;
    setImmediate(() => {
      this.#urgentQueued = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#flushing || this.#dirty.size === 0 || this.#redis.status !== 'ready') return;
    this.#flushing = true;
    this.#write()
      .catch((err: unknown) => this.#log.debug({ err: (err as Error).message }, 'redis flush failed'))
      .finally(() => {
        this.#flushing = false;
      });
  }

  /** Writes every dirty key in one pipeline; keys whose write failed stay dirty. */
  async #write(): Promise<void> {
    const keys = [...this.#dirty];
    this.#dirty.clear();
    const pipe = this.#redis.pipeline();
    for (const k of keys) pipe.hset(k, this.#records.get(k) ?? {});
    const results: [Error | null, unknown][] | null = await pipe.exec().catch(() => null);
    for (let i = 0; i < keys.length; i++) {
      const failed = results === null || results[i] === undefined || results[i]![0] !== null;
      if (failed) this.#dirty.add(keys[i]!);
      else this.writes++;
    }
  }
}
