/**
 * The closed loop: link changes -> routes (hysteresis) -> policy versions -> agents -> acks, with
 * real edge agents (in process, injected applier) and raw gRPC agents on loopback.
 */
import t, { type Test } from 'tap';
import type { ControllerOptions } from '../src/index';
import type { Route, RouteChange, Topology } from '@meridian/topology';
import { eventually, hello, openStream, report, sleep, smallTopology, startController } from './helpers';
import { allApplied, connectAgents, planFor, RecordingApplier, startEdgeAgent } from './policy-helpers';

const SITES = ['bj1', 'sh1', 'sh2'];
const plan = planFor(smallTopology());

const primaryOf = (routes: readonly Route[], src: string, dst: string): string[] | null => {
  const p = routes.find((r) => r.class === 'voice' && r.src === src && r.dst === dst)?.primary;
  return p ? [...p.links] : null;
};

t.test(
  'real edge agents: a site goes dark -> routes change -> new version pushed, acked; it comes back -> re-sent',
  async (t) => {
    const c = await startController({ addressing: plan });
    t.teardown(() => c.stop());
    const appliers = new Map(SITES.map((s) => [s, new RecordingApplier()]));
    const agents = new Map(SITES.map((s) => [s, startEdgeAgent(s, c.ports.grpc, appliers.get(s)!)]));
    t.teardown(async () => {
      for (const a of agents.values()) await a.stop();
    });
    for (const a of agents.values()) await a.start();

    t.test('the first policy of every site is applied', async (t) => {
      await eventually(() => allApplied(c, SITES), 15_000, 'all applied');
      for (const s of SITES) {
        const st = c.distributor.statusOf(s)!;
        t.equal(appliers.get(s)!.current.version, st.version, `${s} applied its current version`);
        t.equal(appliers.get(s)!.current.hash, st.hash);
        t.equal(st.error, null);
      }
    });

    t.test('sh1 stops: its links go down, bj1 and sh2 get a new version and apply it', async (t) => {
      const changes: RouteChange[] = [];
      c.on('routes-changed', (ch) => changes.push(...ch));
      const applied: { site: string; version: number }[] = [];
      c.on('policy-applied', (p) => applied.push(p));
      const before = new Map(SITES.map((s) => [s, c.distributor.statusOf(s)!.version]));
      await agents.get('sh1')!.stop();
      await eventually(
        () =>
          c.routes.find((r) => r.class === 'voice' && r.src === 'bj1' && r.dst === 'sh1')?.status ===
          'unreachable',
        15_000,
        'bj1 -> sh1 unreachable',
      );
      t.ok(
        changes.some((ch) => ch.src === 'bj1' && ch.dst === 'sh1'),
        'routes-changed names bj1 -> sh1',
      );
      await eventually(
        () =>
          ['bj1', 'sh2'].every((s) => {
            const st = c.distributor.statusOf(s)!;
            return (
              st.version > before.get(s)! &&
              st.status === 'applied' &&
              appliers.get(s)!.current.version === st.version
            );
          }),
        15_000,
        'bj1 and sh2 applied a newer version',
      );
      t.ok(
        applied.some((p) => p.site === 'bj1' && p.version > before.get('bj1')!),
        'policy-applied event',
      );
      const bj1 = JSON.parse(appliers.get('bj1')!.pushes.at(-1)!.policyJson) as {
        routes: { dst: string; status: string }[];
      };
      // Fail static: the routes API says unreachable, forwarding keeps the last path (marked
      // degraded): sh1's routers may still forward with only its agent gone.
      const toSh1 = bj1.routes.filter((r) => r.dst === 'sh1');
      t.ok(toSh1.length > 0, 'bj1 keeps forwarding state towards sh1');
      t.ok(
        toSh1.every((r) => r.status === 'degraded'),
        'marked degraded',
      );
      const sh1 = c.distributor.statusOf('sh1')!;
      t.equal(sh1.connected, false);
      // sh1's own routes all became unreachable: a new version (kept paths, degraded) waits for it.
      t.ok(sh1.version > before.get('sh1')!, 'sh1 has a newer target');
      t.equal(sh1.status, 'pending');
      const cycle = await eventually(
        () =>
          c.routeLoop
            .cycles()
            .find(
              (r) =>
                r.trigger === 'link-change' &&
                r.version !== null &&
                r.sites.includes('bj1') &&
                r.timings.ackMs !== null,
            ),
        10_000,
        'a settled cycle',
      );
      t.ok(cycle.links.length > 0, 'the cycle names its links');
      for (const k of [
        'detectMs',
        'computeMs',
        'compileMs',
        'storeMs',
        'pushMs',
        'ackMs',
        'totalMs',
      ] as const) {
        t.type(cycle.timings[k], 'number', `timing ${k}`);
      }
      t.ok(cycle.acked >= 1);
    });

    t.test('sh1 starts again: the current version is re-sent and applied', async (t) => {
      const target = c.distributor.statusOf('sh1')!;
      const a = startEdgeAgent('sh1', c.ports.grpc, appliers.get('sh1')!);
      agents.set('sh1', a);
      await a.start();
      await eventually(
        () => {
          const st = c.distributor.statusOf('sh1')!;
          return st.status === 'applied' && appliers.get('sh1')!.current.version === st.version;
        },
        15_000,
        'sh1 applied',
      );
      t.ok(
        appliers.get('sh1')!.pushes.some((p) => Number(p.version) >= target.version),
        'sh1 got the version made while it was away',
      );
    });
  },
);

