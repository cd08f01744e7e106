/**
 * Policy fan-out: one new policy version for 1,000 sites -> pushed over 1,000 agent streams (real
 * gRPC on loopback, simulated from this process over 10 channels) -> every agent acks -> every
 * site `applied`. Timed from the compiled policies in hand (store write + push + acks), as the
 * route loop does after `compilePolicies`; DESIGN.md's target is < 1 s.
 *
 * Cases, same run, same streams:
 * - baseline `tiny`: a ~100-byte policy (`{site, round}`), embedded store: the round trip itself;
 * - `reference-size`: each site gets a policy the size of the largest compiled policy of the
 *   reference topology (lab addressing plan), embedded store;
 * - `reference-size+redis`: the same with the versions written to a private Redis first (one MULTI).
 * The agents and the controller share this process (2 cores): agent-side decode and ack encode
 * compete with the controller, so the figures are pessimistic.
 * Run: `node controller/dist/bench/policy-fanout.js [ROUNDS]` after `npx tsc -b controller`.
 */
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import pino from 'pino';
import { computeRoutes, loadTopology, REFERENCE_TOPOLOGY_PATH } from '@meridian/topology';
import {
  compilePolicies,
  compiledPolicyHash,
  Controller,
  MERIDIAN_PROTO_PATH,
  PROTO_LOADER_OPTIONS,
  type AddressingPlan,
  type CompiledSitePolicy,
  type ControllerMessage,
} from '../src/index';
import { syntheticTopology } from './fixtures';

interface ServiceLike {
  readonly url: string;
  dispose(): Promise<void>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ops = require('@meridian/ops') as {
  startRedis(): Promise<ServiceLike>;
  defaultAddressingPlan(t: unknown): AddressingPlan;
};

const AGENTS = Number(process.env.BENCH_AGENTS ?? 1000);
const CHANNELS = 10;
const ROUNDS = Number(process.argv[2] ?? 10);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

/** The largest compiled policy of the reference topology, as a template. */
function referencePolicy(): CompiledSitePolicy {
  const ref = loadTopology(REFERENCE_TOPOLOGY_PATH);
  const plan = ops.defaultAddressingPlan(ref);
  const compiled = [...compilePolicies(ref, computeRoutes(ref).routes, plan).values()];
  return compiled.sort((a, b) => JSON.stringify(b).length - JSON.stringify(a).length)[0]!;
}

async function runCase(
  name: string,
  redisUrl: string | undefined,
  template: CompiledSitePolicy | null,
): Promise<void> {
  const topo = syntheticTopology(AGENTS);
  const c = new Controller({
    topology: topo,
    apiToken: 'bench-api',
    agentToken: 'bench-agent',
    grpc: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    log: pino({ level: 'warn' }),
    policy: { ackTimeoutMs: 30_000 },
    ...(redisUrl ? { redisUrl } : {}),
  });
  await c.start();
  const def = protoLoader.loadSync(MERIDIAN_PROTO_PATH, PROTO_LOADER_OPTIONS);
  const m = (
    def['meridian.v1.AgentControl'] as unknown as Record<
      string,
      grpc.MethodDefinition<object, ControllerMessage>
    >
  ).Connect!;
  const clients = Array.from(
    { length: CHANNELS },
    () => new grpc.Client(`127.0.0.1:${c.ports.grpc}`, grpc.credentials.createInsecure()),
  );
  let welcomed = 0;
  const calls: grpc.ClientDuplexStream<object, ControllerMessage>[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const call = clients[i % CHANNELS]!.makeBidiStreamRequest<object, ControllerMessage>(
      '/meridian.v1.AgentControl/Connect',
      m.requestSerialize,
      m.responseDeserialize,
    );
    call.on('error', () => undefined);
    call.on('data', (msg: ControllerMessage) => {
      if ('welcome' in msg && msg.welcome) welcomed++;
      if ('policy' in msg && msg.policy) {
        const p = msg.policy;
        call.write({ ack: { version: p.version, hash: p.hash, ok: true, appliedVersion: p.version } });
      }
    });
    call.write({
      hello: {
        site: `s${i}`,
        agentVersion: 'bench',
        token: 'bench-agent',
        instanceId: `bench-${i}`,
        probeEndpoints: [{ host: '127.0.0.1', port: 20000 + i }],
      },
    });
    calls.push(call);
  }
  for (let i = 0; i < 600 && welcomed < AGENTS; i++) await sleep(50);
  if (welcomed < AGENTS) throw new Error(`${welcomed}/${AGENTS} streams connected`);
  await sleep(1000);

  const totals: number[] = [];
  const stores: number[] = [];
  let bytes = 0;
  for (let round = 0; round < ROUNDS; round++) {
    // Compiled policies in hand (as after compilePolicies), content differs per site and round.
    const policies = topo.sites.map((s) => {
      const body = template
        ? { ...structuredClone(template), site: s.id, pathProbePortBase: 50000 + round }
        : ({ site: s.id, round } as unknown as CompiledSitePolicy);
      const p = { ...body, version: 0, hash: '' };
      p.hash = compiledPolicyHash(p);
      return p;
    });
    bytes = JSON.stringify(policies[0]).length;
    let pending = AGENTS;
    const done = new Promise<void>((resolve) => {
      const on = (): void => {
        if (--pending === 0) {
          c.distributor.off('applied', on);
          resolve();
        }
      };
      c.distributor.on('applied', on);
    });
    const t0 = performance.now();
    const version = await c.policies.nextVersion();
    for (const p of policies) Object.freeze(Object.assign(p, { version })); // as the route loop issues them
    await c.policies.commit(
      {
        version,
        createdAt: new Date().toISOString(),
        reason: 'routes',
        rollbackOf: null,
        sites: policies.map((p) => p.site),
      },
      policies,
    );
    const t1 = performance.now();
    c.distributor.distribute(policies);
    await done;
    const t2 = performance.now();
    totals.push(t2 - t0);
    stores.push(t1 - t0);
    await sleep(300);
  }
  const f = (x: number) => x.toFixed(0);
  console.log(
    `${name.padEnd(22)} ${String(AGENTS)} agents, policy ${bytes} B: store+push+all acked p50 ${f(pct(totals, 50))} ms, ` +
      `max ${f(Math.max(...totals))} ms (store p50 ${f(pct(stores, 50))} ms) over ${ROUNDS} rounds`,
  );
  for (const call of calls) call.end();
  for (const cl of clients) cl.close();
  await c.stop();
}

async function main(): Promise<void> {
  const template = referencePolicy();
  console.log(
    `reference policy template: site ${template.site}, ${JSON.stringify(template).length} bytes, ${template.routes.length} routes`,
  );
  await runCase('baseline tiny', undefined, null);
  await runCase('reference-size', undefined, template);
  const redis = await ops.startRedis();
  try {
    await runCase('reference-size+redis', redis.url, template);
  } finally {
    await redis.dispose();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
