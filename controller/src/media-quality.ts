/**
 * Call quality of a media session: a simplified ITU-T G.107 E-model (transmission rating R, then
 * MOS) from the loss and jitter its receiving legs measure and the one-way delay of its path.
 * Simplifications: default values for every parameter G.107 lets default (R0 - Is = 93.2, A = 0),
 * random loss (BurstR = 1), a jitter buffer of twice the jitter (at least one 20 ms frame).
 */

/** Equipment impairment (Ie) and packet-loss robustness (Bpl) per codec (G.113 App. I where listed). */
const CODEC_IMPAIRMENT: Record<string, { ie: number; bpl: number }> = {
  pcmu: { ie: 0, bpl: 25.1 }, // G.711 with packet loss concealment
  pcma: { ie: 0, bpl: 25.1 },
  opus: { ie: 0, bpl: 20 }, // not in G.113: a conservative estimate for wideband Opus with PLC
};

export interface QualityInput {
  codec: string;
  /** Network one-way delay of the path (ms), e.g. the topology latency from ingress to egress site. */
  pathDelayMs: number;
  lossPct: number;
  jitterMs: number;
}

export interface QualityEstimate {
  /** One-way mouth-to-ear delay used (ms): path + jitter buffer + one frame + processing. */
  delayMs: number;
  lossPct: number;
  jitterMs: number;
  r: number;
  mos: number;
}

/** R -> MOS (G.107 Annex B). */
export function mosFromR(r: number): number {
  if (r <= 0) return 1;
  if (r >= 100) return 4.5;
  return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6;
}

export function eModel(q: QualityInput): QualityEstimate {
  const imp = CODEC_IMPAIRMENT[q.codec] ?? { ie: 0, bpl: 20 };
  const jitterBuffer = Math.max(20, 2 * q.jitterMs);
  const d = Math.max(0, q.pathDelayMs) + jitterBuffer + 20 + 5;
  const id = 0.024 * d + (d > 177.3 ? 0.11 * (d - 177.3) : 0);
  const ppl = Math.min(100, Math.max(0, q.lossPct));
  const ieEff = imp.ie + ((95 - imp.ie) * ppl) / (ppl + imp.bpl);
  const r = Math.max(0, Math.min(100, 93.2 - id - ieEff));
  const round = (x: number, n: number) => Math.round(x * 10 ** n) / 10 ** n;
  return {
    delayMs: round(d, 1),
    lossPct: round(ppl, 3),
    jitterMs: round(q.jitterMs, 2),
    r: round(r, 1),
    mos: round(mosFromR(r), 2),
  };
}

/** Loss along legs combines as 1 - prod(1 - loss_i) (same rule as path metrics). */
export function combineLossPct(legs: Array<{ packets: number; packetsLost: number }>): number {
  let keep = 1;
  for (const l of legs) {
    const total = l.packets + l.packetsLost;
    if (total > 0) keep *= 1 - l.packetsLost / total;
  }
  return (1 - keep) * 100;
}

/**
 * Per-leg packet and loss counters over a recent window (default 5 s), so a session's MOS reflects
 * the last seconds rather than its whole life (a burst of loss an hour ago must not weigh forever,
 * nor a clean hour hide a lossy minute). Fed with the cumulative counters of every health report;
 * `recent()` is the difference between the newest sample and the newest one at least a window old
 * (or the oldest kept, early in a leg's life).
 */
export class LossWindow {
  readonly #windowMs: number;
  readonly #samples = new Map<string, Array<{ at: number; packets: number; lost: number }>>();

  constructor(windowMs = 5000) {
    this.#windowMs = windowMs;
  }

  get windowMs(): number {
    return this.#windowMs;
  }

  /** Records the cumulative counters of leg `key` at time `at` (ms). */
  record(key: string, at: number, packets: number, lost: number): void {
    let arr = this.#samples.get(key);
    if (arr === undefined) {
      arr = [];
      this.#samples.set(key, arr);
    }
    const last = arr[arr.length - 1];
    // Counters going back mean a new leg under the same key (a re-created transport): start over.
    if (last !== undefined && (packets < last.packets || lost < last.lost)) arr.length = 0;
    arr.push({ at, packets, lost });
    // Keep exactly one sample at or before the window's start.
    while (arr.length > 2 && (arr[1] as { at: number }).at <= at - this.#windowMs) arr.shift();
  }

  /** Packets and losses of leg `key` within the window; undefined when never recorded. */
  recent(key: string): { packets: number; packetsLost: number } | undefined {
    const arr = this.#samples.get(key);
    const last = arr?.[arr.length - 1];
    const first = arr?.[0];
    if (last === undefined || first === undefined) return undefined;
    if (arr !== undefined && arr.length === 1) return { packets: last.packets, packetsLost: last.lost };
    return { packets: last.packets - first.packets, packetsLost: last.lost - first.lost };
  }

  /** Forgets every key for which `keep` is false. */
  prune(keep: (key: string) => boolean): void {
    for (const k of this.#samples.keys()) if (!keep(k)) this.#samples.delete(k);
  }
}
