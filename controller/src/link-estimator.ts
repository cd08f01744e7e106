/**
 * The link-state estimator: turns probe samples (from agents) and interface counters (from SNMP)
 * into the measured state of every topology link, and says when that state changes.
 *
 * It sits on the ingest hot path (>= 100,000 samples/s on one core), so per-link state lives in
 * preallocated typed-array rings, a sample costs a handful of arithmetic operations, nothing is
 * allocated or logged per sample, and percentiles are computed only when a snapshot is taken.
 */
import { EventEmitter } from 'node:events';
import type { LinkState, Topology } from '@meridian/topology';
import type { LinkProbeStats } from './proto';

/** How the estimator smooths and decides. Defaults: `DEFAULT_ESTIMATOR_SETTINGS`. */
export interface EstimatorSettings {
  /** Weight of a new RTT sample in the EWMA (RFC 6298 uses 1/8). */
  readonly ewmaAlpha: number;
  /** Recent RTTs kept for min/p50/p95. */
  readonly rttWindow: number;
  /**
   * Probes over which loss is computed. From 160 up, a loss jump shows faster: when the last
   * eighth, quarter or half of the window has significantly more losses than the older rest (see
   * `#lossPct`), what it shows for sure is reported instead (fast attack, slow release).
   */
  readonly lossWindow: number;
  /**
   * The recent suffixes of the loss window checked for a jump, as divisors of `lossWindow`
   * (default `[8, 4, 2]`: the last eighth, quarter and half; `[]` turns the fast attack off).
   */
  readonly lossSuffixes: readonly number[];
  /** Consecutive lost probes that take a link down (3 at 100 ms: down within ~300 ms + timeout). */
  readonly downAfterMisses: number;
  /** Consecutive answered probes that bring a down (or unknown) link up. */
  readonly upAfterSuccesses: number;
  /** No sample for this long: the link is stale and its liveness unknown (`up: null`). */
  readonly staleAfterMs: number;
  /** Smallest change of a metric worth a `link-change` event (liveness always is). */
  readonly changeEpsilon: {
    readonly latencyMs: number;
    readonly jitterMs: number;
    readonly lossPct: number;
    readonly utilPct: number;
  };
}

export const DEFAULT_ESTIMATOR_SETTINGS: EstimatorSettings = {
  ewmaAlpha: 0.125,
  rttWindow: 128,
  lossWindow: 100,
  // Why several suffixes: the last eighth shows a big jump soonest; a jump just past an SLA
  // (3 % each way against voice's 1 %) puts too few losses in an eighth (83 probes of the lab's
  // 20 s window) to tell from chance, so the eighth alone showed it about every other quality
  // cycle and voice left such a link after 2–17 s. The quarter and half show it for sure sooner.
  lossSuffixes: [8, 4, 2],
  downAfterMisses: 3,
  upAfterSuccesses: 3,
  staleAfterMs: 3000,
  changeEpsilon: { latencyMs: 0.5, jitterMs: 0.5, lossPct: 0.5, utilPct: 1 },
};

/** The measured state of one link at one moment (what the API, Redis and the route engine see). */
export interface LinkSnapshot {
  readonly id: string;
  readonly a: string;
  readonly b: string;
  /** `null`: unknown (never measured, or stale). */
  readonly up: boolean | null;
  readonly stale: boolean;
  /** One-way latency estimate: the forward EWMA when agents measure it, else RTT EWMA / 2. */
  readonly latencyMs: number | null;
  readonly rttMs: number | null;
  readonly rttMinMs: number | null;
  readonly rttP50Ms: number | null;
  readonly rttP95Ms: number | null;
  /** RFC 3550 interarrival jitter over consecutive answered probes. */
  readonly jitterMs: number | null;
  /**
   * One-way loss estimate, percent: from the lost share r of the last `lossWindow` probes (round
   * trips), 1 − √(1 − r) (see `#lossPct`).
   */
  readonly lossPct: number | null;
  /** Highest utilisation reported by SNMP for the link's interfaces, percent. */
  readonly utilPct: number | null;
  /** Samples ingested for this link since start. */
  readonly samples: number;
  /** Site whose agent probes the link (the `src` tag in history), `null` before any sample. */
  readonly src: string | null;
  /** Last sample or counter, ms since epoch; 0 = never. */
  readonly updatedAtMs: number;
}

