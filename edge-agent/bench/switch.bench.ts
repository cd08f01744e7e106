// Fast-reroute switch time: the Linux driver's persistent `ip -batch` sessions against the way
// switches were made before (a process spawn per family and per rule read), on one namespace with
// a real policy (test/switch-netns.ts: site a, SRv6 routes, rules, nftables; no lab needed).
//
// Each round trip moves voice/d to its backup (`activateBackups`) and back (`activatePrimary`).
// Baseline, measured in the same run and interleaved round trip by round trip: the previous
// driver's commands, spawned here exactly as it spawned them (backup: `ip -4 -force -batch -`
// then `ip -6 …`; primary: `ip -j -4 rule show`, `ip -j -6 rule show`, then `ip -6 -batch -` and
// `ip -4 -batch -`). Reported: p50/p99/max per switch and the worst event-loop stall (the spawns
// block the loop while they fork). Run twice: on the machine as it is, then with two busy-loop
// node processes (one per core) started by the bench, after any lab on the machine is down.
//
// Run as root: npx tsc -b edge-agent && node edge-agent/dist/bench/switch.bench.js [ROUND_TRIPS]
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { LinuxPolicyDriver } from '../src/index';
import { createSwitchNetns, switchNetnsMissing, type SwitchNetns } from '../test/switch-netns';

const ROUND_TRIPS = Number(process.argv[2] ?? 200);
const WARMUP = 10;
/** One core's worth of load that ends by itself with the bench (or after 10 minutes). */
const BUSY = `const p=+process.argv[1],end=Date.now()+600000;for(let i=0;;i++){if((i&0xfffff)===0){
if(Date.now()>end)process.exit();try{process.kill(p,0)}catch{process.exit()}}}`;
const LAB_ACTIVE = process.env['MERIDIAN_LAB_ACTIVE'] ?? '/tmp/meridian-lab.active';

function run(
  args: readonly string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('ip', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => undefined); // `rule show` may exit before reading its stdin
    child.stdin.end(input ?? '');
  });
}

/** The previous driver's switch, process per step (driver-linux.ts before the ip sessions). */
function spawnSwitcher(fx: SwitchNetns, key: string): { backup(): Promise<void>; primary(): Promise<void> } {
  const [pref, mark] = fx.primaryRule(key).split(' ');
  const line = (op: string): string => `rule ${op} pref ${pref} fwmark ${mark} table ${pref}\n`;
  const ns = ['-n', fx.ns];
  return {
    async backup() {
      await run([...ns, '-4', '-force', '-batch', '-'], line('del'));
      await run([...ns, '-6', '-force', '-batch', '-'], line('del'));
    },
    async primary() {
      const present: number[] = [];
      for (const family of [4, 6] as const) {
        const r = await run([...ns, '-j', `-${family}`, 'rule', 'show']);
        const rules = JSON.parse(r.stdout || '[]') as { priority: number; fwmark?: string }[];
        if (rules.some((x) => `${x.priority} ${x.fwmark ?? '-'}` === fx.primaryRule(key)))
          present.push(family);
      }
      for (const family of [6, 4] as const) {
        if (!present.includes(family)) await run([...ns, `-${family}`, '-batch', '-'], line('add'));
      }
    },
  };
}

interface Series {
  readonly backup: number[];
  readonly primary: number[];
}

const pct = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
};
const ms = (x: number): string => x.toFixed(2).padStart(7);

