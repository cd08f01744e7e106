/**
 * Fixtures for the route loop and policy tests: the lab's addressing plan for a topology, agents
 * that speak the real gRPC stream and acknowledge policies the way they are told (raw clients from
 * the proto, or the real `EdgeAgent` of @meridian/edge-agent with an injected applier), and an
 * authenticated HTTP helper.
 *
 * @meridian/ops and @meridian/edge-agent are loaded with require() and typed locally: both depend
 * on the controller, so a project reference back would make a cycle.
 */
import type { Logger } from 'pino';
import type { Topology } from '@meridian/topology';
import type { AddressingPlan, Controller, ControllerMessage, PolicyPush } from '../src/index';
import { API_TOKEN, AGENT_TOKEN, hello, openStream, quietLog, type TestStream } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const opsLab = require('@meridian/ops') as { defaultAddressingPlan(t: Topology): AddressingPlan };

/** The lab's plan for `topology` (what `meridian lab up` builds). */
export function planFor(topology: Topology): AddressingPlan {
  return opsLab.defaultAddressingPlan(topology);
}

/** How a {@link PolicyAgent} answers a push. */
export type AckMode = { kind: 'ok' } | { kind: 'fail'; code: string; message?: string } | { kind: 'silent' };

/**
 * An agent on a raw AgentControl stream: says hello with what it has applied, answers every push
 * per `mode` and keeps what is in force (a refused push leaves the previous policy in place).
 */
export class PolicyAgent {
  readonly site: string;
  mode: AckMode = { kind: 'ok' };
  applied = { version: 0, hash: '' };
  readonly pushes: PolicyPush[] = [];
  stream: TestStream | undefined;
  readonly #port: number;
  readonly #instance: string;

  constructor(site: string, grpcPort: number, instance = `i-${site}`) {
    this.site = site;
    this.#port = grpcPort;
    this.#instance = instance;
  }

  /** Opens the stream and waits for the welcome. */
  async connect(port = this.#port): Promise<void> {
    const s = openStream(port);
    this.stream = s;
    s.call.on('data', (m: ControllerMessage) => {
      if ('policy' in m && m.policy) this.#onPush(m.policy);
    });
    const h = hello(this.site, 9000, AGENT_TOKEN, this.#instance);
    s.call.write({
      hello: {
        ...h.hello,
        appliedPolicyVersion: this.applied.version,
        appliedPolicyHash: this.applied.hash,
      },
    });
    await s.waitFor((m) => 'welcome' in m && !!m.welcome);
  }

  /** Sends an ack as given (for late or forged acks). */
  ack(a: { version: number; hash: string; ok: boolean; errorCode?: string; appliedVersion?: number }): void {
    this.stream?.call.write({
      ack: {
        version: a.version,
        hash: a.hash,
        ok: a.ok,
        errorCode: a.errorCode ?? '',
        errorMessage: '',
        appliedVersion: a.appliedVersion ?? this.applied.version,
      },
    });
  }

  close(): void {
    this.stream?.close();
    this.stream = undefined;
  }

  /** Resolves when a push matching `pred` has arrived (including earlier ones). */
  async waitPush(pred: (p: PolicyPush) => boolean, timeoutMs = 10_000): Promise<PolicyPush> {
    const m = await this.stream!.waitFor((x) => 'policy' in x && !!x.policy && pred(x.policy), timeoutMs);
    return (m as { policy: PolicyPush }).policy;
  }

  #onPush(p: PolicyPush): void {
    const push = { version: Number(p.version), hash: p.hash, policyJson: p.policyJson };
    this.pushes.push(push);
    const mode = this.mode;
    switch (mode.kind) {
      case 'silent':
        return;
      case 'ok':
        this.applied = { version: push.version, hash: push.hash };
        this.ack({ version: push.version, hash: push.hash, ok: true });
        return;
      case 'fail':
        this.stream?.call.write({
          ack: {
            version: push.version,
            hash: push.hash,
            ok: false,
            errorCode: mode.code,
            errorMessage: mode.message ?? 'refused by the test',
            appliedVersion: this.applied.version,
          },
        });
        return;
      default: {
        const never: never = mode;
        throw new Error(`unknown mode ${String(never)}`);
      }
    }
  }
}

/** Connects one {@link PolicyAgent} per site. */
export async function connectAgents(
  c: Controller,
  sites: readonly string[],
): Promise<Map<string, PolicyAgent>> {
  const out = new Map<string, PolicyAgent>();
  for (const s of sites) {
    const a = new PolicyAgent(s, c.ports.grpc);
    await a.connect();
    out.set(s, a);
  }
  return out;
}

/** Every site of `sites` reported `applied` at its current version. */
export function allApplied(c: Controller, sites: readonly string[]): boolean {
  const st = c.distributor.status();
  return sites.every((s) => st.find((x) => x.site === s)?.status === 'applied');
}

/** An authenticated API call; returns status and parsed JSON. */
export async function api(
  c: Controller,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  token: string | null = API_TOKEN,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${c.ports.http}/api/v1${path}`, {
    method,
    headers: {
      ...(token !== null ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? null : JSON.parse(text) };
}

/** The real edge agent (in process) with an injected applier. */
export interface EdgeAgentLike {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly connected: boolean;
}

interface PolicyApplierLike {
  applied(): { version: number; hash: string };
  apply(
    push: PolicyPush,
  ): Promise<{ ok: boolean; errorCode: string; errorMessage: string; appliedVersion: number }>;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const edge = require('@meridian/edge-agent') as {
  EdgeAgent: new (o: {
    site: string;
    controller: string;
    token: string;
    log: Logger;
    applier?: PolicyApplierLike;
    backoff?: { baseMs?: number; capMs?: number };
  }) => EdgeAgentLike;
};

/** An applier that records pushes and applies or refuses them as `refuse` says. */
export class RecordingApplier implements PolicyApplierLike {
  current = { version: 0, hash: '' };
  readonly pushes: PolicyPush[] = [];
  refuse: string | null = null;

  applied(): { version: number; hash: string } {
    return this.current;
  }

  apply(
    push: PolicyPush,
  ): Promise<{ ok: boolean; errorCode: string; errorMessage: string; appliedVersion: number }> {
    this.pushes.push(push);
    if (this.refuse !== null) {
      return Promise.resolve({
        ok: false,
        errorCode: this.refuse,
        errorMessage: `refused v${push.version}`,
        appliedVersion: this.current.version,
      });
    }
    this.current = { version: Number(push.version), hash: push.hash };
    return Promise.resolve({
      ok: true,
      errorCode: '',
      errorMessage: '',
      appliedVersion: this.current.version,
    });
  }
}

export function startEdgeAgent(site: string, grpcPort: number, applier: PolicyApplierLike): EdgeAgentLike {
  return new edge.EdgeAgent({
    site,
    controller: `127.0.0.1:${grpcPort}`,
    token: AGENT_TOKEN,
    log: quietLog,
    applier,
    backoff: { baseMs: 50, capMs: 500 },
  });
}
