import t from 'tap';
import { spawn } from 'node:child_process';
import { MERIDIAN_BIN } from '../src/index';

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
