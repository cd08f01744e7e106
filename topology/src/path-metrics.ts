/**
 * Path metrics: the effective state of a link, how link metrics combine along a path, the total order
 * used to rank paths and the feasibility test of a path for a traffic class.
 *
 * Latency, jitter and cost are summed as integers of {@link METRIC_SCALE} units (a microsecond for
 * milliseconds). Integer sums are exact and do not depend on the order of addition, so two paths whose
 * decimal metrics are equal compare equal (`0.1 + 0.2` ms ties with `0.3` ms) and a path exactly at an
 * SLA bound is feasible. Loss combines multiplicatively in floating point; its bound is compared with
 * a tolerance of {@link LOSS_EPSILON_PCT}.
 */
import type { Link, LinkState, NetworkState, Objective, Path, Topology, TrafficClass } from './types';

/** Metric units per millisecond (or per cost unit): metrics are compared at 1e-6 resolution. */
export const METRIC_SCALE = 1_000_000;
/** Tolerance (in percentage points) for loss and utilisation bounds. */
export const LOSS_EPSILON_PCT = 1e-9;

/** Converts a metric (ms or cost units) to integer {@link METRIC_SCALE} units. */
export function toUnits(value: number): number {
  return Math.round(value * METRIC_SCALE);
}

/** A link as routing sees it: nominal values overridden by measured state. */
export interface EffectiveLink {
  readonly id: string;
  readonly a: string;
  readonly b: string;
  readonly up: boolean;
  readonly latencyMs: number;
  readonly jitterMs: number;
  readonly lossPct: number;
  readonly cost: number;
  /** Measured utilisation; 0 when not measured. */
  readonly utilPct: number;
}

/** The effective link: `state` fields override nominal ones; `utilPct` defaults to 0, `up` to true. */
export function effectiveLink(link: Link, state?: LinkState): EffectiveLink {
  return {
    id: link.id,
    a: link.a,
    b: link.b,
    up: state?.up ?? true,
    latencyMs: state?.latencyMs ?? link.latencyMs,
    jitterMs: state?.jitterMs ?? link.jitterMs,
    lossPct: state?.lossPct ?? link.lossPct,
    cost: link.cost,
    utilPct: state?.utilPct ?? 0,
  };
}

/** Effective links of a topology under a state, keyed by link id (down links included, `up: false`). */
export function effectiveLinks(topology: Topology, state?: NetworkState): Map<string, EffectiveLink> {
  const out = new Map<string, EffectiveLink>();
  for (const link of topology.links) out.set(link.id, effectiveLink(link, state?.links[link.id]));
  return out;
}

/** `100 × (1 − Π(1 − lossᵢ/100))`, multiplied in path order. */
export function combineLoss(lossesPct: readonly number[]): number {
  let keep = 1;
  for (const l of lossesPct) keep *= 1 - l / 100;
  return 100 * (1 - keep);
}

/**
 * The path from `src` over `linkIds` with its combined metrics. Latency, jitter and cost are exact
 * decimal sums at 1e-6 resolution. Throws when a link does not continue the walk (a bug).
 */
export function pathFromLinks(
  src: string,
  linkIds: readonly string[],
  links: ReadonlyMap<string, EffectiveLink>,
): Path {
  const sites = [src];
  let lat = 0;
  let jit = 0;
  let cost = 0;
  let keep = 1;
  let at = src;
  for (const id of linkIds) {
    const l = links.get(id);
    if (l === undefined) throw new Error(`pathFromLinks: unknown link ${id}`);
    const next = l.a === at ? l.b : l.b === at ? l.a : undefined;
    if (next === undefined) throw new Error(`pathFromLinks: link ${id} does not touch ${at}`);
    sites.push(next);
    at = next;
    lat += toUnits(l.latencyMs);
    jit += toUnits(l.jitterMs);
    cost += toUnits(l.cost);
    keep *= 1 - l.lossPct / 100;
  }
  return {
    sites,
    links: [...linkIds],
    latencyMs: lat / METRIC_SCALE,
    jitterMs: jit / METRIC_SCALE,
    lossPct: 100 * (1 - keep),
    cost: cost / METRIC_SCALE,
    hops: linkIds.length,
  };
}

/** The class objective of a path in integer units (hops are counted, not scaled). */
export function objectiveUnits(path: Path, objective: Objective): number {
  switch (objective) {
    case 'latency':
      return toUnits(path.latencyMs);
    case 'cost':
      return toUnits(path.cost);
    case 'hops':
      return path.hops;
    default: {
      const never: never = objective;
      throw new Error(`unknown objective ${String(never)}`);
    }
  }
}

