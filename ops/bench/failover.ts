// `npm run bench:failover` (root): how long voice stops when a link on its path dies, on the
// namespace lab with the real controller and agents (lab-services.ts), in two runs:
//   frr        agents with local fast reroute: link alarms from both ends of each link, budgeted
//              per-path probes (the default)
//   controller agents with --no-fast-reroute: only the controller's recompute moves traffic
// A 50 packets/s voice stream (UDP, DSCP 46, 160 bytes) runs between two edge sites (the voice
// route between edge sites with the longest primary each of whose links some backup path avoids:
// the route's backup or the policy's protection path). For each position on its
// primary, TRIALS times: fail the link at that position of the path active then (emulator: drop everything), measure at the receiver the
// longest gap between packets, lost, duplicated and reordered packets, ICMP time-exceeded in the
// whole lab (loops), and the time until the controller's voice route avoids the link (GET
// /api/v1/routes polled every 25 ms); then clear the link and wait for the route to come back.
// Application-aware case: raise one link's loss past the voice SLA but not the sync SLA and time
// until the voice route leaves it while the sync route stays.
//
// Run: npm run bench:failover [-- --trials N] [--topology FILE] [--only frr|controller] [--json FILE]
//      [--forwarding auto|srv6|hop-by-hop]   (the lab's forwarding mode; default auto)
//      [--logs DIR]   (keeps each lab's controller, agent and emulator logs in DIR/<mode>/)
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REFERENCE_TOPOLOGY_PATH, loadTopology, type Topology } from '@meridian/topology';
import {
  labDown,
  labFault,
  labPrerequisites,
  labServices,
  labUp,
  parseForwarding,
  waitForPoliciesApplied,
  type LabDescription,
  type LabForwardingOption,
} from '../src/index';
import {
  analyseStream,
  labTimeExceeded,
  markDscp,
  quantile,
  startReceiver,
  startSender,
  type StreamStats,
} from './failover-traffic';

const VOICE_PORT = 5004;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const say = (s: string): boolean => process.stdout.write(`${s}\n`);

interface ApiPath {
  sites: string[];
  links: string[];
  latencyMs: number;
}
interface ApiRoute {
  class: string;
  src: string;
  dst: string;
  primary: ApiPath | null;
  backup: ApiPath | null;
}

interface Trial extends StreamStats {
  link: string;
  trial: number;
  /** The backup at the time of the failure did not use the failed link (fast reroute could act). */
  protected: boolean;
  convergedMs: number | null;
  loops: number;
  restore: StreamStats;
}

interface ModeResult {
  mode: 'frr' | 'controller';
  route: string;
  primary: string[];
  backup: string[];
  baseline: StreamStats;
  trials: Trial[];
  appAware: {
    pair: string;
    link: string;
    voiceMovedMs: number | null;
    syncStayed: boolean;
    syncRoute: string[];
    stream: StreamStats;
  } | null;
}

class Api {
  constructor(
    readonly http: string,
    readonly token: string,
  ) {}
  async get<T>(p: string): Promise<T> {
    const res = await fetch(`http://${this.http}${p}`, {
      headers: { authorization: `Bearer ${this.token}` },
    });
    if (!res.ok) throw new Error(`GET ${p}: ${res.status}`);
    return (await res.json()) as T;
  }
  async route(cls: string, src: string, dst: string): Promise<ApiRoute | undefined> {
    return (await this.get<{ routes: ApiRoute[] }>(`/api/v1/routes?class=${cls}&from=${src}&to=${dst}`))
      .routes[0];
  }
}

async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 25,
): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await check()) return performance.now() - t0;
    await sleep(everyMs);
  }
  return null;
}

async function pickRoute(api: Api, topology: Topology): Promise<ApiRoute> {
  const edges = new Set(topology.sites.filter((s) => s.kind === 'edge').map((s) => s.id));
  const all = (await api.get<{ routes: ApiRoute[] }>('/api/v1/routes?class=voice')).routes;
  // The longest voice primary between two edge sites (most links to fail), protected: its policy
  // backup (a link-disjoint protection path when the route's own backup shares a link, see the
  // controller's forwarding-backup.ts) can take over.
  const up = await upLinks(api);
  const cands = all.filter(
    (r) =>
      edges.has(r.src) &&
      edges.has(r.dst) &&
      r.primary !== null &&
      protectedFrom(r, r.primary.links, topology, up),
  );
  cands.sort(
    (a, b) => b.primary!.links.length - a.primary!.links.length || (a.src + a.dst < b.src + b.dst ? -1 : 1),
  );
  const r = cands[0];
  if (r === undefined) throw new Error('no voice route between edge sites with a link-disjoint backup path');
  return r;
}

