/**
 * The policy distributor: pushes each site's current policy over its agent's gRPC stream and
 * tracks what every agent did with it.
 *
 * Per site it holds one target (the current version, hash and JSON) and a status:
 * - `pending`: pushed (or waiting for the agent to connect), no ack yet;
 * - `applied`: the agent acked this exact version (or said so in its hello);
 * - `failed`: the agent refused it (`error.code` is its AGENT_ERR_*) or never acked it
 *   (`CTRL_ERR_POLICY_ACK_TIMEOUT` after `maxAttempts` pushes `ackTimeoutMs` apart).
 *
 * Ordering rules (why agents never go back by accident):
 * - only an ack of the target version counts; an ack of any other version (a late ack of an
 *   older push, a duplicate) is counted in `counters.ignoredAcks` and changes nothing;
 * - a new target always has a larger version than the one it replaces (the store's counter);
 * - going back is only ever a NEW version whose content equals an old one (rollback), so the agent
 *   sees a higher version number with older content, never a lower number;
 * - on (re)connect the hello says what the agent has: the same version and hash -> `applied`, no
 *   push; a lower version -> the target is re-sent. A hello with the target's number but another
 *   hash, or a higher number (an embedded controller that restarted and lost its counter), is
 *   handed to `onAgentAhead`, which re-issues the content under a version above it.
 * A refusal because of the policy itself (`AGENT_ERR_POLICY_INVALID`, ...) is not retried: the same
 * content would fail the same way; the next version, a reconnect or a rollback pushes again. A
 * failure of the device or the agent's host ({@link TRANSIENT_FAILURES}: a device that dropped the
 * session or refused a change under load, a state directory that could not be written, an ack
 * timeout) is re-pushed while the agent stays connected, `retryBaseMs` after the failure and
 * doubling up to `retryMaxMs`: otherwise a site stays on its previous policy until the next route
 * change, which on a quiet network may be never. Between retries the status stays `failed`, with
 * the error, so an operator sees it.
 *
 * Make before break (hop-by-hop forwarding): a route's path is installed at every site it crosses,
 * so a head-end that moves a route before the new path's transit sites have their entries sends
 * packets where nobody expects them. In one `distribute()`, the sites whose own routes did not
 * change (only transit entries: new paths of other sites' routes) are pushed first, and the sites
 * whose routes changed — the head-ends — once those acked (or failed), or after `holdMaxMs` at most.
 * SRv6 routes need no such order (transit sites hold no per-route state): a batch without a
 * hop-by-hop head-end change is pushed at once. The old path's entries stay one version longer
 * (the compiler's `previousRoutes`), so the switch at the head-end is the last step.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { contentHash } from '@meridian/topology';
import type { AgentGateway, AgentPresence } from './agent-gateway';
import type { CompiledSitePolicy } from './policy-compiler';
import { policyJson, type PolicyRef } from './policy-store';
import type { PolicyAck } from './proto';

export type AgentPolicyStatus = 'pending' | 'applied' | 'failed';

/**
 * Failure codes that say nothing against the policy itself, so a later push of the same version
 * may succeed (see the module comment). Agent codes are the edge agent's catalog.
 */
export const TRANSIENT_FAILURES: ReadonlySet<string> = new Set([
  'AGENT_ERR_DRIVER_APPLY',
  'AGENT_ERR_DRIVER_UNREACHABLE',
  'AGENT_ERR_DRIVER_STATE',
  'AGENT_ERR_STATE_DIR',
  'AGENT_ERR_APPLY_FAILED',
  'CTRL_ERR_POLICY_ACK_TIMEOUT',
]);

/** What the API shows per agent. */
export interface AgentPolicyState {
  readonly site: string;
  readonly status: AgentPolicyStatus;
  /** The target version and hash (the site's current policy). */
  readonly version: number;
  readonly hash: string;
  /** The version in force at the agent as it last told us (0: none or unknown). */
  readonly appliedVersion: number;
  readonly connected: boolean;
  /** Pushes of the target version so far. */
  readonly attempts: number;
  readonly error: { readonly code: string; readonly message: string } | null;
  /** ISO time of the last status change. */
  readonly updatedAt: string;
}

