import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkTopology, loadTopology, parseTopology } from '../src/loader';
import { isTopologyError, TopologyError, type TopologyProblem } from '../src/errors';
import { MAX_INPUT_BYTES } from '../src/yaml-source';

const SITES = `sites:
  - { id: bj-a, kind: dc, region: beijing, prefixes: ['10.1.0.0/16'] }
  - { id: sh-a, kind: dc, region: shanghai, prefixes: ['10.3.0.0/16'] }
  - { id: cloud-a, kind: cloud }`;
const LINKS = `links:
  - { id: l1, a: bj-a, b: sh-a, transport: leased, capacityMbps: 1000, latencyMs: 14, jitterMs: 1, lossPct: 0, cost: 3 }
  - { id: l2, a: bj-a, b: cloud-a, transport: fiber, capacityMbps: 10000, latencyMs: 1.5 }`;
const CLASSES = `classes:
  - id: voice
    sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 }
    objective: latency
    maxUtilPct: 85
    priority: 1
    match: { dscp: [46] }`;

function doc(
  parts: { version?: string; sites?: string; links?: string; classes?: string; extra?: string } = {},
) {
  return [
    parts.version ?? 'version: 1',
    parts.sites ?? SITES,
    parts.links ?? LINKS,
    parts.classes ?? CLASSES,
    parts.extra ?? '',
  ]
    .join('\n')
    .concat('\n');
}

/** 1-based line/column of the n-th occurrence of `needle` in `text`. */
function pos(text: string, needle: string, nth = 0): { line: number; column: number } {
  // 'key: |value' finds 'key: value' and points at 'value'
  const bar = needle.indexOf('|');
  const skip = bar < 0 ? 0 : bar;
  needle = needle.replace('|', '');
  let at = -1;
  for (let i = 0; i <= nth; i++) {
    at = text.indexOf(needle, at + 1);
    if (at < 0) throw new Error(`'${needle}' not in text`);
  }
  at += skip;
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  return { line, column: at - before.lastIndexOf('\n') };
}

function problems(text: string): TopologyProblem[] {
  const r = checkTopology(text, 'test.yaml');
  return [...r.problems];
}

/** Asserts exactly one problem with `code` at `path`, located at `needle` in the text. */
function expectOne(
  t: Test,
  text: string,
  code: string,
  p: string,
  needle: string,
  nth = 0,
): TopologyProblem | undefined {
  const found = problems(text).filter((x) => x.code === code && x.path === p);
  t.equal(
    found.length,
    1,
    `one ${code} at ${p}; got ${JSON.stringify(problems(text).map((x) => x.message))}`,
  );
  const pr = found[0];
  if (pr === undefined) return undefined;
  const want = pos(text, needle, nth);
  t.equal(pr.line, want.line, `${code} line`);
  t.equal(pr.column, want.column, `${code} column`);
  t.equal(pr.file, 'test.yaml');
  t.ok(pr.message.startsWith(`test.yaml:${want.line}:${want.column} ${p}: `), pr.message);
  return pr;
}

t.test('a valid file loads with every default filled', (t) => {
  const topo = parseTopology(doc(), 'ok.yaml');
  t.equal(topo.version, 1);
  t.equal(topo.source, 'ok.yaml');
  t.same(
    topo.sites.map((s) => [s.id, s.kind, s.region, s.prefixes]),
    [
      ['bj-a', 'dc', 'beijing', ['10.1.0.0/16']],
      ['sh-a', 'dc', 'shanghai', ['10.3.0.0/16']],
      ['cloud-a', 'cloud', '', []],
    ],
  );
  t.same(topo.links[1], {
    id: 'l2',
    a: 'bj-a',
    b: 'cloud-a',
    transport: 'fiber',
    capacityMbps: 10000,
    latencyMs: 1.5,
    jitterMs: 0,
    lossPct: 0,
    cost: 1,
  });
  t.same(topo.classes[0], {
    id: 'voice',
    sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 },
    objective: 'latency',
    maxUtilPct: 85,
    priority: 1,
    match: { dscp: [46] },
  });
  t.same(topo.devices, []);
  const noUtil = parseTopology(doc({ classes: CLASSES.replace('    maxUtilPct: 85\n', '') }));
  t.equal(noUtil.classes[0]!.maxUtilPct, 100);
  t.equal(noUtil.source, '<inline>');
  // unknown top-level keys are accepted (forward compatibility) and dropped from the model
  const extra = parseTopology(doc({ extra: 'owner: netops\nfuture: { x: 1 }' }));
  t.notOk('owner' in extra);
  t.end();
});

