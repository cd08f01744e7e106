import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MERIDIAN_BIN, labPrerequisites } from '../src/index';

t.test(
  'meridian start runs a controller and an agent per site on loopback, then stops them all',
  async (t) => {
    const child = spawn(
      process.execPath,
      [MERIDIAN_BIN, 'start', '--http', '127.0.0.1:0', '--grpc', '127.0.0.1:0'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, MERIDIAN_API_TOKEN: 'start-test-token' },
      },
    );
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let out = '';
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const api = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /API:\s+(http:\/\/\S+\/api\/v1)/.exec(out);
        if (m && out.includes('Ctrl-C')) resolve(m[1] as string);
      });
      child.once('exit', () => reject(new Error(`start exited early: ${out}`)));
    });
    t.match(out, /agents connected: 10\/10/, 'every reference site has a connected agent');
    t.match(out, /token: start-test-token/, 'prints the API token it was given');
    const res = await fetch(`${api}/agents`, { headers: { authorization: 'Bearer start-test-token' } });
    t.equal(res.status, 200);
    const body = (await res.json()) as { agents: { site: string; connected: boolean }[] };
    t.equal(body.agents.filter((a) => a.connected).length, 10);
    const pids = (await import('node:child_process'))
      .execFileSync('pgrep', ['-P', String(child.pid)])
      .toString()
      .trim()
      .split('\n');
    t.equal(pids.length, 11, 'one controller and ten agent processes');
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    t.equal(await exited, 0, 'exits 0 on SIGTERM');
    for (const pid of pids) {
      let alive = true;
      try {
        process.kill(Number(pid), 0);
      } catch {
        alive = false;
      }
      t.notOk(alive, `child ${pid} is gone`);
    }
  },
);

t.test('meridian start rejects bad flags and bad topology files with exit 2', async (t) => {
  const run = (args: string[]): Promise<{ code: number | null; err: string }> =>
    new Promise((resolve) => {
      const c = spawn(process.execPath, [MERIDIAN_BIN, 'start', ...args], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      c.stderr.on('data', (b: Buffer) => (err += b.toString()));
      c.once('exit', (code) => resolve({ code, err }));
    });
  const bad = await run(['--bogus']);
  t.equal(bad.code, 2);
  t.match(bad.err, /bogus/);
  const missing = await run(['--topology', '/nonexistent/topology.yaml']);
  t.equal(missing.code, 2);
  t.match(missing.err, /nonexistent/);
});

t.test('meridian start on the namespace lab (root): progress, Ctrl-C at bring-up and when up', async (t) => {
  const why = await labPrerequisites();
  if (why !== null) {
    if (process.env['CI'] === 'true') t.fail(`CI must run the lab tests: ${why}`);
    else t.plan(0, `skipped: ${why}`);
    return;
  }
  const work = mkdtempSync(path.join(os.tmpdir(), 'meridian-start-lab-'));
  const topo = path.join(work, 'st.yaml');
  writeFileSync(
    topo,
    `version: 1
sites:
  - { id: st-a, kind: edge, region: r1, prefixes: ['10.91.0.0/16'] }
  - { id: st-b, kind: dc, region: r1, prefixes: ['10.92.0.0/16'] }
links:
  - { id: st-ab, a: st-a, b: st-b, transport: leased, capacityMbps: 1000, latencyMs: 2, jitterMs: 0, lossPct: 0, cost: 1 }
classes:
  - { id: voice, sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 }, objective: latency, maxUtilPct: 85, priority: 1, match: { dscp: [46] } }
`,
  );
  const stateDir = path.join(work, 'state');
  const env = { ...process.env, MERIDIAN_LAB_DIR: stateDir, MERIDIAN_LAB_WAIT_MS: '900000' };
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    spawnSync(process.execPath, [MERIDIAN_BIN, 'lab', 'down'], { env });
    rmSync(work, { recursive: true, force: true });
  });
  const seen = new Map<number, { pid: number; what: string }>();
  const watch = setInterval(() => {
    try {
      const st = JSON.parse(readFileSync(path.join(stateDir, 'state.json'), 'utf8')) as {
        pids: { pid: number; what: string }[];
      };
      for (const p of st.pids) seen.set(p.pid, p);
    } catch {
      // not there (yet, or any more)
    }
  }, 20);
  t.teardown(() => clearInterval(watch));
  const start = (): {
    child: ChildProcess;
    out: () => string;
    err: () => string;
    until: (re: RegExp) => Promise<void>;
  } => {
    const child = spawn(process.execPath, [MERIDIAN_BIN, 'start', '--topology', topo], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    children.push(child);
    let out = '';
    let err = '';
    const waiters = new Set<() => void>();
    const poke = (): void => waiters.forEach((w) => w());
    child.stdout.setEncoding('utf8').on('data', (d: string) => ((out += d), poke()));
    child.stderr.setEncoding('utf8').on('data', (d: string) => ((err += d), poke()));
    child.once('close', poke);
    return {
      child,
      out: () => out,
      err: () => err,
      until: (re) =>
        new Promise((resolve, reject) => {
          const look = (): void => {
            if (re.test(out) || re.test(err)) {
              waiters.delete(look);
              resolve();
            } else if (child.exitCode !== null || child.signalCode !== null) {
              waiters.delete(look);
              reject(new Error(`exited before ${String(re)}:\n${out}\n${err}`));
            }
          };
          waiters.add(look);
          look();
        }),
    };
  };
  const exitOf = (c: ChildProcess): Promise<number | null> =>
    c.exitCode !== null ? Promise.resolve(c.exitCode) : new Promise((r) => c.once('exit', (code) => r(code)));
  const nothingLeft = (t: Test): void => {
    t.notMatch(
      spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout,
      /mrd-st-/,
      'no namespace left',
    );
    const left = [...seen.values()].filter((p) => {
      try {
        return readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').includes(p.what);
      } catch {
        return false;
      }
    });
    t.same(left, [], `none of the ${seen.size} processes the lab recorded is left`);
  };

  await t.test('Ctrl-C while agents connect: exit 130, lab removed', async (t) => {
    seen.clear();
    const s = start();
    await s.until(/agents connected \d\/2/);
    t.match(s.err(), /meridian start: \[[\d.]+ s\] links made 1\/1/, 'progress on stderr');
    s.child.kill('SIGINT');
    t.equal(await exitOf(s.child), 130, s.err());
    t.match(s.err(), /removed the lab: \d+ objects, [1-9]\d* processes/);
    nothingLeft(t);
  });

  await t.test('up, then Ctrl-C: exit 0, says what it removed', async (t) => {
    seen.clear();
    const s = start();
    await s.until(/Ctrl-C removes the lab/);
    t.match(s.out(), /forwarding (srv6|hop-by-hop)\); every agent applied its first policy/);
    t.match(s.err(), /policies applied 2\/2/);
    s.child.kill('SIGINT');
    t.equal(await exitOf(s.child), 0, s.err());
    t.match(s.out(), /lab down: removed \d+ objects \(namespaces, devices\), stopped [1-9]\d* processes/);
    nothingLeft(t);
  });
});
