export * from './types';
/** Subcommands of the `meridian` CLI that this package owns (see bin/meridian.js). */
export const commands: Record<string, (argv: string[]) => Promise<number>> = {};
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
