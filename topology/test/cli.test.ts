// End to end: spawns the real `meridian` command (bin/meridian.js → the built dist of this package;
// `npm test` builds first, or run `npx tsc -b topology`).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'meridian.js');
const REFERENCE = path.join(ROOT, 'topology', 'reference.yaml');

function meridian(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meridian-cli-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
function file(name: string, content: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content);
  return p;
}

const ROUTE_KEYS = ['class', 'src', 'dst', 'status', 'primary', 'backup'];
const PATH_KEYS = ['sites', 'links', 'latencyMs', 'jitterMs', 'lossPct', 'cost', 'hops'];

interface PathJson {
  sites: string[];
  links: string[];
  latencyMs: number;
  jitterMs: number;
  lossPct: number;
  cost: number;
  hops: number;
}
interface RouteJson {
  class: string;
  src: string;
  dst: string;
  status: string;
  primary: PathJson | null;
  backup: PathJson | null;
}

function routesOf(stdout: string): RouteJson[] {
  return (JSON.parse(stdout) as { routes: RouteJson[] }).routes;
}

t.test('validate: exit 0 and a one-line summary for a valid file', (t) => {
  const r = meridian('validate', 'topology/reference.yaml');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'topology/reference.yaml: ok — 10 sites, 29 links, 5 classes, 0 devices\n');
  t.equal(r.stderr, '');
  const d = meridian('validate', 'topology/examples/with-devices.yaml');
  t.equal(d.code, 0);
  t.match(d.stdout, /3 sites, 4 links, 2 classes, 2 devices/);
  t.end();
});