/** Two sites joined by two parallel links: the only flapping candidate is the primary itself. */
function pairTopology(): Topology {
  const t = smallTopology();
  return {
    ...t,
    sites: t.sites.filter((s) => s.id !== 'sh2'),
    links: t.links.filter((l) => l.id === 'bj1-sh1-a' || l.id === 'bj1-sh1-b'),
  };
}

/**
 * The two-site loop of the tests below: controller with `opts`, both agents connected and applied,
 * bj1's two links to sh1 measured at their nominal 10 ms (RTT 20) and up.
 */
async function startPairLoop(t: Test, opts: Partial<ControllerOptions>) {
  const topology = pairTopology();
  const sites = ['bj1', 'sh1'];
  const c = await startController({ topology, addressing: planFor(topology), ...opts });
  t.teardown(() => c.stop());
  const agents = await connectAgents(c, sites);
  t.teardown(() => {
    for (const a of agents.values()) a.close();
  });
  await eventually(() => allApplied(c, sites), 10_000, 'all applied');
  const bj1 = agents.get('bj1')!.stream!;
  bj1.call.write(report('bj1-sh1-a', 'sh1', 20, 20));
  bj1.call.write(report('bj1-sh1-b', 'sh1', 20, 20));
  await eventually(
    () => c.estimator.snapshot('bj1-sh1-b')?.up === true && c.estimator.snapshot('bj1-sh1-a')?.up === true,
  );
  return { c, sites, agents, bj1 };
}

t.test('a link going down moves routes at once; quality changes wait for the quality interval', async (t) => {
  const { c, bj1 } = await startPairLoop(t, { routeLoop: { qualityIntervalMs: 60_000 } });
  // The first link change ran at once (no cycle before it to wait after); let it finish.
  for (let seen = -1; seen !== c.routeLoop.counters.cycles;) {
    seen = c.routeLoop.counters.cycles;
    await sleep(300);
  }
  t.same(primaryOf(c.routes, 'bj1', 'sh1'), ['bj1-sh1-a']);
  const cycles = c.routeLoop.counters.cycles;
  // a slows from 10 to 30 ms one way: a quality change, held for the interval (60 s here).
  for (let i = 0; i < 6; i++) bj1.call.write(report('bj1-sh1-a', 'sh1', 10, 60));
  await eventually(() => (c.estimator.snapshot('bj1-sh1-a')?.latencyMs ?? 0) > 20, 10_000, 'a measured slow');
  await sleep(500);
  t.equal(c.routeLoop.counters.cycles, cycles, 'no cycle for a quality change inside the interval');
  t.same(primaryOf(c.routes, 'bj1', 'sh1'), ['bj1-sh1-a'], 'the route waits');
  // a dies: urgent. The cycle runs now and applies the held change with it.
  bj1.call.write(report('bj1-sh1-a', 'sh1', 0, 0, 3));
  await eventually(() => primaryOf(c.routes, 'bj1', 'sh1')?.[0] === 'bj1-sh1-b', 10_000, 'moved to b');
  const last = c.routeLoop.cycles().at(-1)!;
  t.ok(last.links.includes('bj1-sh1-a'), 'the down link is in the cycle');
  t.equal(c.estimator.snapshot('bj1-sh1-a')?.up, false);
});

