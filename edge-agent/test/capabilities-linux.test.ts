// probeLinuxCapabilities in a scratch network namespace: what it finds agrees with a direct attempt,
// and it leaves nothing behind (table 29999, rule pref 29998, lo as it was). Needs root; outside CI
// the namespace tests skip with the reason, under CI=true they fail instead.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { PROBE_RULE_PREF, PROBE_TABLE, probeLinuxCapabilities } from '../src/index';

function ip(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  return { code: r.status ?? 1, out: r.stdout ?? '', err: r.stderr ?? (r.error?.message || '') };
}

function missingPrerequisite(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  const v = ip('-V');
  if (v.code !== 0) return `iproute2 not found: ${v.err.trim()}`;
  if (spawnSync('nft', ['--version']).status !== 0) return 'nft not found';
  return null;
}

/** Rows of a table (an absent table reads as empty: the kernel says "FIB table does not exist"). */
function tableRows(ns: string, family: '-4' | '-6'): string[] {
  const r = ip('-n', ns, family, 'route', 'show', 'table', String(PROBE_TABLE));
  return r.out.split('\n').filter((l) => l.trim() !== '');
}

function probeRules(ns: string, family: '-4' | '-6'): string[] {
  return ip('-n', ns, family, 'rule', 'show')
    .out.split('\n')
    .filter((l) => l.startsWith(`${PROBE_RULE_PREF}:`));
}

function loUp(ns: string): boolean {
  return /[<,]UP[,>]/.test(ip('-n', ns, '-o', 'link', 'show', 'dev', 'lo').out);
}

const why = missingPrerequisite();
const skip = why !== null && process.env['CI'] !== 'true' ? why : false;

t.test('a namespace: modes agree with a direct SRv6 attempt, nothing left behind', { skip }, async (t) => {
  if (why !== null) {
    t.fail(`CI must run this test: ${why}`);
    return;
  }
  const ns = `mrcap-${process.pid}`;
  const add = ip('netns', 'add', ns);
  t.equal(add.code, 0, `netns add: ${add.err}`);
  t.teardown(() => void ip('netns', 'del', ns));
  t.notOk(loUp(ns), 'a new namespace has lo down');

  const caps = await probeLinuxCapabilities({ netns: ns });
  t.equal(caps.platform, 'linux');
  const release = spawnSync('ip', ['netns', 'exec', ns, 'uname', '-r'], { encoding: 'utf8' }).stdout.trim();
  t.equal(caps.platformVersion, release, 'kernel release as uname -r in the namespace says');
  t.ok(caps.modes.includes('hop-by-hop'), `hop-by-hop: ${JSON.stringify(caps)}`);
  t.ok(caps.features.includes('nftables') && caps.features.includes('policy-routing'));

  // The direct attempt, the way the driver would add an SRv6 route.
  ip('-n', ns, 'link', 'set', 'dev', 'lo', 'up');
  const direct = ip(
    '-n',
    ns,
    'route',
    'add',
    '198.18.0.1/32',
    'encap',
    'seg6',
    'mode',
    'encap',
    'segs',
    'fc00::9',
    'dev',
    'lo',
    'table',
    '555',
  );
  const srv6Works = direct.code === 0;
  ip('-n', ns, 'link', 'set', 'dev', 'lo', 'down');
  t.equal(caps.modes.includes('srv6'), srv6Works, `srv6 mode agrees with the kernel (${direct.err.trim()})`);
  t.equal(caps.features.includes('srv6-encap'), srv6Works);
  if (!srv6Works) {
    const m = caps.missing.find((x) => x.startsWith('srv6-encap: '));
    t.ok(m !== undefined && m.includes(direct.err.trim()), `missing says the kernel's words: ${m}`);
  }
  t.same(caps.modes, caps.modes.includes('srv6') ? ['srv6', 'hop-by-hop'] : ['hop-by-hop']);

  t.same(tableRows(ns, '-4'), [], `nothing in table ${PROBE_TABLE} (IPv4)`);
  t.same(tableRows(ns, '-6'), [], `nothing in table ${PROBE_TABLE} (IPv6)`);
  t.same(probeRules(ns, '-4'), [], `no rule pref ${PROBE_RULE_PREF}`);
  t.same(probeRules(ns, '-6'), [], `no IPv6 rule pref ${PROBE_RULE_PREF}`);
  t.notOk(loUp(ns), 'lo put back down');

  await t.test('a leftover of an interrupted probe is not read as a failure, and is removed', async (t) => {
    const rule = ['pref', String(PROBE_RULE_PREF), 'fwmark', '0x4d52ffff', 'table', String(PROBE_TABLE)];
    t.equal(ip('-n', ns, 'rule', 'add', ...rule).code, 0);
    const again = await probeLinuxCapabilities({ netns: ns });
    t.ok(again.features.includes('policy-routing'), JSON.stringify(again.missing));
    t.same(probeRules(ns, '-4'), []);
  });
});

t.test('tools that are not there: no modes, every feature missing with why, no throw', async (t) => {
  const caps = await probeLinuxCapabilities({
    ipBin: '/nonexistent/ip',
    nftBin: '/nonexistent/nft',
  });
  t.same(caps.modes, []);
  t.same(caps.features, []);
  t.same(
    caps.missing.map((m) => m.split(':')[0]),
    ['srv6-encap', 'srv6-end-x', 'srv6-end-dx4', 'nftables', 'policy-routing'],
  );
  t.match(caps.missing[0], /ENOENT/);
});

t.test('a namespace that does not exist: no modes, no throw', { skip }, async (t) => {
  if (why !== null) {
    t.fail(`CI must run this test: ${why}`);
    return;
  }
  const caps = await probeLinuxCapabilities({ netns: `mrcap-absent-${process.pid}` });
  t.same(caps.modes, []);
  t.equal(caps.missing.length, 5, JSON.stringify(caps.missing));
});
