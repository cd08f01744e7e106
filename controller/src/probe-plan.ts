/**
 * Who probes which link. Each link is probed from both ends (each end's reflector answers the
 * other), and one end is the link's *reporter*, the controller's source of truth for its
 * measurements: the `a` end, or the `b` end when the `a` agent is not connected. The controller
 * takes reports of a link from its reporter only (one sample stream per link); the other end's
 * probes serve its own liveness verdict, which drives fast reroute: when a link dies, the end
 * nearer to a route's source alarms it first. Probing from one end only made every failure of a
 * link far from its `a` end wait for the alarm's trip from there (edge-gz.sh-a.mpls in the
 * reference: ~115 ms over edge-gz's internet link, against ~40 ms from sh-a), and a crashed `a`
 * agent left the link unwatched. Endpoints are the last ones an agent announced in its hello, kept
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
 * Probe targets per connected site: each end of a link whose other end announced an endpoint.
 * Links whose ends never announced one (their agents never connected) get no prober: they stay
 * stale.
 */
export function computeProbeTargets(
  links: readonly Pick<Link, 'id' | 'a' | 'b'>[],
  connected: ReadonlySet<string>,
  endpoints: ReadonlyMap<string, readonly ProbeEndpoint[]>,
): Map<string, ProbeTarget[]> {
  const out = new Map<string, ProbeTarget[]>();
  for (const site of connected) out.set(site, []);
  for (const l of links) {
    for (const [from, to] of [
      [l.a, l.b],
      [l.b, l.a],
    ] as const) {
      const list = out.get(from);
      const ep = endpointFor(endpoints.get(to) ?? [], l.id);
      if (list !== undefined && ep !== undefined) {
        list.push({ link: l.id, peerSite: to, host: ep.host, port: ep.port });
      }
    }
  }
  return out;
}

/**
 * The reporter of each link (see the module comment): the `a` end when it probes the link, else
 * the `b` end when it does; links nobody probes are absent.
 */
export function linkReporters(
  links: readonly Pick<Link, 'id' | 'a' | 'b'>[],
  targets: ReadonlyMap<string, readonly ProbeTarget[]>,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of links) {
    const probes = (site: string): boolean => targets.get(site)?.some((x) => x.link === l.id) ?? false;
    if (probes(l.a)) out.set(l.id, l.a);
    else if (probes(l.b)) out.set(l.id, l.b);
  }
  return out;
}
