// The RouterOS driver against the protocol-level simulator (real TCP, real node-routeros).
import t from 'tap';
import type { Path, Route, Topology } from '@meridian/topology';
import { compilePolicies } from '@meridian/controller';
import { defaultAddressingPlan } from '@meridian/ops';
import { RouterOsPolicyDriver, pathProbePort, policyHash, type SitePolicy } from '../src/index';
import { RouterOsSim, SentenceDecoder, encodeSentence } from './routeros-sim';

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
    { id: 'c', kind: 'dc', region: 'r', prefixes: ['10.3.0.0/24'] },
    { id: 'd', kind: 'edge', region: 'r', prefixes: ['10.4.0.0/24', '10.44.0.0/16'] },
  ],
  links: [link('a-b', 'a', 'b'), link('b-d', 'b', 'd'), link('a-c', 'a', 'c'), link('c-d', 'c', 'd')],
  classes: [
    {
      id: 'voice',
      sla: { maxLatencyMs: 100, maxJitterMs: 10, maxLossPct: 1 },
      objective: 'latency',
      maxUtilPct: 100,
      priority: 1,
      match: { dscp: [46, 34], protocol: 'udp', ports: [5004] },
    },
    {
      id: 'bulk',
      sla: { maxLatencyMs: 1000, maxJitterMs: 100, maxLossPct: 5 },
      objective: 'cost',
      maxUtilPct: 100,
      priority: 5,
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
    dst: 'd',
    status: 'ok',
    primary: p(['a', 'b', 'd'], ['a-b', 'b-d']),
    backup: p(['a', 'c', 'd'], ['a-c', 'c-d']),
  },
  {
    class: 'bulk',
    src: 'a',
    dst: 'd',
    status: 'ok',
    primary: p(['a', 'c', 'd'], ['a-c', 'c-d']),
    backup: null,
  },
  {
    class: 'bulk',
    src: 'a',
    dst: 'b',
    status: 'ok',
    primary: p(['a', 'b'], ['a-b']),
    backup: p(['a', 'c', 'd', 'b'], ['a-c', 'c-d', 'b-d']),
  },
];
const plan = defaultAddressingPlan(topology);
const pa = compilePolicies(topology, routes, plan).get('a') as SitePolicy;
const withoutBulkToB = (() => {
  const { version: _v, hash: _h, ...content } = pa;
  const c = { ...content, routes: pa.routes.filter((r) => !(r.class === 'bulk' && r.dst === 'b')) };
  return { ...c, version: 2, hash: policyHash(c) };
})();

/** The configuration without `.id`s, sorted: what two equal applies must agree on. */
function shape(sim: RouterOsSim): string[] {
  const out: string[] = [];
  for (const [menu, rows] of sim.config) {
    for (const r of rows) {
      const { '.id': _id, ...rest } = r;
      out.push(`${menu} ${JSON.stringify(Object.entries(rest).sort())}`);
    }
  }
  return out.sort();
}

async function setup(t: {
  teardown: (f: () => Promise<void>) => void;
}): Promise<{ sim: RouterOsSim; driver: RouterOsPolicyDriver }> {
  const sim = new RouterOsSim();
  const port = await sim.start();
  const driver = new RouterOsPolicyDriver({
    host: '127.0.0.1',
    port,
    user: 'admin',
    password: 'secret',
    timeoutMs: 2000,
  });
  t.teardown(async () => {
    await driver.close();
    await sim.close();
  });
  return { sim, driver };
}

t.test('wire format: lengths of every size round-trip', (t) => {
  const dec = new SentenceDecoder();
  const words = [
    '/x',
    'a'.repeat(0x7f),
    'b'.repeat(0x80),
    'c'.repeat(0x3fff),
    'd'.repeat(0x4000),
    'e'.repeat(0x200000),
  ];
  const bytes = encodeSentence(words);
  const got: string[][] = [];
  for (let i = 0; i < bytes.length; i += 7777) got.push(...dec.push(bytes.subarray(i, i + 7777)));
  t.same(got, [words]);
  t.end();
});