export interface PolicyDistributorOptions {
  readonly gateway: Pick<AgentGateway, 'send' | 'on' | 'presence'>;
  readonly log: Logger;
  /** Time to wait for an ack before re-sending (default 5000 ms). */
  readonly ackTimeoutMs?: number;
  /** Pushes of one version before it is `failed` with `CTRL_ERR_POLICY_ACK_TIMEOUT` (default 3). */
  readonly maxAttempts?: number;
  /** First re-push after a transient failure (default 1000 ms); doubles each time. */
  readonly retryBaseMs?: number;
  /** Longest wait between re-pushes after transient failures (default 30,000 ms). */
  readonly retryMaxMs?: number;
  /** An agent holds a version above its target (see the module comment). */
  readonly onAgentAhead?: (site: string, held: PolicyRef) => void;
  /** Longest a head-end's push waits for the transit sites of its batch (default 1000 ms; 0: no order). */
  readonly holdMaxMs?: number;
}

export type PolicyDistributorEvents = {
  /** Every ack of a target version, ok or not (and ack timeouts): for cycle timings. */
  settled: [site: string, version: number, ok: boolean];
  applied: [site: string, version: number, hash: string];
  failed: [site: string, version: number, error: { code: string; message: string }];
};

interface Target {
  version: number;
  hash: string;
  json: string;
  status: AgentPolicyStatus;
  attempts: number;
  /** Transient failures of this version so far (sets the backoff). */
  failures: number;
  appliedVersion: number;
  error: { code: string; message: string } | null;
  updatedAt: number;
  /** The ack timeout while pending, the retry while failed. */
  timer: NodeJS.Timeout | undefined;
  /** Content hash of the policy's own routes: tells a head-end change from a transit-only one. */
  routesSig: string;
}

/** Head-end pushes waiting for the transit sites of their batch (see the module comment). */
interface HeldBatch {
  readonly waiting: Set<string>;
  readonly held: Map<string, Target>;
  timer: NodeJS.Timeout | undefined;
}

export class PolicyDistributor extends EventEmitter<PolicyDistributorEvents> {
  readonly #gateway: PolicyDistributorOptions['gateway'];
  readonly #log: Logger;
  readonly #ackTimeoutMs: number;
  readonly #maxAttempts: number;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #onAgentAhead: PolicyDistributorOptions['onAgentAhead'];
  readonly #targets = new Map<string, Target>();
  readonly #connected = new Set<string>();
  readonly #holdMaxMs: number;
  readonly #batches = new Set<HeldBatch>();
  #closed = false;
  readonly counters = { pushes: 0, acks: 0, ignoredAcks: 0, timeouts: 0, retries: 0, heldPushes: 0 };

