// The closed loop on a real namespace lab (root): `labUp` with the real services (controller with
// the lab's addressing plan, one `meridian agent --driver linux` per site in its namespace).
// Policies applied at every agent → voice traffic (UDP, DSCP 46, from the source host address)
// follows the computed primary (per-interface byte counters) → a link in the middle of the primary
// dies → the source agent's fast reroute moves the route (event in its log), traffic flows →
// the controller's routes converge around the link → the link comes back → routes and traffic go
// back; an agent restart (SIGKILL) reconciles without duplicate rules; a controller outage: agents
// keep forwarding with their last policy and re-sync when it is back.
//
// Labs share machine-wide names (`mrd-*`, `mm<N>`); `labUp(…, { waitMs })` waits for the machine's
// lab slot (ops/src/lab.ts: one lab at a time, `lab down`'s sweep spares a live lab), so this file
// can run beside the other lab-building test files. Site ids `ll-*` and its own state dir.
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadTopology } from '@meridian/topology';
import {
  labDown,
  labFault,
  labPrerequisites,
  labServices,
  labUp,
  restartLabService,
  startLabService,
  waitForPoliciesApplied,
  type LabDescription,
} from '../src/index';
import {
  analyseStream,
  installSizeCounters,
  readSizeCounters,
  labTimeExceeded,
  markDscp,
  startReceiver,
  startSender,
} from '../bench/failover-traffic';

const YAML = `version: 1
sites:
  - { id: ll-a, kind: edge, region: r1, prefixes: ['10.71.0.0/16'] }
  - { id: ll-b, kind: dc, region: r1, prefixes: ['10.72.0.0/16'] }
  - { id: ll-c, kind: dc, region: r2, prefixes: ['10.73.0.0/16'] }
  - { id: ll-d, kind: edge, region: r2, prefixes: ['10.74.0.0/16'] }
links:
  - { id: ab1, a: ll-a, b: ll-b, transport: leased, capacityMbps: 1000, latencyMs: 2, jitterMs: 0.1, lossPct: 0, cost: 2 }
  - { id: ab2, a: ll-a, b: ll-b, transport: internet, capacityMbps: 1000, latencyMs: 6, jitterMs: 0.5, lossPct: 0, cost: 1 }
  - { id: bd, a: ll-b, b: ll-d, transport: leased, capacityMbps: 1000, latencyMs: 3, jitterMs: 0.1, lossPct: 0, cost: 2 }
  - { id: ac, a: ll-a, b: ll-c, transport: internet, capacityMbps: 1000, latencyMs: 8, jitterMs: 0.5, lossPct: 0, cost: 1 }
  - { id: cd, a: ll-c, b: ll-d, transport: internet, capacityMbps: 1000, latencyMs: 8, jitterMs: 0.5, lossPct: 0, cost: 1 }
classes:
  - id: voice
    sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 }
    objective: latency
    maxUtilPct: 85
    priority: 1
    match: { dscp: [46], protocol: udp }
  - id: bulk
    sla: { maxLatencyMs: 1000, maxJitterMs: 500, maxLossPct: 5 }
    objective: cost
    maxUtilPct: 95
    priority: 5
`;

const VOICE_PORT = 5004;
/** Bursts that check the path use their own port (the failover stream's receiver keeps 5004). */
const BURST_PORT = 5006;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Path {
  sites: string[];
  links: string[];
}
interface ApiRoute {
  class: string;
  src: string;
  dst: string;
  primary: Path;
  backup: Path | null;
}

t.setTimeout(900_000);

