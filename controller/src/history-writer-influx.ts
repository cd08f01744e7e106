/**
 * History in InfluxDB 1.x through the `influx` 5.x client. On start (and, while InfluxDB is down,
 * before each flush until it works) it creates database `meridian` with retention policies `raw`
 * (default, `rawRetention`) and `long` (`longRetention`) plus continuous queries downsampling
 * `link_probe` and `if_counters` into `long` per minute.
 *
 * Points are batched: a flush every `flushIntervalMs` (or sooner once `batchSize` points wait)
 * writes up to `batchSize` points per request. A failed batch goes back to the front of the
 * bounded buffer; the writer keeps retrying on its timer and empties the buffer when InfluxDB
 * returns. Nothing here is awaited by the control loop.
 */
import { InfluxDB } from 'influx';
import type { Logger } from 'pino';
import {
  HISTORY_DATABASE,
  PointBuffer,
  type HistoryPoint,
  type HistoryStats,
  type HistoryWriter,
} from './history-writer';
import type { StoreHealth } from './state-store';

export interface InfluxHistoryWriterOptions {
  /** `http://host:port` of the InfluxDB HTTP API. */
  readonly url: string;
  readonly log: Logger;
  /** Most points held while InfluxDB is down (default 100,000); beyond, the oldest are dropped. */
  readonly maxBuffered?: number;
  readonly batchSize?: number;
  readonly flushIntervalMs?: number;
  readonly rawRetention?: string;
  readonly longRetention?: string;
}

/** A constant backoff for the client's host pool, so a returning InfluxDB is used within a second. */
const shortBackoff = {
  getDelay: () => 500,
  next() {
    return shortBackoff;
  },
  reset() {
    return shortBackoff;
  },
};

export class InfluxHistoryWriter implements HistoryWriter {
  readonly kind = 'influx';
  readonly #log: Logger;
  readonly #influx: InfluxDB;
  readonly #buffer: PointBuffer;
  readonly #batchSize: number;
  readonly #flushIntervalMs: number;
  readonly #raw: string;
  readonly #long: string;
  #ready = false;
  #up = false;
  #flushing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #written = 0;
  #closed = false;

  constructor(opts: InfluxHistoryWriterOptions) {
    this.#log = opts.log.child({ module: 'history-influx' });
    const u = new URL(opts.url);
    this.#influx = new InfluxDB({
      host: u.hostname,
      port: Number(u.port || 8086),
      protocol: u.protocol === 'https:' ? 'https' : 'http',
      database: HISTORY_DATABASE,
      pool: { maxRetries: 0, requestTimeout: 5000, backoff: shortBackoff },
    });
    this.#buffer = new PointBuffer(opts.maxBuffered ?? 100_000);
    this.#batchSize = opts.batchSize ?? 5000;
    this.#flushIntervalMs = opts.flushIntervalMs ?? 1000;
    this.#raw = opts.rawRetention ?? '7d';
    this.#long = opts.longRetention ?? '365d';
  }

  health(): StoreHealth {
    return this.#up ? 'up' : 'down';
  }

  async start(): Promise<void> {
    await this.#setup();
    this.#timer = setInterval(() => void this.flush(), this.#flushIntervalMs);
    this.#timer.unref();
  }

  write(point: HistoryPoint): void {
    this.#buffer.push(point);
    if (this.#buffer.size >= this.#batchSize && this.#up) void this.flush();
  }

  stats(): HistoryStats {
    return { buffered: this.#buffer.size, dropped: this.#buffer.dropped, written: this.#written };
  }

  /** Writes everything buffered (batch by batch) unless InfluxDB fails; never rejects. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flushAll().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#up) await this.flush();
    if (this.#buffer.size > 0)
      this.#log.warn({ lost: this.#buffer.size }, 'history points not written at stop');
  }

  async #setup(): Promise<boolean> {
    if (this.#ready) return true;
    try {
      await this.#influx.createDatabase(HISTORY_DATABASE);
      await this.#influx.createRetentionPolicy('raw', {
        database: HISTORY_DATABASE,
        duration: this.#raw,
        replication: 1,
        isDefault: true,
      });
      await this.#influx.createRetentionPolicy('long', {
        database: HISTORY_DATABASE,
        duration: this.#long,
        replication: 1,
      });
      await this.#influx.createContinuousQuery(
        'link_probe_1m',
        'SELECT mean(rtt_ms) AS rtt_ms, mean(jitter_ms) AS jitter_ms, mean(loss_pct) AS loss_pct ' +
          'INTO "long"."link_probe_1m" FROM "raw"."link_probe" GROUP BY time(1m), *',
        HISTORY_DATABASE,
      );
      await this.#influx.createContinuousQuery(
        'if_counters_1m',
        'SELECT mean(in_bps) AS in_bps, mean(out_bps) AS out_bps, max(util_pct) AS util_pct ' +
          'INTO "long"."if_counters_1m" FROM "raw"."if_counters" GROUP BY time(1m), *',
        HISTORY_DATABASE,
      );
      this.#ready = true;
      this.#setUp(true);
      this.#log.info({ database: HISTORY_DATABASE, raw: this.#raw, long: this.#long }, 'influx ready');
      return true;
    } catch (err) {
      this.#setUp(false, err);
      return false;
    }
  }

  async #flushAll(): Promise<void> {
    if (!(await this.#setup())) return;
    if (this.#buffer.size === 0) {
      // Nothing to write: a ping keeps `health()` true to what InfluxDB is doing.
      const hosts = await this.#influx.ping(1000).catch(() => []);
      this.#setUp(
        hosts.some((h) => h.online),
        'ping failed',
      );
      return;
    }
    while (this.#buffer.size > 0 && !this.#closedAndDown()) {
      const batch = this.#buffer.take(this.#batchSize);
      try {
        await this.#influx.writePoints(batch, {
          precision: 'ms',
          retentionPolicy: 'raw',
        });
        this.#written += batch.length;
        this.#setUp(true);
      } catch (err) {
        this.#buffer.unshift(batch);
        this.#setUp(false, err);
        return;
      }
    }
  }

  #closedAndDown(): boolean {
    return this.#closed && !this.#up;
  }

  #setUp(up: boolean, err?: unknown): void {
    if (up === this.#up) return;
    this.#up = up;
    if (up) this.#log.info({ buffered: this.#buffer.size }, 'influx up: flushing buffered points');
    else
      this.#log.warn(
        { err: err instanceof Error ? err.message : String(err), buffered: this.#buffer.size },
        'influx down: buffering points',
      );
  }
}
