/**
 * Detection time: from a peer going silent to the link marked down at the controller.
 *
 * Real pieces only: the real `Controller` (in process, embedded stores), agent A (bj1, in process)
 * probing peer B (sh1) as the controller's probe plan says, and B a separate `meridian agent`
 * process. Each trial waits until the controller has the link up, waits a random fraction of a
 * probe interval (so the kill lands at every phase of the probe cycle), SIGKILLs B and measures
 * until the controller's estimator emits `link-change` with `up: false` (and, for comparison, until
 * A's own liveness event).
 *
 * Configurations, all at the default 100 ms interval and in the same run:
 * - controller defaults (DEFAULT_PROBE_SETTINGS);
 * - timeout 50 ms (half the interval);
 * - baseline "report on the timer only": A sends its report on the 1 s report tick instead of at
 *   once on a liveness change (the naive aggregated-report path).
 *
 * Run: npm run bench -w edge-agent   (TRIALS=N to change the number of trials per configuration)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { Topology } from '@meridian/topology';
import { Controller, DEFAULT_PROBE_SETTINGS, type ProbeSettings } from '@meridian/controller';
import { EdgeAgent } from '../src/index';

const TOKEN = 'bench-agent-token';
const TRIALS = Number(process.env['TRIALS'] ?? 20);
const LINK = 'bj1-sh1';
const log = pino({ level: 'silent' });
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'meridian.js');

const topology: Topology = {
  version: 1,
  source: '<bench>',
  sites: [
    { id: 'bj1', kind: 'dc', region: 'cn-north', prefixes: ['10.1.0.0/16'] },
    { id: 'sh1', kind: 'dc', region: 'cn-east', prefixes: ['10.2.0.0/16'] },
  ],
  links: [
    {
      id: LINK,
      a: 'bj1',
      b: 'sh1',
      transport: 'fiber',
      capacityMbps: 10_000,
      latencyMs: 14,
      jitterMs: 1,
      lossPct: 0,
      cost: 10,
    },
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

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function waitFor<T>(register: (resolve: (v: T) => void) => () => void, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    const off = register((v) => {
      clearTimeout(timer);
      off();
      resolve(v);
    });
  });
}

function linkState(ctl: Controller, up: boolean): Promise<number> {
  return waitFor<number>(
    (resolve) => {
      const fn = (c: { id: string; state: { up: boolean | null } }): void => {
        if (c.id === LINK && c.state.up === up) resolve(performance.now());
      };
      ctl.on('link-change', fn);
      return () => ctl.off('link-change', fn);
    },
    15_000,
    `${LINK} ${up ? 'up' : 'down'} at the controller`,
  );
}

function spawnPeer(grpcPort: number): ChildProcess {
  return spawn(
    process.execPath,
    [BIN, 'agent', '--site', 'sh1', '--controller', `127.0.0.1:${grpcPort}`, '--log-level', 'warn'],
    { env: { ...process.env, MERIDIAN_AGENT_TOKEN: TOKEN }, stdio: ['ignore', 'ignore', 'inherit'] },
  );
}

interface Trial {
  controllerMs: number;
  agentMs: number;
}

async function runConfig(
  name: string,
  probe: Partial<ProbeSettings>,
  reportOnLivenessChange: boolean,
): Promise<Trial[]> {
  const ctl = new Controller({
    topology,
    apiToken: 'bench-api-token',
    agentToken: TOKEN,
    grpc: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    log,
    probe,
  });
  const ports = await ctl.start();
  const a = new EdgeAgent({
    site: 'bj1',
    controller: `127.0.0.1:${ports.grpc}`,
    token: TOKEN,
    log,
    probe: { reportOnLivenessChange },
  });
  // Written by the liveness listener, read after each kill.
  const seen = { agentDownAt: 0 };
  a.on('liveness', (c) => {
    if (c.link === LINK && !c.up) seen.agentDownAt = performance.now();
  });
  await a.start();
  const trials: Trial[] = [];
  try {
    for (let i = 0; i < TRIALS; i++) {
      const up = linkState(ctl, true);
      const peer = spawnPeer(ports.grpc);
      const exited = new Promise<void>((r) => peer.once('exit', () => r()));
      await up;
      // Let the link settle, then kill at a random phase of both the probe cycle and the 1 s report
      // tick (the link came up on a report, so a shorter spread would correlate with the tick).
      await sleep(300 + Math.random() * 1000);
      const down = linkState(ctl, false);
      seen.agentDownAt = 0;
      const t0 = performance.now();
      peer.kill('SIGKILL');
      const t1 = await down;
      await exited;
      trials.push({ controllerMs: t1 - t0, agentMs: seen.agentDownAt > 0 ? seen.agentDownAt - t0 : NaN });
      await sleep(50);
    }
  } finally {
    await a.stop();
    await ctl.stop();
  }
  process.stdout.write(`  ${name}: ${trials.length} trials done\n`);
  return trials;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

function row(name: string, xs: number[]): string {
  const s = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  const f = (n: number): string => n.toFixed(0).padStart(5);
  return `| ${name.padEnd(62)} | ${f(pct(s, 50))} | ${f(pct(s, 95))} | ${f(s.at(-1) ?? NaN)} | ${String(s.length).padStart(3)} |`;
}

async function main(): Promise<void> {
  const d = DEFAULT_PROBE_SETTINGS;
  process.stdout.write(
    `detection bench: ${TRIALS} trials per configuration, ${os.cpus().length} CPUs, node ${process.version}\n`,
  );
  const configs: [string, Partial<ProbeSettings>, boolean][] = [
    [
      `controller defaults (interval ${d.intervalMs}, timeout ${d.timeoutMs}, misses ${d.downAfterMisses})`,
      {},
      true,
    ],
    [`timeout 50 ms (interval ${d.intervalMs}, misses ${d.downAfterMisses})`, { timeoutMs: 50 }, true],
    [`baseline: report on the 1 s timer only (controller defaults)`, {}, false],
  ];
  const results: [string, Trial[]][] = [];
  for (const [name, probe, immediate] of configs)
    results.push([name, await runConfig(name, probe, immediate)]);
  const header = `| ${'configuration'.padEnd(62)} |   p50 |   p95 |   max |   n |\n|${'-'.repeat(64)}|-------|-------|-------|-----|`;
  process.stdout.write(`\nsilent peer (SIGKILL) -> link down at the controller, ms\n${header}\n`);
  for (const [name, trials] of results)
    process.stdout.write(
      row(
        name,
        trials.map((x) => x.controllerMs),
      ) + '\n',
    );
  process.stdout.write(`\nsilent peer (SIGKILL) -> liveness event at the probing agent, ms\n${header}\n`);
  for (const [name, trials] of results)
    process.stdout.write(
      row(
        name,
        trials.map((x) => x.agentMs),
      ) + '\n',
    );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`detection bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
