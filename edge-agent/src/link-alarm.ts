/**
 * Link alarms: how a link failure reaches every deciding site fast without the controller.
 *
 * Per-path probes from every source along every path cost O(sites × paths) packets, which does not
 * scale (the reference topology has ~300 distinct paths: 15,000 probes/s at 20 ms). Instead the two
 * sites at the ends of a link probe it (the probe engine, O(links)), and when one of them declares
 * it down it sends an alarm to every other site's path reflector along every path it has towards
 * that site that avoids the dead link (the primaries and backups of its routes of all classes), or
 * unpinned when none does. A
 * receiving agent moves every route whose primary uses the link onto its backup at once; the
 * controller's recompute then takes over as for any fast reroute.
 *
 * Alarms are authenticated (HMAC-SHA-256, truncated to 128 bits, keyed by a hash of the agent
 * token every agent holds): a forged UDP packet must not be able to move traffic. Replays are
 * refused by the receiver (per-origin sequence numbers, and an age limit on `atMs`).
 *
 * Layout (big-endian):
 *
 *   0 u32 magic 'MRDA'   4 u8 version (1)   5 u8 flags (bit 0: up)   6 u16 reserved
 *   8 u32 sender id (random per agent process)   12 u32 seq   16 u64 atMs (sender wall clock)
 *   24 u8 origin length, origin site id   then u8 link length, link id   then 16 bytes HMAC
 *
 * Decoding never throws: anything else is a typed reason.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const ALARM_MAGIC = 0x4d524441; // 'MRDA'
export const ALARM_VERSION = 1;
const FIXED = 24;
const MAC_BYTES = 16;

export interface LinkAlarm {
  /** Site whose agent saw the link change. */
  readonly origin: string;
  readonly link: string;
  readonly up: boolean;
  readonly senderId: number;
  readonly seq: number;
  /** Sender wall clock, ms since the epoch. */
  readonly atMs: number;
}

export type AlarmDecodeFailure = 'short' | 'magic' | 'version' | 'length' | 'mac';

export type AlarmDecodeResult =
  | { readonly ok: true; readonly alarm: LinkAlarm }
  | { readonly ok: false; readonly reason: AlarmDecodeFailure };

/** The alarm key every agent derives from the shared agent token. */
export function alarmKey(agentToken: string): Buffer {
  return createHash('sha256').update(`meridian link alarm v1\0${agentToken}`).digest();
}

function mac(key: Buffer, body: Buffer): Buffer {
  return createHmac('sha256', key).update(body).digest().subarray(0, MAC_BYTES);
}

/** Encodes and signs an alarm. Ids longer than 255 bytes are a caller bug (topology ids are short). */
export function encodeLinkAlarm(alarm: LinkAlarm, key: Buffer): Buffer {
  const origin = Buffer.from(alarm.origin, 'utf8');
  const link = Buffer.from(alarm.link, 'utf8');
  if (origin.length > 255 || link.length > 255) throw new RangeError('alarm ids are limited to 255 bytes');
  const body = Buffer.alloc(FIXED + 1 + origin.length + 1 + link.length);
  body.writeUInt32BE(ALARM_MAGIC, 0);
  body.writeUInt8(ALARM_VERSION, 4);
  body.writeUInt8(alarm.up ? 1 : 0, 5);
  body.writeUInt32BE(alarm.senderId >>> 0, 8);
  body.writeUInt32BE(alarm.seq >>> 0, 12);
  body.writeDoubleBE(alarm.atMs, 16);
  let o = FIXED;
  body.writeUInt8(origin.length, o++);
  origin.copy(body, o);
  o += origin.length;
  body.writeUInt8(link.length, o++);
  link.copy(body, o);
  return Buffer.concat([body, mac(key, body)]);
}

/** True when the bytes start like an alarm (cheap test before a full decode). */
export function looksLikeAlarm(buf: Buffer): boolean {
  return buf.length >= 4 && buf.readUInt32BE(0) === ALARM_MAGIC;
}

/** Decodes and verifies an alarm. */
export function decodeLinkAlarm(buf: Buffer, key: Buffer): AlarmDecodeResult {
  if (buf.length < FIXED + 2 + MAC_BYTES) return { ok: false, reason: 'short' };
  if (buf.readUInt32BE(0) !== ALARM_MAGIC) return { ok: false, reason: 'magic' };
  if (buf.readUInt8(4) !== ALARM_VERSION) return { ok: false, reason: 'version' };
  const originLen = buf.readUInt8(FIXED);
  const linkAt = FIXED + 1 + originLen;
  if (linkAt >= buf.length) return { ok: false, reason: 'length' };
  const linkLen = buf.readUInt8(linkAt);
  const end = linkAt + 1 + linkLen;
  if (end + MAC_BYTES !== buf.length) return { ok: false, reason: 'length' };
  const body = buf.subarray(0, end);
  if (!timingSafeEqual(mac(key, body), buf.subarray(end))) return { ok: false, reason: 'mac' };
  return {
    ok: true,
    alarm: {
      origin: buf.toString('utf8', FIXED + 1, linkAt),
      link: buf.toString('utf8', linkAt + 1, end),
      up: (buf.readUInt8(5) & 1) === 1,
      senderId: buf.readUInt32BE(8),
      seq: buf.readUInt32BE(12),
      atMs: buf.readDoubleBE(16),
    },
  };
}
