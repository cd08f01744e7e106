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