t.test('apply renders the documented mapping and is idempotent', async (t) => {
  const { sim, driver } = await setup(t);
  const r = await driver.apply(pa);
  t.ok(r.ok, r.ok ? 'applied' : r.error.message);
  const tables = sim
    .rows('/routing/table')
    .map((x) => x['name'])
    .sort();
  const voice = pa.routes.find((x) => x.class === 'voice')!;
  t.ok(
    tables.includes(`mrd-${voice.slot}-p`) && tables.includes(`mrd-${voice.slot}-b`),
    'primary and backup tables',
  );
  const vr = sim.rows('/ip/route').filter((x) => x['routing-table'] === `mrd-${voice.slot}-p`);
  t.same(vr.map((x) => [x['dst-address'], x['gateway']]).sort(), [
    ['10.4.0.0/24', voice.primary.nextHop4],
    ['10.44.0.0/16', voice.primary.nextHop4],
  ]);
  const vm = sim
    .rows('/ip/firewall/mangle')
    .filter((x) => x['new-routing-mark'] === `mrd-${voice.slot}-p`)
    .filter((x) => !('src-port' in x));
  t.equal(vm.length, 2 * 2 * 2, 'two chains × two prefixes × two DSCP values');
  t.ok(vm.every((x) => x['protocol'] === 'udp' && x['dst-port'] === '5004' && x['passthrough'] === 'no'));
  const mangle = sim.rows('/ip/firewall/mangle').filter((x) => x['chain'] === 'prerouting');
  const firstBulk = mangle.findIndex((x) => !('dscp' in x));
  t.ok(
    firstBulk > 0 && mangle.slice(firstBulk).every((x) => !('dscp' in x)),
    'classified rules before the default class',
  );
  t.equal((await driver.read()).hash, pa.hash);
  const before = shape(sim);
  const again = await driver.apply(pa);
  t.same(again, { ok: true, hash: pa.hash, changes: 0, removed: 0 });
  await driver.close();
  const restarted = new RouterOsPolicyDriver({
    host: '127.0.0.1',
    port: sim.port,
    user: 'admin',
    password: 'secret',
  });
  t.teardown(() => restarted.close());
  const r2 = await restarted.apply(pa);
  t.ok(r2.ok && r2.changes === 0, 'a restarted agent finds everything in place');
  t.same(shape(sim), before, 'no duplicates');
});

t.test('fast reroute switches the marks; re-apply keeps the backup; stale and foreign', async (t) => {
  const { sim, driver } = await setup(t);
  await driver.apply(pa);
  const voice = pa.routes.find((x) => x.class === 'voice')!;
  t.same(await driver.activateBackup('voice/d'), { ok: true, changed: true });
  const marks = sim
    .rows('/ip/firewall/mangle')
    .filter((x) => (x['comment'] ?? '').startsWith(`meridian:m:${voice.slot}:`));
  t.ok(marks.every((x) => x['new-routing-mark'] === `mrd-${voice.slot}-b`));
  t.equal((await driver.read()).routes.find((x) => x.slot === voice.slot)?.active, 'backup');
  const again = await driver.apply(pa);
  t.ok(again.ok && again.changes === 0, 'unchanged primary: stays on backup');
  const nob = await driver.activateBackup('bulk/d');
  t.equal(nob.ok ? '' : nob.error.code, 'AGENT_ERR_NO_BACKUP');
  t.same(await driver.activatePrimary('voice/d'), { ok: true, changed: true });
  // A foreign rule is never touched; a stale owned one goes.
  sim.config
    .get('/ip/firewall/mangle')!
    .push({ '.id': '*F00', chain: 'forward', action: 'accept', comment: 'operator rule' });
  sim.config.get('/ip/route')!.push({
    '.id': '*F01',
    'dst-address': '10.99.0.0/24',
    gateway: '1.1.1.1',
    comment: 'meridian:r:999:p:10.99.0.0/24',
  });
  const r = await driver.apply(withoutBulkToB);
  t.ok(r.ok && r.removed > 1, 'stale objects removed');
  t.ok(
    sim.rows('/ip/firewall/mangle').some((x) => x['.id'] === '*F00'),
    'foreign rule kept',
  );
  t.notOk(sim.rows('/ip/route').some((x) => x['.id'] === '*F01'));
  await driver.removeAll();
  t.same(
    sim.rows('/ip/firewall/mangle').map((x) => x['.id']),
    ['*F00'],
    'removeAll leaves only foreign objects',
  );
  t.equal(sim.rows('/routing/table').length, 0);
});

