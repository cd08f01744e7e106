/**
 * Loss detection: how long after a link starts losing packets past an SLA the estimator's loss
 * reading crosses it at a quality cycle, and how often a link within the SLA reads past it.
 *
 * Monte Carlo over the real `LinkEstimator`, with the lab's telemetry: a probe every 30 ms, a
 * 20 s loss window (667 probes), quality cycles every 5 s at a random phase, a probe lost when its
 * request or its reply is (each way independently). Each trial: 60 s at the link's base loss, then
 * the step loss; time from the step to the first cycle that reads above `--sla` (voice: 1 %).
 * "False reads": cycles (after the window first filled) at which a steady link reads above the SLA.
 * Trials are seeded one by one, so both estimators see exactly the same probe outcomes.
 *
 * Baseline (same run): `lossSuffixes: [8]`, the estimator before the quarter and half suffixes
 * (the last eighth only).
 * Run: `node controller/dist/bench/loss-detection.js [TRIALS]` (default 1000).
 */
import type { Topology } from '@meridian/topology';
import { LinkEstimator } from '../src/index';
import { pct } from './stats';

const TRIALS = Number(process.argv[2] ?? 1000);
const PROBE_MS = 30;
const CYCLE_MS = 5000;
const WINDOW = Math.round(20_000 / PROBE_MS);
const SLA_PCT = 1;

const topology: Pick<Topology, 'links'> = {
  links: [
    {
      id: 'a-b',
      a: 'a',
      b: 'b',
      transport: 'internet',
      capacityMbps: 1000,
      latencyMs: 3,
      jitterMs: 1,
      lossPct: 0.1,
      cost: 1,
    },
  ],
};

/** Park–Miller generator: a fixed seed per trial, the same outcomes for both estimators. */
function rng(seed: number): () => number {
  let s = seed % 2147483647 || 1;
  return () => (s = (s * 48271) % 2147483647) / 2147483647;
}

/** Round-trip loss share from one-way loss percent (both directions alike). */
const rttLoss = (oneWayPct: number): number => 1 - (1 - oneWayPct / 100) ** 2;

interface Outcome {
  /** ms from the step to the first cycle above the SLA (Infinity: not within 60 s). */
  detectMs: number;
  falseReads: number;
  cycles: number;
}

function trial(suffixes: number[], seed: number, basePct: number, stepPct: number): Outcome {
  const e = new LinkEstimator(topology, { lossWindow: WINDOW, lossSuffixes: suffixes, downAfterMisses: 1e9 });
  const i = e.indexOf('a-b');
  const rand = rng(seed);
  const phase = Math.floor(rand() * CYCLE_MS);
  const atCycle = (t: number): boolean => (t + phase) % CYCLE_MS < PROBE_MS;
  const read = (): number => e.snapshot('a-b')!.lossPct ?? 0;
  let falseReads = 0;
  let cycles = 0;
  let t = 0;
  for (; t < 60_000; t += PROBE_MS) {
    e.ingestSample(i, 'a', 5, -1, rand() < rttLoss(basePct), 0);
    if (t > WINDOW * PROBE_MS && atCycle(t)) {
      cycles++;
      if (read() > SLA_PCT) falseReads++;
    }
  }
  const step = t;
  for (; t < step + 60_000; t += PROBE_MS) {
    e.ingestSample(i, 'a', 5, -1, rand() < rttLoss(stepPct), 0);
    if (atCycle(t) && read() > SLA_PCT) return { detectMs: t - step, falseReads, cycles };
  }
  return { detectMs: Infinity, falseReads, cycles };
}

const fmt = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : 'never');

const scenarios: Array<{ base: number; step: number }> = [
  { base: 0.1, step: 2 },
  { base: 0.1, step: 3 },
  { base: 0.1, step: 5 },
  { base: 0.5, step: 0.5 },
  { base: 0.8, step: 0.8 },
];
const estimators: Array<{ name: string; suffixes: number[] }> = [
  { name: 'baseline: last eighth only', suffixes: [8] },
  { name: 'eighth, quarter, half', suffixes: [8, 4, 2] },
];

console.log(
  `loss detection: ${TRIALS} trials, probe every ${PROBE_MS} ms, window ${WINDOW} probes, cycle ${CYCLE_MS} ms, SLA ${SLA_PCT} % one way`,
);
for (const sc of scenarios) {
  for (const est of estimators) {
    const outs = Array.from({ length: TRIALS }, (_, k) =>
      trial(est.suffixes, 7919 * (k + 1), sc.base, sc.step),
    );
    const d = outs.map((o) => o.detectMs);
    const fr = outs.reduce((a, o) => a + o.falseReads, 0);
    const cy = outs.reduce((a, o) => a + o.cycles, 0);
    const crossing = sc.step > SLA_PCT;
    console.log(
      `  ${sc.base} % -> ${sc.step} % each way, ${est.name}: ` +
        (crossing
          ? `above the SLA after p50 ${fmt(pct(d, 50))}, p90 ${fmt(pct(d, 90))}, p99 ${fmt(pct(d, 99))}, max ${fmt(pct(d, 100))}; `
          : '') +
        `false reads at ${sc.base} %: ${fr} of ${cy} cycles (${((100 * fr) / cy).toFixed(2)} %)`,
    );
  }
}
