/**
 * The real {@link PolicyApplier}: validates every pushed policy, applies it through a
 * {@link PolicyDriver}, persists it, and acks the version in force.
 *
 * - A push that fails validation (JSON, schema, hash, version/hash not matching the push) is refused
 *   with `AGENT_ERR_POLICY_INVALID`; the driver is not called and the previous policy stays.
 * - A push older than the policy in force is refused with `AGENT_ERR_POLICY_STALE`: the agent never
 *   goes back a version, whatever arrives late or twice. The same version again is re-applied
 *   (idempotent: it reconciles the device) and acked.
 * - A driver failure is acked with the driver's code (`AGENT_ERR_DRIVER_*`); the driver has put the
 *   previous policy back, so the ack's `appliedVersion` is still the previous version.
 * - After a successful apply the policy is written to `<stateDir>/policy.json` (write + rename, so
 *   a crash leaves the old or the new file, never half of one) and only then acked. On start,
 *   {@link DriverPolicyApplier.restore} applies that file again: the device is reconciled (stale
 *   objects removed, nothing duplicated) and the agent forwards with its last policy while the
 *   controller is unreachable; its hello then reports that version, so the controller re-sends only
 *   if it has a newer one.
 *
 * Every driver operation, from here or from fast reroute, goes through {@link exclusive}: one at a
 * time, so a reroute never interleaves with an apply's diff of the kernel state.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { PolicyApplier, PolicyApplyResult, PolicyPush } from './agent-applier';
import type { DriverErrorCode, ForwardingCapabilities, PolicyDriver } from './driver';
import { AgentError, type AgentErrorCode } from './errors';
import { validatePolicy, type SitePolicy } from './policy';

export interface DriverPolicyApplierOptions {
  readonly driver: PolicyDriver;
  /** Site this agent speaks for: a policy for another site is refused. */
  readonly site: string;
  /** Where the last applied policy is kept (`policy.json`); null: not persisted. */
  readonly stateDir: string | null;
  readonly log: Logger;
}

/** Called after every successful apply (push or restore), inside the exclusive section. */
export type PolicyAppliedListener = (policy: SitePolicy, activeBackups: ReadonlySet<number>) => void;

const STATE_FILE = 'policy.json';

export class DriverPolicyApplier implements PolicyApplier {
  readonly #driver: PolicyDriver;
  readonly #site: string;
  readonly #stateDir: string | null;
  readonly #log: Logger;
  #current: SitePolicy | null = null;
  #tail: Promise<unknown> = Promise.resolve();
  readonly #listeners: PolicyAppliedListener[] = [];