/** Links the controller does not hold down. */
async function upLinks(api: Api): Promise<Set<string>> {
  const links = (await api.get<{ links: { id: string; up: boolean | null }[] }>('/api/v1/links')).links;
  return new Set(links.filter((l) => l.up !== false).map((l) => l.id));
}

/**
 * Whether local reroute can help when `failed` (links of the route's primary) die: the route's
 * backup avoids them, or some path of up links does (the controller then installs it as the
 * forwarding backup: a protection path).
 */
function protectedFrom(r: ApiRoute, failed: readonly string[], topology: Topology, up: Set<string>): boolean {
  const primary = new Set(r.primary?.links ?? []);
  if (r.backup !== null && !r.backup.links.some((l) => failed.includes(l))) return true;
  const seen = new Set([r.src]);
  const queue = [r.src];
  while (queue.length > 0) {
    const at = queue.shift()!;
    if (at === r.dst) return true;
    for (const l of topology.links) {
      if (!up.has(l.id) || primary.has(l.id)) continue;
      const next = l.a === at ? l.b : l.b === at ? l.a : null;
      if (next !== null && !seen.has(next)) {
        seen.add(next);
        queue.push(next);
      }
    }
  }
  return false;
}

async function runMode(
  mode: 'frr' | 'controller',
  topology: Topology,
  trials: number,
  pair: { src: string; dst: string } | null,
  logsDir: string | null,
  forwarding: LabForwardingOption,
): Promise<ModeResult> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), `meridian-bench-failover-${mode}-`));
  say(`\n== ${mode}: lab up (${topology.sites.length} sites, ${topology.links.length} links) ==`);
  const t0 = performance.now();
  let lab: LabDescription;
  try {
    lab = await labUp(topology, {
      stateDir,
      waitMs: 900_000,
      forwarding,
      startServices: labServices({ stateDir, fastReroute: mode === 'frr', logLevel: 'warn' }),
    });
  } catch (err) {
    await labDown({ stateDir });
    throw err;
  }
  const namespaces = lab.sites.map((s) => s.netns);
  const api = new Api(lab.controller.http!, lab.apiToken!);
  const sites = lab.sites.map((s) => s.id);
  const host = (id: string): string => lab.sites.find((s) => s.id === id)!.address;
  say(
    `lab with services up in ${((performance.now() - t0) / 1000).toFixed(1)} s, forwarding ${lab.forwarding}`,
  );
  const stoppers: (() => void)[] = [];
  try {
    // Let the measured state settle (first policies come from nominal values).
    await sleep(8000);
    await waitForPoliciesApplied(api.http, api.token, sites, 60_000).catch(() =>
      say('(policies still changing after 60 s: measuring anyway)'),
    );
    const chosen =
      pair === null ? await pickRoute(api, topology) : (await api.route('voice', pair.src, pair.dst))!;
    const { src, dst } = chosen;
    const start = (await api.route('voice', src, dst))!;
    say(
      `voice ${src} -> ${dst}: primary ${start.primary!.links.join(', ')}; backup ${start.backup?.links.join(', ') ?? '-'}`,
    );
    await markDscp(`mrd-${src}`, [VOICE_PORT], 46);
    const rx = await startReceiver(`mrd-${dst}`, host(dst), VOICE_PORT);
    stoppers.push(() => rx.stop());
    const tx = startSender(`mrd-${src}`, { src: host(src), dst: host(dst), port: VOICE_PORT, pps: 50 });
    stoppers.push(() => tx.stop());
    const log: [number, number][] = [];
    const collect = async (): Promise<void> => {
      log.push(...(await rx.take()));
    };
    const now = (): number => Date.now();
    await sleep(2000);
    const b0 = now();
    await sleep(4000);
    await collect();
    const baseline = analyseStream(log, b0, now());
    say(`baseline (4 s, no failure): longest gap ${baseline.gapMs.toFixed(0)} ms, lost ${baseline.lost}`);

    const result: Trial[] = [];
    // A failure moves the route, and hysteresis may keep it on the new path after the restore:
    // each trial fails the link at the same position of whatever path is active then.
    const positions = start.primary!.links.length;
    for (let pos = 0; pos < positions; pos++) {
      for (let i = 1; i <= trials; i++) {
        const cur = await api.route('voice', src, dst);
        const links = cur?.primary?.links ?? [];
        const link = links[Math.min(pos, links.length - 1)];
        if (link === undefined) {
          say(`  position ${pos + 1} #${i}: the route has no primary now; skipped`);
          await sleep(2000);
          continue;
        }
        const prot = cur !== undefined && protectedFrom(cur, [link], topology, await upLinks(api));
        const te0 = await labTimeExceeded(namespaces);
        const failAt = now();
        await labFault(link, { kind: 'down' }, { stateDir });
        const convergedMs = await waitUntil(
          async () => !((await api.route('voice', src, dst))?.primary?.links ?? [link]).includes(link),
          10_000,
        );
        await sleep(Math.max(0, failAt + 3000 - now()));
        await collect();
        const s = analyseStream(log, failAt - 100, now());
        const loops = (await labTimeExceeded(namespaces)) - te0;
        const clearAt = now();
        await labFault(link, { kind: 'clear' }, { stateDir });
        // The controller sees the link up again; the route may or may not come back (hysteresis).
        await waitUntil(
          async () =>
            (await api.get<{ links: { id: string; up: boolean | null }[] }>('/api/v1/links')).links.find(
              (l) => l.id === link,
            )?.up === true,
          15_000,
          100,
        );
        await sleep(2500);
        await collect();
        const restore = analyseStream(log, clearAt, now());
        const tr: Trial = { link, trial: i, protected: prot, ...s, convergedMs, loops, restore };
        result.push(tr);
        say(
          `  ${link} #${i}${prot ? '' : ' (no backup path avoids it)'}: gap ${s.gapMs.toFixed(0)} ms, lost ${s.lost}, dup ${s.duplicated}, reordered ${s.reordered}, loops ${loops}, routes converged ${convergedMs === null ? 'no' : `${convergedMs.toFixed(0)} ms`}; restore: gap ${restore.gapMs.toFixed(0)} ms, dup ${restore.duplicated}, reordered ${restore.reordered}`,
        );
      }
    }

    // Application-aware: loss past the voice SLA but within the sync SLA, on a link that a voice
    // and a sync route of the same pair share (the stream's pair when it has one).
    let appAware: ModeResult['appAware'] = null;
    const voiceAll = (await api.get<{ routes: ApiRoute[] }>('/api/v1/routes?class=voice')).routes;
    const syncAll = (await api.get<{ routes: ApiRoute[] }>('/api/v1/routes?class=sync')).routes;
    const sharedOf = (v: ApiRoute): string | undefined => {
      const sy = syncAll.find((x) => x.src === v.src && x.dst === v.dst);
      return (v.primary?.links ?? []).find((l) => (sy?.primary?.links ?? []).includes(l));
    };
    const streamVoice = voiceAll.find((v) => v.src === src && v.dst === dst);
    const pairRoute =
      streamVoice !== undefined && sharedOf(streamVoice) !== undefined
        ? streamVoice
        : voiceAll.find((v) => v.backup !== null && sharedOf(v) !== undefined);
    const shared = pairRoute !== undefined ? sharedOf(pairRoute) : undefined;
    const [aSrc, aDst] = pairRoute !== undefined ? [pairRoute.src, pairRoute.dst] : [src, dst];
    const target = shared ?? streamVoice?.primary?.links[0];
    if (target !== undefined) {
      // Loss between the two SLAs (voice 1 %, sync 5 % in the reference): a delay past the voice
      // latency SLA would exceed the telemetry probe timeout (100 ms) and read as link down.
      const voiceLoss = topology.classes.find((c) => c.id === 'voice')?.sla.maxLossPct ?? 1;
      const syncLoss = topology.classes.find((c) => c.id === 'sync')?.sla.maxLossPct ?? 5;
      const pct = Math.round(((voiceLoss + syncLoss) / 2) * 10) / 10;
      const at = now();
      await labFault(target, { kind: 'loss', pct }, { stateDir });
      const moved = await waitUntil(
        async () => !((await api.route('voice', aSrc, aDst))?.primary?.links ?? [target]).includes(target),
        30_000,
      );
      await sleep(1000);
      const syncAfter = await api.route('sync', aSrc, aDst);
      await collect();
      const stream = analyseStream(log, at, now());
      appAware = {
        pair: `${aSrc}>${aDst}`,
        link: target,
        voiceMovedMs: moved,
        syncStayed: shared !== undefined && (syncAfter?.primary?.links ?? []).includes(target),
        syncRoute: syncAfter?.primary?.links ?? [],
        stream,
      };
      say(
        `  app-aware (${aSrc} -> ${aDst}): ${target} loss ${pct} %: voice left it after ${moved === null ? 'never' : `${moved.toFixed(0)} ms`}; sync ${appAware.syncStayed ? 'stayed on it' : `is on ${appAware.syncRoute.join(',')}`}${shared === undefined ? ' (no link shared by voice and sync)' : ''}; stream gap ${stream.gapMs.toFixed(0)} ms, lost ${stream.lost}, reordered ${stream.reordered}`,
      );
      await labFault(target, { kind: 'clear' }, { stateDir });
    }
    return {
      mode,
      route: `${src}>${dst}`,
      primary: start.primary!.links,
      backup: start.backup?.links ?? [],
      baseline,
      trials: result,
      appAware,
    };
  } finally {
    for (const s of stoppers) s();
    if (logsDir !== null) {
      // lab down removes the state directory: keep the logs for reading a bad trial afterwards.
      const to = path.join(logsDir, mode);
      mkdirSync(to, { recursive: true });
      for (const f of readdirSync(stateDir).filter((x) => x.endsWith('.log'))) {
        copyFileSync(path.join(stateDir, f), path.join(to, f));
      }
      say(`logs kept in ${to}`);
    }
    await labDown({ stateDir });
  }
}

