// Fast-reroute switches through the persistent `ip -batch` sessions, on a real namespace with a
// real policy (switch-netns.ts), and the session class itself. Needs root (skips with the reason).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LinuxPolicyDriver } from '../src/index';
import { IpBatchSession } from '../src/ip-batch-session';
import { createSwitchNetns, rules, switchNetnsMissing } from './switch-netns';

/** Pids of the `ip -batch` session processes working in `ns`. */
function sessionPids(ns: string): number[] {
  const r = spawnSync('pgrep', ['-f', `^ip -n ${ns} -[46] -force -batch -$`], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map(Number)
    .sort((a, b) => a - b);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 40 && alive(pid); i++) await new Promise((r) => setTimeout(r, 25));
  return !alive(pid);
}

t.test('fast-reroute switches through persistent ip sessions', async (t) => {
  const why = switchNetnsMissing();
  if (why !== null) {
    t.plan(0, `skipped: ${why}`);
    return;
  }
  const fx = createSwitchNetns(`mrsw-${process.pid}`);
  t.teardown(fx.remove);
  const { ns } = fx;
  const [voice, bulk] = fx.keys.filter((k) => k.endsWith('/d')).sort((a, b) => b.localeCompare(a));
  if (voice === undefined || bulk === undefined) throw new Error(`unexpected keys ${fx.keys.join(', ')}`);
  const has = (key: string, family: 4 | 6): boolean => rules(ns, family).includes(fx.primaryRule(key));

  await t.test('session: runtime failures map to their lines, counted across batches', async (t) => {
    const s = new IpBatchSession({ netns: ns, family: 4 });
    t.teardown(() => s.close());
    const r1 = await s.run(['rule del pref 25555 table 25555']);
    t.ok(r1.ok && /No such file/.test(r1.answer.errors[0] ?? ''), `absent rule: ${JSON.stringify(r1)}`);
    const r2 = await s.run([
      'rule add pref 25555 table 25555',
      'rule add pref 25555 table 25555',
      'rule del pref 25555 table 25555',
    ]);
    t.ok(r2.ok, JSON.stringify(r2));
    if (r2.ok) {
      t.equal(r2.answer.errors[0], null, 'first add done');
      t.match(r2.answer.errors[1], /File exists/, 'second add refused, on its own line');
      t.equal(r2.answer.errors[2], null, 'del done');
    }
    t.notOk(rules(ns, 4).includes('25555 -'), 'the kernel has no such rule in the end');
    t.equal(s.starts, 1, 'one process for all of it');
  });

  await t.test('session: a parse error cannot hang it; the next batch gets a new process', async (t) => {
    const s = new IpBatchSession({ netns: ns, family: 4 });
    t.teardown(() => s.close());
    s.start();
    const first = s.pid;
    const bad = await s.run([
      'rule add pref 25556 table 25556',
      'route get 0.0.0.0/99',
      'rule del pref 25556 table 25556',
    ]);
    t.equal(bad.ok, false, 'typed failure');
    if (!bad.ok) {
      t.equal(bad.reason, 'exited');
      t.match(bad.detail, /inet prefix is expected/, "ip's message in the detail");
    }
    t.ok(rules(ns, 4).includes('25556 -'), 'lines before the bad one ran, the ones after did not');
    t.ok(first !== null && (await gone(first)), 'the old process is gone');
    const next = await s.run(['rule del pref 25556 table 25556', 'route get 127.0.0.1']);
    t.ok(next.ok, `next batch answered: ${JSON.stringify(next)}`);
    if (next.ok) {
      t.same(next.answer.errors, [null, null]);
      t.match(next.answer.output, /^local 127\.0\.0\.1 /m, 'its output');
    }
    t.equal(s.starts, 2, 'restarted once');
    t.notOk(rules(ns, 4).includes('25556 -'));
  });

  await t.test('session: no answer in time kills the process, typed failure', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meridian-ipsess-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const mute = path.join(dir, 'mute-ip');
    writeFileSync(mute, '#!/bin/sh\nexec cat >/dev/null\n');
    chmodSync(mute, 0o755);
    const s = new IpBatchSession({ ipBin: mute, timeoutMs: 200 });
    t.teardown(() => s.close());
    s.start();
    const pid = s.pid;
    const r = await s.run(['link show']);
    t.equal(r.ok ? 'ok' : r.reason, 'timeout');
    t.ok(pid !== null && (await gone(pid)), 'killed');
    const [a, b] = await Promise.all([s.run(['x']), s.run(['y'])]);
    t.same([a.ok ? 'ok' : a.reason, b.ok ? 'ok' : b.reason], ['timeout', 'timeout'], 'queued batches too');
    t.equal(s.starts, 3, 'a new process per batch after a timeout');
  });

  await t.test('session: close ends the process; later batches fail typed', async (t) => {
    const s = new IpBatchSession({ netns: ns, family: 6 });
    const r = await s.run(['rule show pref 1']);
    t.ok(r.ok);
    const pid = s.pid;
    await s.close();
    t.equal(s.pid, null);
    t.ok(pid !== null && !alive(pid), 'process gone');
    const after = await s.run(['rule show pref 1']);
    t.equal(after.ok ? 'ok' : after.reason, 'closed');
  });

  const driver = new LinuxPolicyDriver({ netns: ns });
  t.teardown(() => driver.close());

  await t.test('apply runs through sessions and starts the switch sessions', async (t) => {
    const r = await driver.apply(fx.policy);
    t.ok(r.ok, r.ok ? `${r.changes} changes` : `${r.error.message} ${String(r.error.detail)}`);
    // The apply's own sessions (one per family it used) and the two switch sessions.
    t.ok(sessionPids(ns).length >= 2, `${sessionPids(ns).length} ip -batch sessions, before any switch`);
    for (const k of [voice, bulk]) t.ok(has(k, 4) && has(k, 6), `${k} on its primary`);
  });

  await t.test('switch and switch back several times: the kernel rules follow', async (t) => {
    const pids = sessionPids(ns);
    for (let i = 0; i < 5; i++) {
      t.same(await driver.activateBackup(voice), { ok: true, changed: true }, `round ${i}: to backup`);
      t.notOk(has(voice, 4) || has(voice, 6), 'primary rules gone (IPv4 and IPv6)');
      t.ok(has(bulk, 4) && has(bulk, 6), 'the other route untouched');
      t.same(await driver.activatePrimary(voice), { ok: true, changed: true }, `round ${i}: to primary`);
      t.ok(has(voice, 4) && has(voice, 6), 'primary rules back');
    }
    const both = await driver.activateBackups([voice, bulk]);
    t.same(
      [both.get(voice), both.get(bulk)],
      [
        { ok: true, changed: true },
        { ok: true, changed: true },
      ],
      'two routes in one batch',
    );
    t.notOk(has(voice, 4) || has(bulk, 4), 'both moved');
    t.equal((await driver.read()).routes.filter((r) => r.active === 'backup').length, 2, 'read() agrees');
    for (const k of [voice, bulk]) t.same(await driver.activatePrimary(k), { ok: true, changed: true });
    t.same(sessionPids(ns), pids, 'no new process for any of it');
  });

  await t.test('switching an already switched route reports changed: false', async (t) => {
    t.same(await driver.activateBackup(voice), { ok: true, changed: true });
    t.same(await driver.activateBackup(voice), { ok: true, changed: false }, 'backup again');
    const mixed = await driver.activateBackups([voice, bulk, 'voice/zz']);
    t.same(mixed.get(voice), { ok: true, changed: false }, 'already on backup, in a batch');
    t.same(mixed.get(bulk), { ok: true, changed: true }, 'moved, in the same batch');
    const z = mixed.get('voice/zz');
    t.equal(z?.ok === false ? z.error.code : '', 'AGENT_ERR_NO_ROUTE');
    for (const k of [voice, bulk]) t.same(await driver.activatePrimary(k), { ok: true, changed: true });
    t.same(await driver.activatePrimary(voice), { ok: true, changed: false }, 'primary again');
    t.ok(has(voice, 4) && has(voice, 6));
    t.equal(
      rules(ns, 4).filter((r) => r === fx.primaryRule(voice)).length,
      1,
      'no duplicate rule from the second add',
    );
  });

  await t.test('a switch made between applies stays: the next apply keeps the backup', async (t) => {
    t.same(await driver.activateBackup(voice), { ok: true, changed: true });
    const r = await driver.apply(fx.policy);
    t.ok(r.ok && r.changes === 0, `same policy again changes nothing: ${JSON.stringify(r)}`);
    t.notOk(has(voice, 4), 'still on backup');
    t.same(await driver.activatePrimary(voice), { ok: true, changed: true });
  });

  await t.test('a switch after the ip processes were killed still works', async (t) => {
    const before = sessionPids(ns);
    t.ok(before.length >= 2, 'the sessions run');
    for (const pid of before) process.kill(pid, 'SIGKILL');
    // At once, before the agent has seen the exits: the batch is retried on a new process.
    t.same(await driver.activateBackup(voice), { ok: true, changed: true });
    t.notOk(has(voice, 4) || has(voice, 6), 'the kernel moved');
    for (const pid of before) t.ok(await gone(pid), `killed ${pid} gone`);
    const after = sessionPids(ns);
    t.equal(after.length, 2, 'two new sessions (the switch ones; the apply ones start on the next apply)');
    t.notOk(
      after.some((p) => before.includes(p)),
      'new pids',
    );
    // Killed while idle, noticed before the next switch.
    for (const pid of after) process.kill(pid, 'SIGKILL');
    for (const pid of after) await gone(pid);
    await new Promise((r) => setTimeout(r, 50));
    t.same(await driver.activatePrimary(voice), { ok: true, changed: true });
    t.ok(has(voice, 4) && has(voice, 6), 'back on primary');
  });

  await t.test(
    'an ip session that cannot work gives a typed failure, and the kernel is untouched',
    async (t) => {
      // Every per-family session process of this driver fails at start ("Cannot open network
      // namespace …: No such file or directory", which must not read as "rule already gone"); an
      // apply with nothing to change only runs its family-less batch (`sr tunsrc`), which works.
      const dir = mkdtempSync(path.join(os.tmpdir(), 'meridian-ipsess-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const wrapper = path.join(dir, 'ip');
      writeFileSync(
        wrapper,
        '#!/bin/sh\ncase " $* " in *" -4 -force -batch - "*|*" -6 -force -batch - "*) exec ip -n mrsw-none-$$ -force -batch - ;; esac\nexec ip "$@"\n',
      );
      chmodSync(wrapper, 0o755);
      const broken = new LinuxPolicyDriver({ netns: ns, ipBin: wrapper });
      t.teardown(() => broken.close());
      const applied = await broken.apply(fx.policy);
      t.ok(applied.ok && applied.changes === 0, 'apply (nothing to change) works');
      const b = await broken.activateBackup(voice);
      t.equal(b.ok ? '' : b.error.code, 'AGENT_ERR_DRIVER_APPLY', 'to backup: typed failure');
      t.match(b.ok ? '' : b.error.detail, /Cannot open network namespace/, "ip's words in detail");
      t.ok(has(voice, 4) && has(voice, 6), 'still on primary');
      t.same(await driver.activateBackup(voice), { ok: true, changed: true }, '(moved by the good driver)');
      const p = await broken.activatePrimary(voice);
      t.equal(p.ok ? '' : p.error.code, 'AGENT_ERR_DRIVER_APPLY', 'to primary: typed failure');
      t.notOk(has(voice, 4) || has(voice, 6), 'still on backup');
      t.same(await driver.activatePrimary(voice), { ok: true, changed: true });
    },
  );

  await t.test('close() leaves no ip process behind; removeAll still works', async (t) => {
    await driver.close();
    t.same(sessionPids(ns), [], 'no session process after close');
    t.same(
      await driver.activateBackup(voice),
      { ok: true, changed: true },
      'a later switch starts them again',
    );
    await driver.close();
    t.same(sessionPids(ns), [], 'and close ends them again');
    await driver.removeAll();
    t.equal((await driver.read()).objects, 0, 'nothing owned left');
    t.same(sessionPids(ns), []);
  });
});
