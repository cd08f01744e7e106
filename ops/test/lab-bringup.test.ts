// `meridian lab up` / `meridian start` bring-up as a user meets it: progress on stderr, `--forwarding`,
// failing fast with the agent's own error when it cannot apply its policy, an interruption at any
// point leaving nothing behind, and `lab down` stopping every process of a lab whose `lab up` was
// killed. The CLI runs as a real process on real namespaces (root); without root those tests skip
// (never under CI=true). Site ids `lb-*` and a state directory of its own: other test files may
// build their labs meanwhile (MERIDIAN_LAB_WAIT_MS makes the CLI wait for the machine's lab slot).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  MERIDIAN_BIN,
  formatLabProgress,
  labPrerequisites,
  parseForwarding,
  policyFailure,
  policyFailureHint,
  type LabPolicyStatus,
  type LabState,
  type PolicyFailureHistory,
} from '../src/index';

const YAML = `version: 1
sites:
  - { id: lb-a, kind: edge, region: r1, prefixes: ['10.81.0.0/16'] }
  - { id: lb-b, kind: dc, region: r1, prefixes: ['10.82.0.0/16'] }
  - { id: lb-c, kind: edge, region: r2, prefixes: ['10.83.0.0/16'] }
links:
  - { id: lb-ab, a: lb-a, b: lb-b, transport: leased, capacityMbps: 1000, latencyMs: 2, jitterMs: 0, lossPct: 0, cost: 1 }
  - { id: lb-bc, a: lb-b, b: lb-c, transport: leased, capacityMbps: 1000, latencyMs: 2, jitterMs: 0, lossPct: 0, cost: 1 }
  - { id: lb-ac, a: lb-a, b: lb-c, transport: internet, capacityMbps: 1000, latencyMs: 9, jitterMs: 0, lossPct: 0, cost: 2 }
classes:
  - id: voice
    sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 }
    objective: latency
    maxUtilPct: 85
    priority: 1
    match: { dscp: [46], protocol: udp }
`;
const SITES = ['lb-a', 'lb-b', 'lb-c'];

t.test('--forwarding is validated before anything is built: exit 2 with the accepted values', (t) => {
  for (const cmd of [['lab', 'up'], ['start']]) {
    const r = spawnSync(process.execPath, [MERIDIAN_BIN, ...cmd, '--forwarding', 'bogus'], {
      encoding: 'utf8',
    });
    t.equal(r.status, 2, `${cmd.join(' ')} --forwarding bogus: exit 2`);
    t.match(r.stderr, /--forwarding must be one of auto, srv6, hop-by-hop; got 'bogus'/);
  }
  t.equal(parseForwarding(undefined), 'auto');
  t.equal(parseForwarding('hop-by-hop'), 'hop-by-hop');
  t.throws(() => parseForwarding('SRv6'), { code: 'OPS_ERR_BAD_ARGS' });
  t.end();
});

