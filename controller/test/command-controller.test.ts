import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseHostPort, resolveTokens } from '../src/index';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'meridian.js');

t.test('parseHostPort', (t) => {
  t.same(parseHostPort('--grpc', '127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  t.same(parseHostPort('--grpc', '[::1]:7400'), { host: '::1', port: 7400 });
  t.throws(() => parseHostPort('--grpc', 'x:70000'), { code: 'CTRL_ERR_BAD_OPTION' });
  t.throws(() => parseHostPort('--grpc', '7400'), { code: 'CTRL_ERR_BAD_OPTION' });
  t.end();
});

t.test('tokens: env wins, else generated once into a 0600 file and reused', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meridian-tokens-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'sub', 'tokens');
  t.same(resolveTokens({ MERIDIAN_API_TOKEN: 'a', MERIDIAN_AGENT_TOKEN: 'b' }), {
    apiToken: 'a',
    agentToken: 'b',
    file: undefined,
  });
  const first = resolveTokens({ MERIDIAN_TOKENS_FILE: file });
  t.equal(first.file, file);
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.match(readFileSync(file, 'utf8'), /^MERIDIAN_API_TOKEN=\S{20,}\nMERIDIAN_AGENT_TOKEN=\S{20,}\n$/);
  const again = resolveTokens({ MERIDIAN_TOKENS_FILE: file, MERIDIAN_AGENT_TOKEN: 'given' });
  t.equal(again.apiToken, first.apiToken, 'reused');
  t.equal(again.agentToken, 'given');
  t.end();
});

function run(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [BIN, 'controller', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => out, err: () => err };
}

t.test('meridian controller: port 0, prints ports and token file, health, SIGTERM exits 0', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meridian-cmd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const env = {
    MERIDIAN_TOKENS_FILE: path.join(dir, 'tokens'),
    MERIDIAN_API_TOKEN: '',
    MERIDIAN_AGENT_TOKEN: '',
  };
  const p = run(['--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'], env);
  t.teardown(() => p.child.kill('SIGKILL'));
  const deadline = Date.now() + 20_000;
  let m: RegExpExecArray | null = null;
  while (
    Date.now() < deadline &&
    !(m = /grpc 127\.0\.0\.1:(\d+) http 127\.0\.0\.1:(\d+) redis embedded influx embedded/.exec(p.out()))
  ) {
    await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(m, `started: ${p.out()} ${p.err()}`);
  t.match(p.out(), `tokens in ${path.join(dir, 'tokens')}`);
  const res = await fetch(`http://127.0.0.1:${m![2]}/api/v1/health`);
  t.same(await res.json(), { status: 'ok', redis: 'embedded', influx: 'embedded' });
  const token = /MERIDIAN_API_TOKEN=(\S+)/.exec(readFileSync(path.join(dir, 'tokens'), 'utf8'))![1]!;
  const links = await fetch(`http://127.0.0.1:${m![2]}/api/v1/links`, {
    headers: { authorization: `Bearer ${token}` },
  });
  t.equal(links.status, 200);
  t.ok(((await links.json()) as { links: unknown[] }).links.length > 0, 'reference topology links');
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

t.test('bad flags exit 2 with a message and no stack', async (t) => {
  for (const args of [
    ['--grpc', 'nope'],
    ['--bogus'],
    ['--redis', 'ftp://x'],
    ['--topology', '/nonexistent.yaml'],
  ]) {
    const p = run(args, {});
    t.equal(await p.exited, 2, args.join(' '));
    t.match(p.err(), /meridian controller: /);
    t.notMatch(p.err(), /\n\s+at /, 'no stack');
  }
});
