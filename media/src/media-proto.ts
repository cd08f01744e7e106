/**
 * The media node <-> controller gRPC contract (`controller/proto/media.proto`, package
 * `meridian.v1`, service `MediaControl`), loaded with @grpc/proto-loader with the same options as
 * the controller (camelCase fields, int64 as numbers, enums as strings, defaults, oneof names), and
 * the TypeScript shapes of its messages as the loader produces them.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Options every Meridian process uses to load the contract (same as the controller's). */
export const MEDIA_PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/**
 * `controller/proto/media.proto`: the controller owns the contract; this package reads the file
 * from the repository (media/src under ts-node, media/dist/src when built), or from
 * `MERIDIAN_PROTO_DIR` when set.
 */
export function mediaProtoPath(): string {
  const env = process.env.MERIDIAN_PROTO_DIR;
  const candidates = [
    ...(env === undefined || env === '' ? [] : [env]),
    path.resolve(__dirname, '..', '..', 'controller', 'proto'),
    path.resolve(__dirname, '..', '..', '..', 'controller', 'proto'),
  ];
  for (const dir of candidates) {
    const file = path.join(dir, 'media.proto');
    if (existsSync(file)) return file;
  }
  throw new Error(`media.proto not found (looked in ${candidates.join(', ')}); set MERIDIAN_PROTO_DIR`);
}

export interface MediaControlService {
  /** Client constructor of `meridian.v1.MediaControl`. */
  client: grpc.ServiceClientConstructor;
  /** Service definition, for a server (the controller, or a test harness). */
  service: grpc.ServiceDefinition;
}

let loaded: MediaControlService | undefined;

/** Loads `meridian.v1.MediaControl` (once per process). */
export function loadMediaControl(): MediaControlService {
  if (loaded !== undefined) return loaded;
  const def = protoLoader.loadSync(mediaProtoPath(), MEDIA_PROTO_LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    meridian: { v1: { MediaControl: grpc.ServiceClientConstructor } };
  };
  const client = pkg.meridian.v1.MediaControl;
  loaded = { client, service: client.service };
  return loaded;
}

// ---------------------------------------------------------------- shapes (as decoded)

export interface PbTuple {
  ip: string;
  port: number;
}

export interface PbCapacity {
  maxSessionsPerWorker: number;
  freeSessions: number;
  rtpPortMin: number;
  rtpPortMax: number;
}

export interface PbSessionState {
  sessionId: string;
  workerIndex: number;
  ingress?: { local: PbTuple; codec: string; payloadType: number; ssrc: number } | null;
  pipeIns: PbPipeState[];
  pipeOuts: PbPipeState[];
  egress?: { local: PbTuple; sink: PbTuple; consuming: boolean; standby: boolean } | null;
}

export interface PbPipeState {
  peer: string;
  local: PbTuple;
  remote?: PbTuple | null;
  connected: boolean;
}

export interface PbHello {
  nodeId: string;
  site: string;
  version: string;
  token: string;
  rtpIp: string;
  workers: number;
  capacity: PbCapacity;
  instanceId: string;
  sessions: PbSessionState[];
}

export interface PbWorkerLoad {
  index: number;
  pid: number;
  alive: boolean;
  restarts: number;
  sessions: number;
  routers: number;
  transports: number;
  producers: number;
  consumers: number;
  cpuPercent: number;
}

export interface PbLoadReport {
  sentAtMs: number;
  sessions: number;
  freeSessions: number;
  workers: PbWorkerLoad[];
}

export interface PbLegHealth {
  sessionId: string;
  legId: string;
  kind: string;
  peer: string;
  state: string;
  stalled: boolean;
  packets: number;
  packetRate: number;
  silentMs: number;
  sampledAtMs: number;
  packetsLost: number;
  jitterMs: number;
}

export interface PbHealthReport {
  sentAtMs: number;
  legs: PbLegHealth[];
}

export interface PbOrderOk {
  tuple?: PbTuple | null;
  kind?: string;
  rtpParametersJson?: string;
  existed?: boolean;
}

export interface PbOrderResult {
  orderId: string;
  sessionId: string;
  ok?: PbOrderOk | null;
  error?: { code: string; message: string } | null;
  outcome?: 'ok' | 'error';
}

export interface PbNodeEvent {
  atMs: number;
  workerDied?: { index: number; pid: number; error: string; sessionIds: string[] } | null;
  workerRestarted?: { index: number; pid: number; restarts: number } | null;
  sessionLost?: { sessionId: string; code: string; message: string } | null;
  legStalled?: PbLegHealth | null;
  legResumed?: PbLegHealth | null;
  body?: 'workerDied' | 'workerRestarted' | 'sessionLost' | 'legStalled' | 'legResumed';
}

/** node -> controller. Exactly one member is set; `body` names it once decoded. */
export interface PbNodeMessage {
  hello?: PbHello | null;
  load?: PbLoadReport | null;
  health?: PbHealthReport | null;
  result?: PbOrderResult | null;
  event?: PbNodeEvent | null;
  body?: 'hello' | 'load' | 'health' | 'result' | 'event';
}

export interface PbWelcome {
  controllerId: string;
  loadIntervalMs: number;
  healthIntervalMs: number;
  dropSessionIds: string[];
}

export interface PbRefusal {
  code: string;
  message: string;
  retry: boolean;
}

export interface PbOrder {
  orderId: string;
  sessionId: string;
  createIngress?: { codec: string; payloadType: number; ssrc: number } | null;
  createPipeIn?: { peer: string; codec?: string; payloadType?: number } | null;
  createPipeOut?: { peer: string; remote?: PbTuple | null } | null;
  connectPipeIn?: { peer: string; remote?: PbTuple | null; kind: string; rtpParametersJson: string } | null;
  createEgress?: { sink?: PbTuple | null; standby?: boolean } | null;
  tearDown?: Record<string, never> | null;
  closePipeOut?: { peer: string } | null;
  action?:
    | 'createIngress'
    | 'createPipeIn'
    | 'createPipeOut'
    | 'connectPipeIn'
    | 'createEgress'
    | 'tearDown'
    | 'closePipeOut';
}

/** controller -> node. */
export interface PbControllerMessage {
  welcome?: PbWelcome | null;
  order?: PbOrder | null;
  refusal?: PbRefusal | null;
  body?: 'welcome' | 'order' | 'refusal';
}
