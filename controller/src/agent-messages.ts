/**
 * Edge validation of what agents send, after protobuf decoding. Protobuf guarantees types but not
 * meaning: a report may name a link the agent is not an end of, carry NaN or infinite times, or
 * be absurdly large. These checks are hand-written rather than a TypeBox schema because reports
 * are the ingest hot path (a schema walk per sample would cost more than the estimator itself);
 * each returns `undefined` when the message is good or a message saying what and where.
 */
import type { ForwardingMode } from './policy-compiler';
import type { ForwardingCapabilities, Hello, ProbeReport } from './proto';

/** Bounds on what one message may carry. */
export interface MessageLimits {
  readonly maxLinksPerReport: number;
  readonly maxSamplesPerLink: number;
  readonly maxEndpoints: number;
}

export const DEFAULT_MESSAGE_LIMITS: MessageLimits = {
  maxLinksPerReport: 4096,
  maxSamplesPerLink: 10_000,
  maxEndpoints: 64,
};

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** An RTT above this is not a measurement (probe timeouts are well below). */
const MAX_RTT_MS = 60_000;

/** A site's forwarding capabilities once checked (`Hello.forwarding`). */
export interface AgentForwarding {
  readonly modes: readonly ForwardingMode[];
  readonly platform: string;
  readonly platformVersion: string;
  readonly features: readonly string[];
  readonly missing: readonly string[];
}

/**
 * Bounds on `Hello.forwarding`: the capabilities are kept per site, shown by the API and published,
 * so an agent must not be able to make them large. A Linux agent sends 5 features at most and cuts
 * each missing reason to 200 chars.
 */
const FORWARDING_LIMITS = {
  platformChars: 32,
  versionChars: 128,
  entries: 32,
  featureChars: 64,
  missingChars: 512,
} as const;
const KNOWN_MODES: ReadonlySet<string> = new Set<ForwardingMode>(['srv6', 'hop-by-hop']);
const PLATFORM_RE = /^[a-z0-9][a-z0-9._-]*$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/**
 * Checks `Hello.forwarding`; returns the checked capabilities (null: the agent did not say) or a
 * message saying what and where.
 */
export function checkForwarding(
  f: ForwardingCapabilities | null | undefined,
): AgentForwarding | null | string {
  if (f === null || f === undefined) return null;
  const L = FORWARDING_LIMITS;
  if (f.modes.length > KNOWN_MODES.size) {
    return `hello.forwarding.modes has ${f.modes.length} entries (expected <= ${KNOWN_MODES.size})`;
  }
  const modes: ForwardingMode[] = [];
  for (let i = 0; i < f.modes.length; i++) {
    const m = f.modes[i]!;
    if (!KNOWN_MODES.has(m)) {
      return `hello.forwarding.modes[${i}] '${m.slice(0, 32)}' is not a forwarding mode (expected srv6 or hop-by-hop)`;
    }
    if (modes.includes(m as ForwardingMode)) return `hello.forwarding.modes[${i}] '${m}' is repeated`;
    modes.push(m as ForwardingMode);
  }
  if (f.platform.length > L.platformChars || !PLATFORM_RE.test(f.platform)) {
    return `hello.forwarding.platform '${f.platform.slice(0, 32)}' is not a platform name (expected lowercase letters, digits, '.', '_', '-', at most ${L.platformChars} chars)`;
  }
  if (f.platformVersion.length > L.versionChars || CONTROL_RE.test(f.platformVersion)) {
    return `hello.forwarding.platform_version is ${f.platformVersion.length} chars or has control characters (expected <= ${L.versionChars} printable chars)`;
  }
  for (const [field, list, max] of [
    ['features', f.features, L.featureChars],
    ['missing', f.missing, L.missingChars],
  ] as const) {
    if (list.length > L.entries) {
      return `hello.forwarding.${field} has ${list.length} entries (expected <= ${L.entries})`;
    }
    for (let i = 0; i < list.length; i++) {
      const v = list[i]!;
      if (v === '' || v.length > max || CONTROL_RE.test(v)) {
        return `hello.forwarding.${field}[${i}] is ${v.length} chars or has control characters (expected 1..${max} printable chars)`;
      }
    }
  }
  return {
    modes,
    platform: f.platform,
    platformVersion: f.platformVersion,
    features: [...f.features],
    missing: [...f.missing],
  };
}

