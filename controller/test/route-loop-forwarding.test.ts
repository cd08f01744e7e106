/**
 * Forwarding modes in the closed loop: the agents' hello capabilities -> the route loop's SRv6
 * site set -> a compile and a new version at once (auto), nothing in forced modes. Raw agent
 * streams on loopback against a real controller.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import type { Controller, CycleRecord } from '../src/index';
import {
  AGENT_TOKEN,
  eventually,
  hello,
  openStream,
  smallTopology,
  startController,
  type TestStream,
} from './helpers';
import { planFor, RecordingApplier, startEdgeAgent } from './policy-helpers';

const plan = planFor(smallTopology());
const SITES = ['bj1', 'sh1', 'sh2'];

const caps = (modes: string[]) => ({
  modes,
  platform: 'linux',
  platformVersion: '6.1.0',
  features: ['nftables', 'policy-routing'],
  missing: [],
});

async function connect(c: Controller, site: string, modes: string[], instance = `i-${site}`) {
  const s = openStream(c.ports.grpc);
  const h = hello(site, 9100 + SITES.indexOf(site), AGENT_TOKEN, instance);
  s.call.write({ hello: { ...h.hello, forwarding: caps(modes) } });
  await s.waitFor((m) => 'welcome' in m && !!m.welcome);
  return s;
}

const total = (r: CycleRecord): number => (r.modes ? r.modes.srv6 + r.modes['hop-by-hop'] : NaN);
const capabilityCycles = (c: Controller): CycleRecord[] =>
  c.routeLoop.cycles().filter((r) => r.trigger === 'capabilities');

/** The compiled routes' modes of a site's current policy. */
async function routeModes(c: Controller, site: string): Promise<string[]> {
  const ref = c.policies.current().get(site)!;
  const p = (await c.policies.get(site, ref.version))! as unknown as { routes: { forwarding?: string }[] };
  return [...new Set(p.routes.map((r) => r.forwarding ?? 'srv6'))].sort();
}

t.test('auto: SRv6 once every site says so; a change compiles and pushes at once', async (t) => {
  // Quality changes would wait a minute: a capability change must not.
  const c = await startController({ addressing: plan, routeLoop: { qualityIntervalMs: 60_000 } });
  t.teardown(() => c.stop());
  const start = c.routeLoop.cycles().find((r) => r.trigger === 'start')!;
  t.ok(start.version !== null, 'initial version issued');
  const routes = total(start);
  t.ok(routes > 0);
  t.same(start.modes, { srv6: 0, 'hop-by-hop': routes }, 'no agent said anything: hop-by-hop');
  t.equal(c.routeLoop.forwarding, 'auto');

  const streams: TestStream[] = [];
  streams.push(await connect(c, 'bj1', ['srv6', 'hop-by-hop']));
  streams.push(await connect(c, 'sh1', ['srv6', 'hop-by-hop']));
  t.teardown(() => streams.forEach((s) => s.close()));
  t.same([...c.routeLoop.srv6Sites].sort(), ['bj1', 'sh1']);
  const two = await eventually(
    () => capabilityCycles(c).find((r) => r.modes !== null && r.modes.srv6 > 0 && r.version !== null),
    10_000,
    'a capabilities cycle compiling SRv6 for bj1 <-> sh1 only',
  );
  t.ok(two.modes!['hop-by-hop'] > 0, 'routes through or to sh2 stay hop-by-hop');

  streams.push(await connect(c, 'sh2', ['srv6', 'hop-by-hop']));
  const all = await eventually(
    () => capabilityCycles(c).find((r) => r.modes?.srv6 === routes && r.version !== null),
    10_000,
    'every route SRv6 once sh2 says so',
  );
  t.same(all.modes, { srv6: routes, 'hop-by-hop': 0 });
  t.ok(all.sites.length > 0, 'a version issued');
  t.same(await routeModes(c, 'bj1'), ['srv6']);

  // An agent going away keeps its site's last known capabilities: nothing to compile.
  const cyclesBefore = capabilityCycles(c).length;
  const gone = new Promise<void>((resolve) =>
    c.once('agent-disconnected', (p) => (p.site === 'sh2' ? resolve() : undefined)),
  );
  streams.pop()!.close();
  await gone;
  t.ok(c.routeLoop.srv6Sites.has('sh2'), 'sh2 still counts as SRv6 while its agent is away');
  t.equal(capabilityCycles(c).length, cyclesBefore, 'no capabilities cycle queued');

  // The agent comes back on a kernel without SRv6: routes touching sh2 go hop-by-hop at once.
  streams.push(await connect(c, 'sh2', ['hop-by-hop'], 'i-sh2-new'));
  t.notOk(c.routeLoop.srv6Sites.has('sh2'));
  const back = await eventually(
    () =>
      capabilityCycles(c)
        .slice(cyclesBefore)
        .find((r) => r.version !== null),
    10_000,
    'a capabilities cycle after sh2 lost SRv6',
  );
  t.ok(back.modes!['hop-by-hop'] > 0 && back.modes!.srv6 > 0, JSON.stringify(back.modes));
  t.ok(back.timings.detectMs < 1000, `compiled at once (detect ${back.timings.detectMs} ms)`);
  t.same(await routeModes(c, 'sh2'), ['hop-by-hop']);
});

