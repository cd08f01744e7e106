/**
 * Entry point of the lab's link emulator process: `node link-emulator-main.js CONFIG.json`.
 * Started detached by `meridian lab up`, stopped by `lab down` (SIGTERM).
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { LinkEmulator, type EmulatorConfig } from './link-emulator';
import { onRealtimeBudgetExceeded } from './data-plane-scheduling';

async function main(): Promise<void> {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: link-emulator-main CONFIG.json\n');
    process.exitCode = 2;
    return;
  }
  const config = JSON.parse(readFileSync(file, 'utf8')) as EmulatorConfig;
  const emulator = new LinkEmulator(config);
  await emulator.start();
  process.stdout.write('ready\n');
  watchStalls();
  const stop = (): void => {
    void emulator.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The real-time budget ran out (see data-plane-scheduling.ts): keep relaying, as a normal task.
  onRealtimeBudgetExceeded((line) => process.stderr.write(line));
}

/** Event-loop stalls at least this long are logged. */
const STALL_LOG_MS = 40;

/**
 * Logs (stderr: the lab's emulator.log) each event-loop stall: every lab link relays through this
 * process, so a stall here delays every link at once, which the agents' probes read as every link
 * dying together. The log tells that apart from real faults.
 */
function watchStalls(): void {
  // Long garbage collections too, to tell our own pauses from a starved process.
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.duration >= STALL_LOG_MS / 2) {
        process.stderr.write(`${new Date().toISOString()} gc pause ${Math.round(e.duration)} ms\n`);
      }
    }
  }).observe({ entryTypes: ['gc'] });
  const tickMs = 10;
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const late = now - last - tickMs;
    if (late >= STALL_LOG_MS) {
      process.stderr.write(`${new Date().toISOString()} event loop stalled ${Math.round(late)} ms\n`);
    }
    last = now;
  }, tickMs);
}

main().catch((err: unknown) => {
  process.stderr.write(`link emulator: ${String(err)}\n`);
  process.exit(1);
});
