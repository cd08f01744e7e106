/**
 * Media steering inside the controller: `attachMediaSteering(controller)` puts the MediaControl
 * gRPC service on the controller's gRPC server and the media routes under `/api/v1`, and steers
 * sessions along the controller's voice routes (`controller.routes`, class `voice`): a session whose
 * site has no healthy media node lands at the nearest one by voice-route latency, relays sit at the
 * intermediate sites of the route, and sessions follow the route when a link of it goes down
 * (`link-change`) or the route loop changes it (`routes-changed`).
 */
import { computeRoutes, type RouteChange, type Topology } from '@meridian/topology';
import type { Logger } from 'pino';
import type { Controller } from './controller';
import { linkStateOf, type LinkChange } from './link-estimator';
import type { HistoryWriter } from './history-writer';
import { MediaGateway, type MediaNodeRecord } from './media-gateway';
import { mediaEventsRoute, mediaRoutes } from './media-routes';
import { RedisMediaSessionStore } from './media-session-store';
import { MediaSteering, type VoicePath } from './media-steering';

interface SiteRoutes {
  /** Shortest nominal latency (ms) between two sites; Infinity when disconnected. */
  latency: (from: string, to: string) => number;
  /** The sites of that shortest path, both ends included ([] when disconnected). */
  path: (from: string, to: string) => string[];
  /** The link ids of that shortest path ([] when disconnected or the same site). */
  links: (from: string, to: string) => string[];
}

/** Shortest nominal-latency paths between every pair of sites (Dijkstra from each site). */
export function siteRoutes(topology: Topology): SiteRoutes {
  const dist = new Map<string, Map<string, number>>();
  const prev = new Map<string, Map<string, string>>();
  const prevLink = new Map<string, Map<string, string>>();
  for (const src of topology.sites.map((x) => x.id)) {
    const d = new Map<string, number>([[src, 0]]);
    const p = new Map<string, string>();
    const pl = new Map<string, string>();
    const done = new Set<string>();
    for (;;) {
      let u: string | undefined;
      let best = Infinity;
      for (const [id, v] of d) {
        if (!done.has(id) && v < best) {
          best = v;
          u = id;
        }
      }
      if (u === undefined) break;
      done.add(u);
      for (const l of topology.links) {
        const other = l.a === u ? l.b : l.b === u ? l.a : undefined;
        if (other === undefined) continue;
        const nd = best + l.latencyMs;
        if (nd < (d.get(other) ?? Infinity)) {
          d.set(other, nd);
          p.set(other, u);
          pl.set(other, l.id);
        }
      }
    }
    dist.set(src, d);
    prev.set(src, p);
    prevLink.set(src, pl);
  }
  return {
    latency: (from, to) => (from === to ? 0 : (dist.get(from)?.get(to) ?? Infinity)),
    path: (from, to) => {
      if (from === to) return [from];
      const p = prev.get(from);
      if (p === undefined || !p.has(to)) return [];
      const out = [to];
      let at = to;
      while (at !== from) {
        at = p.get(at) as string;
        out.unshift(at);
      }
      return out;
    },
    links: (from, to) => {
      const p = prev.get(from);
      const pl = prevLink.get(from);
      if (from === to || p === undefined || pl === undefined || !p.has(to)) return [];
      const out: string[] = [];
      let at = to;
      while (at !== from) {
        out.unshift(pl.get(at) as string);
        at = p.get(at) as string;
      }
      return out;
    },
  };
}

/**
 * The controller's voice route between two sites, as steering needs it: the primary path of the
 * route in force (`controller.routes`, with the route loop's hysteresis). A route whose primary
 * crosses a link the estimator already has down (the loop runs a few ms after a link change) is
 * recomputed on the spot from the current link state, so a failure re-steers without waiting for
 * the loop. Topologies without a `voice` class fall back to the shortest nominal-latency path.
 * Cached until the next liveness change or route change (`invalidate()`).
 */
