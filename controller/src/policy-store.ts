/**
 * The versioned policy store: every site policy ever issued, the version metadata, which version
 * of each site is current, and the audit trail of operator changes.
 *
 * Versions are global and never reused: one cycle of the route loop (or one rollback) takes one
 * number from a counter and stamps it on the policies of the sites whose content changed; the
 * other sites keep their previous version. With Redis the counter is `INCR meridian:policy:seq`,
 * so it survives controller restarts; embedded, it lives in memory and is raised past any version
 * an agent reports in its hello (`observe()`), so a restarted embedded controller does not reissue
 * numbers its agents already hold.
 *
 * Redis keys (all JSON strings unless said):
 * - `meridian:policy:seq` — the counter (integer).
 * - `meridian:policy:<site>:<version>` — the site's policy of that version (as pushed), its JSON
 *   zlib-deflated (`policy-blob.ts`; values written before that are plain JSON and still read).
 * - `meridian:policy:versions` — sorted set, score = version, member = the version's metadata.
 * - `meridian:policy:current` — hash, field = site, value = `{"version","hash"}`.
 * - `meridian:audit` — stream of operator actions (`XADD`, fields `action`, `detail`, `at`).
 * Versions and current refs are served from memory (loaded at start); policies from a bounded cache
 * of recently written or read ones, else from Redis. Redis is written through, in one MULTI per
 * version.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ControllerError } from './errors';
import { decodePolicyBlob, encodePolicyBlobs } from './policy-blob';
import type { CompiledSitePolicy } from './policy-compiler';

/** Why a version was issued. */
export type PolicyVersionReason = 'routes' | 'rollback' | 'reissue';

/** The metadata of one issued version. */
export interface PolicyVersionMeta {
  readonly version: number;
  /** ISO time of issue. */
  readonly createdAt: string;
  readonly reason: PolicyVersionReason;
  /** For `rollback`: the version whose content was re-issued; else null. */
  readonly rollbackOf: number | null;
  /** Sites whose policy this version carries (sorted). */
  readonly sites: readonly string[];
}

/** The version and content hash of a site's current policy. */
export interface PolicyRef {
  readonly version: number;
  readonly hash: string;
}

/** One operator action, as kept in the audit trail. */
export interface AuditEntry {
  readonly at: string;
  readonly action: string;
  readonly detail: Readonly<Record<string, unknown>>;
}

export interface PolicyStore {
  readonly kind: 'redis' | 'memory';
  /** Loads versions and current refs (Redis); idempotent. */
  start(): Promise<void>;
  close(): Promise<void>;
  /** A fresh version number, greater than any issued or observed. */
  nextVersion(): Promise<number>;
  /** Raises the counter floor to at least `version` (a version seen at an agent). */
  observe(version: number): Promise<void>;
  /** Records an issued version and makes its policies current for their sites (it keeps the frozen policies by reference). */
  commit(meta: PolicyVersionMeta, policies: readonly CompiledSitePolicy[]): Promise<void>;
  /** Current version and hash per site (only sites that ever got a policy). */
  current(): ReadonlyMap<string, PolicyRef>;
  /** Every issued version, oldest first. */
  versions(): readonly PolicyVersionMeta[];
  /** Whether `version` was ever issued. */
  issued(version: number): boolean;
  /** The policy of `site` at exactly `version`, or null. */
  get(site: string, version: number): Promise<CompiledSitePolicy | null>;
  /**
   * The policy of `site` in force right after `version` was issued: its latest policy of a
   * version <= `version`; null when it had none by then.
   */
  policyAt(site: string, version: number): Promise<CompiledSitePolicy | null>;
  /**
   * The full policy set in force right after `version` was issued: per site, its latest policy
   * of a version <= `version`. Null when `version` was never issued.
   */
  policiesAt(version: number): Promise<Map<string, CompiledSitePolicy> | null>;
  audit(action: string, detail: Record<string, unknown>): Promise<void>;
  /** The most recent audit entries, oldest first. */
  auditLog(limit?: number): Promise<AuditEntry[]>;
}

const jsonCache = new WeakMap<object, string>();

/**
 * The JSON of an issued policy, serialised once and shared by the store and the distributor (a
 * 1,000-site version is tens of MB of JSON). Issued policies are frozen, so the cache cannot go stale.
 */
