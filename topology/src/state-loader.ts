/**
 * The link-state file (`--state STATE.json`): `{ "links": { "<link id>": { up, latencyMs, jitterMs,
 * lossPct, utilPct } } }`, any subset per link. Validated like the topology: every problem at once,
 * with line, column and path; link ids checked against the topology when one is given.
 */
import { makeProblem, TopologyError, type TopologyProblem } from './errors';
import { readTextFile } from './input-file';
import { jsonErrorOffset } from './json-position';
import { schemaProblems } from './schema-problems';
import { closest, listIds } from './suggest';
import { NetworkStateSchema } from './topology-schema';
import type { LinkState, NetworkState, Topology } from './types';
import { formatPath, parseYamlSource, renderValue, type LocatedValue } from './yaml-source';

/** Result of `checkNetworkState`: the state when there are no problems. */
export interface NetworkStateCheck {
  readonly state?: NetworkState;
  readonly problems: readonly TopologyProblem[];
}

function jsonSyntaxProblem(text: string, file: string): TopologyProblem {
  const found = jsonErrorOffset(text);
  const offset = found >= 0 ? found : 0;
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  const what = offset >= text.length ? 'end of input' : renderValue(text.slice(offset, offset + 1));
  return makeProblem(
    'TOPO_ERR_JSON_SYNTAX',
    file,
    line,
    column,
    '',
    what,
    'valid JSON',
    `JSON syntax: unexpected ${what}`,
  );
}

/**
 * Validates link-state JSON text. With `topology`, link ids must exist in it.
 * @returns the state (only the known fields are kept) or every problem, sorted by position.
 */
export function checkNetworkState(
  text: string,
  sourceName = '<inline>',
  topology?: Topology,
): NetworkStateCheck {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { problems: [jsonSyntaxProblem(text, sourceName)] };
  }
  // Positions come from the YAML parser (JSON is YAML); when it disagrees, fall back to 1:1.
  const parsed = parseYamlSource(text, sourceName);
  if (parsed.source === undefined && parsed.problems.some((p) => p.code === 'TOPO_ERR_TOO_LARGE')) {
    return { problems: parsed.problems };
  }
  const src: LocatedValue = {
    file: sourceName,
    value,
    locate:
      parsed.source !== undefined && parsed.problems.length === 0
        ? (path, atKey) => parsed.source!.locate(path, atKey)
        : () => ({ line: 1, column: 1 }),
  };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return {
      problems: [
        makeProblem(
          'TOPO_ERR_NOT_MAPPING',
          sourceName,
          1,
          1,
          '',
          renderValue(value),
          'an object { "links": { "<link id>": { ... } } }',
          `the state is not an object: ${renderValue(value)}`,
        ),
      ],
    };
  }
  const problems = [...schemaProblems(NetworkStateSchema, src)];
  const links = (value as { links?: unknown }).links;
  if (topology !== undefined && links !== null && typeof links === 'object' && !Array.isArray(links)) {
    const known = topology.links.map((l) => l.id);
    const ids = new Set(known);
    for (const id of Object.keys(links)) {
      if (ids.has(id)) continue;
      const path = ['links', id];
      const { line, column } = src.locate(path, true);
      const guess = closest(id, known);
      problems.push(
        makeProblem(
          'TOPO_ERR_UNKNOWN_LINK',
          sourceName,
          line,
          column,
          formatPath(path),
          renderValue(id),
          `a link id of ${topology.source}: ${listIds(known)}`,
          `unknown link '${id}'${guess === undefined ? '' : `, did you mean '${guess}'?`}`,
        ),
      );
    }
  }
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line || a.column - b.column);
    return { problems };
  }
  const out: Record<string, LinkState> = {};
  for (const [id, raw] of Object.entries(links as Record<string, Record<string, unknown>>)) {
    const s: { -readonly [K in keyof LinkState]: LinkState[K] } = {};
    if (typeof raw.up === 'boolean') s.up = raw.up;
    if (typeof raw.latencyMs === 'number') s.latencyMs = raw.latencyMs;
    if (typeof raw.jitterMs === 'number') s.jitterMs = raw.jitterMs;
    if (typeof raw.lossPct === 'number') s.lossPct = raw.lossPct;
    if (typeof raw.utilPct === 'number') s.utilPct = raw.utilPct;
    // defineProperty: a link id such as '__proto__' must stay a plain key
    Object.defineProperty(out, id, { value: s, enumerable: true, writable: true, configurable: true });
  }
  return { state: { links: out }, problems: [] };
}

/** Like `checkNetworkState`, reading a file (≤ `MAX_INPUT_BYTES`). */
export function checkNetworkStateFile(path: string, topology?: Topology): NetworkStateCheck {
  const read = readTextFile(path);
  if ('problem' in read) return { problems: [read.problem] };
  return checkNetworkState(read.text, path, topology);
}

/**
 * Loads and validates a link-state JSON file.
 * @throws TopologyError listing every problem.
 */
export function loadNetworkState(path: string, topology?: Topology): NetworkState {
  const r = checkNetworkStateFile(path, topology);
  if (r.state === undefined) throw new TopologyError(r.problems);
  return r.state;
}
