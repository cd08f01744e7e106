/**
 * The error catalog of `@meridian/edge-agent`. Every error the agent reports (to the operator, in a
 * policy ack, in an agent event) carries one of these stable codes; they are listed in the package
 * README. Append new codes at the end; never rename one.
 */

/** Stable codes with a one-line meaning each. */
export const AGENT_ERROR_CODES = [
  /** A CLI flag or agent option that cannot work (bad HOST:PORT, empty site id, missing token). */
  'AGENT_ERR_BAD_OPTION',
  /** The controller refused the agent token (gRPC UNAUTHENTICATED): retrying cannot fix it. */
  'AGENT_ERR_UNAUTHENTICATED',
  /** The controller refused the stream for another reason (unknown site, duplicate site, ...). */
  'AGENT_ERR_REJECTED',
  /** The probe port could not be bound (in use, address not local, ...). */
  'AGENT_ERR_PROBE_BIND',
  /** The probe plan from the controller is unusable (no interval, bad target address, ...). */
  'AGENT_ERR_BAD_PLAN',
  /** A policy was pushed but no policy driver is installed in this agent. */
  'AGENT_ERR_NO_DRIVER',
  /** The policy applier threw instead of returning an ack (a bug in a driver). */
  'AGENT_ERR_APPLY_FAILED',
  /** The gRPC contract file (meridian.proto) could not be found or loaded. */
  'AGENT_ERR_PROTO',
  /** A pushed policy is older than the one in force (the agent never goes back a version). */
  'AGENT_ERR_POLICY_STALE',
  /** The agent's state directory (last applied policy) cannot be read or written. */
  'AGENT_ERR_STATE_DIR',
  // Policy drivers (driver.ts):
  /** The policy fails the schema or its hash, or does not fit the device; nothing was changed. */
  'AGENT_ERR_POLICY_INVALID',
  /** The device refused a change; the previous policy was restored. */
  'AGENT_ERR_DRIVER_APPLY',
  /** The device could not be reached or dropped the session. */
  'AGENT_ERR_DRIVER_UNREACHABLE',
  /** The device's current state could not be read. */
  'AGENT_ERR_DRIVER_STATE',
  /** Fast reroute named a route the applied policy does not have. */
  'AGENT_ERR_NO_ROUTE',
  /** Fast reroute on a route without a backup path. */
  'AGENT_ERR_NO_BACKUP',
  /** The policy needs a data-plane feature this device lacks (named in the message, e.g. SRv6 encap). */
  'AGENT_ERR_DRIVER_UNSUPPORTED',
] as const;

export type AgentErrorCode = (typeof AGENT_ERROR_CODES)[number];

/** The one error class of the agent; `code` is stable, `message` says what, where and what was expected. */
export class AgentError extends Error {
  readonly code: AgentErrorCode;
  constructor(code: AgentErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AgentError';
    this.code = code;
  }
}

/** True when `x` is an {@link AgentError} (also across module copies). */
export function isAgentError(x: unknown): x is AgentError {
  return (
    x instanceof Error &&
    typeof (x as { code?: unknown }).code === 'string' &&
    (AGENT_ERROR_CODES as readonly string[]).includes((x as unknown as { code: string }).code)
  );
}