export function voiceRoutes(controller: Controller): {
  route: (from: string, to: string) => VoicePath | null;
  invalidate: () => void;
} {
  const topology = controller.topology;
  const cache = new Map<string, VoicePath | null>();
  const nominal = siteRoutes(topology);
  const hasVoice = topology.classes.some((c) => c.id === 'voice');
  const lookup = (from: string, to: string): VoicePath | null => {
    if (from === to) return { sites: [from], links: [], latencyMs: 0 };
    if (!hasVoice) {
      const sites = nominal.path(from, to);
      if (sites.length === 0) return null;
      return { sites, links: nominal.links(from, to), latencyMs: nominal.latency(from, to) };
    }
    const down = new Set(
      controller.estimator
        .snapshots()
        .filter((l) => l.up === false)
        .map((l) => l.id),
    );
    const inForce = controller.routes.find((r) => r.class === 'voice' && r.src === from && r.dst === to);
    let primary = inForce?.primary ?? null;
    if (inForce === undefined || (primary !== null && primary.links.some((l) => down.has(l)))) {
      const links: Record<string, NonNullable<ReturnType<typeof linkStateOf>>> = {};
      for (const snap of controller.estimator.snapshots()) {
        const st = linkStateOf(snap);
        if (st !== null) links[snap.id] = st;
      }
      try {
        primary =
          computeRoutes(topology, { state: { links }, classes: ['voice'], pairs: [{ src: from, dst: to }] })
            .routes[0]?.primary ?? null;
      } catch {
        primary = null; // an unknown site: no route
      }
    }
    return primary === null
      ? null
      : { sites: [...primary.sites], links: [...primary.links], latencyMs: primary.latencyMs };
  };
  return {
    route: (from, to) => {
      const key = `${from}>${to}`;
      if (cache.has(key)) return cache.get(key) ?? null;
      const r = lookup(from, to);
      cache.set(key, r);
      return r;
    },
    invalidate: () => cache.clear(),
  };
}

/** Shortest nominal latency (ms) between every pair of sites; Infinity when disconnected. */
export function siteLatencies(topology: Topology): (from: string, to: string) => number {
  return siteRoutes(topology).latency;
}

/**
 * Whether `to` can be reached from `from` over links not known to be down (a link never measured
 * counts as up: the controller does not cut media on missing telemetry).
 */
export function reachable(controller: Controller, from: string, to: string): boolean {
  if (from === to) return true;
  const links = controller.estimator.snapshots().filter((l) => l.up !== false);
  const seen = new Set([from]);
  const queue = [from];
  while (queue.length > 0) {
    const u = queue.shift() as string;
    for (const l of links) {
      const v = l.a === u ? l.b : l.b === u ? l.a : undefined;
      if (v === undefined || seen.has(v)) continue;
      if (v === to) return true;
      seen.add(v);
      queue.push(v);
    }
  }
  return false;
}

export interface MediaSteeringService {
  gateway: MediaGateway;
  steering: MediaSteering;
  /** Stops the history writer timer (the controller's stop() closes the rest). */
  close(): void;
}

/**
 * Writes `media_node` on every load report and `media_session` (quality) every `intervalMs` to the
 * controller's history (InfluxDB, or the embedded buffer). Returns a stop function.
 */
