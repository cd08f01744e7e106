export * from './policy';
export * from './driver';
export * from './driver-linux';
export * from './capabilities-linux';
export * from './driver-routeros';
export * from './policy-reroute';
export * from './link-alarm';
export * from './errors';
export * from './probe-packet';
export * from './probe-reflector';
export * from './probe-engine';
export * from './agent-applier';
export * from './agent-policy';
export * from './fast-reroute';
export * from './controller-client';
export * from './agent';
export { agentCommand } from './command-agent';
export type {
  AgentEventMsg,
  ErrorNoticeMsg,
  HelloMsg,
  PolicyAckMsg,
  PolicyPushMsg,
  WelcomeMsg,
} from './agent-proto';
export { meridianProtoPath } from './agent-proto';

import { agentCommand } from './command-agent';

/** Subcommands of the `meridian` CLI that this package owns (see bin/meridian.js). */
export const commands: Record<string, (argv: string[]) => Promise<number>> = { agent: agentCommand };
