/**
 * Shared test fixtures: a small topology, a controller on port 0, a raw gRPC agent client, and the
 * private Redis/InfluxDB launchers of @meridian/ops.
 *
 * @meridian/ops is loaded with require() and typed locally instead of through a tsconfig project
 * reference: ops (the lab) may depend on the controller, and a reference back would make a cycle.
 */
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import type { Topology } from '@meridian/topology';
import { Controller, loadMeridianProto, type ControllerMessage, type ControllerOptions } from '../src/index';

export interface ServiceLike {
  readonly url: string;
  readonly port: number;
  readonly pid: number | undefined;
  stop(): Promise<void>;
  restart(): Promise<void>;
  dispose(): Promise<void>;
}

interface OpsLike {
  startRedis(): Promise<ServiceLike>;
  startInflux(): Promise<ServiceLike>;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const ops = require('@meridian/ops') as OpsLike;

export const API_TOKEN = 'test-api-token';
export const AGENT_TOKEN = 'test-agent-token';

/** Three sites in a triangle, four links (two between bj1 and sh1). */
export function smallTopology(): Topology {
  const site = (id: string, n: number) => ({
    id,
    kind: 'dc' as const,
    region: 'cn',
    prefixes: [`10.${n}.0.0/16`],
  });
  const link = (id: string, a: string, b: string) => ({
    id,
    a,
    b,
    transport: 'fiber' as const,
    capacityMbps: 1000,
    latencyMs: 10,
    jitterMs: 1,
    lossPct: 0,
    cost: 10,
  });
  return {
    version: 1,
    source: '<test>',
    sites: [site('bj1', 1), site('sh1', 2), site('sh2', 3)],
    links: [
      link('bj1-sh1-a', 'bj1', 'sh1'),
      link('bj1-sh1-b', 'bj1', 'sh1'),
      link('sh1-sh2', 'sh1', 'sh2'),
      link('bj1-sh2', 'bj1', 'sh2'),
    ],
    classes: [
      {
        id: 'voice',
        sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 },
        objective: 'latency',
        maxUtilPct: 80,
        priority: 1,
      },
    ],
    devices: [],
  };
}

export const quietLog = pino({ level: process.env.TEST_LOG ?? 'silent' });

/** A controller on free ports with embedded stores unless told otherwise. */
export async function startController(opts: Partial<ControllerOptions> = {}): Promise<Controller> {
  const c = new Controller({
    topology: smallTopology(),
    apiToken: API_TOKEN,
    agentToken: AGENT_TOKEN,
    grpc: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    log: quietLog,
    ...opts,
  });
  await c.start();
  return c;
}

/** A raw agent stream: what it received, and how it ended. */
export interface TestStream {
  readonly call: grpc.ClientDuplexStream<unknown, ControllerMessage>;
  readonly received: ControllerMessage[];
  /** Resolves with the final status (code, details, error-code trailer). */
  readonly ended: Promise<{ code: number; details: string; errorCode: string | undefined }>;
  /** Resolves when a message matching `pred` has arrived. */
  waitFor(pred: (m: ControllerMessage) => boolean, timeoutMs?: number): Promise<ControllerMessage>;
  close(): void;
  client: grpc.Client;
}

/** Opens an AgentControl/Connect stream with the generated client. */
export function openStream(port: number, options: grpc.ChannelOptions = {}): TestStream {
  const Ctor = loadMeridianProto().AgentControl;
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
  const call = (
    client as unknown as { Connect(): grpc.ClientDuplexStream<unknown, ControllerMessage> }
  ).Connect();
  return wrap(call, client);
}

/** Opens the Connect method with identity serialisation, to send arbitrary bytes. */
export function openRawStream(port: number): TestStream & { call: grpc.ClientDuplexStream<Buffer, Buffer> } {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(
    '/meridian.v1.AgentControl/Connect',
    (b: Buffer) => b,
    (b: Buffer) => b,
  );
  return wrap(call as unknown as grpc.ClientDuplexStream<unknown, ControllerMessage>, client) as never;
}

function wrap(call: grpc.ClientDuplexStream<unknown, ControllerMessage>, client: grpc.Client): TestStream {
  const received: ControllerMessage[] = [];
  const waiters: { pred: (m: ControllerMessage) => boolean; resolve: (m: ControllerMessage) => void }[] = [];
  call.on('data', (m: ControllerMessage) => {
    received.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const ended = new Promise<{ code: number; details: string; errorCode: string | undefined }>((resolve) => {
    call.on('status', (s: grpc.StatusObject) => {
      const v = s.metadata.get('meridian-error-code')[0];
      resolve({ code: s.code, details: s.details, errorCode: v === undefined ? undefined : String(v) });
    });
    call.on('error', () => undefined);
  });
  return {
    call,
    received,
    ended,
    client,
    waitFor(pred, timeoutMs = 5000) {
      const hit = received.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error('timed out waiting for a controller message')),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (m) => {
            clearTimeout(t);
            resolve(m);
          },
        });
      });
    },
    close() {
      call.cancel();
      client.close();
    },
  };
}

/** A hello message for `site`. */
export function hello(site: string, port: number, token = AGENT_TOKEN, instanceId = `i-${site}`) {
  return {
    hello: {
      site,
      agentVersion: 'test',
      token,
      probeEndpoints: [{ host: '127.0.0.1', port, link: '' }],
      instanceId,
    },
  };
}

/** A report with `n` answered samples of `rtt` ms on `link`. */
export function report(link: string, peerSite: string, n: number, rtt: number, lost = 0) {
  const samples = [];
  for (let i = 0; i < n; i++)
    samples.push({ seq: i, sentAtUs: Date.now() * 1000, rttMs: rtt, fwdMs: -1, lost: false });
  for (let i = 0; i < lost; i++)
    samples.push({ seq: n + i, sentAtUs: Date.now() * 1000, rttMs: -1, fwdMs: -1, lost: true });
  return {
    report: {
      sentAtMs: Date.now(),
      links: [
        {
          link,
          peerSite,
          sent: n + lost,
          received: n,
          lost,
          reordered: 0,
          duplicates: 0,
          alive: lost < 3,
          samples,
        },
      ],
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a truthy value (or throws after `timeoutMs`). */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await sleep(50);
  }
}
