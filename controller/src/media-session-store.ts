/**
 * Where media sessions outlive the controller process: one Redis hash per session,
 * `meridian:media:session:<id>` (fields `id request nodes ingress createdAt moves`, JSON where the
 * value is structured). After a restart the nodes re-announce what they carry and steering adopts
 * complete chains; the stored record gives back what the nodes cannot know: the requested sites
 * (a session placed at the nearest site keeps asking for its own), creation time and moves.
 *
 * Redis down is not fatal: writes are retried by ioredis' queue while it reconnects (bounded by
 * `maxRetriesPerRequest`), and a failed load at start means adopted sessions fall back to the
 * sites of their nodes, as without Redis.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Key prefix of the per-session hashes. */
export const MEDIA_SESSION_KEY_PREFIX = 'meridian:media:session:';
export const mediaSessionKey = (id: string): string => `${MEDIA_SESSION_KEY_PREFIX}${id}`;

/** What is kept of a session. */
export interface StoredMediaSession {
  id: string;
  /** The request as accepted (`POST /api/v1/media/sessions` body). */
  request: unknown;
  nodes: string[];
  ingress: { ip: string; port: number };
  createdAt: number;
  moves: number;
}

export interface MediaSessionStore {
  /** Sessions stored by a previous controller (empty when none or unreachable). */
  load(): Promise<Map<string, StoredMediaSession>>;
  put(s: StoredMediaSession): void;
  delete(id: string): void;
  close(): Promise<void>;
}

export class RedisMediaSessionStore implements MediaSessionStore {
  readonly #redis: Redis;
  readonly #log: Logger;
  #closed = false;

  constructor(opts: { url: string; log: Logger }) {
    this.#log = opts.log.child({ module: 'media-session-store' });
    this.#redis = new Redis(opts.url, {
      lazyConnect: true,
      connectTimeout: 2000,
      maxRetriesPerRequest: 2,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), 1000),
    });
    this.#redis.on('error', (err: Error) => this.#log.debug({ err: err.message }, 'redis error'));
  }

  async load(): Promise<Map<string, StoredMediaSession>> {
    const out = new Map<string, StoredMediaSession>();
    try {
      if (this.#redis.status === 'wait') await this.#redis.connect();
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await this.#redis.scan(
          cursor,
          'MATCH',
          `${MEDIA_SESSION_KEY_PREFIX}*`,
          'COUNT',
          500,
        );
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
      for (const key of keys) {
        const h = await this.#redis.hgetall(key);
        const s = parse(h);
        if (s === undefined) this.#log.warn({ key }, 'unreadable stored media session ignored');
        else out.set(s.id, s);
      }
      this.#log.info({ sessions: out.size }, 'stored media sessions loaded');
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'stored media sessions not loaded (redis unreachable)');
    }
    return out;
  }

  put(s: StoredMediaSession): void {
    if (this.#closed) return;
    this.#redis
      .hset(mediaSessionKey(s.id), {
        id: s.id,
        request: JSON.stringify(s.request),
        nodes: JSON.stringify(s.nodes),
        ingress: JSON.stringify(s.ingress),
        createdAt: new Date(s.createdAt).toISOString(),
        moves: String(s.moves),
      })
      .catch((err: unknown) =>
        this.#log.warn({ session: s.id, err: (err as Error).message }, 'media session not stored'),
      );
  }

  delete(id: string): void {
    if (this.#closed) return;
    this.#redis
      .del(mediaSessionKey(id))
      .catch((err: unknown) =>
        this.#log.warn({ session: id, err: (err as Error).message }, 'stored media session not deleted'),
      );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#redis.status === 'ready') await this.#redis.quit().catch(() => undefined);
    this.#redis.disconnect();
  }
}

function parse(h: Record<string, string>): StoredMediaSession | undefined {
  try {
    const id = h.id;
    const createdAt = Date.parse(h.createdAt ?? '');
    const moves = Number(h.moves);
    if (id === undefined || id === '' || !Number.isFinite(createdAt) || !Number.isFinite(moves))
      return undefined;
    const nodes: unknown = JSON.parse(h.nodes ?? 'null');
    const ingress: unknown = JSON.parse(h.ingress ?? 'null');
    if (!Array.isArray(nodes) || typeof ingress !== 'object' || ingress === null) return undefined;
    return {
      id,
      request: JSON.parse(h.request ?? 'null') as unknown,
      nodes: nodes.map(String),
      ingress: ingress as { ip: string; port: number },
      createdAt,
      moves,
    };
  } catch {
    return undefined;
  }
}