t.test('rules keep first-match order when classes are added later; path probes come first', async (t) => {
  const { sim, driver } = await setup(t);
  const { version: _v, hash: _h, ...content } = pa;
  const c = { ...content, routes: pa.routes.filter((r) => r.class !== 'voice') };
  t.ok((await driver.apply({ ...c, version: 1, hash: policyHash(c) })).ok);
  t.ok((await driver.apply(pa)).ok);
  const pre = sim.rows('/ip/firewall/mangle').filter((x) => x['chain'] === 'prerouting');
  const firstCatchAll = pre.findIndex((x) => !('dscp' in x));
  t.ok(
    firstCatchAll > 0 && pre.slice(firstCatchAll).every((x) => !('dscp' in x)),
    'voice rules moved before the catch-all',
  );
  t.ok(
    sim.log.some((l) => l.startsWith('/ip/firewall/mangle/move')),
    'used move',
  );
  const out = sim.rows('/ip/firewall/mangle').filter((x) => x['chain'] === 'output');
  const probes = out.filter((x) => 'src-port' in x);
  const voice = pa.routes.find((x) => x.class === 'voice')!;
  t.same(
    probes
      .filter((x) => x['new-routing-mark']?.startsWith(`mrd-${voice.slot}-`))
      .map((x) => [x['src-port'], x['dst-address'], x['new-routing-mark']]),
    [
      [String(pathProbePort(pa, voice.slot, 'primary')), '10.4.0.0/24', `mrd-${voice.slot}-p`],
      [String(pathProbePort(pa, voice.slot, 'primary')), '10.44.0.0/16', `mrd-${voice.slot}-p`],
      [String(pathProbePort(pa, voice.slot, 'backup')), '10.4.0.0/24', `mrd-${voice.slot}-b`],
      [String(pathProbePort(pa, voice.slot, 'backup')), '10.44.0.0/16', `mrd-${voice.slot}-b`],
    ],
  );
  t.ok(out.findIndex((x) => !('src-port' in x)) >= probes.length, 'probe rules first');
  t.same(await driver.activateBackup('voice/d'), { ok: true, changed: true });
  t.equal(
    sim
      .rows('/ip/firewall/mangle')
      .find((x) => x['src-port'] === String(pathProbePort(pa, voice.slot, 'primary')))?.['new-routing-mark'],
    `mrd-${voice.slot}-p`,
    'primary probes keep their path',
  );
});

t.test('a device error mid-apply restores the previous policy', async (t) => {
  const { sim, driver } = await setup(t);
  await driver.apply(withoutBulkToB);
  const before = shape(sim);
  sim.failAt(sim.commandCount + 6, 'trap'); // after the reads, during the adds
  const r = await driver.apply(pa);
  t.equal(r.ok ? '' : r.error.code, 'AGENT_ERR_DRIVER_APPLY');
  t.match(r.ok ? '' : r.error.detail, /simulated device error/);
  t.equal(r.ok ? null : r.inForce, withoutBulkToB.hash);
  t.same(shape(sim), before, 'configuration back to the previous policy');
  t.equal((await driver.read()).hash, withoutBulkToB.hash);
  const bad = { ...pa, hash: 'f'.repeat(64) };
  const count = sim.commandCount;
  const r2 = await driver.apply(bad);
  t.equal(r2.ok ? '' : r2.error.code, 'AGENT_ERR_POLICY_INVALID');
  t.equal(sim.commandCount, count, 'an invalid policy sends nothing');
});

for (const fault of ['drop', 'fatal'] as const) {
  t.test(`a ${fault} mid-apply: the driver resumes on a new session and completes`, async (t) => {
    const { sim, driver } = await setup(t);
    sim.failAt(8, fault);
    const r = await driver.apply(pa);
    t.ok(r.ok, r.ok ? 'applied' : `${r.error.code} ${r.error.message}`);
    t.equal(driver.sessions, 2, 'a second session');
    const ref = new RouterOsSim();
    const port = await ref.start();
    const clean = new RouterOsPolicyDriver({ host: '127.0.0.1', port, user: 'admin', password: 'secret' });
    await clean.apply(pa);
    await clean.close();
    await ref.close();
    t.same(shape(sim), shape(ref), 'same configuration as an uninterrupted apply, no duplicates');
  });
}

t.test('unreachable device and bad credentials are typed', async (t) => {
  const sim = new RouterOsSim();
  const port = await sim.start();
  const wrong = new RouterOsPolicyDriver({
    host: '127.0.0.1',
    port,
    user: 'admin',
    password: 'nope',
    timeoutMs: 1000,
    attempts: 1,
  });
  const r1 = await wrong.apply(pa);
  t.equal(r1.ok ? '' : r1.error.code, 'AGENT_ERR_DRIVER_UNREACHABLE');
  await wrong.close();
  await sim.close();
  const gone = new RouterOsPolicyDriver({
    host: '127.0.0.1',
    port,
    user: 'admin',
    password: 'secret',
    timeoutMs: 1000,
    attempts: 2,
  });
  const r2 = await gone.apply(pa);
  t.equal(r2.ok ? '' : r2.error.code, 'AGENT_ERR_DRIVER_UNREACHABLE');
  await gone.close();
});