/** The fields of a link that changed, with their new values. */
export type LinkChangedFields = Partial<
  Pick<LinkSnapshot, 'up' | 'latencyMs' | 'jitterMs' | 'lossPct' | 'utilPct' | 'stale'>
>;

/** A `link-change` event: what changed and the full new state. */
export interface LinkChange {
  readonly id: string;
  readonly changed: LinkChangedFields;
  readonly state: LinkSnapshot;
  /** True when liveness (`up`/`stale`) changed: consumers should act at once. */
  readonly liveness: boolean;
}

export type LinkEstimatorEvents = {
  /** Liveness changes are emitted at once from ingest; metric changes from `collectChanges()`. */
  'link-change': [LinkChange];
};

// Liveness encoded in a byte: 0 unknown, 1 up, 2 down.
const UNKNOWN = 0;
const UP = 1;
const DOWN = 2;

/** Mutable per-link state; only the estimator touches it. */
class LinkCell {
  readonly index: number;
  readonly id: string;
  readonly a: string;
  readonly b: string;
  readonly rtt: Float64Array;
  rttPos = 0;
  rttFill = 0;
  readonly lossRing: Uint8Array;
  lossPos = 0;
  lossFill = 0;
  lossCount = 0;
  /** Lengths of the recent suffixes of the loss window (empty: the fast attack is off). */
  readonly suffixLen: Int32Array;
  /** Losses among the last `suffixLen[j]` probes. */
  readonly suffixCount: Int32Array;
  rttEwma = NaN;
  fwdEwma = NaN;
  lastFwdKnown = false;
  prevTransit = NaN;
  prevTransitIsFwd = false;
  jitter = NaN;
  liveness = UNKNOWN;
  misses = 0;
  successes = 0;
  stale = true;
  samples = 0;
  src: string | null = null;
  lastSampleAt = 0;
  updatedAt = 0;
  /** Utilisation per SNMP source (`device/ifName`). */
  util: Map<string, number> | undefined;
  dirty = false;
  /** Values at the last emitted change, for epsilon comparison. */
  emitted: {
    latencyMs: number | null;
    jitterMs: number | null;
    lossPct: number | null;
    utilPct: number | null;
  } = { latencyMs: null, jitterMs: null, lossPct: null, utilPct: null };

  constructor(index: number, id: string, a: string, b: string, s: EstimatorSettings) {
    this.index = index;
    this.id = id;
    this.a = a;
    this.b = b;
    this.rtt = new Float64Array(s.rttWindow);
    this.lossRing = new Uint8Array(s.lossWindow);
    const divisors = s.lossWindow >= FAST_ATTACK_MIN_WINDOW ? s.lossSuffixes : [];
    this.suffixLen = Int32Array.from(divisors, (d) => Math.floor(s.lossWindow / d));
    this.suffixCount = new Int32Array(divisors.length);
  }
}

/** Loss windows from this many probes on get the fast attack (an eighth of them is >= 20). */
const FAST_ATTACK_MIN_WINDOW = 160;
/** A recent suffix must show at least this many losses and this many σ above the older rate. */
const FAST_ATTACK_MIN_LOSSES = 5;
const FAST_ATTACK_SIGMAS = 4;