t.test('YAML syntax: every error the parser reports, with positions', (t) => {
  const text = doc({
    sites: SITES.replace("prefixes: ['10.3.0.0/16'] }", "prefixes: ['10.3.0.0/16'"),
    extra: 'note: "open',
  });
  const ps = problems(text);
  t.ok(ps.length >= 2, 'more than one syntax error');
  t.ok(ps.every((p) => p.code === 'TOPO_ERR_YAML_SYNTAX'));
  t.match(ps.map((p) => p.message).join('\n'), /Missing closing "quote/);
  t.equal(ps[ps.length - 1]!.line, text.split('\n').length, 'the unterminated quote is reported at the end');
  t.end();
});

t.test('duplicate keys are reported and validation goes on', (t) => {
  const text = doc({ extra: 'links: []' });
  const ps = problems(text);
  const dup = ps.find((p) => p.code === 'TOPO_ERR_DUPLICATE_KEY');
  t.ok(dup);
  t.same({ line: dup!.line, column: dup!.column }, pos(text, 'links: []'));
  t.end();
});

t.test('not a mapping', (t) => {
  for (const text of ['- a\n- b\n', 'just text', '', '42\n']) {
    const ps = problems(text);
    t.equal(ps.length, 1, JSON.stringify(text));
    t.equal(ps[0]!.code, 'TOPO_ERR_NOT_MAPPING');
    t.equal(ps[0]!.line, 1);
    t.equal(ps[0]!.column, 1);
    t.equal(ps[0]!.path, '');
  }
  t.end();
});

t.test('version must be 1', (t) => {
  const text = doc({ version: 'version: 2' });
  const p = expectOne(t, text, 'TOPO_ERR_VERSION', 'version', '2');
  t.equal(p?.found, '2');
  t.equal(p?.expected, '1');
  const missing = doc({ version: '# no version' });
  expectOne(t, missing, 'TOPO_ERR_REQUIRED', 'version', 'sites:');
  expectOne(t, doc({ version: "version: '1'" }), 'TOPO_ERR_VERSION', 'version', "'1'");
  t.end();
});

t.test('required fields, with the parent position and the expected shape', (t) => {
  const text = doc({ links: LINKS.replace('a: bj-a, b: cloud-a', 'a: bj-a') });
  const p = expectOne(t, text, 'TOPO_ERR_REQUIRED', 'links[1].b', '{ id: l2');
  t.equal(p?.found, 'missing');
  t.match(p?.expected, /non-empty string/);
  expectOne(
    t,
    doc({ sites: SITES.replace('id: sh-a, kind: dc, ', 'id: sh-a, ') }),
    'TOPO_ERR_REQUIRED',
    'sites[1].kind',
    '{ id: sh-a',
  );
  expectOne(
    t,
    doc({ classes: CLASSES.replace('    objective: latency\n', '') }),
    'TOPO_ERR_REQUIRED',
    'classes[0].objective',
    'id: voice',
  );
  expectOne(
    t,
    doc({ classes: CLASSES.replace('    priority: 1\n', '') }),
    'TOPO_ERR_REQUIRED',
    'classes[0].priority',
    'id: voice',
  );
  expectOne(t, doc({ links: 'links_: []' }), 'TOPO_ERR_REQUIRED', 'links', 'version');
  expectOne(
    t,
    doc({ links: LINKS.replace(', latencyMs: 1.5', '') }),
    'TOPO_ERR_REQUIRED',
    'links[1].latencyMs',
    '{ id: l2',
  );
  // a missing field is one problem, not also a type error
  t.equal(problems(text).length, 1);
  t.end();
});

t.test('types', (t) => {
  const p = expectOne(
    t,
    doc({ links: LINKS.replace('capacityMbps: 10000', "capacityMbps: '10G'") }),
    'TOPO_ERR_TYPE',
    'links[1].capacityMbps',
    "'10G'",
  );
  t.equal(p?.found, "'10G'");
  t.equal(p?.expected, 'a number > 0');
  expectOne(t, doc({ sites: 'sites: { bj-a: dc }' }), 'TOPO_ERR_TYPE', 'sites', '{ bj-a');
  expectOne(
    t,
    doc({ sites: SITES.replace("prefixes: ['10.1.0.0/16']", 'prefixes: 10.1.0.0/16') }),
    'TOPO_ERR_TYPE',
    'sites[0].prefixes',
    '10.1.0.0/16',
  );
  expectOne(t, doc({ links: LINKS.replace('id: l1', 'id: 17') }), 'TOPO_ERR_TYPE', 'links[0].id', '17');
  expectOne(
    t,
    doc({ links: LINKS.replace('latencyMs: 14', 'latencyMs: .nan') }),
    'TOPO_ERR_TYPE',
    'links[0].latencyMs',
    '.nan',
  );
  expectOne(
    t,
    doc({ links: LINKS.replace('latencyMs: 14', 'latencyMs: .inf') }),
    'TOPO_ERR_TYPE',
    'links[0].latencyMs',
    '.inf',
  );
  expectOne(
    t,
    doc({ classes: CLASSES.replace('priority: 1', 'priority: 1.5') }),
    'TOPO_ERR_TYPE',
    'classes[0].priority',
    'priority: |1.5',
  );
  expectOne(
    t,
    doc({ sites: SITES.replace('  - { id: cloud-a, kind: cloud }', '  - cloud-a') }),
    'TOPO_ERR_TYPE',
    'sites[2]',
    'cloud-a',
  );
  expectOne(
    t,
    doc({ classes: CLASSES.replace('dscp: [46]', "dscp: ['ef']") }),
    'TOPO_ERR_TYPE',
    'classes[0].match.dscp[0]',
    "'ef'",
  );
  t.end();
});

t.test('unknown kind, transport, objective list the allowed values', (t) => {
  const k = expectOne(
    t,
    doc({ sites: SITES.replace('kind: cloud', 'kind: cloudy') }),
    'TOPO_ERR_ENUM',
    'sites[2].kind',
    'cloudy',
  );
  t.equal(k?.expected, 'one of dc, cloud, edge');
  t.equal(k?.found, "'cloudy'");
  const tr = expectOne(
    t,
    doc({ links: LINKS.replace('transport: fiber', 'transport: satellite') }),
    'TOPO_ERR_ENUM',
    'links[1].transport',
    'satellite',
  );
  t.equal(tr?.expected, 'one of fiber, leased, mpls, internet, cloud-direct');
  const o = expectOne(
    t,
    doc({ classes: CLASSES.replace('objective: latency', 'objective: speed') }),
    'TOPO_ERR_ENUM',
    'classes[0].objective',
    'speed',
  );
  t.equal(o?.expected, 'one of latency, cost, hops');
  t.match(
    o?.message,
    "classes[0].objective: unknown objective 'speed' (expected one of latency, cost, hops)",
  );
  expectOne(
    t,
    doc({ classes: CLASSES.replace('match: { dscp: [46] }', 'match: { protocol: sctp }') }),
    'TOPO_ERR_ENUM',
    'classes[0].match.protocol',
    'sctp',
  );
  t.end();
});

t.test('duplicate ids of sites, links, classes and devices', (t) => {
  const s = expectOne(
    t,
    doc({ sites: SITES + "\n  - { id: sh-a, kind: edge, prefixes: ['10.9.0.0/16'] }" }),
    'TOPO_ERR_DUPLICATE_ID',
    'sites[3].id',
    'sh-a',
    1,
  );
  t.match(s?.message, /first defined at sites\[1\] \(line 4\)/);
  expectOne(
    t,
    doc({ links: LINKS.replace('id: l2', 'id: l1') }),
    'TOPO_ERR_DUPLICATE_ID',
    'links[1].id',
    'l1',
    1,
  );
  const cls = CLASSES + '\n' + CLASSES.replace('classes:\n', '');
  expectOne(t, doc({ classes: cls }), 'TOPO_ERR_DUPLICATE_ID', 'classes[1].id', 'voice', 1);
  const devs =
    'devices:\n  - { id: r1, site: bj-a, driver: linux }\n  - { id: r1, site: sh-a, driver: linux }';
  expectOne(t, doc({ extra: devs }), 'TOPO_ERR_DUPLICATE_ID', 'devices[1].id', 'r1', 1);
  t.end();
});

t.test('links to unknown sites name the known ones', (t) => {
  const text = doc({ links: LINKS.replace('b: sh-a', 'b: sh-z') });
  const p = expectOne(t, text, 'TOPO_ERR_UNKNOWN_SITE', 'links[0].b', 'sh-z');
  t.equal(p?.found, "'sh-z'");
  t.equal(p?.expected, 'one of the site ids: bj-a, sh-a, cloud-a');
  t.equal(
    p?.message,
    `test.yaml:${pos(text, 'sh-z').line}:${pos(text, 'sh-z').column} links[0].b: unknown site 'sh-z', did you mean 'sh-a'? (expected one of the site ids: bj-a, sh-a, cloud-a)`,
  );
  expectOne(
    t,
    doc({ links: LINKS.replace('a: bj-a, b: cloud-a', 'a: nowhere, b: cloud-a') }),
    'TOPO_ERR_UNKNOWN_SITE',
    'links[1].a',
    'nowhere',
  );
  t.end();
});

t.test('self-loops', (t) => {
  const p = expectOne(
    t,
    doc({ links: LINKS.replace('b: sh-a', 'b: bj-a') }),
    'TOPO_ERR_SELF_LOOP',
    'links[0].b',
    'bj-a',
    2,
  );
  t.match(p?.message, "link joins site 'bj-a' to itself");
  t.end();
});

t.test('ranges: capacity, latency, jitter, loss, cost, maxUtilPct, dscp, priority', (t) => {
  const cases: [string, string, string, string][] = [
    ['capacityMbps: 1000', 'capacityMbps: 0', 'links[0].capacityMbps', 'a number > 0'],
    ['capacityMbps: 1000', 'capacityMbps: -5', 'links[0].capacityMbps', 'a number > 0'],
    ['latencyMs: 14', 'latencyMs: -1', 'links[0].latencyMs', 'a number >= 0'],
    ['jitterMs: 1', 'jitterMs: -0.5', 'links[0].jitterMs', 'a number >= 0'],
    ['lossPct: 0', 'lossPct: -0.1', 'links[0].lossPct', 'a number >= 0 and <= 100'],
    ['lossPct: 0', 'lossPct: 100.5', 'links[0].lossPct', 'a number >= 0 and <= 100'],
    ['cost: 3', 'cost: -3', 'links[0].cost', 'a number >= 0'],
  ];
  for (const [from, to, p, expected] of cases) {
    const text = doc({ links: LINKS.replace(from, to) });
    const pr = expectOne(t, text, 'TOPO_ERR_RANGE', p, to.replace(': ', ': |'));
    t.equal(pr?.expected, expected, to);
  }
  const classCases: [string, string, string, string][] = [
    ['maxUtilPct: 85', 'maxUtilPct: 0', 'classes[0].maxUtilPct', 'maxUtilPct: |0'],
    ['maxUtilPct: 85', 'maxUtilPct: 120', 'classes[0].maxUtilPct', 'maxUtilPct: |120'],
    ['dscp: [46]', 'dscp: [46, 64]', 'classes[0].match.dscp[1]', '64'],
    ['dscp: [46]', 'dscp: [-1]', 'classes[0].match.dscp[0]', '-1'],
    ['priority: 1', 'priority: -1', 'classes[0].priority', '-1'],
  ];
  for (const [from, to, p, needle] of classCases) {
    expectOne(
      t,
      doc({ classes: CLASSES.replace(from, to) }),
      'TOPO_ERR_RANGE',
      p,
      needle,
      needle === '0' ? 0 : 0,
    );
  }
  t.end();
});

t.test('SLA bounds missing or negative', (t) => {
  expectOne(
    t,
    doc({ classes: CLASSES.replace(', maxJitterMs: 30', '') }),
    'TOPO_ERR_REQUIRED',
    'classes[0].sla.maxJitterMs',
    '{ maxLatencyMs',
  );
  expectOne(
    t,
    doc({ classes: CLASSES.replace('maxLatencyMs: 150', 'maxLatencyMs: -150') }),
    'TOPO_ERR_RANGE',
    'classes[0].sla.maxLatencyMs',
    '-150',
  );
  expectOne(
    t,
    doc({ classes: CLASSES.replace('maxLossPct: 1', 'maxLossPct: -1') }),
    'TOPO_ERR_RANGE',
    'classes[0].sla.maxLossPct',
    '-1',
  );
  expectOne(
    t,
    doc({ classes: CLASSES.replace('    sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 }\n', '') }),
    'TOPO_ERR_REQUIRED',
    'classes[0].sla',
    'id: voice',
  );
  t.end();
});

t.test('invalid prefixes, with the canonical block when only host bits are set', (t) => {
  const bad = (p: string) => doc({ sites: SITES.replace("'10.3.0.0/16'", `'${p}'`) });
  const host = expectOne(
    t,
    bad('10.3.2.1/16'),
    'TOPO_ERR_PREFIX_INVALID',
    'sites[1].prefixes[0]',
    "'10.3.2.1/16'",
  );
  t.equal(host?.expected, 'the block 10.3.0.0/16 (host bits zero)');
  for (const p of ['10.3.0.0/33', '10.300.0.0/16', 'banana', '10.3.0.0', '010.3.0.0/16', '2001:db8::/32']) {
    expectOne(t, bad(p), 'TOPO_ERR_PREFIX_INVALID', 'sites[1].prefixes[0]', `'${p}'`);
  }
  t.end();
});

t.test('overlapping prefixes between sites and within a site', (t) => {
  const between = doc({ sites: SITES.replace("'10.3.0.0/16'", "'10.1.128.0/17'") });
  const p = expectOne(t, between, 'TOPO_ERR_PREFIX_OVERLAP', 'sites[1].prefixes[0]', "'10.1.128.0/17'");
  t.match(
    p?.message,
    "prefix 10.1.128.0/17 of site 'sh-a' overlaps 10.1.0.0/16 of site 'bj-a' (sites[0].prefixes[0])",
  );
  // the wider block later in the file: reported at the later one
  const wider = doc({ sites: SITES.replace("'10.3.0.0/16'", "'10.0.0.0/8'") });
  expectOne(t, wider, 'TOPO_ERR_PREFIX_OVERLAP', 'sites[1].prefixes[0]', "'10.0.0.0/8'");
  const within = doc({ sites: SITES.replace("['10.3.0.0/16']", "['10.3.0.0/16', '10.3.4.0/24']") });
  const w = expectOne(t, within, 'TOPO_ERR_PREFIX_OVERLAP', 'sites[1].prefixes[1]', "'10.3.4.0/24'");
  t.match(w?.message, 'of the same site');
  const same = doc({ sites: SITES.replace('kind: cloud }', "kind: cloud, prefixes: ['10.1.0.0/16'] }") });
  expectOne(t, same, 'TOPO_ERR_PREFIX_OVERLAP', 'sites[2].prefixes[0]', "'10.1.0.0/16'", 1);
  t.end();
});

t.test('empty class list and empty site list', (t) => {
  const p = expectOne(t, doc({ classes: 'classes: []' }), 'TOPO_ERR_EMPTY_CLASSES', 'classes', '[]');
  t.match(p?.expected, /non-empty list/);
  expectOne(t, doc({ sites: 'sites: []', links: 'links: []' }), 'TOPO_ERR_EMPTY_SITES', 'sites', '[]');
  t.end();
});

t.test('devices: site and link references, driver, SNMP settings', (t) => {
  const devs = `devices:
  - id: r1
    site: sh-b
    driver: cisco
    snmp: { host: 127.0.0.1, port: 70000, community: public, version: 3 }
    interfaces:
      - { ifName: eth0, link: l9 }
      - { ifName: eth1, link: l2 }
  - id: r2
    site: bj-a
    driver: routeros
    address: 127.0.0.1:8728
    snmp: { host: 127.0.0.1, community: public }
    interfaces: [{ ifName: ether1, link: l1 }]`;
  const text = doc({ extra: devs });
  expectOne(t, text, 'TOPO_ERR_UNKNOWN_SITE', 'devices[0].site', 'sh-b');
  expectOne(t, text, 'TOPO_ERR_ENUM', 'devices[0].driver', 'cisco');
  expectOne(t, text, 'TOPO_ERR_RANGE', 'devices[0].snmp.port', '70000');
  expectOne(t, text, 'TOPO_ERR_ENUM', 'devices[0].snmp.version', 'version: |3');
  expectOne(t, text, 'TOPO_ERR_UNKNOWN_LINK', 'devices[0].interfaces[0].link', 'l9');
  t.equal(problems(text).length, 5, 'r1 has five problems, r2 none');
  const ok = parseTopology(
    doc({
      extra: devs
        .split('  - id: r2')[0]!
        .replace(/.*\n/, 'devices:\n')
        .replace(/[\s\S]*/, 'devices:\n  - id: r2' + devs.split('  - id: r2')[1]!),
    }),
  );
  t.same(ok.devices[0], {
    id: 'r2',
    site: 'bj-a',
    driver: 'routeros',
    address: '127.0.0.1:8728',
    snmp: { host: '127.0.0.1', port: 161, community: 'public', version: '2c' },
    interfaces: [{ ifName: 'ether1', link: 'l1' }],
  });
  const notHere = doc({
    extra: 'devices:\n  - { id: r3, site: sh-a, driver: linux, interfaces: [{ ifName: eth0, link: l2 }] }',
  });
  expectOne(t, notHere, 'TOPO_ERR_LINK_NOT_AT_SITE', 'devices[0].interfaces[0].link', 'l2', 1);
  t.end();
});

t.test('every problem in one pass, sorted by position', (t) => {
  const text = doc({
    version: 'version: 3',
    sites: SITES.replace('kind: cloud', 'kind: sky').replace("'10.3.0.0/16'", "'10.3.0.1/16'"),
    links: LINKS.replace('b: sh-a', 'b: sh-q').replace('capacityMbps: 10000', 'capacityMbps: 0'),
    classes: CLASSES.replace('objective: latency', 'objective: fast').replace(
      'maxLossPct: 1',
      'maxLossPct: -2',
    ),
  });
  const ps = problems(text);
  t.same(
    ps.map((p) => p.code),
    [
      'TOPO_ERR_VERSION',
      'TOPO_ERR_PREFIX_INVALID',
      'TOPO_ERR_ENUM',
      'TOPO_ERR_UNKNOWN_SITE',
      'TOPO_ERR_RANGE',
      'TOPO_ERR_RANGE',
      'TOPO_ERR_ENUM',
    ],
  );
  const sorted = [...ps].sort((a, b) => a.line - b.line || a.column - b.column);
  t.same(ps, sorted);
  try {
    parseTopology(text, 'bad.yaml');
    t.fail('should throw');
  } catch (err) {
    t.ok(isTopologyError(err));
    const e = err as TopologyError;
    t.equal(e.problems.length, 7);
    t.equal(e.code, 'TOPO_ERR_VERSION');
    t.match(e.message, /^7 problems in bad\.yaml:\n {2}bad\.yaml:1:10 version: /);
  }
  t.end();
});

t.test('warnings for likely typos of known keys', (t) => {
  const r = checkTopology(
    doc({ links: LINKS.replace('jitterMs: 1', 'jiterMs: 1'), extra: 'devices_list: []' }),
    'w.yaml',
  );
  t.ok(r.topology, 'still valid');
  t.same(
    r.warnings.map((w) => [w.code, w.path]),
    [['TOPO_WARN_UNKNOWN_KEY', 'links[0].jiterMs']],
  );
  t.match(r.warnings[0]!.message, "did you mean 'jitterMs'?");
  const text = doc({ links: LINKS.replace('jitterMs: 1', 'jiterMs: 1') });
  const w = checkTopology(text, 'w.yaml').warnings[0]!;
  t.same({ line: w.line, column: w.column }, pos(text, 'jiterMs'), 'points at the key');
  t.end();
});

t.test('loadTopology: a path or YAML text; unreadable files', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-loader-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'topo.yaml');
  fs.writeFileSync(file, doc());
  t.equal(loadTopology(file).source, file);
  t.equal(loadTopology(doc()).source, '<inline>');
  t.equal(
    loadTopology(
      '{ version: 1, sites: [{ id: a, kind: dc }], links: [], classes: [{ id: c, sla: { maxLatencyMs: 1, maxJitterMs: 1, maxLossPct: 1 }, objective: hops, priority: 1 }] }',
    ).sites.length,
    1,
  );
  for (const bad of [path.join(dir, 'missing.yaml'), dir]) {
    try {
      loadTopology(bad);
      t.fail('should throw');
    } catch (err) {
      t.ok(isTopologyError(err));
      const e = err as TopologyError;
      t.equal(e.problems[0]!.code, 'TOPO_ERR_UNREADABLE');
      t.equal(e.problems[0]!.file, bad);
    }
  }
  const bin = path.join(dir, 'bin.yaml');
  fs.writeFileSync(bin, Buffer.from([0x76, 0x65, 0xff, 0xfe, 0x0a]));
  t.throws(() => loadTopology(bin), { code: 'TOPO_ERR_UNREADABLE' });
  t.end();
});

