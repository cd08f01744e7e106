/**
 * The seam between the controller stream and the policy drivers: the client hands every policy
 * push to a {@link PolicyApplier} and sends back the ack it returns. The drivers (policy*.ts,
 * driver-*.ts) provide the real applier; until one is installed, {@link noDriverApplier} refuses
 * every push with `AGENT_ERR_NO_DRIVER`, so the controller sees an honest ack instead of silence.
 */
import type { ForwardingCapabilities } from './driver';

/** A policy as pushed by the controller (proto `PolicyPush`). */
export interface PolicyPush {
  readonly version: number;
  readonly hash: string;
  /** The site policy, JSON (schema in policy.ts); not yet validated. */
  readonly policyJson: string;
}

/** What the applier reports back (proto `PolicyAck` without the echoed version/hash). */
export interface PolicyApplyResult {
  readonly ok: boolean;
  /** AGENT_ERR_* when !ok, else ''. */
  readonly errorCode: string;
  readonly errorMessage: string;
  /** The policy version in force after this attempt (0: none). */
  readonly appliedVersion: number;
}

export interface PolicyApplier {
  /** The policy in force now; sent in every hello so the controller knows what to push. */
  applied(): { readonly version: number; readonly hash: string };
  /**
   * Applies one push. Pushes are handed over one at a time, in arrival order; a push that a newer one
   * overtook while it waited is never handed over (controller-client.ts). Expected failures are
   * results (`ok: false`); a throw is treated as a bug and acked as `AGENT_ERR_APPLY_FAILED`.
   */
  apply(push: PolicyPush): Promise<PolicyApplyResult>;
  /**
   * What the data plane behind this applier can do (its driver's answer), asked once at agent
   * start and sent in every hello. Absent: the agent does not say (the controller then counts the
   * site as unable to do SRv6).
   */
  capabilities?(): Promise<ForwardingCapabilities>;
}

/** What an agent without a policy driver can forward with: nothing (it applies no policy). */
export const NO_DRIVER_CAPABILITIES: ForwardingCapabilities = Object.freeze({
  platform: 'none',
  platformVersion: '',
  modes: [],
  features: [],
  missing: [],
});

/** The applier of an agent without a policy driver: applies nothing, says so in every ack. */
export function noDriverApplier(): PolicyApplier {
  return {
    applied: () => ({ version: 0, hash: '' }),
    apply: (push) =>
      Promise.resolve({
        ok: false,
        errorCode: 'AGENT_ERR_NO_DRIVER',
        errorMessage: `policy v${push.version} not applied: this agent has no policy driver installed`,
        appliedVersion: 0,
      }),
    capabilities: () => Promise.resolve(NO_DRIVER_CAPABILITIES),
  };
}
