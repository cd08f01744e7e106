/**
 * Scheduling of the lab's data plane: the link emulator and the socat relays, and (less) the
 * benchmark's traffic endpoints.
 *
 * The emulator and relays stand for the WAN, which in production does not queue behind anyone's
 * control plane; here they share two cores with the controller and ten agents. At nice −10 they
 * still got only their CFS share when a failure made every agent apply a policy at once (~30
 * runnable tasks): the emulator stalled 100–320 ms (its own stall log), every link went silent
 * together, and every agent declared its links down. So they run real-time (SCHED_FIFO, all
 * threads), above any control-plane task.
 *
 * Real-time has a price: a real-time task that spins never yields its CPU to normal tasks, the
 * kernel's own workers included (a spinning SCHED_FIFO process once starved RCU here until
 * namespace teardown hung). The kernel's throttling (95 % of each second) did not prevent it, so
 * each real-time process also gets a budget, RLIMIT_RTTIME: CPU time it may use without blocking.
 * A relay or an emulator blocks in `select`/`epoll` many times a second, so the budget only ever
 * runs out on a bug. At the soft limit the kernel sends SIGXCPU (the emulator demotes itself to
 * normal scheduling and logs it; socat dies of it), at the hard limit SIGKILL.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';

/** SCHED_FIFO priority of the emulator and relays: above every normal task, low among RT ones. */
export const DATA_PLANE_RT_PRIORITY = 10;
/** Nice value where real-time is not allowed, and for traffic endpoints. */
export const DATA_PLANE_NICE = -10;
/** RLIMIT_RTTIME soft limit (µs of CPU without blocking): SIGXCPU. */
export const DATA_PLANE_RT_BUDGET_SOFT_US = 500_000;
/** RLIMIT_RTTIME hard limit (µs of CPU without blocking): SIGKILL. */
export const DATA_PLANE_RT_BUDGET_HARD_US = 1_000_000;

/** How a data-plane process ended up scheduled. */
export type DataPlaneSchedulingResult = 'realtime' | 'nice' | 'unchanged';

/**
 * Gives a running data-plane process (emulator, socat) the data plane's scheduling: first its
 * real-time budget, then SCHED_FIFO for all its threads. The budget goes first so that the process
 * is never real-time without one; if it cannot be set, the process stays normal (nice −10).
 */
export function dataPlaneScheduling(pid: number): DataPlaneSchedulingResult {
  const budget = spawnSync(
    'prlimit',
    ['--pid', String(pid), `--rttime=${DATA_PLANE_RT_BUDGET_SOFT_US}:${DATA_PLANE_RT_BUDGET_HARD_US}`],
    { stdio: 'ignore' },
  );
  if (budget.status === 0) {
    const rt = spawnSync('chrt', ['-a', '-f', '-p', String(DATA_PLANE_RT_PRIORITY), String(pid)], {
      stdio: 'ignore',
    });
    if (rt.status === 0) return 'realtime';
  }
  return dataPlanePriority(pid) ? 'nice' : 'unchanged';
}

/**
 * Back to normal scheduling (SCHED_OTHER, all threads) at nice −10: what a data-plane process
 * does to itself when its real-time budget runs out (SIGXCPU).
 */
export function demoteFromRealtime(pid: number): boolean {
  const r = spawnSync('chrt', ['-a', '-o', '-p', '0', String(pid)], { stdio: 'ignore' });
  dataPlanePriority(pid);
  return r.status === 0;
}

/**
 * Makes this process demote itself when its real-time budget runs out (SIGXCPU): it keeps
 * working, as a normal task. `log` gets one line saying so. If the event loop is what spins, the
 * handler never runs and the hard limit's SIGKILL ends the process.
 */
export function onRealtimeBudgetExceeded(log: (line: string) => void): void {
  process.on('SIGXCPU', () => {
    const ok = demoteFromRealtime(process.pid);
    log(
      `${new Date().toISOString()} real-time budget exceeded: ${ok ? 'demoted to normal scheduling' : 'demotion failed'}\n`,
    );
  });
}

/**
 * Nice −10 for what stands for the users' devices (benchmark traffic endpoints): above the
 * control plane, but not real-time. They are short-lived Node processes started during a test,
 * and a multi-threaded Node starting up at SCHED_FIFO among the lab's real-time relays can starve
 * its own helper threads (CI once saw a receiver not ready in 10 s). Not allowed (not root): left
 * as it is. Returns whether the priority was set.
 */
export function dataPlanePriority(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    os.setPriority(pid, DATA_PLANE_NICE);
    return true;
  } catch {
    // The lab still works, only less steadily under load.
    return false;
  }
}