export function policyJson(p: CompiledSitePolicy): string {
  let s = jsonCache.get(p);
  if (s === undefined) {
    s = JSON.stringify(p);
    if (Object.isFrozen(p)) jsonCache.set(p, s);
  }
  return s;
}

export const POLICY_KEYS = {
  seq: 'meridian:policy:seq',
  versions: 'meridian:policy:versions',
  current: 'meridian:policy:current',
  audit: 'meridian:audit',
  policy: (site: string, version: number): string => `meridian:policy:${site}:${version}`,
} as const;

/** The shared bookkeeping of both stores: versions and current refs in memory. */
abstract class BasePolicyStore {
  protected readonly metas: PolicyVersionMeta[] = [];
  protected readonly byVersion = new Map<number, PolicyVersionMeta>();
  protected readonly currentRefs = new Map<string, PolicyRef>();
  /** Per site: versions it got, ascending. */
  protected readonly siteVersions = new Map<string, number[]>();

  protected remember(meta: PolicyVersionMeta): void {
    if (this.byVersion.has(meta.version)) return;
    this.byVersion.set(meta.version, meta);
    this.metas.push(meta);
    this.metas.sort((a, b) => a.version - b.version);
    for (const site of meta.sites) {
      const list = this.siteVersions.get(site) ?? [];
      list.push(meta.version);
      list.sort((a, b) => a - b);
      this.siteVersions.set(site, list);
    }
  }

  current(): ReadonlyMap<string, PolicyRef> {
    return this.currentRefs;
  }

  versions(): readonly PolicyVersionMeta[] {
    return this.metas;
  }

  abstract get(site: string, version: number): Promise<CompiledSitePolicy | null>;

  async policyAt(site: string, version: number): Promise<CompiledSitePolicy | null> {
    let at: number | undefined;
    for (const v of this.siteVersions.get(site) ?? []) if (v <= version) at = v;
    return at === undefined ? null : this.get(site, at);
  }

  async policiesAt(version: number): Promise<Map<string, CompiledSitePolicy> | null> {
    if (!this.byVersion.has(version)) return null;
    const out = new Map<string, CompiledSitePolicy>();
    for (const site of this.siteVersions.keys()) {
      const p = await this.policyAt(site, version);
      if (p !== null) out.set(site, p);
    }
    return out;
  }

  /** Whether `version` was ever issued. */
  issued(version: number): boolean {
    return this.byVersion.has(version);
  }
}

/** The embedded store: everything in memory, lost at exit. */
export class MemoryPolicyStore extends BasePolicyStore implements PolicyStore {
  readonly kind = 'memory' as const;
  #seq = 0;
  readonly #policies = new Map<string, CompiledSitePolicy>();
  readonly #audit: AuditEntry[] = [];
  readonly #auditMax: number;