t.test('progress lines', (t) => {
  t.equal(formatLabProgress({ stage: 'sites', done: 2, total: 10 }), 'namespaces (sites) made 2/10');
  t.equal(formatLabProgress({ stage: 'policies', done: 0, total: 3 }), 'policies applied 0/3');
  t.match(
    formatLabProgress({
      stage: 'forwarding',
      mode: 'hop-by-hop',
      asked: 'auto',
      why: 'lwt encapsulation type not supported.',
    }),
    /forwarding: hop-by-hop \(auto: this kernel refuses SRv6 routes: lwt/,
  );
  t.end();
});

t.test('policy failures: final at once unless a retry can fix them; transient ones after 3', (t) => {
  const st = (site: string, status: string, code?: string, message = 'm', n = 1): LabPolicyStatus => ({
    site,
    status,
    version: 1,
    appliedVersion: 0,
    connected: true,
    error: code === undefined ? null : { code, message },
    attempts: n,
    updatedAt: `2026-01-01T00:00:0${n}Z`,
  });
  const waiting = new Set(['a', 'b']);
  const h: PolicyFailureHistory = new Map();
  t.equal(policyFailure([st('a', 'pending'), st('b', 'applied')], waiting, h, 0), null, 'nothing failed');
  t.match(
    policyFailure([st('a', 'failed', 'AGENT_ERR_DRIVER_UNSUPPORTED', 'SRv6 encap')], waiting, h, 0),
    { site: 'a', code: 'AGENT_ERR_DRIVER_UNSUPPORTED' },
    'a refusal no retry can fix: at once',
  );
  const srv6 = "ip refused 'route add … encap seg6 …' (Error: lwt encapsulation type not supported.)";
  t.match(
    policyFailure([st('b', 'failed', 'AGENT_ERR_DRIVER_APPLY', srv6)], waiting, new Map(), 0),
    { site: 'b', code: 'AGENT_ERR_DRIVER_APPLY' },
    "the kernel's SRv6 refusal is final although the code is a transient one",
  );
  t.equal(
    policyFailure([st('a', 'failed', 'AGENT_ERR_DRIVER_APPLY', 'x')], new Set(['b']), new Map(), 0),
    null,
    'a site not waited for is not judged',
  );
  const h2: PolicyFailureHistory = new Map();
  const busy = (n: number): LabPolicyStatus[] => [
    st('a', 'failed', 'AGENT_ERR_DRIVER_APPLY', 'File exists', n),
  ];
  t.equal(policyFailure(busy(1), waiting, h2, 0), null, 'transient: 1st refusal waits for the retry');
  t.equal(policyFailure(busy(1), waiting, h2, 500), null, 'the same refusal polled again counts once');
  t.equal(policyFailure(busy(2), waiting, h2, 1500), null, '2nd');
  t.match(policyFailure(busy(3), waiting, h2, 3500), { site: 'a' }, '3rd refusal: final');
  t.match(
    policyFailure(busy(1), waiting, new Map([['a', { firstAt: 0, seen: new Set(['x']) }]]), 20_000),
    { site: 'a' },
    'or 20 s of refusals',
  );
  t.match(
    policyFailureHint('AGENT_ERR_DRIVER_APPLY', srv6, 'srv6', '/x/agent-a.log'),
    /this kernel has no SRv6; run with --forwarding hop-by-hop/,
  );
  t.match(
    policyFailureHint('AGENT_ERR_DRIVER_APPLY', srv6, 'hop-by-hop', '/x/agent-a.log'),
    /asked for hop-by-hop .* does not do hop-by-hop forwarding yet/,
  );
  t.match(
    policyFailureHint('CTRL_ERR_POLICY_ACK_TIMEOUT', 'late', 'srv6', '/x/agent-a.log'),
    /never answered/,
  );
  t.end();
});

/** A `meridian …` process with its output collected and a wait for a stderr line. */
interface Cli {
  readonly child: ChildProcess;
  out: string;
  err: string;
  /** Resolves with the first stderr line matching `re` (rejects if the process exits first). */
  line(re: RegExp): Promise<string>;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function cli(args: readonly string[], env: NodeJS.ProcessEnv): Cli {
  const child = spawn(process.execPath, [MERIDIAN_BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const waiters = new Set<() => void>();
  const c: Cli = {
    child,
    out: '',
    err: '',
    line: (re) =>
      new Promise((resolve, reject) => {
        const look = (): void => {
          const m = c.err.split('\n').find((l) => re.test(l));
          if (m !== undefined) {
            waiters.delete(look);
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            waiters.delete(look);
            reject(new Error(`exited before a line matching ${String(re)}:\n${c.err}`));
          }
        };
        waiters.add(look);
        look();
      }),
    exit: new Promise((resolve) =>
      child.once('close', (code, signal) => {
        for (const w of [...waiters]) w();
        resolve({ code, signal });
      }),
    ),
  };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (c.out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    c.err += d;
    for (const w of [...waiters]) w();
  });
  return c;
}

function readState(dir: string): LabState | null {
  try {
    return JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as LabState;
  } catch {
    return null;
  }
}

function alive(p: { pid: number; what: string }): boolean {
  try {
    return readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').includes(p.what);
  } catch {
    return false;
  }
}

/** Processes whose command line names `dir` (controller, agents, emulator of that lab). */
function processesNaming(dir: string): string[] {
  const found: string[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes(`${dir}/`)) found.push(`${e} ${cmd.replace(/\0/g, ' ').slice(0, 120)}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function labNamespaces(): string[] {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  return list
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => SITES.some((s) => n === `mrd-${s}`));
}

/** Nothing of the lab in `dir` is left: namespaces, the recorded processes, anything naming `dir`. */
function assertGone(t: Test, dir: string, pids: readonly { pid: number; what: string }[]): void {
  t.same(labNamespaces(), [], 'no namespace of the lab is left');
  t.same(processesNaming(dir), [], 'no process naming the lab state directory is left');
  const left = pids.filter(alive);
  t.same(left, [], `every recorded process (${pids.length}) is gone`);
}

/** Does this kernel take an SRv6 encap route? Asked in a namespace of our own (lo up), like `auto`. */
function kernelHasSrv6(): boolean {
  const ns = `mlt-probe-${process.pid}`;
  spawnSync('ip', ['netns', 'add', ns]);
  try {
    spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const r = spawnSync('ip', [
      '-n',
      ns,
      'route',
      'add',
      '198.18.0.0/32',
      'encap',
      'seg6',
      'mode',
      'encap',
      'segs',
      'fc00::1',
      'dev',
      'lo',
    ]);
    return r.status === 0;
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

t.test('bring-up on namespaces (root)', async (t) => {
  const why = await labPrerequisites();
  if (why !== null) {
    if (process.env['CI'] === 'true') t.fail(`CI must run the lab tests: ${why}`);
    else t.plan(0, `skipped: ${why}`);
    return;
  }
  const work = mkdtempSync(path.join(os.tmpdir(), 'meridian-lab-bringup-'));
  const topo = path.join(work, 'lb.yaml');
  writeFileSync(topo, YAML);
  const stateDir = path.join(work, 'state');
  const env = { MERIDIAN_LAB_DIR: stateDir, MERIDIAN_LAB_WAIT_MS: '900000' };
  const running: Cli[] = [];
  const up = (...args: string[]): Cli => {
    const c = cli(['lab', 'up', '--topology', topo, ...args], env);
    running.push(c);
    return c;
  };
  t.teardown(() => {
    for (const c of running) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    spawnSync(process.execPath, [MERIDIAN_BIN, 'lab', 'down'], { env: { ...process.env, ...env } });
    rmSync(work, { recursive: true, force: true });
  });
  /** Every pid the state file listed while the lab was being built (it is gone after a teardown). */
  const seenPids = new Map<number, { pid: number; what: string }>();
  const watchState = (): (() => void) => {
    const timer = setInterval(() => {
      for (const p of readState(stateDir)?.pids ?? []) seenPids.set(p.pid, p);
    }, 20);
    return () => clearInterval(timer);
  };

  await t.test('SIGTERM while the links are being made: exit 143, nothing left', async (t) => {
    seenPids.clear();
    const stopWatch = watchState();
    const c = up();
    t.match(await c.line(/namespaces \(sites\) made 1\/3/), /meridian lab up: \[\d+\.\d s\] /, 'progress');
    await c.line(/links made 1\/3/);
    c.child.kill('SIGTERM');
    const r = await c.exit;
    stopWatch();
    t.equal(r.code, 143, `exit 143 after SIGTERM\n${c.err}`);
    t.match(c.err, /forwarding: (srv6|hop-by-hop)/, 'the forwarding mode was reported');
    t.match(c.err, /OPS_ERR_INTERRUPTED/);
    t.match(c.err, /removed the lab: [1-9]\d* objects, [1-9]\d* processes/, 'says what it removed');
    t.ok(seenPids.size >= 2, `the emulator and relays were recorded (${seenPids.size})`);
    assertGone(t, stateDir, [...seenPids.values()]);
  });

  await t.test('SIGINT once the controller listens: exit 130, nothing left', async (t) => {
    seenPids.clear();
    const stopWatch = watchState();
    const c = up();
    await c.line(/controller listening on http:\/\//);
    c.child.kill('SIGINT');
    const r = await c.exit;
    stopWatch();
    t.equal(r.code, 130, `exit 130 after SIGINT\n${c.err}`);
    t.ok(
      [...seenPids.values()].some((p) => p.what === 'meridian.js'),
      'the controller was recorded as it started',
    );
    assertGone(t, stateDir, [...seenPids.values()]);
  });

  await t.test('lab up SIGKILLed after its agents started: lab down stops every process', async (t) => {
    const c = up();
    await c.line(/agents connected \d\/3/);
    c.child.kill('SIGKILL');
    await c.exit;
    const state = readState(stateDir);
    const pids = state?.pids ?? [];
    t.equal(pids.filter((p) => p.what === 'meridian.js').length, 4, 'controller and 3 agents recorded');
    t.ok(pids.filter(alive).length >= 4, 'they outlived the killed lab up');
    const down = spawnSync(process.execPath, [MERIDIAN_BIN, 'lab', 'down'], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
    t.equal(down.status, 0, down.stderr);
    const m = /removed (\d+) objects .*stopped (\d+) processes/.exec(down.stdout);
    t.ok(m !== null, down.stdout);
    // A namespace takes its end of the management veth with it, so mostly the namespaces count.
    t.ok(Number(m?.[1]) >= 3, `namespaces and devices removed (${m?.[1]})`);
    t.ok(Number(m?.[2]) >= pids.length, `every recorded process stopped (${m?.[2]} ≥ ${pids.length})`);
    assertGone(t, stateDir, pids);
  });

  await t.test(
    '--forwarding srv6: up where the kernel has SRv6; elsewhere fails fast naming the site, code and fix',
    async (t) => {
      const srv6 = kernelHasSrv6();
      seenPids.clear();
      const stopWatch = watchState();
      const c = up('--json', '--forwarding', 'srv6');
      await c.line(/agents connected 0\/3|controller listening/);
      const from = Date.now();
      const r = await c.exit;
      const took = Date.now() - from;
      stopWatch();
      if (srv6) {
        t.equal(r.code, 0, c.err);
        t.match(JSON.parse(c.out), { forwarding: 'srv6' });
        const down = spawnSync(process.execPath, [MERIDIAN_BIN, 'lab', 'down'], {
          env: { ...process.env, ...env },
        });
        t.equal(down.status, 0);
      } else {
        t.equal(r.code, 1, 'exit 1');
        t.equal(c.out, '', 'nothing on stdout');
        t.match(
          c.err,
          /OPS_ERR_AGENT_POLICY: the agent of site lb-[abc] cannot apply its policy: AGENT_ERR_\w+: .+; this kernel has no SRv6; run with --forwarding hop-by-hop/,
        );
        // The controller re-pushes a transient refusal after 1 s; a refusal no retry fixes ends it at once.
        t.ok(
          took < 30_000,
          `stopped ${took} ms after the controller came up (bound 30 s; it used to wait 180 s)`,
        );
      }
      assertGone(t, stateDir, [...seenPids.values()]);
    },
  );

  await t.test(
    'lab up --json (auto): forwarding is what this kernel allows; lab down reports processes',
    async (t) => {
      const srv6 = kernelHasSrv6();
      const c = up('--json');
      const r = await c.exit;
      t.equal(r.code, 0, c.err);
      const d = JSON.parse(c.out) as { forwarding: string; sites: unknown[] };
      t.equal(d.forwarding, srv6 ? 'srv6' : 'hop-by-hop');
      t.equal(d.sites.length, 3);
      t.match(c.err, /policies applied 3\/3/, 'progress up to the last policy');
      const pids = readState(stateDir)?.pids ?? [];
      const down = spawnSync(process.execPath, [MERIDIAN_BIN, 'lab', 'down'], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
      // Besides the recorded ones: the agents' helpers (ip batch sessions) found in the namespaces.
      const stopped = Number(/stopped (\d+) processes/.exec(down.stdout)?.[1]);
      t.ok(stopped >= pids.length, `${down.stdout.trim()} (${pids.length} recorded)`);
      assertGone(t, stateDir, pids);
    },
  );
});
