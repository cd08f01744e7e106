import { routesCommand } from './cli-routes';
import { validateCommand } from './cli-validate';
export * from './types';
/** Subcommands of the `meridian` CLI that this package owns (see bin/meridian.js). */
export const commands: Record<string, (argv: string[]) => Promise<number>> = {
  validate: validateCommand,
  routes: routesCommand,
};
export { computeRoutes, type ComputeRoutesOptions, type RouteSet, type SitePair } from './route-compute';
export {
  METRIC_SCALE,
  combineLoss,
  comparePaths,
  effectiveLink,
  effectiveLinks,
  isFeasible,
  meetsSla,
  pathFromLinks,
  slaViolation,
  type EffectiveLink,
} from './path-metrics';
export { RouteError, isRouteError, ROUTE_ERROR_CODES, type RouteErrorCode } from './errors';
export {
  TOPOLOGY_ERROR_CODES,
  TOPOLOGY_WARNING_CODES,
  TopologyError,
  isTopologyError,
  type TopologyErrorCode,
  type TopologyWarningCode,
  type TopologyProblem,
} from './errors';
export {
  loadTopology,
  parseTopology,
  checkTopology,
  checkTopologyFile,
  isInlineYaml,
  type TopologyCheck,
} from './loader';
export {
  loadNetworkState,
  checkNetworkState,
  checkNetworkStateFile,
  type NetworkStateCheck,
} from './state-loader';
export { REFERENCE_TOPOLOGY_PATH } from './reference-topology';
export {
  WAN_CLASSES,
  generateWan,
  generateWanState,
  seededRandom,
  type Range,
  type WanOptions,
  type WanStateOptions,
} from './topology-generator';
export { fullMeshPairs, hubAndSpokePairs, routingPairs } from './route-scope';
export {
  TopologyFileSchema,
  SiteSchema,
  LinkSchema,
  ClassSchema,
  SlaSchema,
  ClassMatchSchema,
  DeviceSchema,
  SnmpSchema,
  NetworkStateSchema,
  RoutingSchema,
  LinkStateSchema,
} from './topology-schema';
export { MAX_INPUT_BYTES, MAX_ALIAS_COUNT, MAX_NESTING } from './yaml-source';
export { parseIpv4Cidr, type Ipv4Prefix } from './cidr';
export { routesJson, type RouteJson, type PathJson } from './cli-routes';
export {
  DEFAULT_MARGINS,
  NO_MARGINS,
  applyHysteresis,
  type HysteresisMargins,
  type HysteresisMarginsInput,
  type HysteresisOptions,
  type RouteChange,
  type RouteChangeReason,
} from './route-hysteresis';
export { RouteEngine, type LinkChanges, type RouteEngineOptions, type UpdateResult } from './route-engine';
export {
  defaultAddressingPlan,
  hostAddressOf,
  type AddressingPlan,
  type LinkAddressing,
  type SiteAddressing,
} from './addressing-plan';
export { contentHash } from './content-hash';
