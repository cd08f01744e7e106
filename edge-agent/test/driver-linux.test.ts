// The Linux driver on a real lab: namespaces, TUN links through the link emulator, nftables, in
// hop-by-hop mode always and in SRv6 mode where the kernel has it.
// Needs root (skips with the reason otherwise).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { Route, Topology, Path } from '@meridian/topology';
import { compilePolicies } from '@meridian/controller';
import { defaultAddressingPlan, labDown, labFault, labPrerequisites, labUp } from '@meridian/ops';
import { LinuxPolicyDriver, pathProbePort, policyHash, type ForwardingMode } from '../src/index';

const link = (id: string, a: string, b: string, latencyMs: number) => ({
  id,
  a,
  b,
  transport: 'fiber' as const,
  capacityMbps: 100,
  latencyMs,
  jitterMs: 0,
  lossPct: 0,
  cost: 1,
});
const topology: Topology = {
  version: 1,
  source: '<inline>',
  sites: [
    { id: 'a', kind: 'dc', region: 'r', prefixes: ['10.1.0.0/24'] },
    { id: 'b', kind: 'dc', region: 'r', prefixes: ['10.2.0.0/24'] },
    { id: 'c', kind: 'dc', region: 'r', prefixes: ['10.3.0.0/24'] },
    { id: 'd', kind: 'edge', region: 'r', prefixes: ['10.4.0.0/24', '10.44.0.0/16'] },
  ],
  links: [
    link('a-b', 'a', 'b', 2),
    link('b-d', 'b', 'd', 2),
    link('a-c', 'a', 'c', 2),
    link('c-d', 'c', 'd', 2),
    link('b-c', 'b', 'c', 1),
  ],
  classes: [
    {
      id: 'voice',
      sla: { maxLatencyMs: 100, maxJitterMs: 10, maxLossPct: 1 },
      objective: 'latency',
      maxUtilPct: 100,
      priority: 1,
      match: { dscp: [46] },
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
const path_ = (sites: string[], links: string[]): Path => ({
  sites,
  links,
  latencyMs: 0,
  jitterMs: 0,
  lossPct: 0,
  cost: 0,
  hops: links.length,
});
const route = (cls: string, primary: Path, backup: Path | null): Route => ({
  class: cls,
  src: primary.sites[0]!,
  dst: primary.sites[primary.sites.length - 1]!,
  status: 'ok',
  primary,
  backup,
});
// Voice a>d deliberately takes a>b>c>d although b's own way to d is direct (b-d): only source
// routing can do that. Its backup a>c>b>d crosses the same sites and link b-c the other way.
const routes: Route[] = [
  route(
    'voice',
    path_(['a', 'b', 'c', 'd'], ['a-b', 'b-c', 'c-d']),
    path_(['a', 'c', 'b', 'd'], ['a-c', 'b-c', 'b-d']),
  ),
  route('bulk', path_(['a', 'b', 'd'], ['a-b', 'b-d']), path_(['a', 'c', 'd'], ['a-c', 'c-d'])),
  route('voice', path_(['d', 'b', 'a'], ['b-d', 'a-b']), path_(['d', 'c', 'a'], ['c-d', 'a-c'])),
  route('bulk', path_(['d', 'b', 'a'], ['b-d', 'a-b']), null),
];
// Interfaces (defaultAddressingPlan: links sorted by id): a-b ml0, a-c ml1, b-c ml2, b-d ml3, c-d ml4.

function txCounters(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of ['a', 'b', 'c', 'd']) {
    const r = spawnSync('ip', ['-n', `mrd-${s}`, '-j', '-s', 'link', 'show'], { encoding: 'utf8' });
    for (const l of JSON.parse(r.stdout) as { ifname: string; stats64: { tx: { packets: number } } }[]) {
      if (l.ifname.startsWith('ml')) out[`${s}:${l.ifname}`] = l.stats64.tx.packets;
    }
  }
  return out;
}
function ping(from: string, to: string, tos: number, count = 20): number {
  const r = spawnSync(
    'ip',
    [
      'netns',
      'exec',
      `mrd-${from}`,
      'ping',
      '-n',
      '-q',
      '-c',
      String(count),
      '-i',
      '0.02',
      '-W',
      '1',
      '-Q',
      String(tos),
      '-I',
      topologyHost(from),
      to,
    ],
    { encoding: 'utf8' },
  );
  const m = /(\d+) received/.exec(r.stdout);
  return m ? Number(m[1]) : 0;
}
const plan = defaultAddressingPlan(topology);
function topologyHost(site: string): string {
  return plan.sites[site]!.hostAddress;
}

/** Sends `count` UDP datagrams from `from`'s host address and source port `sport` to `to`. */
function udpFrom(from: string, sport: number, to: string, count: number): void {
  const js = `const s=require('dgram').createSocket('udp4');s.bind(${sport},'${topologyHost(from)}',async()=>{for(let i=0;i<${count};i++){s.send(Buffer.from('probe'),9,'${to}');await new Promise(r=>setTimeout(r,5))}s.close()})`;
  spawnSync('ip', ['netns', 'exec', `mrd-${from}`, process.execPath, '-e', js]);
}

function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(after).map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)]));
}

