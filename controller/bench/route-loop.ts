/**
 * The closed loop on the reference topology: every site's agent is a raw gRPC stream that acks
 * at once; a link on a voice primary path is failed and restored by its `a` end's probe reports
 * (5 lost / 5 answered), and each cycle's timings are read from the loop (`cycles()`): detect
 * (coalescing) -> compute (incremental route engine) -> compile -> store -> push -> ack.
 * Baseline in the same run: `computeRoutes` (full recompute, no hysteresis) for the same states.
 * Run: `node controller/dist/bench/route-loop.js [ROUNDS]` after `npx tsc -b controller`.
 */
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { computeRoutes, loadTopology, REFERENCE_TOPOLOGY_PATH } from '@meridian/topology';
import {
  Controller,
  loadMeridianProto,
  type AddressingPlan,
  type ControllerMessage,
  type CycleRecord,
} from '../src/index';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const ops = require('@meridian/ops') as { defaultAddressingPlan(t: unknown): AddressingPlan };
const ROUNDS = Number(process.argv[2] ?? 20);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

async function main(): Promise<void> {
  const topology = loadTopology(REFERENCE_TOPOLOGY_PATH);
  const c = new Controller({
    topology,
    apiToken: 'bench',
    agentToken: 'bench',
    grpc: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    log: pino({ level: 'warn' }),
    addressing: ops.defaultAddressingPlan(topology),
  });
  await c.start();
  const Ctor = loadMeridianProto().AgentControl;
  const streams = new Map<string, grpc.ClientDuplexStream<object, ControllerMessage>>();
  for (const s of topology.sites) {
    const client = new Ctor(`127.0.0.1:${c.ports.grpc}`, grpc.credentials.createInsecure());
    const call = (
      client as unknown as { Connect(): grpc.ClientDuplexStream<object, ControllerMessage> }
    ).Connect();
    call.on('error', () => undefined);
    call.on('data', (m: ControllerMessage) => {
      if ('policy' in m && m.policy) {
        const p = m.policy;
        call.write({ ack: { version: p.version, hash: p.hash, ok: true, appliedVersion: p.version } });
      }
    });
    call.write({
      hello: { site: s.id, agentVersion: 'bench', token: 'bench', instanceId: s.id, probeEndpoints: [] },
    });
    streams.set(s.id, call);
  }
  while (
    !c.distributor.status().every((s) => s.status === 'applied') ||
    c.distributor.status().length < topology.sites.length
  )
    await sleep(50);
  const voice = c.routes.find(
    (r) => r.class === topology.classes[0]!.id && r.primary !== null && r.primary.hops > 1,
  )!;
  const report = (link: (typeof topology.links)[number], up: boolean) => ({
    report: {
      sentAtMs: Date.now(),
      links: [
        {
          link: link.id,
          peerSite: link.b,
          sent: 5,
          received: up ? 5 : 0,
          lost: up ? 0 : 5,
          reordered: 0,
          duplicates: 0,
          alive: up,
          samples: Array.from({ length: 5 }, (_, k) => ({
            seq: k,
            sentAtUs: Date.now() * 1000,
            rttMs: up ? 2 * link.latencyMs : -1,
            fwdMs: -1,
            lost: !up,
          })),
        },
      ],
    },
  });
  const cycles: CycleRecord[] = [];
  c.routeLoop.on('cycle', (r) => {
    if (r.trigger === 'link-change' && r.version !== null && r.timings.totalMs !== null) cycles.push(r);
  });
  const baseline: number[] = [];
  const failed: string[] = [];
  // Each round fails the first link of the route's current primary (the route moves: a push), then
  // restores it (hysteresis keeps the route where it is).
  for (let i = 0; i < ROUNDS; i++) {
    const now = c.routes.find((r) => r.class === voice.class && r.src === voice.src && r.dst === voice.dst)!;
    const link = topology.links.find((l) => l.id === now.primary?.links[0])!;
    failed.push(link.id);
    const n = cycles.length;
    streams.get(link.a)!.write(report(link, false));
    for (let k = 0; k < 200 && cycles.length === n; k++) await sleep(10);
    const t0 = performance.now();
    computeRoutes(topology, { state: c.routeLoop.state });
    baseline.push(performance.now() - t0);
    streams.get(link.a)!.write(report(link, true));
    await sleep(300);
  }
  const f = (k: keyof CycleRecord['timings']) => {
    const xs = cycles.map((r) => r.timings[k] ?? NaN);
    return `${pct(xs, 50).toFixed(1)} / ${Math.max(...xs).toFixed(1)}`;
  };
  console.log(
    `route ${voice.class} ${voice.src}>${voice.dst}: ${cycles.length} pushed cycles over ${ROUNDS} failures ` +
      `(${new Set(failed).size} distinct links), ${topology.sites.length} sites`,
  );
  console.log(
    `sites per version p50 ${pct(
      cycles.map((r) => r.sites.length),
      50,
    )}, routes changed p50 ${pct(
      cycles.map((r) => r.routeChanges),
      50,
    )}`,
  );
  for (const k of ['detectMs', 'computeMs', 'compileMs', 'storeMs', 'pushMs', 'ackMs', 'totalMs'] as const)
    console.log(`${k.padEnd(10)} p50 / max ms: ${f(k)}`);
  console.log(
    `baseline computeRoutes (full, same states) p50 / max ms: ${pct(baseline, 50).toFixed(1)} / ${Math.max(...baseline).toFixed(1)}`,
  );
  for (const s of streams.values()) s.end();
  await c.stop();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