/** Lower bound of the Wilson score interval for `k` successes in `n` trials at `z` σ. */
function wilsonLower(k: number, n: number, z: number): number {
  const p = k / n;
  const z2n = (z * z) / n;
  const centre = p + z2n / 2;
  const spread = z * Math.sqrt((p * (1 - p)) / n + z2n / (4 * n));
  return Math.max(0, (centre - spread) / (1 + z2n));
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function nullable(x: number): number | null {
  return Number.isFinite(x) ? round3(x) : null;
}

/**
 * Per-link estimator over a fixed topology. Feed it with `ingestReport()` (or the lower-level
 * `ingestSample()`), `setUtilisation()`, call `tick()` about every 100-250 ms for staleness and
 * `collectChanges()` to emit metric changes; read with `snapshot()`/`snapshots()`.
 */
export class LinkEstimator extends EventEmitter<LinkEstimatorEvents> {
  readonly settings: EstimatorSettings;
  readonly #cells: LinkCell[];
  readonly #byId = new Map<string, LinkCell>();
  #dirty: LinkCell[] = [];
  #totalSamples = 0;

  constructor(topology: Pick<Topology, 'links'>, settings: Partial<EstimatorSettings> = {}) {
    super();
    this.settings = { ...DEFAULT_ESTIMATOR_SETTINGS, ...settings };
    const s = this.settings;
    if (!(s.ewmaAlpha > 0 && s.ewmaAlpha <= 1))
      throw new RangeError(`ewmaAlpha ${s.ewmaAlpha} not in (0, 1]`);
    for (const k of ['rttWindow', 'lossWindow', 'downAfterMisses', 'upAfterSuccesses'] as const) {
      if (!Number.isInteger(s[k]) || s[k] < 1) throw new RangeError(`${k} ${s[k]} must be an integer >= 1`);
    }
    if (!Array.isArray(s.lossSuffixes) || !s.lossSuffixes.every((d) => Number.isInteger(d) && d >= 2))
      throw new RangeError(
        `lossSuffixes ${String(s.lossSuffixes)} must be integers >= 2 (divisors of lossWindow)`,
      );
    this.#cells = topology.links.map((l, i) => new LinkCell(i, l.id, l.a, l.b, s));
    for (const c of this.#cells) this.#byId.set(c.id, c);
  }

  /** Samples ingested since start, all links. */
  get totalSamples(): number {
    return this.#totalSamples;
  }

  /** Link ids in topology order. */
  linkIds(): string[] {
    return this.#cells.map((c) => c.id);
  }

  /** The two ends of a link, or undefined when the topology has no such link. */
  ends(linkId: string): { a: string; b: string } | undefined {
    const c = this.#byId.get(linkId);
    return c ? { a: c.a, b: c.b } : undefined;
  }

  /** Index of a link for `ingestSample()`, -1 when unknown. */
  indexOf(linkId: string): number {
    return this.#byId.get(linkId)?.index ?? -1;
  }

  /**
   * One probe result. `rttMs < 0` or `lost` means the probe got no answer; `fwdMs < 0` means no
   * one-way estimate. `src` is the probing site. The hot path: no allocation.
   */
  ingestSample(index: number, src: string, rttMs: number, fwdMs: number, lost: boolean, nowMs: number): void {
    const c = this.#cells[index];
    if (c === undefined) return;
    const answered = !lost && rttMs >= 0;
    this.#outcome(c, src, answered, nowMs);
    if (answered) this.#rtt(c, rttMs, fwdMs);
    if (answered && c.liveness !== UP && c.successes >= this.settings.upAfterSuccesses)
      this.#setLiveness(c, UP);
  }

  /** Counts one probe (answered or not) into the loss window and the liveness hysteresis. */
  #outcome(c: LinkCell, src: string, answered: boolean, nowMs: number): void {
    this.#totalSamples++;
    c.samples++;
    c.src = src;
    c.lastSampleAt = nowMs;
    c.updatedAt = nowMs;
    if (c.stale) c.stale = false;
    if (!c.dirty) this.#markDirty(c);
    // Loss window: a ring of 0/1 with a running count. Probes lost while the link is down are
    // the outage (reported as `up: false`), not its loss rate: counted, a link back from a cut
    // would read several % lossy for a whole window and stay out of every tight SLA.
    if (!answered && c.liveness === DOWN) {
      c.successes = 0;
      c.misses++;
      return;
    }
    const ring = c.lossRing;
    if (c.lossFill === ring.length) c.lossCount -= ring[c.lossPos]!;
    else c.lossFill++;
    ring[c.lossPos] = answered ? 0 : 1;
    for (let j = 0; j < c.suffixLen.length; j++) {
      // The probe leaving suffix j was written suffixLen[j] steps ago (still in the ring).
      const len = c.suffixLen[j]!;
      if (!answered) c.suffixCount[j]!++;
      if (c.lossFill > len) {
        const at = c.lossPos - len;
        c.suffixCount[j]! -= ring[at < 0 ? at + ring.length : at]!;
      }
    }
    c.lossPos = c.lossPos + 1 === ring.length ? 0 : c.lossPos + 1;
    if (answered) {
      c.misses = 0;
      c.successes++;
    } else {
      c.lossCount++;
      c.successes = 0;
      c.misses++;
      if (c.liveness !== DOWN && c.misses >= this.settings.downAfterMisses) this.#setLiveness(c, DOWN);
    }
  }

  /**
   * Loss, percent: the window's rate, or a recent suffix's when it is significantly higher.
   * A long window keeps a 0.5–1 % link from reading 0 % or 2 % by chance (and crossing a 1 % SLA
   * back and forth), but a real jump would need most of it to show; the recent eighth, quarter
   * and half show it sooner, each only when it cannot be chance at the older part's rate; then
   * the highest of their Wilson lower bounds is reported (what the sample shows for sure).
   */
  #lossPct(c: LinkCell): number | null {
    if (c.stale || c.lossFill === 0) return null;
    // A probe is lost when either its request or its reply is: the round-trip rate r is about
    // twice a link's one-way loss, and SLAs and path loss (1 − Π(1 − lossᵢ)) are one way. With
    // both directions losing alike, one way = 1 − √(1 − r) (as latency is RTT/2 without stamps).
    const oneWay = (r: number): number => round3((1 - Math.sqrt(1 - r)) * 100);
    let rate = c.lossCount / c.lossFill;
    for (let j = 0; j < c.suffixLen.length; j++) {
      const n = c.suffixLen[j]!;
      const k = c.suffixCount[j]!;
      // Only a suffix with an older part behind it (the window has filled past it).
      if (c.lossFill <= n || k < FAST_ATTACK_MIN_LOSSES) continue;
      // Against the rest of the window (the older part), not a rate that includes the suffix.
      const older = c.lossFill - n;
      const p = Math.max((c.lossCount - k) / older, 1 / older);
      if (k - n * p > FAST_ATTACK_SIGMAS * Math.sqrt(n * p * (1 - p))) {
        // A suffix is a smaller sample: report what it shows for sure (the Wilson lower bound,
        // 2σ), not its noisy point estimate, which would overshoot other SLAs.
        rate = Math.max(rate, wilsonLower(k, n, 2));
      }
    }
    return oneWay(rate);
  }

  /** Folds one answered probe into the RTT ring, the EWMAs and the jitter. */
  #rtt(c: LinkCell, rttMs: number, fwdMs: number): void {
    const alpha = this.settings.ewmaAlpha;
    c.rtt[c.rttPos] = rttMs;
    c.rttPos = c.rttPos + 1 === c.rtt.length ? 0 : c.rttPos + 1;
    if (c.rttFill < c.rtt.length) c.rttFill++;
    c.rttEwma = Number.isNaN(c.rttEwma) ? rttMs : c.rttEwma + alpha * (rttMs - c.rttEwma);
    // A forward time above the round trip comes from unsynchronised clocks: treat as unknown.
    const fwdKnown = fwdMs >= 0 && fwdMs <= rttMs;
    if (fwdKnown) c.fwdEwma = Number.isNaN(c.fwdEwma) ? fwdMs : c.fwdEwma + alpha * (fwdMs - c.fwdEwma);
    c.lastFwdKnown = fwdKnown;
    // RFC 3550: J += (|D| - J) / 16, D the change of transit time between consecutive answered
    // probes. The forward transit is used when both probes have one (a clock offset cancels in
    // D), else the round trip.
    const transit = fwdKnown ? fwdMs : rttMs;
    if (!Number.isNaN(c.prevTransit) && c.prevTransitIsFwd === fwdKnown) {
      const d = transit - c.prevTransit;
      const ad = d < 0 ? -d : d;
      c.jitter = Number.isNaN(c.jitter) ? ad / 16 : c.jitter + (ad - c.jitter) / 16;
    } else if (Number.isNaN(c.jitter)) {
      c.jitter = 0;
    }
    c.prevTransit = transit;
    c.prevTransitIsFwd = fwdKnown;
  }

  /**
   * One link entry of an agent report (already validated by the gateway). Samples drive the
   * estimator; a report without samples feeds the loss window from its counters. The agent's own
   * verdict is honoured: `alive: false` takes the link down at once; `alive: true` brings it up
   * only when the report carries no samples to judge by.
   */
  ingestLinkStats(src: string, stats: LinkProbeStats, nowMs: number): void {
    const c = this.#byId.get(stats.link);
    if (c === undefined) return;
    const i = c.index;
    const samples = stats.samples;
    if (samples.length > 0) {
      for (let k = 0; k < samples.length; k++) {
        const x = samples[k]!;
        this.ingestSample(i, src, x.rttMs, x.fwdMs, x.lost, nowMs);
      }
    } else {
      // Counters only: the loss window learns, RTT does not.
      for (let k = 0; k < stats.received; k++) this.#outcome(c, src, true, nowMs);
      for (let k = 0; k < stats.lost; k++) this.#outcome(c, src, false, nowMs);
    }
    if (!stats.alive && c.liveness !== DOWN && (stats.sent > 0 || samples.length > 0)) {
      this.#setLiveness(c, DOWN);
    } else if (stats.alive && c.liveness !== UP && samples.length === 0 && stats.received > 0) {
      this.#setLiveness(c, UP);
    }
  }

  /** Utilisation of one interface carrying `linkId` (from SNMP); the link shows the highest. */
  setUtilisation(linkId: string, source: string, utilPct: number, nowMs: number): void {
    const c = this.#byId.get(linkId);
    if (c === undefined || !Number.isFinite(utilPct)) return;
    (c.util ??= new Map()).set(source, utilPct);
    c.updatedAt = Math.max(c.updatedAt, nowMs);
    this.#markDirty(c);
  }

  /** Marks links stale that no agent reported for `staleAfterMs`; call every 100-250 ms. */
  tick(nowMs: number): void {
    const limit = nowMs - this.settings.staleAfterMs;
    for (const c of this.#cells) {
      if (!c.stale && c.lastSampleAt < limit) {
        c.stale = true;
        c.misses = 0;
        c.successes = 0;
        c.prevTransit = NaN;
        const wasKnown = c.liveness !== UNKNOWN;
        c.liveness = UNKNOWN;
        this.#emit(c, { stale: true, ...(wasKnown ? { up: null } : {}) }, true);
      }
    }
  }

  /**
   * Emits `link-change` for every link whose metrics moved by more than the epsilons since the last
   * event, and returns the ids of all links touched since the previous call (to persist). Cheap:
   * the full snapshot (with percentiles) is built only for links that emit.
   */
  collectChanges(): string[] {
    const dirty = this.#dirty;
    if (dirty.length === 0) return [];
    this.#dirty = [];
    const eps = this.settings.changeEpsilon;
    const out: string[] = [];
    for (const c of dirty) {
      c.dirty = false;
      out.push(c.id);
      const latencyMs = c.stale ? null : nullable(this.#latency(c));
      const jitterMs = c.stale ? null : nullable(c.jitter);
      const lossPct = this.#lossPct(c);
      const utilPct = nullable(this.#util(c));
      const changed: { -readonly [K in keyof LinkChangedFields]: LinkChangedFields[K] } = {};
      const e = c.emitted;
      let any = false;
      if (moved(e.latencyMs, latencyMs, eps.latencyMs)) {
        changed.latencyMs = latencyMs;
        any = true;
      }
      if (moved(e.jitterMs, jitterMs, eps.jitterMs)) {
        changed.jitterMs = jitterMs;
        any = true;
      }
      if (moved(e.lossPct, lossPct, eps.lossPct)) {
        changed.lossPct = lossPct;
        any = true;
      }
      if (moved(e.utilPct, utilPct, eps.utilPct)) {
        changed.utilPct = utilPct;
        any = true;
      }
      if (any) {
        const snap = this.#snapshot(c);
        this.#remember(c, snap);
        this.emit('link-change', { id: c.id, changed, state: snap, liveness: false });
      }
    }
    return out;
  }

  /** The current state of one link. */
  snapshot(linkId: string): LinkSnapshot | undefined {
    const c = this.#byId.get(linkId);
    return c ? this.#snapshot(c) : undefined;
  }

  /** The current state of every link, in topology order. */
  snapshots(): LinkSnapshot[] {
    return this.#cells.map((c) => this.#snapshot(c));
  }

  #markDirty(c: LinkCell): void {
    if (c.dirty) return;
    c.dirty = true;
    this.#dirty.push(c);
  }

  #setLiveness(c: LinkCell, to: number): void {
    c.liveness = to;
    this.#emit(c, { up: to === UP }, true);
  }

  #emit(c: LinkCell, changed: LinkChangedFields, liveness: boolean): void {
    const snap = this.#snapshot(c);
    this.#remember(c, snap);
    this.#markDirty(c);
    this.emit('link-change', { id: c.id, changed, state: snap, liveness });
  }

  #remember(c: LinkCell, snap: LinkSnapshot): void {
    c.emitted = {
      latencyMs: snap.latencyMs,
      jitterMs: snap.jitterMs,
      lossPct: snap.lossPct,
      utilPct: snap.utilPct,
    };
  }

  #latency(c: LinkCell): number {
    return c.lastFwdKnown && !Number.isNaN(c.fwdEwma) ? c.fwdEwma : c.rttEwma / 2;
  }

  #util(c: LinkCell): number {
    let util = NaN;
    if (c.util) for (const v of c.util.values()) util = Number.isNaN(util) || v > util ? v : util;
    return util;
  }

  #snapshot(c: LinkCell): LinkSnapshot {
    let min = NaN;
    let p50 = NaN;
    let p95 = NaN;
    if (c.rttFill > 0) {
      const sorted = c.rtt.slice(0, c.rttFill).sort();
      min = sorted[0]!;
      p50 = sorted[Math.min(sorted.length - 1, Math.floor(0.5 * (sorted.length - 1) + 0.5))]!;
      p95 = sorted[Math.min(sorted.length - 1, Math.ceil(0.95 * sorted.length) - 1)]!;
    }
    const util = this.#util(c);
    const latency = this.#latency(c);
    return {
      id: c.id,
      a: c.a,
      b: c.b,
      up: c.liveness === UNKNOWN ? null : c.liveness === UP,
      stale: c.stale,
      latencyMs: c.stale ? null : nullable(latency),
      rttMs: c.stale ? null : nullable(c.rttEwma),
      rttMinMs: c.stale ? null : nullable(min),
      rttP50Ms: c.stale ? null : nullable(p50),
      rttP95Ms: c.stale ? null : nullable(p95),
      jitterMs: c.stale ? null : nullable(c.jitter),
      lossPct: this.#lossPct(c),
      utilPct: nullable(util),
      samples: c.samples,
      src: c.src,
      updatedAtMs: c.updatedAt,
    };
  }
}

function moved(prev: number | null, next: number | null, eps: number): boolean {
  if (prev === null || next === null) return prev !== next;
  return Math.abs(next - prev) >= eps;
}

/**
 * The measured state the route engine (`RouteEngine.update()` of @meridian/topology) takes for a
 * link: `null` (back to nominal) while unknown or stale, `{ up: false }` when down, else the
 * measured metrics (those not measured yet are left to the nominal values).
 */
export function linkStateOf(s: LinkSnapshot): LinkState | null {
  if (s.up === null) return null;
  if (!s.up) return { up: false };
  return {
    up: true,
    ...(s.latencyMs !== null ? { latencyMs: s.latencyMs } : {}),
    ...(s.jitterMs !== null ? { jitterMs: s.jitterMs } : {}),
    ...(s.lossPct !== null ? { lossPct: s.lossPct } : {}),
    ...(s.utilPct !== null ? { utilPct: s.utilPct } : {}),
  };
}
