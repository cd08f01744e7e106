/**
 * One policy version for 1,000 sites written to a private Redis: `RedisPolicyStore.commit`
 * (policies stored zlib-deflated) against the baseline it replaced, the same policies as plain JSON
 * in one MULTI, measured in the same run. Each policy is the reference topology's largest compiled
 * policy (lab addressing plan) under another site name; new objects every round, so serialising
 * is counted in both. Reports the p50 per commit and the bytes stored per version.
 *
 * Run: node controller/dist/bench/policy-store-commit.js [ROUNDS=10]
 */
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import pino from 'pino';
import { computeRoutes, loadTopology, REFERENCE_TOPOLOGY_PATH } from '@meridian/topology';
import {
  compilePolicies,
  RedisPolicyStore,
  type AddressingPlan,
  type CompiledSitePolicy,
  type PolicyVersionMeta,
} from '../src/index';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const ops = require('@meridian/ops') as {
  startRedis(): Promise<{ readonly url: string; dispose(): Promise<void> }>;
  defaultAddressingPlan(t: unknown): AddressingPlan;
};

const SITES = 1000;
const ROUNDS = Number(process.argv[2] ?? 10);

function p50(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

async function main(): Promise<void> {
  const ref = loadTopology(REFERENCE_TOPOLOGY_PATH);
  const compiled = [
    ...compilePolicies(ref, computeRoutes(ref).routes, ops.defaultAddressingPlan(ref)).values(),
  ];
  const template = compiled.sort((a, b) => JSON.stringify(b).length - JSON.stringify(a).length)[0]!;
  const redis = await ops.startRedis();
  const store = new RedisPolicyStore({ url: redis.url, log: pino({ level: 'silent' }) });
  const raw = new Redis(redis.url);
  try {
    await store.start();
    const deflated: number[] = [];
    const plain: number[] = [];
    for (let v = 1; v <= ROUNDS; v++) {
      const make = (): CompiledSitePolicy[] =>
        Array.from({ length: SITES }, (_, i) => Object.freeze({ ...template, site: `s${i}`, version: v }));
      const policies = make();
      const meta: PolicyVersionMeta = {
        version: v,
        createdAt: new Date().toISOString(),
        reason: 'routes',
        rollbackOf: null,
        sites: policies.map((p) => p.site),
      };
      let t = performance.now();
      await store.commit(meta, policies);
      deflated.push(performance.now() - t);

      const again = make();
      t = performance.now();
      const m = raw.multi();
      for (const p of again) {
        m.set(`baseline:policy:${p.site}:${v}`, JSON.stringify(p));
        m.hset('baseline:policy:current', p.site, JSON.stringify({ version: v, hash: p.hash }));
      }
      await m.exec();
      plain.push(performance.now() - t);
    }
    const size = async (pattern: string): Promise<number> => {
      let total = 0;
      for (const key of await raw.keys(pattern)) total += await raw.strlen(key);
      return total / ROUNDS;
    };
    const mb = (n: number): string => (n / 1e6).toFixed(1);
    process.stdout.write(
      `commit of ${SITES} policies of ${JSON.stringify(template).length} B, ${ROUNDS} rounds:\n` +
        `  RedisPolicyStore (deflated)  p50 ${p50(deflated).toFixed(0)} ms, ${mb(await size('meridian:policy:s*'))} MB stored per version\n` +
        `  baseline: plain JSON MULTI   p50 ${p50(plain).toFixed(0)} ms, ${mb(await size('baseline:policy:s*'))} MB stored per version\n`,
    );
  } finally {
    raw.disconnect();
    await store.close();
    await redis.dispose();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
