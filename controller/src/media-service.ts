/**
 * Media steering inside the controller: `attachMediaSteering(controller)` puts the MediaControl
 * gRPC service on the controller's gRPC server and the media routes under `/api/v1`, with site
 * distances taken from the topology (nominal latency of the shortest path), so a session whose
 * site has no healthy media node lands at the nearest one, and relays at the intermediate sites of
 * that path.
 */
import type { Topology } from '@meridian/topology';
import type { Logger } from 'pino';
import type { Controller } from './controller';
import type { HistoryWriter } from './history-writer';
import { MediaGateway, type MediaNodeRecord } from './media-gateway';
import { mediaRoutes } from './media-routes';
import { MediaSteering } from './media-steering';

interface SiteRoutes {
  /** Shortest nominal latency (ms) between two sites; Infinity when disconnected. */
  latency: (from: string, to: string) => number;
  /** The sites of that shortest path, both ends included ([] when disconnected). */
  path: (from: string, to: string) => string[];
}

/** Shortest nominal-latency paths between every pair of sites (Dijkstra from each site). */
export function siteRoutes(topology: Topology): SiteRoutes {
  const dist = new Map<string, Map<string, number>>();
  const prev = new Map<string, Map<string, string>>();
  for (const src of topology.sites.map((x) => x.id)) {
    const d = new Map<string, number>([[src, 0]]);
    const p = new Map<string, string>();
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
        }
      }
    }
    dist.set(src, d);
    prev.set(src, p);
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
  const routes = siteRoutes(controller.topology);
  const steering = new MediaSteering({
    gateway,
    log,
    distance: routes.latency,
    ...(opts.adoptGraceMs === undefined ? {} : { adoptGraceMs: opts.adoptGraceMs }),
    ...(opts.warmStandby === undefined ? {} : { warmStandby: opts.warmStandby }),
    // Relays at the intermediate sites of the shortest-latency path (where a node sits there).
    relaySites: (from, to) => routes.path(from, to).slice(1, -1),
    reachable: (from, to) => reachable(controller, from, to),
  });
  // A link that goes down may cut a pipe's path: re-steer at once (liveness changes only).
  controller.on('link-change', (c) => {
    if (c.liveness && c.state.up === false) steering.recheckPaths(`link ${c.id} down`);
  });
  late.steering = steering;
  controller.addGrpcService(gateway.definition, gateway.implementation);
  controller.addHttpPlugin(mediaRoutes(steering));
  const stopHistory = writeMediaHistory(controller.history, gateway, steering);
  return {
    gateway,
    steering,
    close: () => {
      stopHistory();
      steering.close();
      gateway.close();
    },
  };
}