t.test('closed loop on a namespace lab', async (t) => {
  const why = await labPrerequisites();
  if (why !== null) {
    t.plan(0, `skipped: needs root and ip/nft/socat: ${why}`);
    return;
  }
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'meridian-lab-loop-'));
  const topoFile = path.join(tmp, 'topology.yaml');
  writeFileSync(topoFile, YAML);
  const topology = loadTopology(topoFile);
  const stateDir = path.join(tmp, 'lab');
  t.teardown(async () => {
    // On a failure, the services' warnings and errors go into the test output: CI keeps nothing else.
    if (!t.passing() && existsSync(stateDir)) {
      for (const f of readdirSync(stateDir).filter((n) => /^(agent-.*|controller)\.log$/.test(n))) {
        const lines = readFileSync(path.join(stateDir, f), 'utf8')
          .split('\n')
          .filter((l) => /"level":(40|50|60)/.test(l));
        process.stderr.write(`# ${f}: last warnings/errors:\n${lines.slice(-30).join('\n')}\n`);
      }
    }
    await labDown({ stateDir });
    rmSync(tmp, { recursive: true, force: true });
  });
  let lab!: LabDescription;
  const api = async <T>(p: string, init?: RequestInit): Promise<T> => {
    const res = await fetch(`http://${lab.controller.http}${p}`, {
      ...init,
      headers: { authorization: `Bearer ${lab.apiToken}`, 'content-type': 'application/json' },
    });
    return (await res.json()) as T;
  };
  /**
   * The voice route ll-a -> ll-d in force, once it has a primary: right after an agent restart its
   * links read as down until its reflector answers again, and the route is briefly unreachable.
   */
  const voiceRoute = async (): Promise<ApiRoute> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = (await api<{ routes: ApiRoute[] }>('/api/v1/routes?class=voice&from=ll-a&to=ll-d'))
        .routes[0]!;
      if ((r.primary as Path | null) !== null || Date.now() > deadline) return r;
      await sleep(200);
    }
  };
  const waitFor = async (what: string, check: () => Promise<boolean>, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await check()) return true;
      await sleep(200);
    }
    t.comment(`timed out waiting for ${what}`);
    return false;
  };
  const sites = topology.sites.map((s) => s.id);
  const host = (site: string): string => lab.sites.find((s) => s.id === site)!.address;
  const ifOf = (linkId: string, site: string): string => {
    const l = lab.links.find((x) => x.id === linkId)!;
    return l.a === site ? l.ifA : l.ifB;
  };
  /** Big packets sent per (link, direction) while `n` 1000-byte voice packets go from ll-a to ll-d. */
  const burst = async (n: number): Promise<{ delivered: number; tx: Map<string, number> }> => {
    const read = async (): Promise<Map<string, Map<string, number>>> => {
      const m = new Map<string, Map<string, number>>();
      for (const s of sites) m.set(s, await readSizeCounters(`mrd-${s}`));
      return m;
    };
    const before = await read();
    const rx = await startReceiver('mrd-ll-d', host('ll-d'), BURST_PORT);
    t.teardown(() => rx.stop());
    const tx = startSender('mrd-ll-a', {
      src: host('ll-a'),
      dst: host('ll-d'),
      port: BURST_PORT,
      pps: 400,
      size: 1000,
      count: n,
    });
    await tx.done;
    await sleep(500);
    const got = await rx.take();
    rx.stop();
    const after = await read();
    const out = new Map<string, number>();
    for (const l of lab.links) {
      for (const [from, to] of [
        [l.a, l.b],
        [l.b, l.a],
      ] as const) {
        const name = ifOf(l.id, from);
        out.set(
          `${l.id}:${from}>${to}`,
          (after.get(from)?.get(name) ?? 0) - (before.get(from)?.get(name) ?? 0),
        );
      }
    }
    return { delivered: new Set(got.map(([s]) => s)).size, tx: out };
  };
  /**
   * A burst along the voice route in force. `exact`: every packet along the primary, no other link
   * (also not the backup). Otherwise along the primary or the backup only (fast reroute may hold a
   * route on its backup for a while after an outage), never along any other link.
   */
  const followed = async (
    t: { ok: (v: unknown, m: string) => unknown; comment: (m: string) => void },
    n: number,
    opts: { exact?: boolean; route?: { primary: Path; backup: Path | null } } = {},
  ): Promise<boolean> => {
    const route = opts.route ?? (await voiceRoute());
    const r = await burst(n);
    t.ok(r.delivered >= n * 0.95, `${r.delivered}/${n} delivered`);
    const after = opts.route ?? (await voiceRoute());
    if (after.primary.links.join() !== route.primary.links.join()) {
      // The controller moved the route during the burst (measured state changed): both are right.
      t.comment(
        `route moved during the burst (${route.primary.links.join(',')} -> ${after.primary.links.join(',')}); path not checked`,
      );
      return false;
    }
    const hops = (p: Path | null): string[] =>
      p === null ? [] : p.links.map((l, i) => `${l}:${p.sites[i]}>${p.sites[i + 1]}`);
    const on = new Set(hops(route.primary));
    const allowed = new Set([...on, ...(opts.exact === true ? [] : hops(route.backup))]);
    let ok = true;
    for (const [k, count] of r.tx) {
      if (opts.exact === true && on.has(k)) {
        ok = count >= n * 0.95 && ok;
        t.ok(count >= n * 0.95, `on the primary: ${k} carried ${count} of the ${n} packets`);
      } else if (!allowed.has(k)) {
        ok = count <= n * 0.02 && ok;
        t.ok(count <= n * 0.02, `off the path: ${k} carried ${count} of them`);
      }
    }
    return ok;
  };

  await t.test('lab up with services: every agent applies its first policy', async (t) => {
    lab = await labUp(topology, {
      stateDir,
      waitMs: 600_000,
      startServices: labServices({ stateDir, readyTimeoutMs: 120_000 }),
    });
    t.match(lab.controller.http, /^127\.0\.0\.1:\d+$/);
    t.match(lab.controller.grpc, /^127\.0\.0\.1:\d+$/);
    t.type(lab.apiToken, 'string');
    const st = await waitForPoliciesApplied(lab.controller.http!, lab.apiToken!, sites, 60_000);
    t.equal(st.filter((a) => a.status === 'applied').length, 4, 'all four applied');
    for (const s of sites) {
      const persisted = JSON.parse(
        readFileSync(path.join(stateDir, `agent-${s}`, 'policy.json'), 'utf8'),
      ) as {
        version: number;
        site: string;
      };
      t.equal(persisted.site, s, `${s}: the applied policy is persisted`);
      t.equal(persisted.version, st.find((a) => a.site === s)!.appliedVersion, `${s}: the acked version`);
    }
    await markDscp('mrd-ll-a', [VOICE_PORT, BURST_PORT], 46);
    for (const s of sites) {
      const ifs = lab.links.flatMap((l) => (l.a === s ? [l.ifA] : l.b === s ? [l.ifB] : []));
      await installSizeCounters(`mrd-${s}`, ifs);
    }
  });

  await t.test('voice follows the computed primary', async (t) => {
    // Wait until the measured state settled (the first policies come from nominal values).
    await waitFor('links measured', async () => (await voiceRoute()).primary != null, 20_000);
    await sleep(3000);
    await waitForPoliciesApplied(lab.controller.http!, lab.apiToken!, sites, 60_000);
    const primary = (await voiceRoute()).primary;
    t.ok(primary.links.length >= 2, `primary ${primary.links.join(',')} is multi-hop`);
    const te = await labTimeExceeded(sites.map((s) => `mrd-${s}`));
    // The controller may move the route while a burst runs (measured state): a few attempts.
    const quiet = { ok: () => true, comment: (m: string) => t.comment(m) };
    let exact = false;
    for (let i = 0; i < 3 && !exact; i++) {
      exact = await followed(quiet, 400, { exact: true });
      if (!exact) await sleep(3500);
    }
    if (exact) t.pass('400 packets along exactly the primary, none elsewhere');
    else await followed(t, 400, { exact: true });
    t.equal(await labTimeExceeded(sites.map((s) => `mrd-${s}`)), te, 'no TTL / hop limit expiry (no loop)');
  });

  await t.test('a link in the middle dies: fast reroute, convergence, restore', async (t) => {
    const primary = (await voiceRoute()).primary;
    const cut = primary.links[primary.links.length - 1]!;
    const logFile = path.join(stateDir, 'agent-ll-a.log');
    const frrEvents = (): number =>
      readFileSync(logFile, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"route":"voice/ll-d"') && l.includes('"activate-backup"')).length;
    // Start from the primary: a route may sit on its backup after a spurious switch (3 s hold).
    const quiet = { ok: () => true, comment: () => undefined };
    for (let i = 0; i < 5 && !(await followed(quiet, 100, { exact: true })); i++) await sleep(3500);
    const before = frrEvents();
    const rx = await startReceiver('mrd-ll-d', host('ll-d'), VOICE_PORT);
    const tx = startSender('mrd-ll-a', { src: host('ll-a'), dst: host('ll-d'), port: VOICE_PORT, pps: 50 });
    // Stopped on failure too: a live endpoint holds the test process open until tap's timeout.
    t.teardown(() => {
      tx.stop();
      rx.stop();
    });
    await sleep(1500);
    const failAt = Date.now();
    await labFault(cut, { kind: 'down' }, { stateDir });
    // Whoever is first moves the traffic: ll-a's fast reroute (probe loss on the path) or the
    // controller's recompute and push (the far end's probes of the cut link). Usually the agent;
    // on a loaded machine the controller sometimes wins, and then the agent has nothing to switch.
    const avoided = async (): Promise<boolean> =>
      !((await voiceRoute()).primary?.links ?? [cut]).includes(cut);
    const rerouted = await waitFor(
      'a reroute',
      async () => frrEvents() > before || (await avoided()),
      10_000,
    );
    const byAgent = frrEvents() > before;
    t.ok(
      rerouted,
      `voice/ll-d left ${cut}: ${byAgent ? "ll-a's fast reroute" : "the controller's push"} (log ${logFile})`,
    );
    const converged = await waitFor(
      'routes around the cut',
      async () => !((await voiceRoute()).primary?.links ?? [cut]).includes(cut),
      20_000,
    );
    t.ok(converged, `the controller's voice route avoids ${cut}`);
    await waitForPoliciesApplied(lab.controller.http!, lab.apiToken!, sites, 30_000);
    await sleep(1000);
    const log = await rx.take();
    const s = analyseStream(log, failAt, Date.now());
    t.ok(s.received > 0, `${s.received} packets arrived after the cut`);
    const tail = analyseStream(log, Date.now() - 1500, Date.now());
    t.ok(tail.received >= 50, `the stream flows again (${tail.received} in the last 1.5 s)`);
    t.equal(s.duplicated, 0, 'no duplicates');
    t.comment(`longest gap ${s.gapMs.toFixed(0)} ms, lost ${s.lost}, reordered ${s.reordered}`);
    await followed(t, 300);

    await labFault(cut, { kind: 'clear' }, { stateDir });
    const back = await waitFor(
      'routes back over the restored link',
      async () => ((await voiceRoute()).primary?.links ?? []).includes(cut),
      30_000,
    );
    t.ok(back, `the voice route uses ${cut} again`);
    await waitForPoliciesApplied(lab.controller.http!, lab.apiToken!, sites, 30_000);
    await sleep(3500);
    await followed(t, 300);
    tx.stop();
    rx.stop();
  });

  const owned = async (
    ns: string,
  ): Promise<{ rules: number; dupRules: number; routes: number; nft: number; dupNft: number }> => {
    const { execFileSync } = await import('node:child_process');
    const lines = (args: string[]): string[] =>
      execFileSync('ip', ['-n', ns, ...args], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.trim() !== '');
    const pref = (l: string): number => Number(l.split(':')[0]);
    const rules = [
      ...lines(['-4', 'rule']).map((l) => `4 ${l}`),
      ...lines(['-6', 'rule']).map((l) => `6 ${l}`),
    ].filter((l) => pref(l.slice(2)) >= 20000 && pref(l.slice(2)) <= 29999);
    const routes = lines(['route', 'show', 'table', 'all', 'proto', '77']).length;
    // Each rule with its chain: hop-by-hop transit chains (one per incoming link) may hold the same
    // line for different links, which is not a duplicate.
    let chain = '';
    const nft = execFileSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', 'meridian'], {
      encoding: 'utf8',
    })
      .split('\n')
      .map((l) => l.trim())
      .flatMap((l) => {
        const c = /^chain (\S+) \{/.exec(l);
        if (c !== null) chain = c[1] ?? '';
        return /meta mark set/.test(l) ? [`${chain}: ${l}`] : [];
      });
    return {
      rules: rules.length,
      dupRules: rules.length - new Set(rules).size,
      routes,
      nft: nft.length,
      dupNft: nft.length - new Set(nft).size,
    };
  };

  await t.test('agent restart (SIGKILL) re-applies its last policy without duplicates', async (t) => {
    const st0 = await waitForPoliciesApplied(lab.controller.http!, lab.apiToken!, sites, 30_000);
    const vBefore = st0.find((a) => a.site === 'll-a')?.appliedVersion;
    const before = await owned('mrd-ll-a');
    t.ok(before.rules > 0 && before.routes > 0 && before.nft > 0, JSON.stringify(before));
    const logFile = path.join(stateDir, 'agent-ll-a.log');
    const reapplied = (): number =>
      readFileSync(logFile, 'utf8')
        .split('\n')
        .filter((l) => l.includes('persisted policy re-applied')).length;
    const n0 = reapplied();
    await restartLabService('agent-ll-a', { stateDir, kill: true });
    t.ok(
      await waitFor('re-apply', async () => Promise.resolve(reapplied() > n0), 30_000),
      'persisted policy re-applied',
    );
    const st = await waitForPoliciesApplied(lab.controller.http!, lab.apiToken!, sites, 60_000);
    const after = await owned('mrd-ll-a');
    t.equal(after.dupRules, 0, 'no duplicate ip rules');
    t.equal(after.dupNft, 0, 'no duplicate nft rules');
    if (st.find((a) => a.site === 'll-a')?.appliedVersion === vBefore) {
      t.same(after, before, 'same policy version: the same rules, routes and nft rules');
    } else t.comment('a new policy version arrived meanwhile (measured state changed); counts not compared');
    await followed(t, 300);
  });

  await t.test('controller outage: agents keep forwarding, then re-sync', async (t) => {
    const before = await api<{ agents: { site: string; appliedVersion: number }[] }>('/api/v1/policies');
    const routeNow = await voiceRoute();
    await restartLabService('controller', { stateDir, restart: false });
    await sleep(1000);
    await followed(t, 300, { route: routeNow });
    await startLabService('controller', { stateDir });
    const st = await waitForPoliciesApplied(lab.controller.http!, lab.apiToken!, sites, 90_000);
    for (const a of st) {
      const old = before.agents.find((x) => x.site === a.site)?.appliedVersion ?? 0;
      t.ok((a.appliedVersion ?? 0) >= old, `${a.site}: v${a.appliedVersion} (was v${old}): never back`);
    }
    await followed(t, 300);
  });

  await t.test('lab down stops the services', async (t) => {
    const svc = JSON.parse(readFileSync(path.join(stateDir, 'services.json'), 'utf8')) as {
      services: { name: string; pid: number }[];
    };
    await labDown({ stateDir });
    for (const s of svc.services) {
      let alive: boolean;
      try {
        alive = readFileSync(`/proc/${s.pid}/cmdline`, 'utf8').includes('meridian.js');
      } catch {
        alive = false;
      }
      t.notOk(alive, `${s.name} (pid ${s.pid}) stopped`);
    }
  });
});
