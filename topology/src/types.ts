/**
 * The topology model: what `loadTopology()` returns once a file has passed validation. Every
 * optional field of the file has been given its default here, so code inside Meridian can trust
 * these types without re-checking.
 */

/** `dc` and `cloud` sites are the core; `edge` sites are customer/branch sites. */
export type SiteKind = 'dc' | 'cloud' | 'edge';
export const SITE_KINDS: readonly SiteKind[] = ['dc', 'cloud', 'edge'];

export type Transport = 'fiber' | 'leased' | 'mpls' | 'internet' | 'cloud-direct';
export const TRANSPORTS: readonly Transport[] = ['fiber', 'leased', 'mpls', 'internet', 'cloud-direct'];

/** What a traffic class minimises among its feasible paths. */
export type Objective = 'latency' | 'cost' | 'hops';
export const OBJECTIVES: readonly Objective[] = ['latency', 'cost', 'hops'];

export interface Site {
  readonly id: string;
  readonly kind: SiteKind;
  readonly region: string;
  /** IPv4 CIDRs owned by the site, canonical form; never overlapping another site's. */
  readonly prefixes: readonly string[];
}

/** An undirected link between two distinct sites; two sites may share several links. */
export interface Link {
  readonly id: string;
  readonly a: string;
  readonly b: string;
  readonly transport: Transport;
  readonly capacityMbps: number;
  /** Nominal one-way latency. */
  readonly latencyMs: number;
  readonly jitterMs: number;
  readonly lossPct: number;
  readonly cost: number;
}

export interface Sla {
  readonly maxLatencyMs: number;
  readonly maxJitterMs: number;
  readonly maxLossPct: number;
}

export interface ClassMatch {
  readonly dscp?: readonly number[];
  readonly protocol?: 'udp' | 'tcp';
  /** Destination ports. */
  readonly ports?: readonly number[];
}

export interface TrafficClass {
  readonly id: string;
  readonly sla: Sla;
  readonly objective: Objective;
  /** A link is usable by the class only while its utilisation is at or below this (default 100). */
  readonly maxUtilPct: number;
  /** 1 is the most important. */
  readonly priority: number;
  readonly match?: ClassMatch;
}

export interface SnmpTarget {
  readonly host: string;
  readonly port: number;
  readonly community: string;
  readonly version: '2c';
}

export interface DeviceInterface {
  readonly ifName: string;
  /** The topology link this interface carries. */
  readonly link: string;
}

/** A router at a site: how the controller polls it (SNMP) and how the agent drives it. */
export interface Device {
  readonly id: string;
  readonly site: string;
  readonly driver: 'linux' | 'routeros';
  /** RouterOS API address (host:port) for the `routeros` driver. */
  readonly address?: string;
  readonly snmp?: SnmpTarget;
  readonly interfaces: readonly DeviceInterface[];
}

/** Which pairs need routes (see `RoutingSchema`). */
export type RoutingScope = 'full-mesh' | 'hub-and-spoke';
export const ROUTING_SCOPES: readonly RoutingScope[] = ['full-mesh', 'hub-and-spoke'];

export interface Routing {
  readonly scope: RoutingScope;
  /** `hub-and-spoke` only: the hub site ids (absent: every `dc` and `cloud` site). */
  readonly hubs?: readonly string[];
}

export interface Topology {
  readonly version: 1;
  /** The file it came from, or `<inline>`. Used in messages. */
  readonly source: string;
  readonly sites: readonly Site[];
  readonly links: readonly Link[];
  readonly classes: readonly TrafficClass[];
  readonly devices: readonly Device[];
  /** Which pairs need routes; absent: every ordered pair (`full-mesh`). */
  readonly routing?: Routing;
}

/** Measured state of one link; any subset overrides the topology's nominal values. */
export interface LinkState {
  /** `false`: the link does not exist for routing. Default `true`. */
  readonly up?: boolean;
  readonly latencyMs?: number;
  readonly jitterMs?: number;
  readonly lossPct?: number;
  /** Default 0. */
  readonly utilPct?: number;
}

/** Measured network state, as the controller's estimator produces it and `--state` files hold it. */
export interface NetworkState {
  readonly links: Readonly<Record<string, LinkState>>;
}

/** A simple path with its combined metrics (latency/jitter/cost add, loss combines). */
export interface Path {
  readonly sites: readonly string[];
  readonly links: readonly string[];
  readonly latencyMs: number;
  readonly jitterMs: number;
  readonly lossPct: number;
  readonly cost: number;
  readonly hops: number;
}

export type RouteStatus = 'ok' | 'degraded' | 'unreachable';

/** The route of one (class, src, dst). JSON field names are a public contract. */
export interface Route {
  readonly class: string;
  readonly src: string;
  readonly dst: string;
  readonly status: RouteStatus;
  readonly primary: Path | null;
  readonly backup: Path | null;
}