function summary(r: ModeResult): string {
  const gaps = r.trials.map((x) => x.gapMs);
  const prot = r.trials.filter((x) => x.protected).map((x) => x.gapMs);
  const unprot = r.trials.length - prot.length;
  const conv = r.trials.map((x) => x.convergedMs ?? Infinity);
  const sum = (f: (x: Trial) => number): number => r.trials.reduce((a, x) => a + f(x), 0);
  return (
    `${r.mode}: ${r.trials.length} failures; gap p50 ${quantile(gaps, 0.5).toFixed(0)} ms, p99 ${quantile(gaps, 0.99).toFixed(0)} ms, max ${Math.max(...gaps).toFixed(0)} ms; ` +
    (unprot > 0 && prot.length > 0
      ? `with a backup path avoiding the failed link (${prot.length}): p50 ${quantile(prot, 0.5).toFixed(0)}, p99 ${quantile(prot, 0.99).toFixed(0)}, max ${Math.max(...prot).toFixed(0)} ms; ${unprot} without one; `
      : '') +
    `lost ${sum((x) => x.lost)} (${(sum((x) => x.lost) / Math.max(1, r.trials.length)).toFixed(1)}/failure), duplicated ${sum((x) => x.duplicated)}, reordered ${sum((x) => x.reordered)}, loops ${sum((x) => x.loops)}; ` +
    `routes converged p50 ${quantile(conv, 0.5).toFixed(0)} ms, p99 ${quantile(conv, 0.99).toFixed(0)} ms, max ${Math.max(...conv).toFixed(0)} ms; ` +
    `restore: max gap ${Math.max(...r.trials.map((x) => x.restore.gapMs)).toFixed(0)} ms, duplicated ${sum((x) => x.restore.duplicated)}, reordered ${sum((x) => x.restore.reordered)}`
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      trials: { type: 'string' },
      topology: { type: 'string' },
      only: { type: 'string' },
      json: { type: 'string' },
      logs: { type: 'string' },
      forwarding: { type: 'string' },
    },
    strict: true,
  });
  const why = await labPrerequisites();
  if (why !== null) {
    say(`bench:failover skipped: ${why}`);
    return;
  }
  const trials = Number(values.trials ?? 3);
  const forwarding = parseForwarding(values.forwarding ?? 'auto');
  const topology = loadTopology(values.topology ?? REFERENCE_TOPOLOGY_PATH);
  say(
    `bench:failover on ${topology.source}: ${trials} trials per link, 50 pps voice (DSCP 46); ${os.cpus().length} CPUs, Node ${process.version}`,
  );
  const modes = (values.only !== undefined ? [values.only] : ['frr', 'controller']) as (
    'frr' | 'controller'
  )[];
  const results: ModeResult[] = [];
  let pair: { src: string; dst: string } | null = null;
  for (const m of modes) {
    const r = await runMode(m, topology, trials, pair, values.logs ?? null, forwarding);
    const [src = '', dst = ''] = r.route.split('>');
    pair = { src, dst };
    results.push(r);
  }
  say('\n== summary ==');
  for (const r of results) say(summary(r));
  if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(results, null, 2));
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench:failover failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
});
