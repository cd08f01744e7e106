/**
 * Media steering inside the controller: `attachMediaSteering(controller)` puts the MediaControl
 * gRPC service on the controller's gRPC server and the media routes under `/api/v1`, with site
 * distances taken from the topology (nominal latency of the shortest path), so a session whose
 * site has no healthy media node lands at the nearest one.
 */
import type { Topology } from '@meridian/topology';
import type { Logger } from 'pino';
import type { Controller } from './controller';
import { MediaGateway } from './media-gateway';
import { mediaRoutes } from './media-routes';
import { MediaSteering } from './media-steering';

/** Shortest nominal latency (ms) between every pair of sites; Infinity when disconnected. */
export function siteLatencies(topology: Topology): (from: string, to: string) => number {
  const ids = topology.sites.map((s) => s.id);
  const dist = new Map<string, Map<string, number>>();
  for (const src of ids) {
    const d = new Map<string, number>([[src, 0]]);
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
        if (nd < (d.get(other) ?? Infinity)) d.set(other, nd);
      }
    }
    dist.set(src, d);
  }
  return (from, to) => (from === to ? 0 : (dist.get(from)?.get(to) ?? Infinity));
}

export interface MediaSteeringService {
  gateway: MediaGateway;
  steering: MediaSteering;
}

/** Wires media steering into a controller (before `start()`). */
export function attachMediaSteering(
  controller: Controller,
  opts: { agentToken: string; log?: Logger; orderTimeoutMs?: number },
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
  const steering = new MediaSteering({ gateway, log, distance: siteLatencies(controller.topology) });
  late.steering = steering;
  controller.addGrpcService(gateway.definition, gateway.implementation);
  controller.addHttpPlugin(mediaRoutes(steering));
  return { gateway, steering };
}
