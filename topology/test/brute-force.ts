/**
 * An independent oracle for the route rules: enumerate every simple path of up links, compute
 * metrics in floating point, and pick primary and backup by sorting with tolerances. Written without
 * the engine's code on purpose (no integer units, no trees, no pruning).
 */
import type { LinkState, NetworkState, Path, RouteStatus, Topology, TrafficClass } from '../src/types';

const EPS = 1e-9;

export interface BrutePath extends Path {
  readonly utils: readonly number[];
}

export function allSimplePaths(
  topology: Topology,
  state: NetworkState | undefined,
  src: string,
  dst: string,
): BrutePath[] {
  const eff = new Map<string, Required<LinkState> & { a: string; b: string; cost: number }>();
  for (const l of topology.links) {
    const s = state?.links[l.id] ?? {};
    eff.set(l.id, {
      a: l.a,
      b: l.b,
      cost: l.cost,
      up: s.up ?? true,
      latencyMs: s.latencyMs ?? l.latencyMs,
      jitterMs: s.jitterMs ?? l.jitterMs,
      lossPct: s.lossPct ?? l.lossPct,
      utilPct: s.utilPct ?? 0,
    });
  }
  const out: BrutePath[] = [];
  const sites = [src];
  const links: string[] = [];
  const walk = (at: string): void => {
    if (at === dst) {
      let lat = 0,
        jit = 0,
        cost = 0,
        keep = 1;
      const utils: number[] = [];
      for (const id of links) {
        const l = eff.get(id)!;
        lat += l.latencyMs;
        jit += l.jitterMs;
        cost += l.cost;
        keep *= 1 - l.lossPct / 100;
        utils.push(l.utilPct);
      }
      out.push({
        sites: [...sites],
        links: [...links],
        latencyMs: lat,
        jitterMs: jit,
        lossPct: 100 * (1 - keep),
        cost,
        hops: links.length,
        utils,
      });
      return;
    }
    for (const l of topology.links) {
      const e = eff.get(l.id)!;
      if (!e.up) continue;
      const next = l.a === at ? l.b : l.b === at ? l.a : null;
      if (next === null || sites.includes(next)) continue;
      sites.push(next);
      links.push(l.id);
      walk(next);
      sites.pop();
      links.pop();
    }
  };
  walk(src);
  return out;
}

export function feasible(p: BrutePath, cls: TrafficClass): boolean {
  return (
    p.latencyMs <= cls.sla.maxLatencyMs + EPS &&
    p.jitterMs <= cls.sla.maxJitterMs + EPS &&
    p.lossPct <= cls.sla.maxLossPct + EPS &&
    p.utils.every((u) => u <= cls.maxUtilPct + EPS)
  );
}

function lexIds(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return a.length - b.length;
}

function near(x: number, y: number): number {
  return Math.abs(x - y) <= EPS * Math.max(1, Math.abs(x), Math.abs(y)) ? 0 : x - y;
}

export function order(cls: TrafficClass) {
  const obj = (p: Path): number =>
    cls.objective === 'latency' ? p.latencyMs : cls.objective === 'cost' ? p.cost : p.hops;
  return (a: Path, b: Path): number =>
    near(obj(a), obj(b)) ||
    a.hops - b.hops ||
    near(a.latencyMs, b.latencyMs) ||
    lexIds(a.sites, b.sites) ||
    lexIds(a.links, b.links);
}

export function violation(p: BrutePath, cls: TrafficClass): number {
  const rel = (m: number, b: number): number => (m <= b + EPS ? 0 : (m - b) / (b > 0 ? b : 1));
  let v =
    rel(p.latencyMs, cls.sla.maxLatencyMs) +
    rel(p.jitterMs, cls.sla.maxJitterMs) +
    rel(p.lossPct, cls.sla.maxLossPct);
  for (const u of p.utils) v += rel(u, cls.maxUtilPct);
  return v;
}

function shared(a: Path, b: Path): number {
  return a.links.filter((l) => b.links.includes(l)).length;
}

const vCmp = (x: number, y: number): number => (Math.abs(x - y) <= 1e-7 ? 0 : x - y);

export interface Expected {
  readonly status: RouteStatus;
  readonly primary: BrutePath | null;
  readonly backup: BrutePath | null;
}

export function expectedRoute(paths: readonly BrutePath[], cls: TrafficClass): Expected {
  if (paths.length === 0) return { status: 'unreachable', primary: null, backup: null };
  const ord = order(cls);
  const ok = paths.filter((p) => feasible(p, cls));
  if (ok.length > 0) {
    const primary = [...ok].sort(ord)[0]!;
    const rest = ok.filter((p) => p !== primary);
    rest.sort((a, b) => shared(a, primary) - shared(b, primary) || ord(a, b));
    return { status: 'ok', primary, backup: rest[0] ?? null };
  }
  const primary = [...paths].sort((a, b) => vCmp(violation(a, cls), violation(b, cls)) || ord(a, b))[0]!;
  const rest = paths.filter((p) => p !== primary);
  rest.sort(
    (a, b) =>
      shared(a, primary) - shared(b, primary) || vCmp(violation(a, cls), violation(b, cls)) || ord(a, b),
  );
  return { status: 'degraded', primary, backup: rest[0] ?? null };
}
