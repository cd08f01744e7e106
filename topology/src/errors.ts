/**
 * The error catalog of `@meridian/topology`. Every problem found in a topology file (or a link-state
 * file) carries a stable `code`, the place it was found (file, line, column and field path), what
 * was found and what was expected. Codes are listed in the package README; never rename one.
 */

/** Stable codes of problems in topology and state files. */
export const TOPOLOGY_ERROR_CODES = [
  /** The YAML could not be parsed (every syntax error the parser reports is listed). */
  'TOPO_ERR_YAML_SYNTAX',
  /** A mapping has the same key twice. */
  'TOPO_ERR_DUPLICATE_KEY',
  /** A state file is not valid JSON. */
  'TOPO_ERR_JSON_SYNTAX',
  /** The document (or a state file) is not a mapping. */
  'TOPO_ERR_NOT_MAPPING',
  /** `version` is missing or not 1. */
  'TOPO_ERR_VERSION',
  /** A required field is missing. */
  'TOPO_ERR_REQUIRED',
  /** A field has the wrong type (string, number, integer, boolean, list, mapping). */
  'TOPO_ERR_TYPE',
  /** A field is not one of its allowed values (kind, transport, objective, driver, ...). */
  'TOPO_ERR_ENUM',
  /** A number is outside its allowed range (capacity <= 0, negative latency, loss > 100, ...). */
  'TOPO_ERR_RANGE',
  /** Two sites, links, classes or devices share an id. */
  'TOPO_ERR_DUPLICATE_ID',
  /** A link or device names a site that does not exist. */
  'TOPO_ERR_UNKNOWN_SITE',
  /** A device interface or a state entry names a link that does not exist. */
  'TOPO_ERR_UNKNOWN_LINK',
  /** A device interface names a link that does not touch the device's site. */
  'TOPO_ERR_LINK_NOT_AT_SITE',
  /** A class id (e.g. from the CLI) that the topology does not define. */
  'TOPO_ERR_UNKNOWN_CLASS',
  /** A link joins a site to itself. */
  'TOPO_ERR_SELF_LOOP',
  /** A prefix is not a canonical IPv4 CIDR (`10.1.0.0/16`). */
  'TOPO_ERR_PREFIX_INVALID',
  /** Two prefixes (of two sites, or of one site) overlap. */
  'TOPO_ERR_PREFIX_OVERLAP',
  /** `sites` is an empty list. */
  'TOPO_ERR_EMPTY_SITES',
  /** `classes` is an empty list. */
  'TOPO_ERR_EMPTY_CLASSES',
  /** The file is larger than the size cap, or its aliases expand too far (a "YAML bomb"). */
  'TOPO_ERR_TOO_LARGE',
  /** The file cannot be read (missing, a directory, no permission). */
  'TOPO_ERR_UNREADABLE',
  /** `routing` asks for something the sites cannot give (a hub-and-spoke scope without hubs). */
  'TOPO_ERR_ROUTING_SCOPE',
] as const;

export type TopologyErrorCode = (typeof TOPOLOGY_ERROR_CODES)[number];

/** Codes of warnings: the file is still accepted. */
export const TOPOLOGY_WARNING_CODES = [
  /** An unknown key that looks like a typo of a known one (`latencyMS` for `latencyMs`). */
  'TOPO_WARN_UNKNOWN_KEY',
] as const;

export type TopologyWarningCode = (typeof TOPOLOGY_WARNING_CODES)[number];

/** One problem in an input file, precise enough to fix it without reading the loader. */
export interface TopologyProblem {
  readonly code: TopologyErrorCode | TopologyWarningCode;
  /** The file as it was named (a path, or `<inline>` for text). */
  readonly file: string;
  /** 1-based line of the offending node (or of its parent when the field is missing). */
  readonly line: number;
  /** 1-based column. */
  readonly column: number;
  /** Field path such as `links[3].b`; `''` for the whole document. */
  readonly path: string;
  /** What was there, rendered short (`'sh-z'`, `-5`, `missing`). */
  readonly found: string;
  /** What would have been accepted. */
  readonly expected: string;
  /** `file:line:col path: what is wrong (expected ...)`, one line. */
  readonly message: string;
}

/** Builds a problem and its one-line message from its parts. */
export function makeProblem(
  code: TopologyProblem['code'],
  file: string,
  line: number,
  column: number,
  path: string,
  found: string,
  expected: string,
  what: string,
): TopologyProblem {
  const where = `${file}:${line}:${column}${path === '' ? '' : ' ' + path}`;
  const message = `${where}: ${what}${expected === '' ? '' : ` (expected ${expected})`}`;
  return { code, file, line, column, path, found, expected, message };
}

/**
 * Thrown by `loadTopology()`/`parseTopology()` (and the state loader) when the input is invalid.
 * It lists every problem found in one pass, ordered by position. `code` is the first problem's.
 */
export class TopologyError extends Error {
  readonly code: TopologyErrorCode;
  readonly problems: readonly TopologyProblem[];

  constructor(problems: readonly TopologyProblem[]) {
    if (problems.length === 0) throw new Error('TopologyError needs at least one problem');
    const first = problems[0]!;
    const head =
      problems.length === 1 ? `1 problem in ${first.file}` : `${problems.length} problems in ${first.file}`;
    super(`${head}:\n${problems.map((p) => `  ${p.message}`).join('\n')}`);
    this.name = 'TopologyError';
    this.code = first.code as TopologyErrorCode;
    this.problems = problems;
  }
}

/** True for a `TopologyError` (also across copies of this package). */
export function isTopologyError(err: unknown): err is TopologyError {
  return err instanceof TopologyError || (err instanceof Error && err.name === 'TopologyError');
}

/** Stable codes of bad requests to the route engine (`computeRoutes`, `RouteEngine`). */
export const ROUTE_ERROR_CODES = [
  /** A class id that the topology does not define. */
  'TOPO_ERR_UNKNOWN_CLASS',
  /** A site id (in `pairs`) that the topology does not define. */
  'TOPO_ERR_UNKNOWN_SITE',
  /** A link id (in a state or a link change) that the topology does not define. */
  'TOPO_ERR_UNKNOWN_LINK',
  /** A pair whose source and destination are the same site. */
  'TOPO_ERR_SAME_SITE',
  /** An option out of range (a negative hysteresis margin, a non-finite metric in a link change). */
  'TOPO_ERR_BAD_OPTION',
] as const;

export type RouteErrorCode = (typeof ROUTE_ERROR_CODES)[number];

/**
 * Thrown by the route engine when a request names something the topology does not have. Routing
 * outcomes (`degraded`, `unreachable`) are values in the result, never this error.
 */
export class RouteError extends Error {
  readonly code: RouteErrorCode;
  /** Where in the request: `classes[1]`, `pairs[0].dst`, `changes[2].id`. */
  readonly path: string;

  constructor(code: RouteErrorCode, path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'RouteError';
    this.code = code;
    this.path = path;
  }
}

/** True for a `RouteError` (also across copies of this package). */
export function isRouteError(err: unknown): err is RouteError {
  return err instanceof RouteError || (err instanceof Error && err.name === 'RouteError');
}
