/**
 * The agent's view of the gRPC contract `meridian.v1` (owned by the controller package:
 * `controller/proto/meridian.proto`). The file is found through the installed
 * `@meridian/controller` package, so the agent loads exactly the contract the controller serves
 * without importing the controller's code. Loader options match the controller's
 * (`PROTO_LOADER_OPTIONS`): camelCase fields, 64-bit integers as numbers, defaults filled in,
 * `body` names the oneof member that is set.
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { AgentError } from './errors';
import type { LinkProbeStats, ProbePlan, ProbeReport } from './probe-engine';

export const AGENT_PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Where `meridian.proto` is: next to the controller package's `package.json`. */
export function meridianProtoPath(): string {
  try {
    return path.join(
      path.dirname(require.resolve('@meridian/controller/package.json')),
      'proto',
      'meridian.proto',
    );
  } catch (err) {
    throw new AgentError(
      'AGENT_ERR_PROTO',
      'cannot find @meridian/controller/proto/meridian.proto (is the workspace installed?)',
      { cause: err },
    );
  }
}

export interface ProbeEndpointMsg {
  host: string;
  port: number;
  link: string;
}

export interface HelloMsg {
  site: string;
  agentVersion: string;
  token: string;
  probeEndpoints: ProbeEndpointMsg[];
  instanceId: string;
  appliedPolicyVersion: number;
  appliedPolicyHash: string;
  /**
   * What this agent's data plane can do (the driver's `capabilities()`, asked once at start);
   * absent when the applier does not say (the controller then counts the site as without SRv6).
   */
  forwarding?: ForwardingCapabilitiesMsg;
}

/** `meridian.v1.ForwardingCapabilities`: the wire form of the driver's `ForwardingCapabilities`. */
export interface ForwardingCapabilitiesMsg {
  modes: string[];
  platform: string;
  platformVersion: string;
  features: string[];
  missing: string[];
}

export interface AgentEventMsg {
  kind: string;
  atMs: number;
  link: string;
  peerSite: string;
  up: boolean;
  detailJson: string;
}

export interface PolicyAckMsg {
  version: number;
  hash: string;
  ok: boolean;
  errorCode: string;
  errorMessage: string;
  appliedVersion: number;
}

export type AgentMessage =
  { hello: HelloMsg } | { report: ProbeReport } | { event: AgentEventMsg } | { ack: PolicyAckMsg };

export interface WelcomeMsg {
  controllerVersion: string;
  serverTimeMs: number;
  sessionId: string;
}

export interface PolicyPushMsg {
  version: number;
  hash: string;
  policyJson: string;
}

export interface ErrorNoticeMsg {
  code: string;
  message: string;
}

/** A decoded controller message; `body` says which member is set. */
export type ControllerMessage =
  | { body: 'welcome'; welcome: WelcomeMsg }
  | { body: 'probePlan'; probePlan: ProbePlan }
  | { body: 'policy'; policy: PolicyPushMsg }
  | { body: 'error'; error: ErrorNoticeMsg };

export type { LinkProbeStats };

let cached: grpc.ServiceClientConstructor | undefined;

/** The `AgentControl` client constructor (the contract is loaded once per process). */
export function agentControlClient(protoPath = meridianProtoPath()): grpc.ServiceClientConstructor {
  if (cached) return cached;
  let def: protoLoader.PackageDefinition;
  try {
    def = protoLoader.loadSync(protoPath, AGENT_PROTO_LOADER_OPTIONS);
  } catch (err) {
    throw new AgentError('AGENT_ERR_PROTO', `cannot load ${protoPath}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const root = grpc.loadPackageDefinition(def) as unknown as {
    meridian: { v1: { AgentControl: grpc.ServiceClientConstructor } };
  };
  cached = root.meridian.v1.AgentControl;
  return cached;
}
