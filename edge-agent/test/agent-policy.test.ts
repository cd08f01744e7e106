// The real PolicyApplier (agent-policy.ts) against a recording fake driver: validation, version
// ordering, driver failures, persistence and re-apply on restart. No root needed; the Linux
// driver under the applier is exercised end to end by ops/test/lab-loop.test.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import pino from 'pino';
import type { Path, Route, Topology } from '@meridian/topology';
import { compilePolicies } from '@meridian/controller';
import { defaultAddressingPlan } from '@meridian/ops';
import {
  DriverError,
  DriverPolicyApplier,
  policyHash,
  type ApplyOutcome,
  type DriverSnapshot,
  type PolicyDriver,
  type ForwardingCapabilities,
  type RerouteOutcome,
  type SitePolicy,
} from '../src/index';

const link = (id: string, a: string, b: string) => ({
  id,
  a,
  b,
  transport: 'fiber' as const,
  capacityMbps: 100,
  latencyMs: 2,
  jitterMs: 0,
  lossPct: 0,
  cost: 1,
});
const topology: Topology = {
  version: 1,
  source: '<inline>',
  sites: [
    { id: 'a', kind: 'edge', region: 'r', prefixes: ['10.1.0.0/24'] },
    { id: 'b', kind: 'dc', region: 'r', prefixes: ['10.2.0.0/24'] },
    { id: 'c', kind: 'edge', region: 'r', prefixes: ['10.3.0.0/24'] },
  ],
  links: [link('a-b', 'a', 'b'), link('b-c', 'b', 'c'), link('a-c', 'a', 'c')],
  classes: [
    {
      id: 'voice',
      sla: { maxLatencyMs: 100, maxJitterMs: 10, maxLossPct: 1 },
      objective: 'latency',
      maxUtilPct: 100,
      priority: 1,
      match: { dscp: [46], protocol: 'udp' },
    },
  ],
  devices: [],
};
const p = (sites: string[], links: string[]): Path => ({
  sites,
  links,
  latencyMs: 0,
  jitterMs: 0,
  lossPct: 0,
  cost: 0,
  hops: links.length,
});
const routes: Route[] = [
  {
    class: 'voice',
    src: 'a',
    dst: 'c',
    status: 'ok',
    primary: p(['a', 'c'], ['a-c']),
    backup: p(['a', 'b', 'c'], ['a-b', 'b-c']),
  },
];
const base = compilePolicies(topology, routes, defaultAddressingPlan(topology)).get('a') as SitePolicy;

/** The policy of site a with a version (and, with `drop`, without its routes: other content). */
function version(v: number, drop = false): SitePolicy {
  const { version: _v, hash: _h, ...content } = base;
  const c = drop ? { ...content, routes: [] } : content;
  return { ...c, version: v, hash: policyHash(c) };
}
const push = (pol: SitePolicy) => ({ version: pol.version, hash: pol.hash, policyJson: JSON.stringify(pol) });

