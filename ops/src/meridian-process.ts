/**
 * Runs Meridian's own daemons (`meridian controller`, `meridian agent`) as child processes, the way
 * an operator would run them, for `meridian start`, the lab and benchmarks. A daemon can run inside a
 * network namespace (`ip netns exec`), and its JSON log goes to a file so the console stays readable.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { OpsError } from './errors';

/** The repository's `meridian` command, found upwards from here (this file runs from src/ or dist/src/). */
export const MERIDIAN_BIN = ((): string => {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'bin', 'meridian.js');
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) return path.resolve(__dirname, '..', '..', '..', 'bin', 'meridian.js');
  }
})();

export interface DaemonOptions {
  /** Subcommand and flags, e.g. `['agent', '--site', 'bj-a', ...]`. */
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** Run inside this network namespace (needs root). */
  readonly netns?: string;
  /** Append stdout and stderr here; otherwise they are kept only for error messages. */
  readonly logFile?: string;
}

export interface Daemon {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the first stdout line matching `re` (its match), rejects if the process exits first. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
  readonly exited: boolean;
}

/** Starts `meridian <args>` as a child process. */
export function startDaemon(name: string, opts: DaemonOptions): Daemon {
  const cmd = opts.netns !== undefined ? 'ip' : process.execPath;
  const args =
    opts.netns !== undefined
      ? ['netns', 'exec', opts.netns, process.execPath, MERIDIAN_BIN, ...opts.args]
      : [MERIDIAN_BIN, ...opts.args];
  const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new OpsError('OPS_ERR_SERVICE_START', `${name}: could not start ${cmd}`);
  const log: WriteStream | undefined =
    opts.logFile !== undefined ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
  let tail = '';
  let pending = '';
  const lineWaiters = new Set<(line: string) => void>();
  child.stdout.on('data', (b: Buffer) => {
    log?.write(b);
    tail = (tail + b.toString()).slice(-4000);
    pending += b.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      for (const w of [...lineWaiters]) w(line);
    }
  });
  child.stderr.on('data', (b: Buffer) => {
    log?.write(b);
    tail = (tail + b.toString()).slice(-4000);
  });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      log?.end();
      resolve();
    }),
  );
  return {
    name,
    pid: child.pid,
    child,
    get exited() {
      return exited;
    },
    waitForLine(re, timeoutMs) {
      return new Promise((resolve, reject) => {
        const done = (err: Error | null, m?: RegExpExecArray): void => {
          clearTimeout(timer);
          lineWaiters.delete(onLine);
          child.off('exit', onExit);
          if (err) reject(err);
          else resolve(m as RegExpExecArray);
        };
        const onLine = (line: string): void => {
          const m = re.exec(line);
          if (m) done(null, m);
        };
        const onExit = (code: number | null, signal: string | null): void =>
          done(
            new OpsError(
              'OPS_ERR_SERVICE_START',
              `${name} exited (code ${code}, signal ${signal}) before it was ready: ${tail.trim()}`,
            ),
          );
        const timer = setTimeout(
          () =>
            done(
              new OpsError(
                'OPS_ERR_SERVICE_START',
                `${name} not ready after ${timeoutMs} ms: ${tail.trim()}`,
              ),
            ),
          timeoutMs,
        );
        lineWaiters.add(onLine);
        if (exited) onExit(child.exitCode, child.signalCode);
        else child.once('exit', onExit);
      });
    },
    async stop(graceMs = 5000) {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** Where a started controller listens, parsed from its ready line. */
export interface ControllerAddress {
  readonly grpc: string;
  readonly http: string;
}

/** Starts `meridian controller ...` and waits for its ready line (it prints the bound ports). */
export async function startControllerDaemon(
  opts: DaemonOptions & { readyTimeoutMs?: number },
): Promise<{ daemon: Daemon; address: ControllerAddress }> {
  const daemon = startDaemon('controller', { ...opts, args: ['controller', ...opts.args] });
  try {
    const m = await daemon.waitForLine(
      /^meridian controller: grpc (\S+) http (\S+)/,
      opts.readyTimeoutMs ?? 30_000,
    );
    return { daemon, address: { grpc: m[1] as string, http: m[2] as string } };
  } catch (err) {
    await daemon.stop(1000);
    throw err;
  }
}
