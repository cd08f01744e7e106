/**
 * A synthetic call leg: an RTP sender and receiver over real UDP sockets, 50 packets/s of opus-like
 * RTP (20 ms frames: timestamp += 960 at 48 kHz) with a fixed SSRC. The media tests, the steering
 * tests and `npm run bench:media` measure gaps at a sink with it; an operator can use it the same way
 * to check a session end to end.
 */
import * as dgram from 'node:dgram';
import { once } from 'node:events';

export interface RtpSenderOptions {
  ssrc: number;
  payloadType: number;
  /** Packets per second. Default 50. */
  rate?: number;
}

/** Sends RTP to a target until stopped; the target can change (re-targeting after a move). */
export class RtpSender {
  readonly #socket = dgram.createSocket('udp4');
  readonly #opts: Required<RtpSenderOptions>;
  #timer: NodeJS.Timeout | undefined;
  #seq = Math.floor(Math.random() * 0xffff);
  #ts = Math.floor(Math.random() * 0xffffffff);
  #target: { ip: string; port: number } | undefined;
  sent = 0;

  constructor(opts: RtpSenderOptions) {
    this.#opts = { rate: 50, ...opts };
  }

  async bind(): Promise<void> {
    this.#socket.bind(0, '127.0.0.1');
    await once(this.#socket, 'listening');
  }

  start(target: { ip: string; port: number }): void {
    this.#target = target;
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#send(), Math.round(1000 / this.#opts.rate));
  }

  retarget(target: { ip: string; port: number }): void {
    this.#target = target;
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  close(): void {
    this.stop();
    try {
      this.#socket.close();
    } catch {
      // already closed
    }
  }

  #send(): void {
    const t = this.#target;
    if (t === undefined) return;
    const pkt = Buffer.alloc(12 + 60);
    pkt[0] = 0x80; // V=2
    pkt[1] = this.#opts.payloadType & 0x7f;
    pkt.writeUInt16BE(this.#seq, 2);
    pkt.writeUInt32BE(this.#ts >>> 0, 4);
    pkt.writeUInt32BE(this.#opts.ssrc >>> 0, 8);
    pkt.fill(0xab, 12); // opus-ish payload bytes
    this.#seq = (this.#seq + 1) & 0xffff;
    this.#ts = (this.#ts + 960) >>> 0;
    this.sent += 1;
    this.#socket.send(pkt, t.port, t.ip);
  }
}

export interface ReceivedPacket {
  at: number;
  seq: number;
  ssrc: number;
  payloadType: number;
}

/** Receives RTP on 127.0.0.1 and records every packet (RTCP is counted apart). */
export class RtpReceiver {
  readonly #socket = dgram.createSocket('udp4');
  readonly packets: ReceivedPacket[] = [];
  rtcp = 0;
  #waiters: Array<{ n: number; resolve: () => void }> = [];

  async bind(): Promise<{ ip: string; port: number }> {
    this.#socket.on('message', (msg) => this.#onMessage(msg));
    this.#socket.bind(0, '127.0.0.1');
    await once(this.#socket, 'listening');
    return { ip: '127.0.0.1', port: this.#socket.address().port };
  }

  /** Resolves once `n` more RTP packets arrived (rejects after `timeoutMs`). */
  waitFor(n: number, timeoutMs = 10000): Promise<void> {
    const target = this.packets.length + n;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`timed out waiting for ${n} RTP packets (got ${this.packets.length - (target - n)})`),
          ),
        timeoutMs,
      );
      this.#waiters.push({
        n: target,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  close(): void {
    try {
      this.#socket.close();
    } catch {
      // already closed
    }
  }

  #onMessage(msg: Buffer): void {
    if (msg.length < 12 || (msg[0] ?? 0) >> 6 !== 2) return;
    const pt = (msg[1] ?? 0) & 0x7f;
    // RTCP packet types 200-204 show up as PT 72-76 once the marker bit is masked.
    if (pt >= 72 && pt <= 76) {
      this.rtcp += 1;
      return;
    }
    this.packets.push({
      at: Date.now(),
      seq: msg.readUInt16BE(2),
      ssrc: msg.readUInt32BE(8),
      payloadType: pt,
    });
    this.#waiters = this.#waiters.filter((w) => {
      if (this.packets.length >= w.n) {
        w.resolve();
        return false;
      }
      return true;
    });
  }
}