export function writeMediaHistory(
  history: HistoryWriter,
  gateway: MediaGateway,
  steering: MediaSteering,
  intervalMs = 1000,
): () => void {
  const onLoad = (n: MediaNodeRecord): void => {
    const l = n.load;
    if (l === undefined) return;
    let cpu = 0;
    let transports = 0;
    let producers = 0;
    let consumers = 0;
    let alive = 0;
    for (const w of l.workers) {
      cpu += w.cpuPercent;
      transports += w.transports;
      producers += w.producers;
      consumers += w.consumers;
      if (w.alive) alive += 1;
    }
    history.write({
      measurement: 'media_node',
      tags: { node: n.id, site: n.site },
      fields: {
        sessions: l.sessions,
        free_sessions: l.freeSessions,
        cpu_pct: cpu,
        transports,
        producers,
        consumers,
        workers_alive: alive,
      },
      timestamp: Date.now(),
    });
  };
  gateway.on('load', onLoad);
  const timer = setInterval(() => {
    const now = Date.now();
    for (const s of steering.list()) {
      history.write({
        measurement: 'media_session',
        tags: {
          session: s.id,
          ingress_node: s.nodes[0] ?? '',
          egress_node: s.nodes[s.nodes.length - 1] ?? '',
        },
        fields: {
          mos: s.quality.mos,
          loss_pct: s.quality.lossPct,
          jitter_ms: s.quality.jitterMs,
          delay_ms: s.quality.delayMs,
          packets: s.legs.filter((l) => l.kind === 'egress').reduce((n, l) => n + l.packets, 0),
        },
        timestamp: now,
      });
    }
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    gateway.off('load', onLoad);
  };
}

/** Wires media steering into a controller (before `start()`). */
export function attachMediaSteering(
  controller: Controller,
  opts: {
    agentToken: string;
    /**
     * MERIDIAN_API_TOKEN: with it, `GET /api/v1/events` also accepts `?token=` (browser
     * EventSource); without it, the events route takes the bearer header only.
     */
    apiToken?: string;
    /**
     * The controller's Redis (`--redis`): sessions are kept at `meridian:media:session:<id>`, so a
     * restarted controller adopts them with their requested sites. Without it: memory only.
     */
    redisUrl?: string;
    log?: Logger;
    orderTimeoutMs?: number;
    adoptGraceMs?: number;
    /** Keep a warm standby egress per session (see MediaSteeringOptions.warmStandby). */
    warmStandby?: boolean;
  },
): MediaSteeringService {
  const log = opts.log ?? controller.log;
  // The gateway asks steering which announced sessions to drop; steering needs the gateway first.
  const late: { steering?: MediaSteering } = {};
  const gateway = new MediaGateway({
    token: opts.agentToken,
    log,
    ...(opts.orderTimeoutMs === undefined ? {} : { orderTimeoutMs: opts.orderTimeoutMs }),
    sessionsToDrop: (nodeId, announced) => late.steering?.sessionsToDrop(nodeId, announced) ?? announced,
  });
  const voice = voiceRoutes(controller);
  const steering = new MediaSteering({
    gateway,
    log,
    // Nearest = lowest voice-route latency; relays at the route's intermediate sites.
    route: voice.route,
    ...(opts.adoptGraceMs === undefined ? {} : { adoptGraceMs: opts.adoptGraceMs }),
    ...(opts.warmStandby === undefined ? {} : { warmStandby: opts.warmStandby }),
    reachable: (from, to) => reachable(controller, from, to),
    ...(opts.redisUrl === undefined
      ? {}
      : { store: new RedisMediaSessionStore({ url: opts.redisUrl, log }) }),
  });
  // A link that goes down may cut a session's route: re-steer at once (liveness changes only; the
  // route loop's own change follows a few ms later and finds the sessions already moved).
  const onLinkChange = (c: LinkChange): void => {
    if (!c.liveness) return;
    voice.invalidate();
    if (c.state.up === false) steering.linkDown(c.id);
  };
  const onRoutesChanged = (changes: RouteChange[]): void => {
    voice.invalidate();
    if (changes.some((ch) => ch.class === 'voice')) steering.followRoutes('voice route changed');
  };
  controller.on('link-change', onLinkChange);
  controller.on('routes-changed', onRoutesChanged);
  late.steering = steering;
  controller.addGrpcService(gateway.definition, gateway.implementation);
  if (opts.apiToken === undefined) controller.addHttpPlugin(mediaRoutes(steering));
  else {
    controller.addHttpPlugin(mediaRoutes(steering, { events: false }));
    controller.addHttpPlugin(mediaEventsRoute(steering, opts.apiToken), { public: true });
  }
  const stopHistory = writeMediaHistory(controller.history, gateway, steering);
  return {
    gateway,
    steering,
    close: () => {
      controller.off('link-change', onLinkChange);
      controller.off('routes-changed', onRoutesChanged);
      stopHistory();
      steering.close();
      gateway.close();
    },
  };
}