class FakeDriver implements PolicyDriver {
  readonly kind = 'linux' as const;
  applied: SitePolicy[] = [];
  failNext: DriverError | null = null;
  backups = new Set<number>();
  capabilities(): Promise<ForwardingCapabilities> {
    return Promise.resolve({
      platform: 'linux',
      platformVersion: 'fake',
      modes: ['srv6', 'hop-by-hop'],
      features: [],
      missing: [],
    });
  }
  apply(policy: SitePolicy): Promise<ApplyOutcome> {
    if (this.failNext !== null) {
      const error = this.failNext;
      this.failNext = null;
      return Promise.resolve({ ok: false, error, inForce: this.applied.at(-1)?.hash ?? null });
    }
    this.applied.push(policy);
    return Promise.resolve({ ok: true, hash: policy.hash, changes: 1, removed: 0 });
  }
  read(): Promise<DriverSnapshot> {
    const cur = this.applied.at(-1);
    return Promise.resolve({
      hash: cur?.hash ?? null,
      version: cur?.version ?? null,
      routes: (cur?.routes ?? []).map((r) => ({
        slot: r.slot,
        active: this.backups.has(r.slot) ? ('backup' as const) : ('primary' as const),
      })),
      objects: 0,
    });
  }
  activateBackup(): Promise<RerouteOutcome> {
    return Promise.resolve({ ok: true, changed: true });
  }
  activatePrimary(): Promise<RerouteOutcome> {
    return Promise.resolve({ ok: true, changed: true });
  }
  removeAll(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const log = pino({ level: 'silent' });

function setup(t: { teardown: (fn: () => void) => void }): {
  dir: string;
  driver: FakeDriver;
  applier: DriverPolicyApplier;
} {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meridian-agent-policy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const driver = new FakeDriver();
  return { dir, driver, applier: new DriverPolicyApplier({ driver, site: 'a', stateDir: dir, log }) };
}

t.test('applies, acks the version, persists it', async (t) => {
  const { dir, driver, applier } = setup(t);
  const seen: number[] = [];
  applier.onApplied((pol) => seen.push(pol.version));
  const r = await applier.apply(push(version(3)));
  t.same(r, { ok: true, errorCode: '', errorMessage: '', appliedVersion: 3 });
  t.same(applier.applied(), { version: 3, hash: version(3).hash });
  t.equal(driver.applied.length, 1);
  t.same(seen, [3], 'listeners (fast reroute) hear of it');
  const onDisk = JSON.parse(readFileSync(path.join(dir, 'policy.json'), 'utf8')) as SitePolicy;
  t.equal(onDisk.version, 3);
});

t.test('invalid pushes are refused with a typed code; the previous policy stays', async (t) => {
  const { driver, applier } = setup(t);
  await applier.apply(push(version(2)));
  const cases: [string, { version: number; hash: string; policyJson: string }][] = [
    ['not JSON', { version: 3, hash: version(3).hash, policyJson: '{' }],
    ['schema', { version: 3, hash: version(3).hash, policyJson: JSON.stringify({ ...version(3), site: 7 }) }],
    [
      'hash',
      {
        version: 3,
        hash: version(3).hash,
        policyJson: JSON.stringify({ ...version(3), hash: 'f'.repeat(64) }),
      },
    ],
    ['push/content mismatch', { version: 4, hash: version(3).hash, policyJson: JSON.stringify(version(3)) }],
    ['other site', { ...push(version(3)), policyJson: JSON.stringify({ ...version(3), site: 'b' }) }],
  ];
  for (const [what, bad] of cases) {
    const r = await applier.apply(bad);
    t.equal(r.ok, false, what);
    t.equal(r.errorCode, 'AGENT_ERR_POLICY_INVALID', what);
    t.equal(r.appliedVersion, 2, `${what}: v2 still in force`);
    t.not(r.errorMessage, '', `${what}: a message`);
  }
  t.equal(driver.applied.length, 1, 'the driver never saw them');
  t.same(applier.applied().version, 2);
});

t.test('never goes back a version; the same version is re-applied', async (t) => {
  const { driver, applier } = setup(t);
  await applier.apply(push(version(5)));
  const old = await applier.apply(push(version(4)));
  t.equal(old.errorCode, 'AGENT_ERR_POLICY_STALE');
  t.equal(old.appliedVersion, 5);
  const other = await applier.apply(push(version(5, true)));
  t.equal(other.errorCode, 'AGENT_ERR_POLICY_STALE', 'same number, other content');
  const again = await applier.apply(push(version(5)));
  t.equal(again.ok, true, 'the same version again is fine (reconciles)');
  t.equal(driver.applied.length, 2);
  t.equal((await applier.apply(push(version(6, true)))).appliedVersion, 6);
});

t.test('a driver failure is acked with its code; the previous version stays', async (t) => {
  const { dir, driver, applier } = setup(t);
  await applier.apply(push(version(1)));
  driver.failNext = new DriverError('AGENT_ERR_DRIVER_APPLY', 'device refused', { detail: 'RTNETLINK' });
  const r = await applier.apply(push(version(2)));
  t.equal(r.ok, false);
  t.equal(r.errorCode, 'AGENT_ERR_DRIVER_APPLY');
  t.match(r.errorMessage, /RTNETLINK/);
  t.equal(r.appliedVersion, 1);
  t.equal(applier.applied().version, 1);
  t.equal((JSON.parse(readFileSync(path.join(dir, 'policy.json'), 'utf8')) as SitePolicy).version, 1);
});

t.test('restart: the persisted policy is re-applied before the controller is reached', async (t) => {
  const { dir, driver, applier } = setup(t);
  await applier.apply(push(version(7)));
  driver.backups.add(version(7).routes[0]!.slot);
  const driver2 = new FakeDriver();
  driver2.backups = driver.backups;
  const restarted = new DriverPolicyApplier({ driver: driver2, site: 'a', stateDir: dir, log });
  let active: ReadonlySet<number> = new Set();
  restarted.onApplied((_p, a) => (active = a));
  t.same(await restarted.restore(), { restored: true, version: 7 });
  t.same(restarted.applied(), { version: 7, hash: version(7).hash }, 'hello will say v7');
  t.equal(driver2.applied.length, 1, 'reconciled through the driver');
  t.ok(active.has(version(7).routes[0]!.slot), 'routes left on backup are reported to fast reroute');
  t.equal(
    (await restarted.apply(push(version(6)))).errorCode,
    'AGENT_ERR_POLICY_STALE',
    'still no going back',
  );

  writeFileSync(path.join(dir, 'policy.json'), '{"broken"');
  const third = new DriverPolicyApplier({ driver: new FakeDriver(), site: 'a', stateDir: dir, log });
  const r = await third.restore();
  t.equal(r.restored, false, 'a corrupt file is ignored');
  t.equal(third.applied().version, 0);
  const none = new DriverPolicyApplier({ driver: new FakeDriver(), site: 'a', stateDir: null, log });
  t.same(await none.restore(), { restored: false, version: 0 });
});

t.test('driver operations never interleave', async (t) => {
  const { applier } = setup(t);
  const order: string[] = [];
  const slow = (name: string, ms: number) =>
    applier.exclusive(async () => {
      order.push(`${name}+`);
      await new Promise((r) => setTimeout(r, ms));
      order.push(`${name}-`);
    });
  await Promise.all([
    slow('a', 30),
    slow('b', 1),
    applier.apply(push(version(1))).then(() => order.push('apply')),
  ]);
  t.same(order, ['a+', 'a-', 'b+', 'b-', 'apply']);
});