t.test('large inputs: 5,000 sites load; oversized files and YAML bombs are refused quickly', (t) => {
  const lines = ['version: 1', 'sites:'];
  const n = 5000;
  for (let i = 0; i < n; i++) {
    lines.push(
      `  - { id: s${i}, kind: ${i < 6 ? 'dc' : 'edge'}, region: r${i % 7}, prefixes: ['10.${i >> 8}.${i & 255}.0/24'] }`,
    );
  }
  lines.push('links:');
  for (let i = 1; i < n; i++) {
    lines.push(
      `  - { id: s${i}.s${i % 6}, a: s${i}, b: s${i % 6 === i ? (i + 1) % 6 : i % 6}, transport: mpls, capacityMbps: 100, latencyMs: ${i % 30} }`,
    );
  }
  lines.push(CLASSES);
  const big = lines.join('\n') + '\n';
  const topo = parseTopology(big, 'big.yaml');
  t.equal(topo.sites.length, n);
  t.equal(topo.links.length, n - 1);

  // a big file with problems everywhere still reports all of them
  const broken = big.replace(/capacityMbps: 100/g, 'capacityMbps: 0');
  t.equal(checkTopology(broken, 'broken.yaml').problems.length, n - 1);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-large-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const huge = path.join(dir, 'huge.yaml');
  fs.writeFileSync(huge, '');
  fs.truncateSync(huge, MAX_INPUT_BYTES + 1); // sparse: not read, refused on its size
  t.throws(() => loadTopology(huge), { code: 'TOPO_ERR_TOO_LARGE' });
  const text = 'version: 1\n# ' + 'x'.repeat(MAX_INPUT_BYTES) + '\n';
  t.equal(checkTopology(text).problems[0]?.code, 'TOPO_ERR_TOO_LARGE');

  // billion laughs: 10 levels of 10 aliases each would expand to 10^10 nodes
  const bomb = ['version: 1', 'l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
  for (let i = 1; i <= 10; i++)
    bomb.push(`l${i}: &l${i} [${Array.from({ length: 10 }, () => `*l${i - 1}`).join(', ')}]`);
  bomb.push('sites: *l10');
  const b = checkTopology(bomb.join('\n') + '\n', 'bomb.yaml').problems;
  t.equal(b.length, 1);
  t.equal(b[0]?.code, 'TOPO_ERR_TOO_LARGE');
  t.match(b[0]?.message, /alias/);

  // nesting a million levels deep would exhaust the parser's stack
  for (const deep of ['['.repeat(1_000_000), 'a: '.repeat(200) + 'x', '- '.repeat(100_000) + 'x']) {
    const d = checkTopology(deep, 'deep.yaml').problems;
    t.ok(d.length >= 1);
    t.ok(
      d.some((p) => p.code === 'TOPO_ERR_TOO_LARGE' || p.code === 'TOPO_ERR_YAML_SYNTAX'),
      d[0]?.message ?? '',
    );
  }
  t.equal(checkTopology('['.repeat(1_000_000), 'deep.yaml').problems[0]?.code, 'TOPO_ERR_TOO_LARGE');
  t.end();
});
