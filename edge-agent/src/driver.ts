/**
 * The one interface every policy driver implements (linux: iproute2 + nftables in a network
 * namespace; routeros: the RouterOS API). The agent's applier and fast reroute use only this.
 */
import { AgentError, type AgentErrorCode } from './errors';
import type { ForwardingMode, SitePolicy } from './policy';

/** The catalog codes (errors.ts) a driver fails with. */
export type DriverErrorCode = Extract<
  AgentErrorCode,
  | 'AGENT_ERR_POLICY_INVALID'
  | 'AGENT_ERR_DRIVER_APPLY'
  | 'AGENT_ERR_DRIVER_UNREACHABLE'
  | 'AGENT_ERR_DRIVER_STATE'
  | 'AGENT_ERR_NO_ROUTE'
  | 'AGENT_ERR_NO_BACKUP'
  | 'AGENT_ERR_DRIVER_UNSUPPORTED'
>;

/**
 * What a device's data plane can do, found by trying at start (Linux: an SRv6 route in a table
 * nothing looks up, nftables, a policy rule; RouterOS: its version and menus). Reported in the
 * agent's hello; the controller compiles SRv6 only for routes whose every site has `srv6`.
 */
export interface ForwardingCapabilities {
  readonly platform: 'linux' | 'routeros' | 'none';
  /** Kernel release (`uname -r`) or RouterOS version. */
  readonly platformVersion: string;
  /** The forwarding modes this device can take part in (head-end, transit and destination). */
  readonly modes: readonly ForwardingMode[];
  /**
   * Features found. Linux: `srv6-encap`, `srv6-end-x`, `srv6-end-dx4`, `nftables`,
   * `policy-routing`; RouterOS: the menus it answered (`/ip/firewall/mangle`, `/routing/table`, `/ip/route`).
   */
  readonly features: readonly string[];
  /** Features missing, each `feature: why` in the device's words. */
  readonly missing: readonly string[];
}

/** A typed driver failure; `detail` carries the device's own words (stderr, `!trap` message). */
export class DriverError extends AgentError {
  declare readonly code: DriverErrorCode;
  readonly detail: string | undefined;
  constructor(code: DriverErrorCode, message: string, options?: { detail?: string; cause?: unknown }) {
    super(code, message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'DriverError';
    this.detail = options?.detail;
  }
}

/** What `apply` did. */
export type ApplyOutcome =
  | {
      readonly ok: true;
      readonly hash: string;
      /** Device operations issued (0 when the device already had exactly this policy). */
      readonly changes: number;
      /** Stale owned objects removed. */
      readonly removed: number;
    }
  | {
      readonly ok: false;
      readonly error: DriverError;
      /** The hash in force after the failure (the previous policy's), or null if none. */
      readonly inForce: string | null;
    };

/** Which path a route's traffic takes right now on the device. */
export type ActivePath = 'primary' | 'backup' | 'none';

/** The owned state read back from the device. */
export interface DriverSnapshot {
  /** Hash of the policy the device carries (from its ownership tag), or null if none. */
  readonly hash: string | null;
  readonly version: number | null;
  /** Per route slot: which path is active. */
  readonly routes: readonly { readonly slot: number; readonly active: ActivePath }[];
  /** Number of owned objects (rules, routes, SIDs, firewall entries). */
  readonly objects: number;
}

export type RerouteOutcome =
  { readonly ok: true; readonly changed: boolean } | { readonly ok: false; readonly error: DriverError };

export interface PolicyDriver {
  readonly kind: 'linux' | 'routeros';
  /**
   * Finds out what the data plane can do (once; later calls return the same answer). Never
   * throws: a device that cannot be asked reports no modes and why in `missing`.
   */
  capabilities(): Promise<ForwardingCapabilities>;
  /**
   * Brings the device to exactly this policy: adds what is missing, replaces what differs, removes
   * owned objects the policy does not have (so it also reconciles after an agent restart), touches
   * nothing it does not own. Idempotent. Routes switched to their backup stay there while their
   * primary path is unchanged. On failure the previous policy is put back.
   */
  apply(policy: SitePolicy): Promise<ApplyOutcome>;
  /** Reads the owned state from the device. */
  read(): Promise<DriverSnapshot>;
  /** Fast reroute: moves a route (`class/dst`) to its pre-installed backup path. */
  activateBackup(routeKey: string): Promise<RerouteOutcome>;
  /**
   * Moves several routes to their backups at once, in the order given (most urgent first), with
   * as few device operations as the device allows. Optional: without it each route is moved with
   * {@link activateBackup}. A link failure moves every route over that link: one operation per
   * route would delay the last (and the Linux driver's operation is a process spawn).
   */
  activateBackups?(routeKeys: readonly string[]): Promise<Map<string, RerouteOutcome>>;
  /** Moves a route back to its primary path. */
  activatePrimary(routeKey: string): Promise<RerouteOutcome>;
  /** Removes every owned object. Idempotent. */
  removeAll(): Promise<void>;
  /** Releases connections; the device keeps its state. */
  close(): Promise<void>;
}
