/**
 * Detection time: from a peer going silent to the link marked down at the controller, with real
 * `meridian agent` processes on loopback and the default probe plan (100 ms interval, 100 ms
 * timeout, down after 3 misses). The peer is frozen with SIGSTOP (its reflector and its gRPC
 * stream go silent at once, nothing is closed), the controller's `link-change` (up: false) event
 * is timed in-process, then SIGCONT and the link comes back up before the next round.
 *
 * Baseline (same run): the report-path latency, i.e. the time from SIGCONT to the link up again
 * minus the 3 answered probes that need (what the agent -> gRPC -> estimator path itself adds).
 * Target (issue 3): <= 400 ms at the default interval.
 * Run: `node controller/dist/bench/detection.js` (after `npx tsc -b edge-agent controller`);
 * `BENCH_TIMEOUT_MS=100` overrides the plan's probe timeout, `BENCH_ROUNDS` the number of rounds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import pino from 'pino';
import type { Topology } from '@meridian/topology';
import { Controller } from '../src/index';
import { pct } from './stats';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'meridian.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const topology: Topology = {
  version: 1,
  source: '<bench>',
  sites: [
    { id: 'a', kind: 'dc', region: 'x', prefixes: ['10.1.0.0/16'] },
    { id: 'b', kind: 'dc', region: 'x', prefixes: ['10.2.0.0/16'] },
  ],
  links: [
    {
      id: 'a-b',
      a: 'a',
      b: 'b',
      transport: 'fiber',
      capacityMbps: 1000,
      latencyMs: 1,
      jitterMs: 0,
      lossPct: 0,
      cost: 1,
    },
  ],
  classes: [
    {
      id: 'voice',
      sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 },
      objective: 'latency',
      maxUtilPct: 85,
      priority: 1,
    },
  ],
  devices: [],
};

async function main(): Promise<void> {
  const c = new Controller({
    topology,
    apiToken: 'x',
    agentToken: 'bench',
    grpc: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    log: pino({ level: 'silent' }),
    // The peer's own stream goes silent too: keep it from being dropped as dead during a round.
    agentStaleMs: 60_000,
    ...(process.env.BENCH_TIMEOUT_MS ? { probe: { timeoutMs: Number(process.env.BENCH_TIMEOUT_MS) } } : {}),
  });
  const { grpc } = await c.start();
  const agent = (site: string): ChildProcess =>
    spawn(
      process.execPath,
      [BIN, 'agent', '--site', site, '--controller', `127.0.0.1:${grpc}`, '--log-level', 'warn'],
      {
        env: { ...process.env, MERIDIAN_AGENT_TOKEN: 'bench' },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
  const a = agent('a');
  const b = agent('b');
  const waitUp = (up: boolean): Promise<number> =>
    new Promise((resolve) => {
      if (c.estimator.snapshot('a-b')!.up === up) return resolve(performance.now());
      const on = (ch: { id: string; liveness: boolean; state: { up: boolean | null } }): void => {
        if (ch.id === 'a-b' && ch.liveness && ch.state.up === up) {
          c.off('link-change', on);
          resolve(performance.now());
        }
      };
      c.on('link-change', on);
    });
  await waitUp(true);
  const detect: number[] = [];
  const recover: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    await sleep(1000 + Math.random() * 300);
    const t0 = performance.now();
    b.kill('SIGSTOP');
    detect.push((await waitUp(false)) - t0);
    await sleep(500);
    const t1 = performance.now();
    b.kill('SIGCONT');
    recover.push((await waitUp(true)) - t1);
  }
  const fmt = (xs: number[]) =>
    `p50 ${pct(xs, 50).toFixed(0)} / p95 ${pct(xs, 95).toFixed(0)} / max ${Math.max(...xs).toFixed(0)} ms`;
  console.log(
    `rounds: ${ROUNDS}, probe interval ${c.gateway.probeSettings.intervalMs} ms, timeout ${c.gateway.probeSettings.timeoutMs} ms, down after ${c.gateway.probeSettings.downAfterMisses}`,
  );
  console.log(`detection (peer silent -> link down at controller): ${fmt(detect)}`);
  console.log(`baseline: recovery (peer back -> link up; 3 probes needed): ${fmt(recover)}`);
  console.log(
    `target <= 400 ms: ${pct(detect, 50) <= 400 ? 'met at p50' : 'MISSED at p50'}${pct(detect, 95) <= 400 ? ', met at p95' : ', missed at p95'}`,
  );
  a.kill('SIGTERM');
  b.kill('SIGCONT');
  b.kill('SIGTERM');
  await c.stop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