t.test('validate: exit 2 with every error on stderr, no stack trace', (t) => {
  const bad = file(
    'bad.yaml',
    [
      'version: 1',
      'sites:',
      '  - { id: bj-a, kind: dc }',
      '  - { id: sh-a, kind: datacentre }',
      'links:',
      '  - { id: l1, a: bj-a, b: sh-z, transport: leased, capacityMbps: -1, latencyMs: 10 }',
      'classes: []',
      '',
    ].join('\n'),
  );
  const r = meridian('validate', bad);
  t.equal(r.code, 2);
  t.equal(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  t.equal(lines[0], `${bad}: invalid, 4 problems:`);
  t.match(
    lines[1],
    `${bad}:4:23 sites[1].kind: unknown site kind 'datacentre' (expected one of dc, cloud, edge)`,
  );
  t.match(lines[2], `${bad}:6:27 links[0].b: unknown site 'sh-z'`);
  t.match(
    lines[3],
    `${bad}:6:66 links[0].capacityMbps: capacityMbps out of range: -1 (expected a number > 0)`,
  );
  t.match(lines[4], `${bad}:7:10 classes: no traffic classes`);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');

  const syntax = meridian('validate', file('syntax.yaml', 'version: 1\nsites: [\n'));
  t.equal(syntax.code, 2);
  t.match(syntax.stderr, /syntax\.yaml:\d+:\d+: YAML syntax/);
  t.end();
});

t.test('validate: bad usage and unreadable files exit 2', (t) => {
  const missing = meridian('validate', path.join(dir, 'nope.yaml'));
  t.equal(missing.code, 2);
  t.match(missing.stderr, 'cannot read file: no such file');
  t.equal(meridian('validate', dir).code, 2);
  const none = meridian('validate');
  t.equal(none.code, 2);
  t.match(none.stderr, 'missing FILE');
  t.equal(meridian('validate', 'a.yaml', 'b.yaml').code, 2);
  t.equal(meridian('validate', '--strict', REFERENCE).code, 2);
  t.equal(meridian('validate', '--help').code, 0);
  t.end();
});

t.test('routes --json: every ordered pair and class, exactly the contract fields', (t) => {
  const r = meridian('routes', '--json');
  t.equal(r.code, 0, r.stderr);
  t.ok(r.stdout.endsWith('}\n'));
  t.same(Object.keys(JSON.parse(r.stdout) as object), ['routes']);
  const routes = routesOf(r.stdout);
  t.equal(routes.length, 10 * 9 * 5, '90 ordered pairs × 5 classes');
  // One assertion per property over all 450 routes (not 10,000 tiny ones): the failures list says which.
  const seen = new Set<string>();
  const bad: string[] = [];
  const check = (ok: boolean, what: string) => {
    if (!ok) bad.push(what);
  };
  for (const route of routes) {
    const name = `${route.class} ${route.src}->${route.dst}`;
    check(JSON.stringify(Object.keys(route)) === JSON.stringify(ROUTE_KEYS), `${name}: route keys`);
    seen.add(name);
    check(route.src !== route.dst, `${name}: src = dst`);
    check(['ok', 'degraded', 'unreachable'].includes(route.status), `${name}: status`);
    check(
      route.status === 'unreachable' ? route.primary === null : route.primary !== null,
      `${name}: primary`,
    );
    for (const p of [route.primary, route.backup]) {
      if (p === null) continue;
      check(JSON.stringify(Object.keys(p)) === JSON.stringify(PATH_KEYS), `${name}: path keys`);
      check(p.sites[0] === route.src && p.sites[p.sites.length - 1] === route.dst, `${name}: ends`);
      check(p.links.length === p.hops && p.sites.length === p.hops + 1, `${name}: hops`);
      for (const k of ['latencyMs', 'jitterMs', 'lossPct', 'cost'] as const) {
        check(typeof p[k] === 'number' && Number.isFinite(p[k]), `${name}: ${k}`);
      }
    }
  }
  t.same(bad, [], 'every route has exactly the contract shape');
  t.equal(seen.size, routes.length, 'no duplicates');
  // With --topology naming the reference file, the output is the same.
  t.equal(meridian('routes', '--topology', REFERENCE, '--json').stdout, r.stdout);
  t.end();
});

t.test('routes --from/--to/--class select pairs and classes', (t) => {
  const one = routesOf(
    meridian('routes', '--from', 'bj-a', '--to', 'sh-a', '--class', 'voice', '--json').stdout,
  );
  t.equal(one.length, 1);
  t.same(
    { class: one[0]!.class, src: one[0]!.src, dst: one[0]!.dst, status: one[0]!.status },
    { class: 'voice', src: 'bj-a', dst: 'sh-a', status: 'ok' },
  );
  t.same(one[0]!.primary, {
    sites: ['bj-a', 'sh-a'],
    links: ['bj-a.sh-a.leased'],
    latencyMs: 13,
    jitterMs: 0.5,
    lossPct: 0,
    cost: 10,
    hops: 1,
  });
  t.not(one[0]!.backup, null);
  t.notOk(one[0]!.backup!.links.includes('bj-a.sh-a.leased'), 'backup shares no link with the primary');

  const from = routesOf(
    meridian('routes', '--from', 'edge-gz', '--class', 'sync', '--class', 'voice', '--json').stdout,
  );
  t.equal(from.length, 18, '9 destinations × 2 classes');
  t.ok(from.every((r) => r.src === 'edge-gz'));
  t.same([...new Set(from.map((r) => r.class))], ['voice', 'sync'], 'topology class order');
  const to = routesOf(meridian('routes', '--to', 'cloud-b', '--class', 'api', '--json').stdout);
  t.equal(to.length, 9);
  t.ok(to.every((r) => r.dst === 'cloud-b' && r.class === 'api'));
  t.end();
});

t.test('routes: the human table is aligned', (t) => {
  const r = meridian('routes', '--from', 'bj-a', '--to', 'sh-a');
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.match(lines[0], /^CLASS\s+SRC\s+DST\s+STATUS\s+PRIMARY\s+LAT_MS\s+JIT_MS\s+LOSS_%\s+COST\s+BACKUP$/);
  t.equal(lines.length, 1 + 5 + 1, 'header, five classes, summary');
  const primaryCol = lines[0]!.indexOf('PRIMARY');
  for (const line of lines.slice(1, 6)) t.equal(line.indexOf('bj-a -['), primaryCol, line);
  t.match(lines[1], /^voice\s+bj-a\s+sh-a\s+ok\s+bj-a -\[leased\]-> sh-a\s+13\s+0\.5\s+0\s+10\s+bj-a /);
  t.equal(lines[6], '5 routes: 5 ok, 0 degraded, 0 unreachable');
  t.end();
});

t.test('routes --fail-link: what-if with the link down', (t) => {
  const r = meridian(
    'routes',
    '--from',
    'bj-a',
    '--to',
    'sh-a',
    '--class',
    'voice',
    '--fail-link',
    'bj-a.sh-a.leased',
    '--json',
  );
  t.equal(r.code, 0, r.stderr);
  const [route] = routesOf(r.stdout);
  t.equal(route!.status, 'ok');
  t.notOk(route!.primary!.links.includes('bj-a.sh-a.leased'));
  t.notOk(route!.backup?.links.includes('bj-a.sh-a.leased') ?? false);

  // cutting both links of a branch makes it unreachable
  const cut = meridian(
    'routes',
    '--to',
    'edge-hz',
    '--fail-link',
    'edge-hz.sh-a.mpls',
    '--fail-link',
    'edge-hz.sh-b.internet',
    '--json',
  );
  const routes = routesOf(cut.stdout);
  t.equal(routes.length, 45);
  t.ok(routes.every((x) => x.status === 'unreachable' && x.primary === null && x.backup === null));
  const table = meridian(
    'routes',
    '--from',
    'bj-a',
    '--to',
    'edge-hz',
    '--class',
    'voice',
    '--fail-link',
    'edge-hz.sh-a.mpls',
    '--fail-link',
    'edge-hz.sh-b.internet',
  );
  t.match(table.stdout, /voice\s+bj-a\s+edge-hz\s+unreachable\s+-/);
  t.end();
});

t.test('routes --state: measured state overrides nominal values', (t) => {
  const down = file('down.json', JSON.stringify({ links: { 'bj-a.sh-a.leased': { up: false } } }));
  const a = meridian('routes', '--from', 'bj-a', '--to', 'sh-a', '--state', down, '--json');
  const b = meridian('routes', '--from', 'bj-a', '--to', 'sh-a', '--fail-link', 'bj-a.sh-a.leased', '--json');
  t.equal(a.code, 0, a.stderr);
  t.equal(a.stdout, b.stdout, 'up:false in the state = --fail-link');

  // 90% utilisation is above voice's 85%: voice leaves the link, sync (95%) keeps it when cheapest
  const busy = file('busy.json', JSON.stringify({ links: { 'bj-a.sh-a.leased': { utilPct: 90 } } }));
  const [voice] = routesOf(
    meridian('routes', '--from', 'bj-a', '--to', 'sh-a', '--class', 'voice', '--state', busy, '--json')
      .stdout,
  );
  t.notOk(voice!.primary!.links.includes('bj-a.sh-a.leased'));

  // a slower measured latency is what the metrics use
  const slow = file('slow.json', JSON.stringify({ links: { 'bj-a.sh-a.leased': { latencyMs: 40 } } }));
  const [v2] = routesOf(
    meridian('routes', '--from', 'bj-a', '--to', 'sh-a', '--class', 'voice', '--state', slow, '--json')
      .stdout,
  );
  t.notOk(v2!.primary!.links.includes('bj-a.sh-a.leased'));
  t.ok(v2!.primary!.latencyMs < 40);

  // both links of a branch too lossy for voice: degraded with a best-effort primary; sync still ok
  const lossy = file(
    'lossy.json',
    JSON.stringify({
      links: { 'edge-hz.sh-a.mpls': { lossPct: 5 }, 'edge-hz.sh-b.internet': { lossPct: 3 } },
    }),
  );
  const deg = routesOf(
    meridian('routes', '--from', 'edge-hz', '--to', 'bj-a', '--state', lossy, '--json').stdout,
  );
  t.same(
    deg.map((r) => [r.class, r.status]),
    [
      ['voice', 'degraded'],
      ['video', 'degraded'],
      ['signaling', 'degraded'],
      ['api', 'degraded'],
      ['sync', 'ok'],
    ],
  );
  t.ok(deg[0]!.primary !== null && deg[0]!.primary.lossPct > 1, 'best effort breaks the loss bound');
  // loss combines: 100 × (1 − 0.97 × 0.994) = 3.582, printed without float noise
  t.equal(deg[4]!.primary!.lossPct, 3.582);
  t.end();
});

t.test('routes: bad state files exit 2 with precise errors', (t) => {
  const syntax = meridian('routes', '--state', file('s1.json', '{"links": {\n  "x": }\n}'));
  t.equal(syntax.code, 2);
  t.match(syntax.stderr, /s1\.json:2:\d+: JSON syntax/);
  const unknown = meridian(
    'routes',
    '--state',
    file('s2.json', '{"links": {"bj-a.sh-a.lease": {"up": false}}}'),
  );
  t.equal(unknown.code, 2);
  t.match(
    unknown.stderr,
    `links["bj-a.sh-a.lease"]: unknown link 'bj-a.sh-a.lease', did you mean 'bj-a.sh-a.leased'?`,
  );
  const types = meridian(
    'routes',
    '--state',
    file('s3.json', '{"links": {"bj-a.sh-a.leased": {"up": "no", "lossPct": 101}}}'),
  );
  t.equal(types.code, 2);
  t.match(types.stderr, 'invalid state, 2 problems');
  t.match(types.stderr, 'links["bj-a.sh-a.leased"].up: wrong type for up');
  t.match(types.stderr, 'links["bj-a.sh-a.leased"].lossPct: lossPct out of range: 101');
  t.equal(meridian('routes', '--state', file('s4.json', '[]')).code, 2);
  const missing = meridian('routes', '--state', path.join(dir, 'nope.json'));
  t.equal(missing.code, 2);
  t.match(missing.stderr, 'no such file');
  for (const r of [syntax, unknown, types, missing]) t.notMatch(r.stderr, /\n\s+at /);
  t.end();
});

t.test('routes: bad flags and unknown ids exit 2 with a clear message', (t) => {
  const cases: [string[], RegExp | string][] = [
    [['--bogus'], "Unknown option '--bogus'"],
    [['extra-positional'], /positional/i],
    [['--from'], /argument missing|needs a value/],
    [['--from', 'bj-z'], "--from: unknown site 'bj-z', did you mean 'bj-a'?"],
    [['--to', 'nowhere'], "--to: unknown site 'nowhere'"],
    [['--class', 'voip'], "--class: unknown class 'voip'"],
    [['--fail-link', 'no-such-link'], "--fail-link: unknown link 'no-such-link'"],
    [['--from', 'bj-a', '--to', 'bj-a'], 'the same site'],
    [['--topology', path.join(dir, 'missing.yaml')], 'cannot read file'],
    [
      ['--topology', file('t-bad.yaml', 'version: 1\nsites: []\nlinks: []\nclasses: []\n')],
      'invalid topology, 2 problems',
    ],
    [['--json=yes'], /--json/],
  ];
  for (const [args, message] of cases) {
    const r = meridian('routes', ...args);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stdout, '', 'nothing on stdout');
    t.match(r.stderr, message, args.join(' '));
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  t.equal(meridian('routes', '--help').code, 0);
  // a reader that stops early (`| head`) is normal use: no EPIPE crash
  const piped = spawnSync(
    'sh',
    ['-c', `"${process.execPath}" "${BIN}" routes --json | head -c 1 >/dev/null`],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  );
  t.equal(piped.stderr, '', 'nothing on stderr when the reader goes away');
  t.end();
});