  constructor(opts: DriverPolicyApplierOptions) {
    this.#driver = opts.driver;
    this.#site = opts.site;
    this.#stateDir = opts.stateDir;
    this.#log = opts.log.child({ module: 'policy-applier' });
    if (this.#stateDir !== null) {
      try {
        mkdirSync(this.#stateDir, { recursive: true, mode: 0o700 });
      } catch (err) {
        throw new AgentError(
          'AGENT_ERR_STATE_DIR',
          `cannot create the agent state directory '${this.#stateDir}': ${(err as Error).message}`,
        );
      }
    }
  }

  get driver(): PolicyDriver {
    return this.#driver;
  }

  /** The policy in force (last applied successfully), or null. */
  get policy(): SitePolicy | null {
    return this.#current;
  }

  onApplied(listener: PolicyAppliedListener): void {
    this.#listeners.push(listener);
  }

  /** Runs `fn` after every driver operation queued before it, and before any queued after it. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  applied(): { version: number; hash: string } {
    return { version: this.#current?.version ?? 0, hash: this.#current?.hash ?? '' };
  }

  /**
   * The driver's capabilities. In the exclusive section: the Linux probe adds and deletes objects
   * (a route in table 29999, a rule at pref 29998) in the range an apply reads as its own.
   */
  capabilities(): Promise<ForwardingCapabilities> {
    return this.exclusive(() => this.#driver.capabilities());
  }

  /**
   * Re-applies the persisted policy (agent start). Returns what happened; a missing file is not an
   * error, an unreadable or invalid one is logged and ignored (the controller will push again).
   */
  async restore(): Promise<{ restored: boolean; version: number; error?: string }> {
    if (this.#stateDir === null) return { restored: false, version: 0 };
    const file = path.join(this.#stateDir, STATE_FILE);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return { restored: false, version: 0 };
    }
    const parsed = this.#parse(text);
    if (typeof parsed === 'string' || parsed.site !== this.#site) {
      const error = typeof parsed === 'string' ? parsed : `it is for site '${parsed.site}'`;
      this.#log.warn({ code: 'AGENT_ERR_STATE_DIR', file, error }, 'persisted policy ignored');
      return { restored: false, version: 0, error };
    }
    return this.exclusive(async () => {
      const out = await this.#driver.apply(parsed);
      if (!out.ok) {
        this.#log.error(
          { code: out.error.code, detail: out.error.detail, version: parsed.version },
          `persisted policy could not be re-applied: ${out.error.message}`,
        );
        return { restored: false, version: 0, error: out.error.message };
      }
      this.#current = parsed;
      await this.#notify(parsed);
      this.#log.info(
        { version: parsed.version, hash: parsed.hash, changes: out.changes, removed: out.removed },
        'persisted policy re-applied (reconciled)',
      );
      return { restored: true, version: parsed.version };
    });
  }

  apply(push: PolicyPush): Promise<PolicyApplyResult> {
    return this.exclusive(() => this.#apply(push));
  }

  async #apply(push: PolicyPush): Promise<PolicyApplyResult> {
    const inForce = this.#current?.version ?? 0;
    const refuse = (code: AgentErrorCode | DriverErrorCode, message: string): PolicyApplyResult => {
      this.#log.warn({ code, version: push.version, inForce }, message);
      return { ok: false, errorCode: code, errorMessage: message, appliedVersion: inForce };
    };
    if (push.version < inForce) {
      return refuse(
        'AGENT_ERR_POLICY_STALE',
        `policy v${push.version} refused: v${inForce} is in force and versions never go back`,
      );
    }
    const parsed = this.#parse(push.policyJson);
    if (typeof parsed === 'string')
      return refuse('AGENT_ERR_POLICY_INVALID', `policy v${push.version} ${parsed}`);
    if (parsed.version !== push.version || parsed.hash !== push.hash) {
      return refuse(
        'AGENT_ERR_POLICY_INVALID',
        `policy v${push.version} refused: its content says v${parsed.version} hash ${parsed.hash.slice(0, 12)}, the push v${push.version} hash ${push.hash.slice(0, 12)}`,
      );
    }
    if (parsed.site !== this.#site) {
      return refuse(
        'AGENT_ERR_POLICY_INVALID',
        `policy v${push.version} is for site '${parsed.site}', this agent is '${this.#site}'`,
      );
    }
    if (push.version === inForce && push.hash !== this.#current?.hash) {
      return refuse(
        'AGENT_ERR_POLICY_STALE',
        `policy v${push.version} refused: v${inForce} is in force with other content`,
      );
    }
    const started = performance.now();
    const out = await this.#driver.apply(parsed);
    if (!out.ok) {
      return refuse(
        out.error.code,
        `policy v${push.version} not applied: ${out.error.message}${out.error.detail ? ` (${out.error.detail})` : ''}`,
      );
    }
    try {
      this.#persist(parsed);
    } catch (err) {
      // Forwarding follows the new policy; only its survival across a restart is at risk. Say so,
      // but ack the version in force: refusing would make the controller resend the same content.
      this.#log.error({ code: 'AGENT_ERR_STATE_DIR', err }, 'applied policy could not be persisted');
    }
    this.#current = parsed;
    await this.#notify(parsed);
    this.#log.info(
      {
        version: parsed.version,
        hash: parsed.hash,
        changes: out.changes,
        removed: out.removed,
        ms: Math.round(performance.now() - started),
      },
      'policy applied',
    );
    return { ok: true, errorCode: '', errorMessage: '', appliedVersion: parsed.version };
  }

  /** The policy, or why it cannot be applied. */
  #parse(text: string): SitePolicy | string {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      return `is not JSON: ${(err as Error).message}`;
    }
    const problems = validatePolicy(value);
    if (problems.length > 0) {
      return `is invalid: ${problems
        .slice(0, 5)
        .map((p) => `${p.path}: ${p.message}`)
        .join('; ')}`;
    }
    return value as SitePolicy;
  }

  #persist(policy: SitePolicy): void {
    if (this.#stateDir === null) return;
    const file = path.join(this.#stateDir, STATE_FILE);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(policy), { mode: 0o600 });
    renameSync(tmp, file);
  }

  async #notify(policy: SitePolicy): Promise<void> {
    if (this.#listeners.length === 0) return;
    let active = new Set<number>();
    try {
      const snap = await this.#driver.read();
      active = new Set(snap.routes.filter((r) => r.active === 'backup').map((r) => r.slot));
    } catch (err) {
      this.#log.warn({ err }, 'cannot read which routes are on backup');
    }
    for (const l of this.#listeners) l(policy, active);
  }
}

/** The default state directory of an agent: /var/lib/meridian/agent-<site> as root, else a temp path. */
export function defaultAgentStateDir(site: string, tmpdir: string): string {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return isRoot
    ? path.join('/var/lib/meridian', `agent-${site}`)
    : path.join(tmpdir, `meridian-agent-${site}`);
}
