// The lab data plane's real-time scheduling and its budget (root: real SCHED_FIFO, real
// RLIMIT_RTTIME; skips otherwise). Each spinning child is real-time for at most the soft limit
// (0.5 s) on one of the two CPUs.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import {
  DATA_PLANE_RT_BUDGET_HARD_US,
  DATA_PLANE_RT_BUDGET_SOFT_US,
  dataPlaneScheduling,
} from '../src/index';

const root = process.getuid?.() === 0;

/** Scheduling policy of every thread of `pid` (/proc/PID/task/TID/stat field 41; 0 normal, 1 FIFO). */
function policies(pid: number): string[] {
  const out: string[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      out.push(stat.split(') ')[1]!.split(' ')[41 - 3]!);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

function exited(
  child: ChildProcess,
  timeoutMs: number,
): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`child ${child.pid} still running after ${timeoutMs} ms`)),
      timeoutMs,
    );
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

t.test(
  'real-time data plane has a budget',
  { skip: root ? false : 'needs root (SCHED_FIFO, RLIMIT_RTTIME)' },
  (t) => {
    t.test('a process that blocks keeps real-time with the budget set', async (t) => {
      const child = spawn('sleep', ['1.5'], { stdio: 'ignore' });
      t.teardown(() => child.kill('SIGKILL'));
      t.equal(dataPlaneScheduling(child.pid!), 'realtime');
      t.same(policies(child.pid!), ['1'], 'SCHED_FIFO');
      const limits = readFileSync(`/proc/${child.pid}/limits`, 'utf8');
      t.match(
        limits,
        new RegExp(
          `Max realtime timeout\\s+${DATA_PLANE_RT_BUDGET_SOFT_US}\\s+${DATA_PLANE_RT_BUDGET_HARD_US}\\s+us`,
        ),
      );
      t.same(await exited(child, 5000), { code: 0, signal: null }, 'ran to its end');
    });

    t.test('a spinning real-time process is stopped by the kernel', async (t) => {
      // What socat does with SIGXCPU: the default action, the process ends.
      const child = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
      t.teardown(() => child.kill('SIGKILL'));
      t.equal(dataPlaneScheduling(child.pid!), 'realtime');
      t.same(await exited(child, 10_000), { code: null, signal: 'SIGXCPU' });
    });

    t.test('the emulator demotes itself when its budget runs out, and keeps running', async (t) => {
      // The same handler as link-emulator-main.ts, in a process whose event loop never sleeps
      // (setImmediate polls without blocking): it spends its budget while still able to react.
      const script = `
      require(${JSON.stringify(path.join(__dirname, '..', 'src', 'data-plane-scheduling.ts'))})
        .onRealtimeBudgetExceeded((line) => process.stdout.write(line));
      const spin = () => { const t = Date.now(); while (Date.now() - t < 20); setImmediate(spin); };
      spin();
    `;
      const child = spawn(process.execPath, [...process.execArgv, '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      t.teardown(() => child.kill('SIGKILL'));
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      t.equal(dataPlaneScheduling(child.pid!), 'realtime');
      const deadline = Date.now() + 10_000;
      while (!out.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      t.match(out, /real-time budget exceeded: demoted to normal scheduling/);
      t.ok(
        policies(child.pid!).every((p) => p === '0'),
        'every thread back to SCHED_OTHER',
      );
      // Past the hard limit's time, still alive: the demotion took it out of the real-time budget.
      await new Promise((r) => setTimeout(r, (DATA_PLANE_RT_BUDGET_HARD_US / 1000) * 1.5));
      t.equal(child.exitCode, null, 'still running');
      t.equal(child.signalCode, null);
    });
    t.end();
  },
);