async function measure(
  fx: SwitchNetns,
  driver: LinuxPolicyDriver,
  key: string,
  /** Checked before each round trip: true stops the run (a lab came up: do not load its CPUs). */
  stop: () => boolean = () => false,
): Promise<{ session: Series; spawned: Series; stall: { session: number; spawned: number } }> {
  const old = spawnSwitcher(fx, key);
  const session: Series = { backup: [], primary: [] };
  const spawned: Series = { backup: [], primary: [] };
  // A 1 ms ticker: the longest gap between two ticks while one way was switching the whole time
  // is the longest the event loop (the agent's probes, in the agent) was held up by that way.
  const stall = { session: 0, spawned: 0 };
  let way = null as keyof typeof stall | null;
  let last: { at: number; way: keyof typeof stall | null } = { at: performance.now(), way };
  const ticker = setInterval(() => {
    const now = performance.now();
    if (way !== null && last.way === way) stall[way] = Math.max(stall[way], now - last.at);
    last = { at: now, way };
  }, 1);
  const time = async (
    w: keyof typeof stall,
    f: () => Promise<unknown>,
    into: number[] | null,
  ): Promise<void> => {
    way = into !== null ? w : null;
    last = { at: performance.now(), way };
    const t0 = performance.now();
    await f();
    into?.push(performance.now() - t0);
    way = null;
  };
  const check = async (f: () => Promise<{ ok: boolean }>): Promise<void> => {
    const r = await f();
    if (!r.ok) throw new Error(`switch failed: ${JSON.stringify(r)}`);
  };
  for (let i = 0; i < WARMUP + ROUND_TRIPS; i++) {
    if (stop()) {
      clearInterval(ticker);
      throw new Error(`a lab came up (${LAB_ACTIVE}): CPU-load run stopped`);
    }
    const keep = i >= WARMUP;
    await time(
      'session',
      () => check(async () => (await driver.activateBackups([key])).get(key) ?? { ok: false }),
      keep ? session.backup : null,
    );
    await time('session', () => check(() => driver.activatePrimary(key)), keep ? session.primary : null);
    await time('spawned', () => old.backup(), keep ? spawned.backup : null);
    await time('spawned', () => old.primary(), keep ? spawned.primary : null);
  }
  clearInterval(ticker);
  return { session, spawned, stall };
}

function report(title: string, r: Awaited<ReturnType<typeof measure>>): void {
  const out = process.stdout;
  out.write(`\n${title} (${ROUND_TRIPS} round trips each, interleaved; ms)\n`);
  out.write('way                    switch     p50     p99     max\n');
  for (const [way, s] of [
    ['persistent ip session', r.session],
    ['spawn per switch', r.spawned],
  ] as const) {
    for (const dir of ['backup', 'primary'] as const) {
      const xs = s[dir];
      out.write(
        `${way.padEnd(22)} ${dir.padEnd(8)} ${ms(pct(xs, 50))} ${ms(pct(xs, 99))} ${ms(Math.max(...xs))}\n`,
      );
    }
  }
  out.write(
    `longest event-loop gap (1 ms ticker) while switching: session ${r.stall.session.toFixed(1)} ms, spawn ${r.stall.spawned.toFixed(1)} ms\n`,
  );
}

async function main(): Promise<void> {
  const why = switchNetnsMissing();
  if (why !== null) {
    process.stdout.write(`skipped: ${why}\n`);
    return;
  }
  const fx = createSwitchNetns(`mrsw-bench-${process.pid}`);
  const driver = new LinuxPolicyDriver({ netns: fx.ns });
  const load: ChildProcess[] = [];
  const stopLoad = (): void => {
    for (const c of load.splice(0)) c.kill('SIGKILL');
  };
  process.on('exit', () => {
    stopLoad();
    fx.remove();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));
  try {
    const applied = await driver.apply(fx.policy);
    if (!applied.ok) throw applied.error;
    const key = fx.keys.find((k) => k.startsWith('voice/')) ?? '';
    process.stdout.write(
      `switch bench: ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? '?'}, node ${process.version}, ` +
        `bench RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB, load average ${os.loadavg()[0]?.toFixed(2)}\n`,
    );
    report('machine as it is', await measure(fx, driver, key));
    for (let waited = 0; existsSync(LAB_ACTIVE); waited += 5) {
      if (waited === 0) process.stdout.write(`a lab is up (${LAB_ACTIVE}): waiting for it to go down\n`);
      if (waited >= 1800) throw new Error('a lab stayed up for 30 minutes: CPU-load run not made');
      await new Promise((r) => setTimeout(r, 5000));
    }
    for (let i = 0; i < 2; i++) {
      load.push(spawn(process.execPath, ['-e', BUSY, String(process.pid)], { stdio: 'ignore' }));
    }
    await new Promise((r) => setTimeout(r, 500));
    const loaded = await measure(fx, driver, key, () => existsSync(LAB_ACTIVE));
    report(
      `with ${load.length} busy-loop processes (load average ${os.loadavg()[0]?.toFixed(2)} at the end)`,
      loaded,
    );
  } finally {
    stopLoad();
    await driver.close();
    await driver.removeAll().catch(() => undefined);
    fx.remove();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exitCode = 1;
});
