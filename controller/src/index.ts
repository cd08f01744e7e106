/**
 * @meridian/controller: the Meridian controller service. What it offers:
 * - `Controller` (controller.ts): the service composed of everything below, start()/stop(), events.
 * - `AgentGateway`: the agents' gRPC stream; `LinkEstimator`: link state from probe samples;
 *   state stores (Redis / embedded), history writers (InfluxDB / embedded), the HTTP API.
 * - `SnmpPoller` (snmp-poller.ts): IF-MIB counters of topology devices -> interface rates and utilisation.
 * - The gRPC contract: `PROTO_DIR`, `loadMeridianProto()`, `PROTO_LOADER_OPTIONS` and message types.
 * - The error catalog (`ControllerError`, `CTRL_ERR_*`, `statusOf()`).
 * - Media steering (media-*.ts): `MediaGateway` (the media nodes' gRPC stream), `MediaSteering`
 *   (placement, failover, drain), `mediaRoutes()` (sessions/nodes API, SSE events),
 *   `attachMediaSteering(controller)` to wire them in.
 * - The closed loop: `RouteLoop` (link changes -> routes with hysteresis -> policies), the versioned
 *   `PolicyStore` (Redis / memory), the `PolicyDistributor` (pushes, acks, per-agent status) and their
 *   HTTP routes (`routesApi`, `policiesApi`); `loadAddressingPlan()` for `--addressing FILE`.
 * - `commands.controller`: `meridian controller`.
 */
import { controllerCommand } from './command-controller';

export * from './errors';
export * from './proto';
export * from './probe-plan';
export * from './agent-messages';
export * from './agent-gateway';
export * from './link-estimator';
export * from './state-store';
export * from './state-store-redis';
export * from './history-writer';
export * from './history-writer-influx';
export * from './http-server';
export * from './controller';
export { parseHostPort, resolveTokens, tokensFilePath } from './command-controller';
export * from './policy-compiler';
export * from './forwarding-backup';
export * from './policy-store';
export * from './policy-distributor';
export * from './route-loop';
export * from './routes-api';
export * from './policies-api';
export * from './addressing-file';
export * from './snmp-client';
export * from './snmp-rate';
export * from './snmp-poller';
export * from './media-gateway';
export * from './media-steering';
export * from './media-routes';
export * from './media-service';
export * from './media-session-store';

/** Subcommands of the `meridian` CLI that this package owns (see bin/meridian.js). */
export const commands: Record<string, (argv: string[]) => Promise<number>> = {
  controller: controllerCommand,
};
