/**
 * Who probes which link. Each link is probed from one end only (the reflector at the other end
 * answers), which halves probe traffic and makes one agent the source of truth for the link:
 * the `a` end probes the `b` end's endpoint; when the `a` agent is not connected the `b` agent
 * probes the `a` end instead. Endpoints are the last ones an agent announced in its hello, kept
 * after it disconnects, so a silent peer is still probed and its link goes down rather than stale.
 */
import type { Link } from '@meridian/topology';
import type { ProbeEndpoint, ProbeTarget } from './proto';

/** Probe timing and thresholds sent to agents in the probe plan. */
export interface ProbeSettings {
  /** Per target (default 100 ms). */
  readonly intervalMs: number;
  /**
   * A probe with no reply by then counts as lost. Default 100 ms: with 3 misses at 100 ms a silent
   * peer is down at the controller within ~400 ms (measured: controller/bench/detection.ts; 150 ms
   * gave p95 443 ms). Must exceed the longest link RTT: raise it for long-haul links.
   */
  readonly timeoutMs: number;
  readonly downAfterMisses: number;
  readonly upAfterSuccesses: number;
  /** How often agents send aggregated reports (default 1000 ms; at once on liveness changes). */
  readonly reportIntervalMs: number;
}

export const DEFAULT_PROBE_SETTINGS: ProbeSettings = {
  intervalMs: 100,
  timeoutMs: 100,
  downAfterMisses: 3,
  upAfterSuccesses: 3,
  reportIntervalMs: 1000,
};

/** The endpoint of `site` to use for `linkId`: one announced for that link, else one for any link. */
export function endpointFor(endpoints: readonly ProbeEndpoint[], linkId: string): ProbeEndpoint | undefined {
  return endpoints.find((e) => e.link === linkId) ?? endpoints.find((e) => e.link === '');
}

/**
 * Probe targets per connected site. Links whose far end never announced an endpoint (its agent
 * never connected) get no prober: they stay stale.
 */
export function computeProbeTargets(
  links: readonly Pick<Link, 'id' | 'a' | 'b'>[],
  connected: ReadonlySet<string>,
  endpoints: ReadonlyMap<string, readonly ProbeEndpoint[]>,
): Map<string, ProbeTarget[]> {
  const out = new Map<string, ProbeTarget[]>();
  for (const site of connected) out.set(site, []);
  const tryProbe = (from: string, to: string, linkId: string): boolean => {
    const list = out.get(from);
    if (list === undefined) return false;
    const ep = endpointFor(endpoints.get(to) ?? [], linkId);
    if (ep === undefined) return false;
    list.push({ link: linkId, peerSite: to, host: ep.host, port: ep.port });
    return true;
  };
  for (const l of links) {
    if (!tryProbe(l.a, l.b, l.id)) tryProbe(l.b, l.a, l.id);
  }
  return out;
}
