/**
 * The UDP probe wire format, TWAMP-light style. A sender stamps `t1` and sends a request; the
 * reflector stamps `t2` when the request arrives and `t3` just before it answers, and sends the
 * same bytes back as a reply; the sender stamps `t4` on arrival. Then
 *
 *   RTT = (t4 - t1) - (t3 - t2)
 *
 * uses only differences within one clock each, so it excludes the reflector's hold time and needs
 * no clock sync. `t2 - t1` is a one-way estimate that is only as good as the clocks' sync.
 *
 * Layout (big-endian, 48 bytes, optionally followed by padding the reflector sends back as is):
 *
 *   0  u32 magic 'MRDP'      4  u8 version (1)   5  u8 type (1 request, 2 reply)   6  u16 reserved
 *   8  u32 sender id         12 u32 session id   16 u32 seq                        20 u32 reserved
 *   24 u64 t1 (µs)           32 u64 t2 (µs)      40 u64 t3 (µs)
 *
 * The sender id (random per agent process) and the session id (random per probed target) let a
 * sender recognise replies that are not its own. Parsing never throws: garbage is a typed reason.
 */

export const PROBE_MAGIC = 0x4d524450; // 'MRDP'
export const PROBE_VERSION = 1;
export const PROBE_HEADER_BYTES = 48;
/** Largest probe accepted (an Ethernet MTU's worth of UDP payload). */
export const PROBE_MAX_BYTES = 1472;

export type ProbeType = 'request' | 'reply';

export interface ProbePacket {
  readonly type: ProbeType;
  readonly senderId: number;
  readonly sessionId: number;
  readonly seq: number;
  /** Sender transmit time, µs (sender clock). */
  readonly t1: number;
  /** Reflector receive time, µs (reflector clock); 0 in a request. */
  readonly t2: number;
  /** Reflector transmit time, µs (reflector clock); 0 in a request. */
  readonly t3: number;
}

/** Why bytes are not a probe packet. */
export type ProbeParseFailure = 'short' | 'long' | 'magic' | 'version' | 'type';

export type ProbeParseResult =
  | { readonly ok: true; readonly packet: ProbePacket }
  | { readonly ok: false; readonly reason: ProbeParseFailure };

const TYPE_CODE: Record<ProbeType, number> = { request: 1, reply: 2 };

function writeU64(buf: Buffer, offset: number, value: number): void {
  // Two u32 halves: exact for every integer below 2^53, with no BigInt on the hot path.
  const v = Math.max(0, Math.floor(value));
  buf.writeUInt32BE(Math.floor(v / 0x1_0000_0000) >>> 0, offset);
  buf.writeUInt32BE((v % 0x1_0000_0000) >>> 0, offset + 4);
}

function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset) * 0x1_0000_0000 + buf.readUInt32BE(offset + 4);
}

/** Encodes a probe request (t2, t3 zero) of `size` bytes (at least the header). */
export function encodeProbeRequest(
  p: { senderId: number; sessionId: number; seq: number; t1: number },
  size = PROBE_HEADER_BYTES,
): Buffer {
  const buf = Buffer.alloc(Math.min(PROBE_MAX_BYTES, Math.max(PROBE_HEADER_BYTES, size)));
  buf.writeUInt32BE(PROBE_MAGIC, 0);
  buf.writeUInt8(PROBE_VERSION, 4);
  buf.writeUInt8(TYPE_CODE.request, 5);
  buf.writeUInt32BE(p.senderId >>> 0, 8);
  buf.writeUInt32BE(p.sessionId >>> 0, 12);
  buf.writeUInt32BE(p.seq >>> 0, 16);
  writeU64(buf, 24, p.t1);
  return buf;
}

/**
 * Turns a received request into its reply in place: type, `t2` (when it arrived) and `t3` (now).
 * The caller has parsed `buf` as a request; the same bytes (padding included) go back.
 */
export function stampReply(buf: Buffer, t2: number, t3: number): Buffer {
  buf.writeUInt8(TYPE_CODE.reply, 5);
  writeU64(buf, 32, t2);
  writeU64(buf, 40, t3);
  return buf;
}

/** Parses bytes from the wire. Never throws; anything that is not a well-formed probe is a reason. */
export function parseProbe(buf: Buffer): ProbeParseResult {
  if (buf.length < PROBE_HEADER_BYTES) return { ok: false, reason: 'short' };
  if (buf.length > PROBE_MAX_BYTES) return { ok: false, reason: 'long' };
  if (buf.readUInt32BE(0) !== PROBE_MAGIC) return { ok: false, reason: 'magic' };
  if (buf.readUInt8(4) !== PROBE_VERSION) return { ok: false, reason: 'version' };
  const code = buf.readUInt8(5);
  const type: ProbeType | undefined = code === 1 ? 'request' : code === 2 ? 'reply' : undefined;
  if (type === undefined) return { ok: false, reason: 'type' };
  return {
    ok: true,
    packet: {
      type,
      senderId: buf.readUInt32BE(8),
      sessionId: buf.readUInt32BE(12),
      seq: buf.readUInt32BE(16),
      t1: readU64(buf, 24),
      t2: readU64(buf, 32),
      t3: readU64(buf, 40),
    },
  };
}

/** RTT in ms of a reply received at `t4` (µs, sender clock): excludes the reflector's hold time. */
export function probeRttMs(p: ProbePacket, t4: number): number {
  return (t4 - p.t1 - (p.t3 - p.t2)) / 1000;
}

/**
 * Wall-clock microseconds with sub-millisecond resolution (monotonic between NTP steps): what the
 * probes carry as timestamps.
 */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** A random non-zero u32 for sender and session ids. */
export function randomId32(): number {
  let id = 0;
  while (id === 0) id = (Math.random() * 0x1_0000_0000) >>> 0;
  return id;
}
