import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import dgram from 'node:dgram';
import { OpsError } from './errors';

/** A private server process started for development or tests. */
export interface ServiceProcess {
  readonly name: string;
  readonly pid: number | undefined;
  readonly dir: string;
  /** Stops the process (SIGTERM, then SIGKILL); the temp dir is kept until `dispose()`. */
  stop(): Promise<void>;
  /** Starts the same server again, same port and data dir (for "server came back" tests). */
  restart(): Promise<void>;
  /** Stops and deletes its temp dir. Safe to call twice. */
  dispose(): Promise<void>;
}

export interface ServiceSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  /** Resolves once the server answers; called repeatedly until `startTimeoutMs`. */
  readonly ready: () => Promise<boolean>;
  readonly startTimeoutMs?: number;
}

/** Creates a temp dir for a service; its files live there and go away on `dispose()`. */
export function serviceDir(name: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `meridian-${name}-`));
}

/**
 * Runs `spec` in the foreground as a child of this process (never daemonised, so it dies with a
 * crashed test run's process group and its output is available when it fails to start).
 */
export async function startService<T extends object>(
  spec: ServiceSpec,
  dir: string,
  extra: T,
): Promise<ServiceProcess & T> {
  let child: ChildProcess | undefined;
  let output = '';
  const launch = async (): Promise<void> => {
    output = '';
    const c = spawn(spec.command, [...spec.args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const keep = (b: Buffer): void => {
      output = (output + b.toString()).slice(-4000);
    };
    c.stdout?.on('data', keep);
    c.stderr?.on('data', keep);
    let spawnError: Error | undefined;
    c.once('error', (err) => (spawnError = err));
    const deadline = Date.now() + (spec.startTimeoutMs ?? 20_000);
    while (Date.now() < deadline) {
      if (spawnError) {
        throw new OpsError(
          'OPS_ERR_SERVICE_START',
          `${spec.name}: cannot run ${spec.command}: ${spawnError.message}`,
        );
      }
      if (c.exitCode !== null || c.signalCode !== null) {
        throw new OpsError(
          'OPS_ERR_SERVICE_START',
          `${spec.name} exited during start (code ${c.exitCode}, signal ${c.signalCode}): ${output.trim()}`,
        );
      }
      if (await spec.ready().catch(() => false)) return;
      await sleep(50);
    }
    c.kill('SIGKILL');
    throw new OpsError(
      'OPS_ERR_SERVICE_START',
      `${spec.name} did not become ready in time: ${output.trim()}`,
    );
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  await launch();
  let disposed = false;
  return {
    ...extra,
    name: spec.name,
    get pid() {
      return child?.pid;
    },
    dir,
    stop,
    async restart() {
      await stop();
      await launch();
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True when a TCP connection to host:port succeeds. */
export function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** True when `udp` answers a datagram with any datagram within `timeoutMs`. */
export function udpAnswers(host: string, port: number, payload: Buffer, timeoutMs = 300): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.close();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('message', () => done(true));
    sock.once('error', () => done(false));
    sock.send(payload, port, host);
  });
}