  constructor(opts: { auditMax?: number } = {}) {
    super();
    this.#auditMax = opts.auditMax ?? 10_000;
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  nextVersion(): Promise<number> {
    return Promise.resolve(++this.#seq);
  }

  observe(version: number): Promise<void> {
    if (version > this.#seq) this.#seq = version;
    return Promise.resolve();
  }

  commit(meta: PolicyVersionMeta, policies: readonly CompiledSitePolicy[]): Promise<void> {
    for (const p of policies) {
      // Issued policies are frozen: kept by reference, copied on the way out.
      this.#policies.set(`${p.site}\u0000${p.version}`, p);
      this.currentRefs.set(p.site, { version: p.version, hash: p.hash });
    }
    this.remember(meta);
    return Promise.resolve();
  }

  get(site: string, version: number): Promise<CompiledSitePolicy | null> {
    const p = this.#policies.get(`${site}\u0000${version}`);
    return Promise.resolve(p === undefined ? null : structuredClone(p));
  }

  audit(action: string, detail: Record<string, unknown>): Promise<void> {
    this.#audit.push({ at: new Date().toISOString(), action, detail });
    if (this.#audit.length > this.#auditMax) this.#audit.splice(0, this.#audit.length - this.#auditMax);
    return Promise.resolve();
  }

  auditLog(limit = 100): Promise<AuditEntry[]> {
    return Promise.resolve(this.#audit.slice(-limit));
  }
}

const RAISE_SEQ = `local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if c < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0`;

export interface RedisPolicyStoreOptions {
  readonly url: string;
  readonly log: Logger;
  /** Audit stream length cap (`XADD MAXLEN ~`), default 10,000. */
  readonly auditMax?: number;
  /** How long `start()` waits for Redis before going on without it (default 1000 ms). */
  readonly connectWaitMs?: number;
  /**
   * How many policies the in-memory cache keeps (least recently used out first; default 2,048).
   * Every version stays in Redis; without a bound the cache would grow with every version ever
   * issued, for the life of the controller.
   */
  readonly cacheEntries?: number;
}

/**
 * The Redis store. Unlike link state (best effort, written behind), a policy version is written
 * before it is pushed: a version Redis did not take is not issued (`CTRL_ERR_POLICY_STORE`), so an
 * operator can always roll back to any version an agent ever received.
 */
export class RedisPolicyStore extends BasePolicyStore implements PolicyStore {
  readonly kind = 'redis' as const;
  readonly #redis: Redis;
  readonly #log: Logger;
  readonly #auditMax: number;
  /** Insertion order is recency: a hit is moved to the end, the first entry is the one to drop. */
  readonly #cache = new Map<string, CompiledSitePolicy>();
  readonly #cacheEntries: number;
  readonly #connectWaitMs: number;
  #started = false;
  #loaded = false;

  constructor(opts: RedisPolicyStoreOptions) {
    super();
    this.#log = opts.log.child({ module: 'policy-store' });
    this.#auditMax = opts.auditMax ?? 10_000;
    this.#connectWaitMs = opts.connectWaitMs ?? 1000;
    this.#cacheEntries = Math.max(1, opts.cacheEntries ?? 2048);
    // No offline queue: a write while Redis is down fails at once and the route loop retries it.
    this.#redis = new Redis(opts.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: (n: number) => Math.min(100 * n, 2000),
    });
    this.#redis.on('error', (err: Error) => this.#log.warn({ err: err.message }, 'redis error'));
  }

  /**
   * Waits up to `connectWaitMs` for Redis and loads versions; when Redis is down the controller
   * still starts (no version can be issued until Redis is back and loaded: `CTRL_ERR_POLICY_STORE`).
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#redis.on('ready', () => void this.#load().catch(() => undefined));
    // A Redis that comes back empty (no persistence) must not hand out numbers already issued.
    this.#redis.on('ready', () => {
      const top = this.metas.at(-1)?.version ?? 0;
      if (this.#loaded && top > 0) void this.observe(top).catch(() => undefined);
    });
    if (this.#redis.status !== 'ready') {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.#connectWaitMs);
        this.#redis.once('ready', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if (this.#redis.status === 'ready') await this.#load().catch(() => undefined);
    else this.#log.warn('redis unreachable: no policy version can be issued until it is back');
  }

  /** True once versions are loaded from Redis. */
  get loaded(): boolean {
    return this.#loaded;
  }

  async #load(): Promise<void> {
    if (this.#loaded) return;
    try {
      const members = await this.#redis.zrange(POLICY_KEYS.versions, '0', '-1');
      for (const m of members) this.remember(JSON.parse(m) as PolicyVersionMeta);
      const cur = await this.#redis.hgetall(POLICY_KEYS.current);
      for (const [site, v] of Object.entries(cur)) this.currentRefs.set(site, JSON.parse(v) as PolicyRef);
    } catch (err) {
      throw this.#fail('loading policy versions', err);
    }
    this.#loaded = true;
    this.#log.info(
      { versions: this.metas.length, sites: this.currentRefs.size, last: this.metas.at(-1)?.version ?? 0 },
      'policy versions loaded',
    );
  }

  #ready(what: string): void {
    if (!this.#loaded) {
      throw new ControllerError(
        'CTRL_ERR_POLICY_STORE',
        `policy store (Redis): cannot ${what}: versions not loaded yet (Redis unreachable)`,
      );
    }
  }

  async close(): Promise<void> {
    if (this.#redis.status === 'ready') await this.#redis.quit().catch(() => undefined);
    this.#redis.disconnect();
  }

  async nextVersion(): Promise<number> {
    this.#ready('take a version number');
    try {
      return await this.#redis.incr(POLICY_KEYS.seq);
    } catch (err) {
      throw this.#fail('taking a version number', err);
    }
  }

  async observe(version: number): Promise<void> {
    this.#ready('raise the version counter');
    try {
      await this.#redis.eval(RAISE_SEQ, 1, POLICY_KEYS.seq, String(version));
    } catch (err) {
      throw this.#fail('raising the version counter', err);
    }
  }

  async commit(meta: PolicyVersionMeta, policies: readonly CompiledSitePolicy[]): Promise<void> {
    this.#ready(`write policy version ${meta.version}`);
    const blobs = await encodePolicyBlobs(policies.map((p) => policyJson(p)));
    const m = this.#redis.multi();
    for (const [i, p] of policies.entries()) {
      m.set(POLICY_KEYS.policy(p.site, p.version), blobs[i]!);
      m.hset(POLICY_KEYS.current, p.site, JSON.stringify({ version: p.version, hash: p.hash }));
    }
    m.zadd(POLICY_KEYS.versions, meta.version, JSON.stringify(meta));
    try {
      const res = await m.exec();
      const failed = res?.find(([e]) => e !== null);
      if (res === null || failed !== undefined) throw failed?.[0] ?? new Error('transaction aborted');
    } catch (err) {
      throw this.#fail(`writing policy version ${meta.version}`, err);
    }
    for (const p of policies) {
      this.#cachePut(POLICY_KEYS.policy(p.site, p.version), p);
      this.currentRefs.set(p.site, { version: p.version, hash: p.hash });
    }
    this.remember(meta);
  }

  async get(site: string, version: number): Promise<CompiledSitePolicy | null> {
    const key = POLICY_KEYS.policy(site, version);
    const hit = this.#cache.get(key);
    if (hit !== undefined) {
      this.#cachePut(key, hit);
      return structuredClone(hit);
    }
    let raw: Buffer | null;
    try {
      raw = await this.#redis.getBuffer(key);
    } catch (err) {
      throw this.#fail(`reading ${key}`, err);
    }
    if (raw === null) return null;
    let p: CompiledSitePolicy;
    try {
      p = await decodePolicyBlob(key, raw);
    } catch (err) {
      this.#log.error({ code: (err as ControllerError).code, key }, (err as Error).message);
      throw err;
    }
    this.#cachePut(key, p);
    return structuredClone(p);
  }

  /** How many policies the cache holds now (at most `cacheEntries`). */
  get cachedPolicies(): number {
    return this.#cache.size;
  }

  #cachePut(key: string, p: CompiledSitePolicy): void {
    this.#cache.delete(key);
    this.#cache.set(key, p);
    while (this.#cache.size > this.#cacheEntries) {
      const oldest = this.#cache.keys().next().value as string;
      this.#cache.delete(oldest);
    }
  }

  async audit(action: string, detail: Record<string, unknown>): Promise<void> {
    try {
      await this.#redis.xadd(
        POLICY_KEYS.audit,
        'MAXLEN',
        '~',
        String(this.#auditMax),
        '*',
        'action',
        action,
        'detail',
        JSON.stringify(detail),
        'at',
        new Date().toISOString(),
      );
    } catch (err) {
      throw this.#fail('appending to the audit stream', err);
    }
  }

  async auditLog(limit = 100): Promise<AuditEntry[]> {
    let rows: [string, string[]][];
    try {
      rows = await this.#redis.xrevrange(POLICY_KEYS.audit, '+', '-', 'COUNT', String(limit));
    } catch (err) {
      throw this.#fail('reading the audit stream', err);
    }
    return rows.reverse().map(([, fields]) => {
      const f = new Map<string, string>();
      for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
      return {
        at: f.get('at') ?? '',
        action: f.get('action') ?? '',
        detail: JSON.parse(f.get('detail') ?? '{}') as Record<string, unknown>,
      };
    });
  }

  #fail(what: string, err: unknown): ControllerError {
    const e = new ControllerError(
      'CTRL_ERR_POLICY_STORE',
      `policy store (Redis): ${what} failed: ${(err as Error).message}`,
    );
    this.#log.error({ code: e.code }, e.message);
    return e;
  }
}