t.test('Linux driver on a namespace lab', async (t) => {
  const why = await labPrerequisites();
  if (why !== null) {
    t.plan(0, `skipped: needs root and ip/nft/socat: ${why}`);
    return;
  }
  const stateDir = path.join(os.tmpdir(), `meridian-lab-test-${process.pid}`);
  await labDown({ stateDir });
  t.teardown(() => labDown({ stateDir }));
  await labUp(topology, { stateDir, waitMs: 600_000 });
  const modes: ForwardingMode[] = ['hop-by-hop'];
  const caps = await new LinuxPolicyDriver({ netns: 'mrd-a' }).capabilities();
  if (caps.modes.includes('srv6')) modes.push('srv6');
  else t.comment(`this kernel has no SRv6 (${caps.missing.join('; ')}): hop-by-hop only`);

  // One driver per site for both modes: the second mode is applied over the first (a mode change).
  const drivers = new Map<string, LinuxPolicyDriver>();
  for (const s of ['a', 'b', 'c', 'd']) drivers.set(s, new LinuxPolicyDriver({ netns: `mrd-${s}` }));

  for (const mode of modes) {
    await t.test(`${mode} forwarding`, async (t) => {
      const policies = compilePolicies(topology, routes, plan, { forwarding: mode });
      const pa = policies.get('a')!;

      await t.test('policies apply in every namespace', async (t) => {
        for (const [site, d] of drivers) {
          const r = await d.apply(policies.get(site)!);
          t.ok(r.ok, `applied at ${site}: ${r.ok ? '' : r.error.message + ' ' + String(r.error.detail)}`);
        }
      });

      await t.test('voice and bulk take exactly their computed paths', (t) => {
        let before = txCounters();
        t.equal(ping('a', '10.4.0.1', 0xb8), 20, 'voice a>d answered');
        let d = delta(before, txCounters());
        // forward a>b>c>d, reverse d>b>a
        for (const k of ['a:ml0', 'b:ml2', 'c:ml4', 'd:ml3', 'b:ml0'])
          t.ok(d[k]! >= 20, `${k} carried voice (${d[k]})`);
        for (const k of ['a:ml1', 'b:ml3', 'c:ml2', 'd:ml4', 'c:ml1'])
          t.ok(d[k]! <= 2, `${k} idle (${d[k]})`);
        before = txCounters();
        t.equal(ping('a', '10.4.0.1', 0), 20, 'bulk a>d answered');
        d = delta(before, txCounters());
        for (const k of ['a:ml0', 'b:ml3', 'd:ml3', 'b:ml0'])
          t.ok(d[k]! >= 20, `${k} carried bulk (${d[k]})`);
        for (const k of ['b:ml2', 'c:ml4', 'a:ml1', 'c:ml1']) t.ok(d[k]! <= 2, `${k} idle (${d[k]})`);
        t.equal(
          ping('a', '10.44.7.7', 0xb8, 3),
          0,
          'second prefix of d is routed but has no host (no answer)',
        );
        t.end();
      });

      await t.test('link down on the primary: backup activation moves the traffic', async (t) => {
        await labFault('c-d', { kind: 'down' }, { stateDir });
        t.equal(ping('a', '10.4.0.1', 0xb8, 5), 0, 'voice lost while its primary is cut mid-path');
        const da = drivers.get('a')!;
        const r = await da.activateBackup('voice/d');
        t.same(r, { ok: true, changed: true });
        const before = txCounters();
        t.equal(ping('a', '10.4.0.1', 0xb8), 20, 'voice flows on the backup');
        const d = delta(before, txCounters());
        for (const k of ['a:ml1', 'c:ml2', 'b:ml3']) t.ok(d[k]! >= 20, `${k} carries voice now (${d[k]})`);
        t.ok(d['a:ml0']! <= 2, `a-b no longer used by voice (${d['a:ml0']})`);
        const snap = await da.read();
        t.equal(
          snap.routes.find((x) => x.slot === pa.routes.find((y) => y.class === 'voice')!.slot)?.active,
          'backup',
        );
        const again = await da.apply(pa);
        t.ok(
          again.ok && again.changes === 0,
          `${JSON.stringify(again)} re-applying the same policy changes nothing and keeps the backup`,
        );
        t.equal((await da.read()).routes.find((x) => x.active === 'backup') !== undefined, true);
        // Per-path probes keep testing both paths while voice is on the backup.
        const voiceSlot = pa.routes.find((y) => y.class === 'voice')!.slot;
        const p0 = txCounters();
        udpFrom('a', pathProbePort(pa, voiceSlot, 'primary')!, '10.4.0.1', 10);
        const dp = delta(p0, txCounters());
        t.ok(
          dp['a:ml0']! >= 10 && dp['b:ml2']! >= 10 && dp['a:ml1']! <= 2,
          `primary-path probes still take a>b>c (${dp['a:ml0']}, ${dp['b:ml2']})`,
        );
        const p1 = txCounters();
        udpFrom('a', pathProbePort(pa, voiceSlot, 'backup')!, '10.4.0.1', 10);
        const db = delta(p1, txCounters());
        t.ok(
          db['a:ml1']! >= 10 && db['c:ml2']! >= 10 && db['b:ml3']! >= 10,
          `backup-path probes take a>c>b>d (${db['a:ml1']})`,
        );
        const bad = await drivers.get('b')!.activateBackup('voice/zz');
        t.equal(bad.ok ? '' : bad.error.code, 'AGENT_ERR_NO_ROUTE');
        await labFault('c-d', { kind: 'clear' }, { stateDir });
        t.same(await da.activatePrimary('voice/d'), { ok: true, changed: true });
        const b2 = txCounters();
        t.equal(ping('a', '10.4.0.1', 0xb8), 20);
        t.ok(delta(b2, txCounters())['b:ml2']! >= 20, 'back on the primary');
      });

      await t.test('idempotent, reconciles after a restart, removes stale state', async (t) => {
        const count = (): string =>
          spawnSync('ip', ['-n', 'mrd-a', 'rule', 'show'], { encoding: 'utf8' }).stdout;
        const rulesBefore = count();
        const fresh = new LinuxPolicyDriver({ netns: 'mrd-a' });
        const r = await fresh.apply(pa);
        t.ok(r.ok && r.changes === 0, `${JSON.stringify(r)} a restarted driver finds everything in place`);
        t.equal(count(), rulesBefore, 'no duplicate rules');
        const snap = await fresh.read();
        t.equal(snap.hash, pa.hash);
        // A stray owned rule and route (as a crash mid-apply could leave) are removed.
        spawnSync('ip', [
          '-n',
          'mrd-a',
          'rule',
          'add',
          'pref',
          '24999',
          'fwmark',
          '0x4d520999',
          'table',
          '24998',
        ]);
        spawnSync('ip', [
          '-n',
          'mrd-a',
          'route',
          'add',
          '10.99.0.0/24',
          'dev',
          'ml0',
          'table',
          '24998',
          'proto',
          '77',
        ]);
        spawnSync('ip', ['-n', 'mrd-a', 'rule', 'add', 'pref', '100', 'table', 'main']); // not ours
        const r2 = await fresh.apply(pa);
        t.ok(
          r2.ok && r2.removed === 2,
          `stale owned objects removed (${r2.ok ? r2.removed : r2.error.message})`,
        );
        t.match(count(), /^100:/m, 'foreign rule untouched');
        spawnSync('ip', ['-n', 'mrd-a', 'rule', 'del', 'pref', '100']);
        // A newer policy without the bulk route: its rules and tables go.
        const { version: _v, hash: _h, ...content } = pa;
        const smaller = { ...content, routes: pa.routes.filter((x) => x.class !== 'bulk') };
        const p2 = { ...smaller, version: 2, hash: policyHash(smaller) };
        const r3 = await fresh.apply(p2);
        t.ok(r3.ok && r3.removed > 0, 'bulk state removed');
        const n = ping('a', '10.4.0.1', 0xb8, 5);
        t.equal(n, 5, `voice unaffected (${n}/5 answered)`);
      });

      await t.test(
        'a rule added or removed behind an apply (a concurrent switch) is done, not a failure',
        async (t) => {
          type Rule = { priority: number; fwmark?: string; table?: string };
          const rules = (): Rule[] =>
            (
              JSON.parse(
                spawnSync('ip', ['-n', 'mrd-a', '-j', '-4', 'rule', 'show'], { encoding: 'utf8' }).stdout,
              ) as Rule[]
            ).filter((r) => r.priority >= 20000 && r.priority <= 29999);
          const key = (r: Rule): string => `${r.priority}|${r.fwmark ?? '-'}|${r.table ?? '-'}`;
          const d = new LinuxPolicyDriver({ netns: 'mrd-a' });
          const { version: _v, hash: _h, ...content } = pa;
          const smaller = { ...content, routes: pa.routes.filter((x) => x.class !== 'bulk') };
          const p2 = { ...smaller, version: 2, hash: policyHash(smaller) };
          t.ok((await d.apply(p2)).ok);
          const withoutBulk = new Set(rules().map(key));
          t.ok((await d.apply(pa)).ok);
          const full = rules();
          const bulkOnly = full.filter((r) => !withoutBulk.has(key(r)) && r.fwmark !== undefined);
          t.ok(bulkOnly.length > 0, `${bulkOnly.length} rules only the bulk routes have`);
          const x = bulkOnly[0]!;
          const spec = ['pref', String(x.priority), 'fwmark', x.fwmark!, 'table', x.table!];
          // Gone before the apply that removes it: its "rule del" answers "No such file or directory".
          spawnSync('ip', ['-n', 'mrd-a', 'rule', 'del', ...spec]);
          const r1 = await d.apply(p2);
          t.ok(
            r1.ok,
            `applied although a rule it removes was gone (${r1.ok ? '' : `${r1.error.message} ${String(r1.error.detail)}`})`,
          );
          // There before the apply that adds it: its "rule add" answers "File exists".
          spawnSync('ip', ['-n', 'mrd-a', 'rule', 'add', ...spec]);
          const r2 = await d.apply(pa);
          t.ok(
            r2.ok,
            `applied although a rule it adds was there (${r2.ok ? '' : `${r2.error.message} ${String(r2.error.detail)}`})`,
          );
          t.same(
            rules().map(key).sort(),
            full.map(key).sort(),
            'exactly the rules of the full policy, none twice',
          );
          t.equal((await d.read()).hash, pa.hash);
          t.equal(ping('a', '10.4.0.1', 0xb8, 5), 5, 'voice flows');
        },
      );

      await t.test('bad policies give typed errors and leave the previous policy in place', async (t) => {
        const d = new LinuxPolicyDriver({ netns: 'mrd-a' });
        t.ok((await d.apply(pa)).ok);
        const tampered = { ...pa, hostAddress: '10.1.0.9' };
        const r1 = await d.apply(tampered);
        t.equal(r1.ok ? '' : r1.error.code, 'AGENT_ERR_POLICY_INVALID', 'hash mismatch');
        const { version: _v, hash: _h, ...content } = pa;
        const noIf = { ...content, interfaces: content.interfaces.map((i) => ({ ...i, ifName: 'nope0' })) };
        const noIfRoutes = { ...noIf, routes: [], localSids: [] };
        const r2 = await d.apply({ ...noIfRoutes, version: 3, hash: policyHash(noIfRoutes) });
        t.equal(r2.ok ? '' : r2.error.code, 'AGENT_ERR_POLICY_INVALID', 'missing interface');
        // Valid schema, but the kernel refuses it (SRv6: a malformed SID; hop-by-hop: a next hop
        // that is not on the link): rolled back to the previous policy.
        const bogus =
          mode === 'srv6'
            ? {
                ...content,
                localSids: [...content.localSids, { sid: 'fc00:::1', action: 'End.DX4' as const }],
              }
            : {
                ...content,
                routes: content.routes.map((r, i) =>
                  i === 0 ? { ...r, primary: { ...r.primary, nextHop4: '192.0.2.1' } } : r,
                ),
              };
        const r3 = await d.apply({ ...bogus, version: 4, hash: policyHash(bogus) });
        t.equal(r3.ok ? '' : r3.error.code, 'AGENT_ERR_DRIVER_APPLY', 'device refusal is typed');
        t.equal(r3.ok ? null : r3.inForce, pa.hash, 'previous policy reported in force');
        t.equal((await d.read()).hash, pa.hash, 'device still carries the previous policy');
        t.equal(ping('a', '10.4.0.1', 0xb8, 5), 5, 'traffic still flows');
      });
    });
  }

  await t.test(
    'a kernel without SRv6 refuses an SRv6 policy by name, before touching anything',
    async (t) => {
      if (modes.includes('srv6')) {
        t.ok(caps.features.includes('srv6-encap'), 'this kernel has SRv6: the SRv6 mode was tested above');
        return;
      }
      const hbh = compilePolicies(topology, routes, plan, { forwarding: 'hop-by-hop' }).get('a')!;
      const d = new LinuxPolicyDriver({ netns: 'mrd-a' });
      t.ok((await d.apply(hbh)).ok);
      const before = spawnSync('ip', ['-n', 'mrd-a', 'route', 'show', 'table', 'all', 'proto', '77'], {
        encoding: 'utf8',
      }).stdout;
      const srv6 = compilePolicies(topology, routes, plan, { forwarding: 'srv6' }).get('a')!;
      const r = await d.apply(srv6);
      t.equal(r.ok ? '' : r.error.code, 'AGENT_ERR_DRIVER_UNSUPPORTED');
      t.match(r.ok ? '' : r.error.message, /needs SRv6 .*hop-by-hop/);
      t.equal(r.ok ? null : r.inForce, hbh.hash, 'the hop-by-hop policy stays in force');
      t.equal(
        spawnSync('ip', ['-n', 'mrd-a', 'route', 'show', 'table', 'all', 'proto', '77'], { encoding: 'utf8' })
          .stdout,
        before,
        'no route touched',
      );
      t.equal(ping('a', '10.4.0.1', 0xb8, 5), 5, 'traffic still flows');
    },
  );

  await t.test('hop-by-hop route change under traffic: downstream first, no loop, no loss', async (t) => {
    // Voice a>d moves from a>b>c>d to a>c>d (its old backup's sites, other links). The controller
    // keeps the previous route set's transit entries one version (make before break); here the
    // sites apply in the safe order: every transit site, then the head-end.
    const before = compilePolicies(topology, routes, plan, { forwarding: 'hop-by-hop' });
    const moved = routes.map((r) =>
      r.class === 'voice' && r.src === 'a'
        ? {
            ...r,
            primary: path_(['a', 'c', 'd'], ['a-c', 'c-d']),
            backup: path_(['a', 'b', 'd'], ['a-b', 'b-d']),
          }
        : r,
    );
    const after = compilePolicies(topology, moved, plan, {
      forwarding: 'hop-by-hop',
      previousRoutes: routes,
    });
    for (const [site, d] of drivers) t.ok((await d.apply(before.get(site)!)).ok, `${site} on the old routes`);
    // ~1,000 voice pings at 2 ms while the policies change.
    const pinger = spawn(
      'ip',
      [
        'netns',
        'exec',
        'mrd-a',
        'ping',
        '-n',
        '-c',
        '1000',
        '-i',
        '0.002',
        '-W',
        '1',
        '-Q',
        '184',
        '-I',
        topologyHost('a'),
        '10.4.0.1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    pinger.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const done = new Promise<void>((resolve) => pinger.on('close', () => resolve()));
    // Wait until replies flow, then change: transit sites first, the head-end last.
    while (!/icmp_seq=50 /.test(out)) await new Promise((r) => setTimeout(r, 10));
    for (const site of ['b', 'c', 'd', 'a']) {
      const r = await drivers.get(site)!.apply(after.get(site)!);
      t.ok(r.ok, `${site} applied the new routes`);
    }
    await done;
    const received = Number(/(\d+) received/.exec(out)?.[1] ?? 0);
    t.notMatch(out, /Time to live exceeded/, 'no forwarding loop (no TTL expiry)');
    t.equal(received, 1000, `every ping answered during the change (${received}/1000)`);
    const c0 = txCounters();
    t.equal(ping('a', '10.4.0.1', 0xb8), 20);
    const d = delta(c0, txCounters());
    t.ok(d['a:ml1']! >= 20 && d['c:ml4']! >= 20, `voice now takes a>c>d (${d['a:ml1']}, ${d['c:ml4']})`);
    t.ok(d['b:ml2']! <= 2, `not b>c any more (${d['b:ml2']})`);
  });

  await t.test('removeAll leaves nothing owned', async (t) => {
    for (const d of drivers.values()) await d.removeAll();
    const snap = await drivers.get('a')!.read();
    t.equal(snap.objects, 0);
    t.equal(
      spawnSync('ip', ['-n', 'mrd-a', 'route', 'show', 'table', 'all', 'proto', '77'], { encoding: 'utf8' })
        .stdout,
      '',
    );
    await drivers.get('a')!.removeAll(); // idempotent
  });

  await t.test('lab down removes every namespace and process', async (t) => {
    const state = JSON.parse(readFileSync(path.join(stateDir, 'state.json'), 'utf8')) as {
      pids: { pid: number }[];
    };
    await labDown({ stateDir });
    t.notMatch(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout, /mrd-/);
    for (const p of state.pids)
      t.notOk(spawnSync('kill', ['-0', String(p.pid)]).status === 0, `pid ${p.pid} gone`);
    t.match(await labDown({ stateDir }), { removed: 0 }, 'idempotent');
  });
});