/** Lexicographic order of two id lists (JS string order, a shorter prefix first). */
export function compareIdLists(a: readonly string[], b: readonly string[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * The total order of paths for a class objective: objective, then fewer hops, then lower latency,
 * then the lexicographically smaller list of site ids, then of link ids. Negative when `a` ranks first.
 */
export function comparePaths(a: Path, b: Path, objective: Objective): number {
  const oa = objectiveUnits(a, objective);
  const ob = objectiveUnits(b, objective);
  if (oa !== ob) return oa - ob;
  if (a.hops !== b.hops) return a.hops - b.hops;
  const la = toUnits(a.latencyMs);
  const lb = toUnits(b.latencyMs);
  if (la !== lb) return la - lb;
  return compareIdLists(a.sites, b.sites) || compareIdLists(a.links, b.links);
}

/** True when `lossPct` meets a loss bound (with the {@link LOSS_EPSILON_PCT} tolerance). */
export function lossWithin(lossPct: number, maxLossPct: number): boolean {
  return lossPct <= maxLossPct + LOSS_EPSILON_PCT;
}

/** True when a link's utilisation is within a class's `maxUtilPct` (the link is usable by the class). */
export function utilWithin(utilPct: number, maxUtilPct: number): boolean {
  return utilPct <= maxUtilPct + LOSS_EPSILON_PCT;
}

/** True when the path meets the class's three SLA bounds (utilisation not considered). */
export function meetsSla(path: Path, cls: TrafficClass): boolean {
  return (
    toUnits(path.latencyMs) <= toUnits(cls.sla.maxLatencyMs) &&
    toUnits(path.jitterMs) <= toUnits(cls.sla.maxJitterMs) &&
    lossWithin(path.lossPct, cls.sla.maxLossPct)
  );
}

/**
 * Feasibility of a path for a class: all three SLA bounds and every link up with `utilPct ≤ maxUtilPct`.
 */
export function isFeasible(
  path: Path,
  cls: TrafficClass,
  links: ReadonlyMap<string, EffectiveLink>,
): boolean {
  if (!meetsSla(path, cls)) return false;
  for (const id of path.links) {
    const l = links.get(id);
    if (l === undefined || !l.up || !utilWithin(l.utilPct, cls.maxUtilPct)) return false;
  }
  return true;
}

/** Denominator of a relative excess: the bound itself, or 1 (the metric's own unit) for a zero bound. */
export function per(bound: number): number {
  return bound > 0 ? bound : 1;
}

/** The relative utilisation excess of one link over a class's `maxUtilPct` (0 when within). */
export function utilExcess(utilPct: number, maxUtilPct: number): number {
  return utilWithin(utilPct, maxUtilPct) ? 0 : (utilPct - maxUtilPct) / per(maxUtilPct);
}

/**
 * How far a path is from meeting a class's requirements (0 for a feasible path): the sum of the
 * relative excesses `max(0, metric − bound) / bound` over latency, jitter and loss, plus, for every
 * link above the class's `maxUtilPct`, `(utilPct − maxUtilPct) / maxUtilPct`. A zero bound counts the
 * excess in the metric's own unit. This is the first key of the best-effort (degraded) ranking.
 */
export function slaViolation(
  path: Path,
  cls: TrafficClass,
  links: ReadonlyMap<string, EffectiveLink>,
): number {
  const latEx = Math.max(0, toUnits(path.latencyMs) - toUnits(cls.sla.maxLatencyMs)) / METRIC_SCALE;
  const jitEx = Math.max(0, toUnits(path.jitterMs) - toUnits(cls.sla.maxJitterMs)) / METRIC_SCALE;
  const lossEx = lossWithin(path.lossPct, cls.sla.maxLossPct) ? 0 : path.lossPct - cls.sla.maxLossPct;
  let utilEx = 0;
  for (const id of path.links) {
    const l = links.get(id);
    if (l !== undefined) utilEx += utilExcess(l.utilPct, cls.maxUtilPct);
  }
  return (
    latEx / per(cls.sla.maxLatencyMs) +
    jitEx / per(cls.sla.maxJitterMs) +
    lossEx / per(cls.sla.maxLossPct) +
    utilEx
  );
}

/** Violations are compared at this resolution, so rounding noise never decides a ranking. */
export const VIOLATION_SCALE = 1e9;

/** The violation as the integer the ranking compares. */
export function violationUnits(v: number): number {
  return Math.round(v * VIOLATION_SCALE);
}
