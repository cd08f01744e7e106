/**
 * The agent <-> controller gRPC contract (`proto/meridian.proto`, package `meridian.v1`), loaded
 * with @grpc/proto-loader, and the TypeScript shapes of its messages as the loader produces them.
 *
 * Loader options (shared with the edge agent through `PROTO_LOADER_OPTIONS`, so both ends decode
 * the same way):
 * - `keepCase: false`: fields are camelCase in JS (`probe_endpoints` -> `probeEndpoints`).
 * - `longs: Number`: int64/uint64 become JS numbers. Every 64-bit field of the contract is a
 *   millisecond/microsecond timestamp or a policy version, all far below 2^53, and numbers keep
 *   the ingest path free of string parsing.
 * - `enums: String`, `defaults: true` (absent fields read as '', 0, false, []), `oneofs: true`
 *   (`body` names the set member of a oneof).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Folder holding the `.proto` files of the controller (the agent and media packages load them from here). */
export const PROTO_DIR: string = ((): string => {
  // dist/src/proto.js when built, src/proto.ts under ts-node (tests): the package root differs.
  const fromDist = path.resolve(__dirname, '..', '..', 'proto');
  return existsSync(path.join(fromDist, 'meridian.proto'))
    ? fromDist
    : path.resolve(__dirname, '..', 'proto');
})();

/** The agent contract file. */
export const MERIDIAN_PROTO_PATH = path.join(PROTO_DIR, 'meridian.proto');

/** Options every Meridian process uses to load the contract. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

// ---------------------------------------------------------------- agent -> controller

export interface ProbeEndpoint {
  host: string;
  port: number;
  /** Topology link this endpoint is reached over; '' = any. */
  link: string;
}

export interface Hello {
  site: string;
  agentVersion: string;
  token: string;
  probeEndpoints: ProbeEndpoint[];
  instanceId: string;
  appliedPolicyVersion: number;
  appliedPolicyHash: string;
  /** What the agent's data plane can do; null when the agent did not say (earlier releases). */
  forwarding: ForwardingCapabilities | null;
}

/**
 * `Hello.forwarding`, as decoded: nothing is checked yet (`checkHello` in agent-messages.ts
 * validates it). The agent's type is `ForwardingCapabilities` in edge-agent/src/driver.ts.
 */
export interface ForwardingCapabilities {
  /** `srv6` | `hop-by-hop`; empty: the agent applies no policy. */
  modes: string[];
  /** `linux` | `routeros` | `none`. */
  platform: string;
  /** Kernel release or RouterOS version. */
  platformVersion: string;
  /** Features found (`srv6-encap`, `nftables`, ...). */
  features: string[];
  /** Features missing, each `feature: why`. */
  missing: string[];
}

export interface ProbeSample {
  seq: number;
  sentAtUs: number;
  /** Excludes reflector hold time; < 0 when lost. */
  rttMs: number;
  /** One-way estimate sender -> reflector; < 0 when unknown. */
  fwdMs: number;
  lost: boolean;
}

export interface LinkProbeStats {
  link: string;
  peerSite: string;
  sent: number;
  received: number;
  lost: number;
  reordered: number;
  duplicates: number;
  alive: boolean;
  samples: ProbeSample[];
}

export interface ProbeReport {
  sentAtMs: number;
  links: LinkProbeStats[];
}

export interface AgentEvent {
  kind: string;
  atMs: number;
  link: string;
  peerSite: string;
  up: boolean;
  detailJson: string;
}

export interface PolicyAck {
  version: number;
  hash: string;
  ok: boolean;
  errorCode: string;
  errorMessage: string;
  appliedVersion: number;
}

/** What the agent sends; `body` names the oneof member that is set. */
export type AgentMessage =
  | { body: 'hello'; hello: Hello }
  | { body: 'report'; report: ProbeReport }
  | { body: 'event'; event: AgentEvent }
  | { body: 'ack'; ack: PolicyAck };

// ---------------------------------------------------------------- controller -> agent

export interface Welcome {
  controllerVersion: string;
  serverTimeMs: number;
  sessionId: string;
}

export interface ProbeTarget {
  link: string;
  peerSite: string;
  host: string;
  port: number;
}

export interface ProbePlan {
  intervalMs: number;
  timeoutMs: number;
  downAfterMisses: number;
  upAfterSuccesses: number;
  reportIntervalMs: number;
  targets: ProbeTarget[];
}

export interface PolicyPush {
  version: number;
  hash: string;
  policyJson: string;
}

export interface ErrorNotice {
  code: string;
  message: string;
}

/** What the controller sends (set exactly one member). */
export type ControllerMessage =
  { welcome: Welcome } | { probePlan: ProbePlan } | { policy: PolicyPush } | { error: ErrorNotice };

// ---------------------------------------------------------------- loading

/** The loaded `meridian.v1` package: service definitions and client constructors. */
export interface MeridianGrpcPackage {
  readonly AgentControl: grpc.ServiceClientConstructor;
}

let cached: MeridianGrpcPackage | undefined;

/** Loads `meridian.proto` once per process (synchronously: a few ms at start). */
export function loadMeridianProto(): MeridianGrpcPackage {
  if (cached) return cached;
  const def = protoLoader.loadSync(MERIDIAN_PROTO_PATH, PROTO_LOADER_OPTIONS);
  const root = grpc.loadPackageDefinition(def) as unknown as { meridian: { v1: MeridianGrpcPackage } };
  cached = root.meridian.v1;
  return cached;
}

/** The `AgentControl` service definition, for `server.addService()`. */
export function agentControlService(): grpc.ServiceDefinition {
  return loadMeridianProto().AgentControl.service;
}