  constructor(opts: PolicyDistributorOptions) {
    super();
    this.#gateway = opts.gateway;
    this.#log = opts.log.child({ module: 'distributor' });
    this.#ackTimeoutMs = opts.ackTimeoutMs ?? 5000;
    this.#maxAttempts = Math.max(1, opts.maxAttempts ?? 3);
    this.#retryBaseMs = Math.max(1, opts.retryBaseMs ?? 1000);
    this.#retryMaxMs = Math.max(this.#retryBaseMs, opts.retryMaxMs ?? 30_000);
    this.#onAgentAhead = opts.onAgentAhead;
    this.#holdMaxMs = Math.max(0, opts.holdMaxMs ?? 1000);
    opts.gateway.on('agent-connected', (p) => this.#connectedAgent(p));
    opts.gateway.on('agent-disconnected', (p) => this.#disconnected(p.site));
    opts.gateway.on('policy-ack', (site, ack) => this.#ack(site, ack));
  }

  /**
   * Makes these policies the sites' targets and pushes them to connected agents. A policy whose
   * version is not above the site's current target is a bug in the caller and throws.
   * @returns the sites it was pushed to now (the others get it when their agent connects).
   */
  distribute(policies: readonly CompiledSitePolicy[]): string[] {
    const pushed: string[] = [];
    const transitFirst: string[] = [];
    const headEnds: [string, Target][] = [];
    for (const p of policies) {
      const old = this.#targets.get(p.site);
      if (old !== undefined && p.version <= old.version) {
        throw new Error(`policy v${p.version} for ${p.site} is not above its current v${old.version}`);
      }
      if (old?.timer) clearTimeout(old.timer);
      const t: Target = {
        version: p.version,
        hash: p.hash,
        json: policyJson(p),
        status: 'pending',
        attempts: 0,
        failures: 0,
        appliedVersion: old?.appliedVersion ?? this.#gateway.presence(p.site)?.appliedPolicy.version ?? 0,
        error: null,
        updatedAt: Date.now(),
        timer: undefined,
        routesSig: contentHash(p.routes),
      };
      this.#targets.set(p.site, t);
      if (!this.#connected.has(p.site)) continue;
      const hopByHopHeadEnd =
        old !== undefined &&
        old.routesSig !== t.routesSig &&
        p.routes.some((r) => r.forwarding === 'hop-by-hop');
      if (hopByHopHeadEnd) headEnds.push([p.site, t]);
      else {
        if (old === undefined || old.routesSig === t.routesSig) transitFirst.push(p.site);
        if (this.#push(p.site, t)) pushed.push(p.site);
      }
    }
    const waiting = new Set(transitFirst.filter((s) => this.#targets.get(s)?.status === 'pending'));
    if (headEnds.length === 0) return pushed;
    if (waiting.size === 0 || this.#holdMaxMs === 0) {
      for (const [site, t] of headEnds) if (this.#push(site, t)) pushed.push(site);
      return pushed;
    }
    const batch: HeldBatch = { waiting, held: new Map(headEnds), timer: undefined };
    batch.timer = setTimeout(() => this.#release(batch, 'hold expired'), this.#holdMaxMs);
    batch.timer.unref();
    this.#batches.add(batch);
    this.counters.heldPushes += headEnds.length;
    this.#log.debug(
      { headEnds: headEnds.map(([s]) => s), transitSites: [...waiting] },
      'head-end pushes wait for the transit sites (make before break)',
    );
    return pushed;
  }

  /** Pushes a batch's held head-end policies that are still their sites' targets. */
  #release(batch: HeldBatch, why: string): void {
    if (!this.#batches.delete(batch)) return;
    if (batch.timer) clearTimeout(batch.timer);
    if (batch.waiting.size > 0)
      this.#log.info({ waiting: [...batch.waiting], why }, 'head-end pushes released');
    for (const [site, t] of batch.held) {
      if (
        this.#targets.get(site) === t &&
        t.status === 'pending' &&
        t.attempts === 0 &&
        this.#connected.has(site)
      )
        this.#push(site, t);
    }
  }

  /** A site of a batch settled: the batch's head-ends go when none is left waiting. */
  #transitSettled(site: string): void {
    for (const b of [...this.#batches]) {
      if (b.waiting.delete(site) && b.waiting.size === 0) this.#release(b, 'transit sites settled');
    }
  }

  /** Per-agent status of every site that has a target, sorted by site. */
  status(): AgentPolicyState[] {
    return [...this.#targets.keys()]
      .sort()
      .map((site) => this.statusOf(site))
      .filter((s) => s !== undefined);
  }

  /** The status of one site, or undefined when it has no target. */
  statusOf(site: string): AgentPolicyState | undefined {
    const t = this.#targets.get(site);
    if (t === undefined) return undefined;
    return {
      site,
      status: t.status,
      version: t.version,
      hash: t.hash,
      appliedVersion: t.appliedVersion,
      connected: this.#connected.has(site),
      attempts: t.attempts,
      error: t.error,
      updatedAt: new Date(t.updatedAt).toISOString(),
    };
  }

  close(): void {
    this.#closed = true;
    for (const b of this.#batches) if (b.timer) clearTimeout(b.timer);
    this.#batches.clear();
    for (const t of this.#targets.values()) if (t.timer) clearTimeout(t.timer);
  }

  #push(site: string, t: Target): boolean {
    if (this.#closed) return false;
    if (t.timer) clearTimeout(t.timer);
    t.timer = undefined;
    if (!this.#gateway.send(site, { policy: { version: t.version, hash: t.hash, policyJson: t.json } }))
      return false;
    t.attempts++;
    this.counters.pushes++;
    if (t.status !== 'pending') {
      t.status = 'pending';
      t.error = null;
      t.updatedAt = Date.now();
    }
    this.#log.debug({ site, version: t.version, attempt: t.attempts }, 'policy pushed');
    t.timer = setTimeout(() => this.#timeout(site, t), this.#ackTimeoutMs);
    t.timer.unref();
    return true;
  }

  #timeout(site: string, t: Target): void {
    t.timer = undefined;
    if (this.#targets.get(site) !== t || t.status !== 'pending') return;
    this.counters.timeouts++;
    if (!this.#connected.has(site)) return; // re-sent on reconnect
    if (t.attempts < this.#maxAttempts) {
      this.#log.warn({ site, version: t.version, attempt: t.attempts }, 'no policy ack in time, re-sending');
      this.#push(site, t);
      return;
    }
    const error = {
      code: 'CTRL_ERR_POLICY_ACK_TIMEOUT',
      message: `agent ${site} did not ack policy v${t.version} after ${t.attempts} pushes ${this.#ackTimeoutMs} ms apart`,
    };
    this.#settle(site, t, 'failed', error);
  }

  #settle(site: string, t: Target, status: 'applied' | 'failed', error: Target['error']): void {
    t.status = status;
    t.error = error;
    t.updatedAt = Date.now();
    if (t.timer) clearTimeout(t.timer);
    t.timer = undefined;
    this.emit('settled', site, t.version, status === 'applied');
    this.#transitSettled(site);
    if (status === 'applied') {
      this.#log.info({ site, version: t.version }, 'policy applied');
      this.emit('applied', site, t.version, t.hash);
    } else {
      const retryInMs = this.#scheduleRetry(site, t);
      this.#log.warn(
        { site, version: t.version, code: error?.code, retryInMs },
        error?.message ?? 'policy failed',
      );
      this.emit('failed', site, t.version, error ?? { code: 'CTRL_ERR_INTERNAL', message: 'no error' });
    }
  }

  /** After a transient failure, a re-push of the same version later; returns the delay (null: none). */
  #scheduleRetry(site: string, t: Target): number | null {
    if (this.#closed || t.error === null || !TRANSIENT_FAILURES.has(t.error.code)) return null;
    const delay = Math.min(this.#retryMaxMs, this.#retryBaseMs * 2 ** Math.min(t.failures, 30));
    t.failures++;
    t.timer = setTimeout(() => {
      t.timer = undefined;
      if (this.#targets.get(site) !== t || t.status !== 'failed' || !this.#connected.has(site)) return;
      this.counters.retries++;
      t.attempts = 0;
      this.#push(site, t);
    }, delay);
    t.timer.unref();
    return delay;
  }

  #connectedAgent(p: AgentPresence): void {
    this.#connected.add(p.site);
    const t = this.#targets.get(p.site);
    if (t === undefined) return;
    const held = p.appliedPolicy;
    t.appliedVersion = held.version;
    if (held.version === t.version && held.hash === t.hash) {
      if (t.status !== 'applied') this.#settle(p.site, t, 'applied', null);
      return;
    }
    // Same number, other content (or a higher number): an embedded controller restarted and its
    // counter started again. Pushing would reuse a number the agent already has for other content.
    if (held.version >= t.version) {
      this.#log.warn(
        { site: p.site, held: held.version, target: t.version },
        'agent holds a version number at or above its target: re-issuing above it',
      );
      this.#onAgentAhead?.(p.site, { version: held.version, hash: held.hash });
      return;
    }
    t.attempts = 0;
    this.#push(p.site, t);
  }

  #disconnected(site: string): void {
    this.#connected.delete(site);
    this.#transitSettled(site); // it will not ack: its head-end partners need not wait for it
    const t = this.#targets.get(site);
    if (t?.timer) clearTimeout(t.timer);
    if (t) t.timer = undefined;
  }

  #ack(site: string, ack: PolicyAck): void {
    this.counters.acks++;
    const t = this.#targets.get(site);
    const version = Number(ack.version);
    // What is in force at the agent is a fact whichever push the ack answers: while versions follow
    // each other faster than a site applies them, every ack is of an outdated target, and
    // `appliedVersion` must still move (the agent never goes back, so only upwards).
    if (t !== undefined && Number(ack.appliedVersion) > t.appliedVersion)
      t.appliedVersion = Number(ack.appliedVersion);
    if (
      t === undefined ||
      version !== t.version ||
      (t.status !== 'pending' && t.error?.code !== 'CTRL_ERR_POLICY_ACK_TIMEOUT')
    ) {
      this.counters.ignoredAcks++;
      this.#log.debug(
        { site, version, target: t?.version, status: t?.status },
        'ignoring ack (not the pending target)',
      );
      return;
    }
    t.appliedVersion = Number(ack.appliedVersion);
    if (ack.ok && ack.hash === t.hash) {
      this.#settle(site, t, 'applied', null);
      return;
    }
    const error = ack.ok
      ? {
          code: 'CTRL_ERR_INVALID_MESSAGE',
          message: `ack of v${version} carries hash ${ack.hash}, pushed ${t.hash}`,
        }
      : { code: ack.errorCode || 'AGENT_ERR_UNKNOWN', message: ack.errorMessage || 'no message' };
    this.#settle(site, t, 'failed', error);
  }
}