t.test('forced modes: every route in that mode whatever the agents say', async (t) => {
  for (const forced of ['srv6', 'hop-by-hop'] as const) {
    await t.test(forced, async (t) => {
      const c = await startController({ addressing: plan, forwarding: forced });
      t.teardown(() => c.stop());
      t.equal(c.routeLoop.forwarding, forced);
      const start = c.routeLoop.cycles().find((r) => r.trigger === 'start')!;
      const routes = total(start);
      t.same(
        start.modes,
        forced === 'srv6' ? { srv6: routes, 'hop-by-hop': 0 } : { srv6: 0, 'hop-by-hop': routes },
      );
      const other = forced === 'srv6' ? ['hop-by-hop'] : ['srv6', 'hop-by-hop'];
      const streams: TestStream[] = [];
      for (const site of SITES) streams.push(await connect(c, site, other));
      t.teardown(() => streams.forEach((s) => s.close()));
      // The set is taken (synchronously, in the hello's handling) but schedules nothing.
      t.same([...c.routeLoop.srv6Sites].sort(), forced === 'srv6' ? [] : SITES);
      t.same(capabilityCycles(c), [], 'no capabilities cycle');
      for (const site of SITES) t.same(await routeModes(c, site), [forced], `${site}: ${forced}`);
    });
  }
});

t.test('meridian controller --forwarding: a bad value exits 2 naming the choices', (t) => {
  const bin = path.resolve(__dirname, '..', '..', 'bin', 'meridian.js');
  const r = spawnSync(process.execPath, [bin, 'controller', '--forwarding', 'mpls'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, "--forwarding: expected auto, srv6, hop-by-hop, got 'mpls'");
  t.match(r.stderr, '--forwarding MODE', 'usage follows');
  const help = spawnSync(process.execPath, [bin, 'controller', '--help'], { encoding: 'utf8' });
  t.match(help.stdout, '[--forwarding auto|srv6|hop-by-hop]');
  t.end();
});

t.test("real edge agents: the applier's capabilities reach the controller in the hello", async (t) => {
  const c = await startController({ addressing: plan });
  t.teardown(() => c.stop());
  const srv6 = caps(['srv6', 'hop-by-hop']);
  const applier = Object.assign(new RecordingApplier(), { capabilities: () => Promise.resolve(srv6) });
  const agent = startEdgeAgent('bj1', c.ports.grpc, applier);
  t.teardown(() => agent.stop());
  await agent.start();
  await eventually(() => c.gateway.presence('bj1')?.connected === true, 10_000, 'bj1 connected');
  t.same(c.gateway.presence('bj1')?.forwarding, srv6);
  t.ok(c.routeLoop.srv6Sites.has('bj1'));
});
