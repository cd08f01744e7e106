/**
 * In-process ingest through the link estimator: probe samples per second on one core.
 *
 * Fixture: 2,000 links, reports of 10 samples per link (1 in 50 lost, RTT 5-45 ms), the same
 * pre-built reports replayed. Measured in the same run:
 * - `estimator`: `LinkEstimator.ingestLinkStats()` over the decoded reports (the controller's
 *   work per sample, what the >= 100,000 samples/s target is about);
 * - `gateway path`: protobuf decode of the AgentMessage bytes + edge validation + estimator (the
 *   whole per-report cost inside the controller, without the network);
 * - baseline `JSON.parse`: parsing the same reports as JSON text and touching every sample, i.e.
 *   the cost of merely reading the data once.
 *
 * Run: `npm run bench -w controller` (or `node controller/dist/bench/ingest.js` after `npx tsc -b controller`).
 */
import * as protoLoader from '@grpc/proto-loader';
import {
  checkReport,
  DEFAULT_MESSAGE_LIMITS,
  LinkEstimator,
  MERIDIAN_PROTO_PATH,
  PROTO_LOADER_OPTIONS,
} from '../src/index';
import type { AgentMessage, LinkProbeStats } from '../src/index';
import { syntheticTopology } from './fixtures';

const SITES = 1000;
/** The controller's tick (staleness, change events) runs every 100 ms and persists full snapshots every 250 ms. */
const topo = syntheticTopology(SITES);
const SAMPLES_PER_LINK = 10;

// Deterministic pseudo-random numbers so every run measures the same data.
let seed = 42;
const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;

/** One report per site: its `a`-end links, 10 samples each. */
function buildReports(): { site: string; links: LinkProbeStats[] }[] {
  const bySite = new Map<string, LinkProbeStats[]>();
  let seq = 0;
  for (const l of topo.links) {
    const samples = [];
    for (let k = 0; k < SAMPLES_PER_LINK; k++) {
      const lost = rand() < 0.02;
      samples.push({
        seq: seq++,
        sentAtUs: 1_800_000_000_000_000 + seq * 100_000,
        rttMs: lost ? -1 : 5 + rand() * 40,
        fwdMs: -1,
        lost,
      });
    }
    const list = bySite.get(l.a) ?? [];
    list.push({
      link: l.id,
      peerSite: l.b,
      sent: 10,
      received: samples.filter((s) => !s.lost).length,
      lost: samples.filter((s) => s.lost).length,
      reordered: 0,
      duplicates: 0,
      alive: true,
      samples,
    });
    bySite.set(l.a, list);
  }
  return [...bySite].map(([site, links]) => ({ site, links }));
}

function measure(name: string, fn: () => number, seconds = 2): number {
  // Warm up (JIT), then run whole passes until the time is up.
  for (let i = 0; i < 3; i++) fn();
  let samples = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < seconds) {
    samples += fn();
    elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  const rate = samples / elapsed;
  console.log(`${name.padEnd(44)} ${Math.round(rate).toLocaleString('en-US').padStart(14)} samples/s`);
  return rate;
}

let passes = 0;
/** What the controller does per tick: change detection; full snapshots for the store every ~3rd. */
function tick(e: LinkEstimator): void {
  const ids = e.collectChanges();
  if (++passes % 3 === 0) for (const id of ids) e.snapshot(id);
}

function main(): void {
  const reports = buildReports();
  const totalSamples = reports.reduce((n, r) => n + r.links.length * SAMPLES_PER_LINK, 0);
  console.log(
    `fixture: ${topo.sites.length} sites, ${topo.links.length} links, ${totalSamples} samples per pass`,
  );

  const def = protoLoader.loadSync(MERIDIAN_PROTO_PATH, PROTO_LOADER_OPTIONS);
  const connect = (
    def['meridian.v1.AgentControl'] as unknown as Record<
      string,
      { requestSerialize(m: object): Buffer; requestDeserialize(b: Buffer): AgentMessage }
    >
  ).Connect!;
  const encoded = reports.map((r) => ({
    site: r.site,
    bytes: connect.requestSerialize({ report: { sentAtMs: 1, links: r.links } }),
  }));
  const json = reports.map((r) => JSON.stringify({ report: { sentAtMs: 1, links: r.links } }));

  const baseline = measure('baseline: JSON.parse + touch every sample', () => {
    let n = 0;
    let acc = 0;
    for (const text of json) {
      const m = JSON.parse(text) as { report: { links: LinkProbeStats[] } };
      for (const l of m.report.links)
        for (const s of l.samples) {
          acc += s.rttMs;
          n++;
        }
    }
    if (acc === 42) console.log('');
    return n;
  });

  const est = new LinkEstimator(topo);
  let now = 1_800_000_000_000;
  const estimator = measure('estimator: ingestLinkStats (one core)', () => {
    let n = 0;
    now += 1000;
    for (const r of reports) {
      for (const l of r.links) {
        est.ingestLinkStats(r.site, l, now);
        n += l.samples.length;
      }
    }
    tick(est);
    return n;
  });

  const est2 = new LinkEstimator(topo);
  const ends = (id: string) => est2.ends(id);
  const gateway = measure('gateway path: protobuf decode + validate + estimator', () => {
    let n = 0;
    now += 1000;
    for (const r of encoded) {
      const m = connect.requestDeserialize(r.bytes);
      if (m.body !== 'report') throw new Error('bad fixture');
      if (checkReport(r.site, m.report, ends, DEFAULT_MESSAGE_LIMITS) !== undefined)
        throw new Error('invalid fixture');
      for (const l of m.report.links) {
        est2.ingestLinkStats(r.site, l, now);
        n += l.samples.length;
      }
    }
    tick(est2);
    return n;
  });
  console.log(
    `estimator / baseline: ${(estimator / baseline).toFixed(1)}x; gateway path / baseline: ${(gateway / baseline).toFixed(2)}x; target 100,000 samples/s: ${estimator >= 100_000 ? 'met' : 'MISSED'}`,
  );
}

main();
