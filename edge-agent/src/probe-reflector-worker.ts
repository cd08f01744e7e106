/**
 * The probe reflector's own thread (see probe-reflector.ts for why it has one). Binds the probe
 * port, answers requests, and keeps the counters in the shared buffer the agent thread reads.
 *
 * Messages to the agent thread: `{ type: 'listening', host, port }` once bound,
 * `{ type: 'bind-error', message }` if binding failed (the thread then ends),
 * `{ type: 'warn', message, nice? }` for what the agent should log. From the agent thread:
 * `'stop'`, which closes the socket and ends the thread.
 */
import dgram from 'node:dgram';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { nowUs, parseProbe, stampReply } from './probe-packet';

/** What the agent thread passes in `workerData`. */
export interface ReflectorWorkerData {
  readonly kind: typeof WORKER_KIND;
  readonly host: string;
  readonly port: number;
  /** Float64 counters: reflected, malformed, foreign, sendErrors (written by this thread only). */
  readonly counters: SharedArrayBuffer;
  /** Nice value to ask for this thread (Linux: per thread), or null to leave it. */
  readonly nice: number | null;
}

/** Marks the worker data of this thread (the module is also imported for its constants). */
export const WORKER_KIND = 'meridian-probe-reflector';

/** Counter slots in the shared buffer. */
export const REFLECTED = 0;
export const MALFORMED = 1;
export const FOREIGN = 2;
export const SEND_ERRORS = 3;
export const COUNTER_SLOTS = 4;

function main(): void {
  const port = parentPort;
  const data = workerData as ReflectorWorkerData | null;
  // Imported for its constants (the agent thread, or any other worker): nothing to run.
  if (port === null || data?.kind !== WORKER_KIND) return;
  const counters = new Float64Array(data.counters);

  if (data.nice !== null) {
    // On Linux the nice value is per thread: setpriority() on this thread's id lifts only the
    // reflector, the one thread whose delay peers read as the link's delay.
    try {
      const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
      setPriority(tid, data.nice);
    } catch (err) {
      port.postMessage({
        type: 'warn',
        message: `cannot set the reflector thread's priority (${(err as Error).message}); it runs at the agent's`,
        nice: data.nice,
      });
    }
  }

  const socket = dgram.createSocket({ type: data.host.includes(':') ? 'udp6' : 'udp4' });
  const onBindError = (err: Error): void => {
    port.postMessage({ type: 'bind-error', message: err.message });
    socket.close();
    port.close();
  };
  socket.once('error', onBindError);
  socket.bind(data.port, data.host, () => {
    socket.off('error', onBindError);
    // A bound UDP socket only reports send-side trouble here; keep serving.
    socket.on('error', (err) =>
      port.postMessage({ type: 'warn', message: `probe socket error: ${err.message}` }),
    );
    const a = socket.address();
    port.postMessage({ type: 'listening', host: a.address, port: a.port });
  });
  socket.on('message', (msg, rinfo) => {
    const t2 = nowUs();
    const parsed = parseProbe(msg);
    if (!parsed.ok) {
      counters[MALFORMED]!++;
      return;
    }
    if (parsed.packet.type !== 'request') {
      counters[FOREIGN]!++;
      return;
    }
    stampReply(msg, t2, nowUs());
    socket.send(msg, rinfo.port, rinfo.address, (err) => {
      if (err) counters[SEND_ERRORS]!++;
    });
    counters[REFLECTED]!++;
  });
  port.on('message', (m) => {
    if (m !== 'stop') return;
    socket.close(() => port.close());
  });
}

main();
