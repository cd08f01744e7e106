// Test-only UDP pieces: a reflector that misbehaves on purpose and a relay that reorders or
// duplicates, both speaking the real probe wire format on loopback.
import dgram from 'node:dgram';
import { nowUs, parseProbe, stampReply } from '../src/probe-packet';

export interface Udp {
  readonly port: number;
  close(): Promise<void>;
}

async function bind(sock: dgram.Socket): Promise<number> {
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  return sock.address().port;
}

const closed = new WeakSet<dgram.Socket>();
const closer = (sock: dgram.Socket) => () =>
  new Promise<void>((resolve) => {
    closed.add(sock);
    sock.close(() => resolve());
  });
/** Sends unless the socket was closed meanwhile (delayed answers outlive a test). */
const safeSend = (sock: dgram.Socket, msg: Buffer, port: number, address: string): void => {
  if (!closed.has(sock)) sock.send(msg, port, address);
};

/**
 * A reflector with knobs: `holdMs` waits between stamping t2 and t3 (reflector hold time),
 * `dropEvery` drops every k-th request, `silent()` stops answering entirely.
 */
export async function testReflector(
  opts: { holdMs?: number; dropEvery?: number } = {},
): Promise<Udp & { silent(on: boolean): void; seen(): number }> {
  const sock = dgram.createSocket('udp4');
  let n = 0;
  let silent = false;
  sock.on('message', (msg, rinfo) => {
    const t2 = nowUs();
    const p = parseProbe(msg);
    if (!p.ok || p.packet.type !== 'request') return;
    n++;
    if (silent) return;
    if (opts.dropEvery && n % opts.dropEvery === 0) return;
    const answer = (): void => {
      stampReply(msg, t2, nowUs());
      safeSend(sock, msg, rinfo.port, rinfo.address);
    };
    if (opts.holdMs) setTimeout(answer, opts.holdMs);
    else answer();
  });
  const port = await bind(sock);
  return { port, close: closer(sock), silent: (on) => (silent = on), seen: () => n };
}

/**
 * A relay between one prober and one reflector. Requests go through unchanged; replies are
 * reordered (`swapPairs`: every pair of replies is delivered in reverse order) and/or duplicated
 * (`duplicateEvery`: every k-th reply is sent twice).
 */
export async function testRelay(
  reflectorPort: number,
  opts: { swapPairs?: boolean; duplicateEvery?: number },
): Promise<Udp> {
  const sock = dgram.createSocket('udp4');
  let client: { port: number; address: string } | undefined;
  let held: Buffer | undefined;
  let replies = 0;
  sock.on('message', (msg, rinfo) => {
    if (rinfo.port !== reflectorPort) {
      client = { port: rinfo.port, address: rinfo.address };
      safeSend(sock, msg, reflectorPort, '127.0.0.1');
      return;
    }
    if (!client) return;
    const to = client;
    replies++;
    const out: Buffer[] = [];
    if (opts.swapPairs) {
      if (held === undefined) {
        held = Buffer.from(msg);
      } else {
        out.push(Buffer.from(msg), held);
        held = undefined;
      }
    } else {
      out.push(msg);
    }
    if (opts.duplicateEvery && replies % opts.duplicateEvery === 0) out.push(Buffer.from(msg));
    for (const b of out) safeSend(sock, b, to.port, to.address);
  });
  const port = await bind(sock);
  return { port, close: closer(sock) };
}

/** Sends raw bytes to a UDP port on loopback. */
export async function sendRaw(port: number, bytes: Buffer): Promise<void> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.send(bytes, port, '127.0.0.1', () => resolve()));
  await new Promise<void>((resolve) => sock.close(() => resolve()));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms until it holds or `ms` passes. */
export async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(10);
  }
  return cond();
}
