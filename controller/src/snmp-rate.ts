/**
 * Interface rates from successive SNMP counter readings. Pure: no I/O, no clock; the poller
 * feeds it readings and keeps the returned state.
 *
 * What real devices do to counters, and what this does about it:
 * - 64-bit counters wrap at 2^64: a reading below the previous one is taken as a wrap when the
 *   wrapped delta is a plausible rate for the interface, else as a discontinuity.
 * - A device restart zeroes the counters: `sysUpTime` went back (and not by its own 32-bit wrap),
 *   so the baseline is reset and no rate is produced from across the restart (no bogus spike).
 * - `ifCounterDiscontinuityTime` changed (interface re-created, counters reset without a restart):
 *   baseline reset.
 * - A counter that jumps further than any interface could carry is a discontinuity, not traffic.
 * - A missing counter keeps its previous baseline, so the next good reading gives the average over
 *   the gap rather than nothing.
 */

/** One poll of one interface. Counters as exact bigints (Counter64 exceeds 2^53). */
export interface CounterReading {
  /** Local time the reading was taken, ms. */
  readonly atMs: number;
  /** sysUpTime, hundredths of a second; null when missing. */
  readonly uptimeTicks: number | null;
  /** ifCounterDiscontinuityTime, ticks; null when the device does not provide it. */
  readonly discontinuityTicks: number | null;
  readonly inOctets: bigint | null;
  readonly outOctets: bigint | null;
  /** ifHighSpeed, Mbit/s; null or 0 when unknown. */
  readonly speedMbps: number | null;
}

interface Baseline {
  readonly value: bigint;
  readonly atMs: number;
}

/** What the module remembers between readings of one interface. */
export interface RateState {
  readonly uptime: { readonly ticks: number; readonly atMs: number } | null;
  readonly discontinuityTicks: number | null;
  readonly in: Baseline | null;
  readonly out: Baseline | null;
}

/** Why a rate is missing or how it was obtained, for logs and tests. */
export type RateNote =
  | 'first'
  | 'restart'
  | 'discontinuity'
  | 'in-wrap'
  | 'out-wrap'
  | 'in-implausible'
  | 'out-implausible'
  | 'in-missing'
  | 'out-missing';

export interface RateResult {
  readonly state: RateState;
  readonly inBps: number | null;
  readonly outBps: number | null;
  /** max(in, out) over the interface speed, percent; null when a rate or the speed is unknown. */
  readonly utilPct: number | null;
  readonly notes: readonly RateNote[];
}

export const COUNTER64_MODULUS = 1n << 64n;
const TICKS_MODULUS = 2 ** 32;
/**
 * No interface carries more than this: a delta implying more is a discontinuity, not traffic.
 * Deliberately not tied to ifHighSpeed: virtual interfaces (lo, veth, tun) report 10 Mbit/s or 0
 * and carry far more. A real counter reset seen as a 64-bit wrap implies ~10^19 bytes, which no
 * bound this size lets through; a genuine wrap (previous value near 2^64) passes.
 */
export const MAX_PLAUSIBLE_BPS = 1.6e12;

function plausibleBps(speedMbps: number | null): number {
  return speedMbps !== null && speedMbps > 0
    ? Math.max(MAX_PLAUSIBLE_BPS, speedMbps * 1e6 * 10)
    : MAX_PLAUSIBLE_BPS;
}

/** Did the device restart between two uptime readings `elapsedMs` apart? */
export function uptimeWentBack(prevTicks: number, curTicks: number, elapsedMs: number): boolean {
  if (curTicks >= prevTicks) return false;
  // TimeTicks is 32-bit (wraps after ~497 days): a wrap lands where the elapsed time says it would.
  const expected = (prevTicks + elapsedMs / 10) % TICKS_MODULUS;
  const slack = Math.max(100, elapsedMs / 10); // 1 s or one interval of ticks
  const wrapped = prevTicks + elapsedMs / 10 >= TICKS_MODULUS && Math.abs(curTicks - expected) <= slack;
  return !wrapped;
}

function counterRate(
  prev: Baseline | null,
  cur: bigint | null,
  atMs: number,
  maxBps: number,
): { base: Baseline | null; bps: number | null; note: 'wrap' | 'implausible' | 'missing' | 'first' | null } {
  if (cur === null) return { base: prev, bps: null, note: 'missing' };
  const base = { value: cur, atMs };
  if (prev === null) return { base, bps: null, note: 'first' };
  const seconds = (atMs - prev.atMs) / 1000;
  if (!(seconds > 0)) return { base: prev, bps: null, note: null };
  let delta = cur - prev.value;
  let note: 'wrap' | null = null;
  if (delta < 0n) {
    delta += COUNTER64_MODULUS;
    note = 'wrap';
  }
  const bps = (Number(delta) * 8) / seconds;
  if (bps > maxBps) return { base, bps: null, note: 'implausible' };
  return { base, bps, note };
}

/** Folds one reading into the state of its interface. */
export function nextRates(state: RateState | undefined, r: CounterReading): RateResult {
  const notes: RateNote[] = [];
  const uptime = r.uptimeTicks === null ? (state?.uptime ?? null) : { ticks: r.uptimeTicks, atMs: r.atMs };
  let prevIn = state?.in ?? null;
  let prevOut = state?.out ?? null;
  if (state === undefined) notes.push('first');
  if (
    state?.uptime &&
    r.uptimeTicks !== null &&
    uptimeWentBack(state.uptime.ticks, r.uptimeTicks, r.atMs - state.uptime.atMs)
  ) {
    notes.push('restart');
    prevIn = null;
    prevOut = null;
  } else if (
    state !== undefined &&
    state.discontinuityTicks !== null &&
    r.discontinuityTicks !== null &&
    state.discontinuityTicks !== r.discontinuityTicks
  ) {
    notes.push('discontinuity');
    prevIn = null;
    prevOut = null;
  }
  const reset = notes.includes('restart') || notes.includes('discontinuity');
  const maxBps = plausibleBps(r.speedMbps);
  const i = counterRate(prevIn, r.inOctets, r.atMs, maxBps);
  const o = counterRate(prevOut, r.outOctets, r.atMs, maxBps);
  for (const [dir, res] of [
    ['in', i],
    ['out', o],
  ] as const) {
    if (res.note === 'wrap' || res.note === 'implausible' || res.note === 'missing')
      notes.push(`${dir}-${res.note}`);
  }
  const inBps = reset ? null : i.bps;
  const outBps = reset ? null : o.bps;
  const speedBps = r.speedMbps !== null && r.speedMbps > 0 ? r.speedMbps * 1e6 : null;
  const utilPct =
    inBps !== null && outBps !== null && speedBps !== null
      ? Math.min(100, (Math.max(inBps, outBps) / speedBps) * 100)
      : null;
  return {
    state: {
      uptime,
      discontinuityTicks: r.discontinuityTicks ?? state?.discontinuityTicks ?? null,
      in: i.base,
      out: o.base,
    },
    inBps,
    outBps,
    utilPct,
    notes,
  };
}

/**
 * Decodes a Counter64 exactly from its BER content bytes (snmp-native's `valueRaw`); its own
 * `value` is a double, exact only below 2^53. Returns null for anything that is not 1..9 bytes of
 * an unsigned 64-bit value.
 */
export function counter64FromBytes(raw: Buffer): bigint | null {
  if (raw.length === 0 || raw.length > 9) return null;
  if (raw.length === 9 && raw[0] !== 0) return null;
  let v = 0n;
  for (const b of raw) v = (v << 8n) | BigInt(b);
  return v < COUNTER64_MODULUS ? v : null;
}