t.test('hysteresis: metrics flapping inside the margin push nothing; a change beyond it does', async (t) => {
  const { c, sites, agents, bj1 } = await startPairLoop(t, {
    hysteresis: { relativePct: 10, absolute: { latency: 2 } },
  });
  await sleep(100);
  await eventually(() => allApplied(c, sites), 10_000, 'settled');
  t.same(primaryOf(c.routes, 'bj1', 'sh1'), ['bj1-sh1-a']);
  const versions = c.policies.versions().length;
  const pushes = c.distributor.counters.pushes;
  const cycles = c.routeLoop.counters.cycles;

  t.test('flapping within 2 ms / 10 %', async (t) => {
    // bj1-sh1-b wobbles between 8.5 and 11.5 ms: the pure optimum flips, the margin holds.
    let flips = 0;
    for (let i = 0; i < 12; i++) {
      bj1.call.write(report('bj1-sh1-b', 'sh1', 8, i % 2 === 0 ? 17 : 23));
      await sleep(40);
      const lat = c.estimator.snapshot('bj1-sh1-b')?.latencyMs ?? 10;
      if (lat < (c.estimator.snapshot('bj1-sh1-a')?.latencyMs ?? 10)) flips++;
    }
    await eventually(() => c.routeLoop.counters.cycles > cycles + 2, 10_000, 'the loop saw the changes');
    await sleep(200);
    t.ok(flips > 0, 'the pure optimum did flip to bj1-sh1-b at times');
    t.equal(c.policies.versions().length, versions, 'no new policy version');
    t.equal(c.distributor.counters.pushes, pushes, 'nothing pushed');
    t.same(primaryOf(c.routes, 'bj1', 'sh1'), ['bj1-sh1-a'], 'the primary stays');
  });

  t.test('bj1-sh1-a slows to 30 ms: voice moves, both sites get a version', async (t) => {
    for (let i = 0; i < 6; i++) {
      bj1.call.write(report('bj1-sh1-a', 'sh1', 10, 60));
      bj1.call.write(report('bj1-sh1-b', 'sh1', 10, 20));
      await sleep(30);
    }
    await eventually(() => primaryOf(c.routes, 'bj1', 'sh1')?.[0] === 'bj1-sh1-b', 10_000, 'voice moved');
    await eventually(() => c.policies.versions().length > versions, 10_000, 'a version');
    const meta = c.policies.versions().at(-1)!;
    t.equal(meta.reason, 'routes');
    t.same(meta.sites, ['bj1', 'sh1']);
    await eventually(() => allApplied(c, sites), 10_000, 'applied');
    t.equal(agents.get('bj1')!.applied.version, c.distributor.statusOf('bj1')!.version);
  });
});

t.test(
  'hysteresis on backup paths: a noisy link does not flip the backups of routes elsewhere',
  async (t) => {
    const c = await startController({ addressing: plan });
    t.teardown(() => c.stop());
    const agents = await connectAgents(c, SITES);
    t.teardown(() => {
      for (const a of agents.values()) a.close();
    });
    await eventually(() => allApplied(c, SITES), 10_000, 'all applied');
    const bj1 = agents.get('bj1')!.stream!;
    bj1.call.write(report('bj1-sh1-a', 'sh1', 20, 20));
    bj1.call.write(report('bj1-sh1-b', 'sh1', 20, 20));
    await sleep(300);
    await eventually(() => allApplied(c, SITES), 10_000, 'settled');
    const versions = c.policies.versions().length;
    for (let i = 0; i < 12; i++) {
      bj1.call.write(report('bj1-sh1-b', 'sh1', 8, i % 2 === 0 ? 17 : 23));
      await sleep(40);
    }
    await sleep(300);
    t.equal(c.policies.versions().length, versions, 'no new policy version');
  },
);

t.test('without an addressing plan: routes follow link state, nothing is compiled or pushed', async (t) => {
  const c = await startController();
  t.teardown(() => c.stop());
  const s = openStream(c.ports.grpc);
  t.teardown(() => s.close());
  s.call.write(hello('bj1', 9100));
  await s.waitFor((m) => 'welcome' in m && !!m.welcome);
  const changed = new Promise<RouteChange[]>((resolve) => c.once('routes-changed', resolve));
  s.call.write(report('bj1-sh1-a', 'sh1', 0, 0, 5));
  const changes = await changed;
  t.ok(
    changes.some((ch) => ch.reason === 'down'),
    'a route left the dead link',
  );
  t.same(primaryOf(c.routes, 'bj1', 'sh1'), ['bj1-sh1-b']);
  t.equal(c.policies.versions().length, 0, 'no version');
  t.equal(c.routeLoop.distributing, false);
  t.notOk(
    s.received.some((m) => 'policy' in m && !!m.policy),
    'no push',
  );
});