/** Checks hello fields other than the token and the site's existence. */
export function checkHello(
  h: Hello,
  siteLinks: ReadonlySet<string>,
  limits: MessageLimits,
): string | undefined {
  if (h.instanceId.length > 128) return `hello.instance_id is ${h.instanceId.length} chars (expected <= 128)`;
  if (h.agentVersion.length > 64)
    return `hello.agent_version is ${h.agentVersion.length} chars (expected <= 64)`;
  if (h.probeEndpoints.length > limits.maxEndpoints) {
    return `hello.probe_endpoints has ${h.probeEndpoints.length} entries (expected <= ${limits.maxEndpoints})`;
  }
  for (let i = 0; i < h.probeEndpoints.length; i++) {
    const e = h.probeEndpoints[i]!;
    if (e.host === '' || e.host.length > 255 || /\s/.test(e.host)) {
      return `hello.probe_endpoints[${i}].host '${e.host.slice(0, 64)}' is not a host name or address`;
    }
    if (!(e.port >= 1 && e.port <= 65535)) {
      return `hello.probe_endpoints[${i}].port ${e.port} out of range (expected 1..65535)`;
    }
    if (e.link !== '' && !siteLinks.has(e.link)) {
      return `hello.probe_endpoints[${i}].link '${e.link.slice(0, 64)}' is not a link of site '${h.site}'`;
    }
  }
  const f = checkForwarding(h.forwarding);
  if (typeof f === 'string') return f;
  return undefined;
}

/** True when `site` looks like an id at all (checked before looking it up, to keep logs clean). */
export function plausibleSiteId(site: string): boolean {
  return ID_RE.test(site);
}

/**
 * Checks a probe report from `site`. `endsOf(link)` gives a link's two ends (undefined: no such
 * link). The whole report is rejected on the first problem so nothing half-valid is ingested.
 */
export function checkReport(
  site: string,
  r: ProbeReport,
  endsOf: (link: string) => { a: string; b: string } | undefined,
  limits: MessageLimits,
): string | undefined {
  if (r.links.length > limits.maxLinksPerReport) {
    return `report has ${r.links.length} links (expected <= ${limits.maxLinksPerReport})`;
  }
  for (let i = 0; i < r.links.length; i++) {
    const l = r.links[i]!;
    const ends = endsOf(l.link);
    if (ends === undefined) return `report.links[${i}].link '${l.link.slice(0, 64)}' is not a topology link`;
    if (ends.a !== site && ends.b !== site) {
      return `report.links[${i}].link '${l.link}' joins ${ends.a} and ${ends.b}; agent of '${site}' is not an end`;
    }
    const peer = ends.a === site ? ends.b : ends.a;
    if (l.peerSite !== '' && l.peerSite !== peer) {
      return `report.links[${i}].peer_site '${l.peerSite.slice(0, 64)}' (expected '${peer}')`;
    }
    if (l.samples.length > limits.maxSamplesPerLink) {
      return `report.links[${i}] has ${l.samples.length} samples (expected <= ${limits.maxSamplesPerLink})`;
    }
    for (let k = 0; k < l.samples.length; k++) {
      const s = l.samples[k]!;
      // rtt < 0 means lost; NaN, infinities and absurd values are not measurements.
      if (
        !(s.rttMs <= MAX_RTT_MS) ||
        !(s.fwdMs <= MAX_RTT_MS) ||
        s.rttMs === -Infinity ||
        s.fwdMs === -Infinity
      ) {
        return `report.links[${i}].samples[${k}] rtt_ms ${s.rttMs} / fwd_ms ${s.fwdMs} (expected finite, <= ${MAX_RTT_MS}, < 0 for lost/unknown)`;
      }
    }
  }
  return undefined;
}
