import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkTopologyFile, loadTopology } from '../src/loader';
import { REFERENCE_TOPOLOGY_PATH } from '../src/reference-topology';
import { parseIpv4Cidr } from '../src/cidr';
import type { Link, Topology } from '../src/types';

const topo: Topology = loadTopology(REFERENCE_TOPOLOGY_PATH);
const kindOf = new Map(topo.sites.map((s) => [s.id, s.kind]));
const between = (x: string, y: string): Link[] =>
  topo.links.filter((l) => (l.a === x && l.b === y) || (l.a === y && l.b === x));

t.test('the reference topology is valid, with no warnings and no devices', (t) => {
  t.equal(path.basename(REFERENCE_TOPOLOGY_PATH), 'reference.yaml');
  t.ok(fs.existsSync(REFERENCE_TOPOLOGY_PATH));
  const r = checkTopologyFile(REFERENCE_TOPOLOGY_PATH);
  t.same(r.problems, []);
  t.same(r.warnings, []);
  t.same(topo.devices, [], 'no devices: the controller would try to poll them');
  t.end();
});

t.test('four DCs in Beijing and Shanghai, two clouds, at least four edge sites', (t) => {
  const dcs = topo.sites.filter((s) => s.kind === 'dc');
  t.same(
    dcs.map((s) => [s.id, s.region]),
    [
      ['bj-a', 'beijing'],
      ['bj-b', 'beijing'],
      ['sh-a', 'shanghai'],
      ['sh-b', 'shanghai'],
    ],
  );
  t.same(
    topo.sites.filter((s) => s.kind === 'cloud').map((s) => s.id),
    ['cloud-a', 'cloud-b'],
  );
  t.ok(topo.sites.filter((s) => s.kind === 'edge').length >= 4);
  t.end();
});

t.test('every DC has direct fibre to both clouds', (t) => {
  for (const dc of ['bj-a', 'bj-b', 'sh-a', 'sh-b']) {
    for (const cloud of ['cloud-a', 'cloud-b']) {
      t.ok(
        between(dc, cloud).some((l) => l.transport === 'fiber'),
        `${dc} - ${cloud} fibre`,
      );
    }
  }
  t.end();
});

t.test('DCs: full mesh of leased lines with internet backups, leased dearer than internet', (t) => {
  const dcs = ['bj-a', 'bj-b', 'sh-a', 'sh-b'];
  let pairs = 0;
  for (let i = 0; i < dcs.length; i++) {
    for (let j = i + 1; j < dcs.length; j++) {
      const ls = between(dcs[i]!, dcs[j]!);
      const leased = ls.find((l) => l.transport === 'leased');
      const internet = ls.find((l) => l.transport === 'internet');
      t.ok(leased, `${dcs[i]} - ${dcs[j]} leased`);
      t.ok(internet, `${dcs[i]} - ${dcs[j]} internet backup`);
      if (leased && internet) {
        t.ok(leased.cost > internet.cost, 'leased costs more');
        t.ok(leased.latencyMs < internet.latencyMs, 'leased is faster');
        t.ok(internet.lossPct > 0 && internet.jitterMs > leased.jitterMs, 'internet has loss and jitter');
      }
      pairs++;
    }
  }
  t.equal(pairs, 6);
  // Beijing–Shanghai leased one-way latency is realistic (~1,070 km): 12–15 ms; metro 1–2 ms.
  for (const l of topo.links.filter((x) => x.transport === 'leased')) {
    const cross = l.a.slice(0, 2) !== l.b.slice(0, 2);
    t.ok(cross ? l.latencyMs >= 12 && l.latencyMs <= 15 : l.latencyMs <= 2, `${l.id} ${l.latencyMs} ms`);
  }
  t.end();
});

t.test('each edge site is dual-homed to two different DCs or clouds', (t) => {
  for (const edge of topo.sites.filter((s) => s.kind === 'edge')) {
    const peers = new Set(
      topo.links.filter((l) => l.a === edge.id || l.b === edge.id).map((l) => (l.a === edge.id ? l.b : l.a)),
    );
    const core = [...peers].filter((p) => kindOf.get(p) === 'dc' || kindOf.get(p) === 'cloud');
    t.ok(core.length >= 2, `${edge.id} attaches to ${core.join(', ')}`);
  }
  t.end();
});

t.test('five classes with SLAs from the usual references; sync optimises cost', (t) => {
  t.same(
    topo.classes.map((c) => c.id),
    ['voice', 'video', 'signaling', 'api', 'sync'],
  );
  const voice = topo.classes.find((c) => c.id === 'voice')!;
  t.same(voice.sla, { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 }, 'ITU-T G.114 150 ms one-way');
  t.equal(voice.objective, 'latency');
  t.equal(voice.priority, 1);
  t.same(voice.match?.dscp, [46], 'EF');
  t.equal(topo.classes.find((c) => c.id === 'sync')!.objective, 'cost');
  t.same(topo.classes.find((c) => c.id === 'video')!.match?.dscp?.[0], 34, 'AF41');
  const text = fs.readFileSync(REFERENCE_TOPOLOGY_PATH, 'utf8');
  t.match(text, /G\.114/);
  t.match(text, /RFC 4594/);
  t.end();
});

t.test('every site owns its own non-overlapping 10.x.0.0/16', (t) => {
  const seen = new Set<string>();
  for (const s of topo.sites) {
    t.equal(s.prefixes.length, 1, s.id);
    const p = parseIpv4Cidr(s.prefixes[0]!);
    t.ok(p.ok && p.prefix.length === 16 && s.prefixes[0]!.startsWith('10.'), s.prefixes[0] ?? s.id);
    t.notOk(seen.has(s.prefixes[0]!));
    seen.add(s.prefixes[0]!);
  }
  t.end();
});

t.test('the devices example is valid and references real sites and links', (t) => {
  const ex = loadTopology(path.join(path.dirname(REFERENCE_TOPOLOGY_PATH), 'examples', 'with-devices.yaml'));
  t.equal(ex.devices.length, 2);
  t.same(
    ex.devices.map((d) => [d.driver, d.snmp?.port, d.snmp?.version]),
    [
      ['linux', 1161, '2c'],
      ['routeros', 161, '2c'],
    ],
  );
  t.end();
});
