/**
 * The topology loader: YAML text or file → validated `Topology` with defaults filled, or every
 * problem at once, each with file, line, column, field path, found and expected.
 */
import type { TObject } from '@sinclair/typebox';
import { parseIpv4Cidr, findOverlaps, type OwnedPrefix } from './cidr';
import { makeProblem, TopologyError, type TopologyErrorCode, type TopologyProblem } from './errors';
import { readTextFile } from './input-file';
import { schemaProblems } from './schema-problems';
import { closest, listIds } from './suggest';
import {
  ClassMatchSchema,
  ClassSchema,
  DeviceInterfaceSchema,
  DeviceSchema,
  LinkSchema,
  RoutingSchema,
  SiteSchema,
  SlaSchema,
  SnmpSchema,
  TopologyFileSchema,
} from './topology-schema';
import type {
  ClassMatch,
  Routing,
  RoutingScope,
  Device,
  Link,
  Objective,
  Site,
  SiteKind,
  Topology,
  TrafficClass,
  Transport,
} from './types';
import { formatPath, parseYamlSource, renderValue, type LocatedValue, type PathSegment } from './yaml-source';

/** Result of `checkTopology`: a topology when there are no problems; warnings never block. */
export interface TopologyCheck {
  readonly topology?: Topology;
  readonly problems: readonly TopologyProblem[];
  readonly warnings: readonly TopologyProblem[];
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function items(v: unknown): [number, Obj][] {
  if (!Array.isArray(v)) return [];
  const out: [number, Obj][] = [];
  v.forEach((x, i) => {
    if (isObj(x)) out.push([i, x]);
  });
  return out;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function byPosition(a: TopologyProblem, b: TopologyProblem): number {
  return a.line - b.line || a.column - b.column;
}

/** Cross-field rules the schema cannot express: ids, references, self-loops, prefixes. */
function crossCheck(src: LocatedValue, root: Obj): TopologyProblem[] {
  const problems: TopologyProblem[] = [];
  const add = (
    code: TopologyErrorCode,
    path: PathSegment[],
    found: string,
    expected: string,
    what: string,
  ) => {
    const { line, column } = src.locate(path);
    problems.push(makeProblem(code, src.file, line, column, formatPath(path), found, expected, what));
  };

  const ids = (collection: string, noun: string): Map<string, number> => {
    const first = new Map<string, number>();
    for (const [i, it] of items(root[collection])) {
      const id = str(it.id);
      if (id === undefined) continue;
      const prev = first.get(id);
      if (prev === undefined) {
        first.set(id, i);
        continue;
      }
      const at = src.locate([collection, prev, 'id']);
      add(
        'TOPO_ERR_DUPLICATE_ID',
        [collection, i, 'id'],
        renderValue(id),
        `a unique ${noun} id`,
        `duplicate ${noun} id '${id}', first defined at ${collection}[${prev}] (line ${at.line})`,
      );
    }
    return first;
  };
  const siteIds = ids('sites', 'site');
  const linkIds = ids('links', 'link');
  ids('classes', 'class');
  ids('devices', 'device');
  const siteList = [...siteIds.keys()];

  // When `sites` itself is malformed its ids are unknown: references to them prove nothing.
  const sitesValid = Array.isArray(root.sites);
  const unknownSite = (path: PathSegment[], id: string) => {
    if (!sitesValid) return;
    const guess = closest(id, siteList);
    add(
      'TOPO_ERR_UNKNOWN_SITE',
      path,
      renderValue(id),
      siteList.length === 0 ? 'a site defined under sites' : `one of the site ids: ${listIds(siteList)}`,
      `unknown site '${id}'${guess === undefined ? '' : `, did you mean '${guess}'?`}`,
    );
  };

  const links = new Map<string, Obj>();
  for (const [i, link] of items(root.links)) {
    const a = str(link.a);
    const b = str(link.b);
    if (a !== undefined && !siteIds.has(a)) unknownSite(['links', i, 'a'], a);
    if (b !== undefined && !siteIds.has(b)) unknownSite(['links', i, 'b'], b);
    if (a !== undefined && a === b) {
      add(
        'TOPO_ERR_SELF_LOOP',
        ['links', i, 'b'],
        renderValue(b),
        `a site other than a ('${a}')`,
        `link joins site '${a}' to itself`,
      );
    }
    const id = str(link.id);
    if (id !== undefined && !links.has(id)) links.set(id, link);
  }

  interface Owner {
    site: string;
    i: number;
    j: number;
  }
  const owned: OwnedPrefix<Owner>[] = [];
  for (const [i, site] of items(root.sites)) {
    if (!Array.isArray(site.prefixes)) continue;
    site.prefixes.forEach((p: unknown, j: number) => {
      if (typeof p !== 'string') return;
      const parsed = parseIpv4Cidr(p);
      if (parsed.ok) {
        owned.push({ prefix: parsed.prefix, owner: { site: str(site.id) ?? `sites[${i}]`, i, j } });
        return;
      }
      add(
        'TOPO_ERR_PREFIX_INVALID',
        ['sites', i, 'prefixes', j],
        renderValue(p),
        parsed.canonical !== undefined
          ? `the block ${parsed.canonical} (host bits zero)`
          : 'an IPv4 CIDR a.b.c.d/len (octets 0..255, len 0..32, host bits zero)',
        `invalid prefix: ${parsed.reason}`,
      );
    });
  }
  for (const [earlier, later] of findOverlaps(owned)) {
    const e = earlier.owner;
    const l = later.owner;
    const same = e.i === l.i;
    add(
      'TOPO_ERR_PREFIX_OVERLAP',
      ['sites', l.i, 'prefixes', l.j],
      renderValue(later.prefix.text),
      'prefixes that do not overlap',
      same
        ? `prefix ${later.prefix.text} overlaps ${earlier.prefix.text} of the same site (sites[${e.i}].prefixes[${e.j}])`
        : `prefix ${later.prefix.text} of site '${l.site}' overlaps ${earlier.prefix.text} of site '${e.site}' (sites[${e.i}].prefixes[${e.j}])`,
    );
  }

  const linkList = [...linkIds.keys()];
  for (const [i, dev] of items(root.devices)) {
    const site = str(dev.site);
    if (site !== undefined && !siteIds.has(site)) unknownSite(['devices', i, 'site'], site);
    for (const [k, itf] of items(dev.interfaces)) {
      const linkId = str(itf.link);
      if (linkId === undefined) continue;
      const link = links.get(linkId);
      if (link === undefined) {
        const guess = closest(linkId, linkList);
        add(
          'TOPO_ERR_UNKNOWN_LINK',
          ['devices', i, 'interfaces', k, 'link'],
          renderValue(linkId),
          linkList.length === 0 ? 'a link defined under links' : `one of the link ids: ${listIds(linkList)}`,
          `unknown link '${linkId}'${guess === undefined ? '' : `, did you mean '${guess}'?`}`,
        );
      } else if (site !== undefined && siteIds.has(site) && link.a !== site && link.b !== site) {
        add(
          'TOPO_ERR_LINK_NOT_AT_SITE',
          ['devices', i, 'interfaces', k, 'link'],
          renderValue(linkId),
          `a link with an end at site '${site}'`,
          `link '${linkId}' joins ${String(link.a)} and ${String(link.b)}, not the device's site '${site}'`,
        );
      }
    }
  }
  if (isObj(root.routing)) {
    const routing = root.routing;
    const hubs = Array.isArray(routing.hubs) ? routing.hubs : undefined;
    hubs?.forEach((h, k) => {
      if (typeof h === 'string' && h !== '' && !siteIds.has(h)) unknownSite(['routing', 'hubs', k], h);
    });
    if (routing.scope === 'full-mesh' && hubs !== undefined) {
      add(
        'TOPO_ERR_ROUTING_SCOPE',
        ['routing', 'hubs'],
        'hubs',
        "scope 'hub-and-spoke', or no hubs",
        "hubs only apply to scope 'hub-and-spoke' (scope is 'full-mesh')",
      );
    }
    const coreSites = items(root.sites).filter(([, s]) => s.kind === 'dc' || s.kind === 'cloud').length;
    if (
      routing.scope === 'hub-and-spoke' &&
      sitesValid &&
      (hubs === undefined ? coreSites === 0 : hubs.length === 0)
    ) {
      add(
        'TOPO_ERR_ROUTING_SCOPE',
        hubs === undefined ? ['routing', 'scope'] : ['routing', 'hubs'],
        hubs === undefined ? "'hub-and-spoke' without hubs and no dc or cloud site" : '[]',
        'at least one hub (a hubs list, or dc / cloud sites)',
        hubs === undefined
          ? "scope 'hub-and-spoke' needs hubs: no site is a dc or cloud, and routing.hubs is absent"
          : 'routing.hubs is empty',
      );
    }
  }
  return problems;
}

/** Warnings for unknown keys that look like typos of known ones; unknown keys are otherwise fine. */
function keyWarnings(src: LocatedValue, root: Obj): TopologyProblem[] {
  const warnings: TopologyProblem[] = [];
  const check = (obj: Obj, path: PathSegment[], schema: TObject) => {
    const known = Object.keys(schema.properties);
    for (const key of Object.keys(obj)) {
      if (known.includes(key)) continue;
      const guess = closest(key, known);
      if (guess === undefined) continue;
      const { line, column } = src.locate([...path, key], true);
      warnings.push(
        makeProblem(
          'TOPO_WARN_UNKNOWN_KEY',
          src.file,
          line,
          column,
          formatPath([...path, key]),
          `'${key}'`,
          `'${guess}'`,
          `unknown key '${key}' ignored, did you mean '${guess}'?`,
        ),
      );
    }
  };
  check(root, [], TopologyFileSchema);
  for (const [i, s] of items(root.sites)) check(s, ['sites', i], SiteSchema);
  for (const [i, l] of items(root.links)) check(l, ['links', i], LinkSchema);
  for (const [i, c] of items(root.classes)) {
    check(c, ['classes', i], ClassSchema);
    if (isObj(c.sla)) check(c.sla, ['classes', i, 'sla'], SlaSchema);
    if (isObj(c.match)) check(c.match, ['classes', i, 'match'], ClassMatchSchema);
  }
  if (isObj(root.routing)) check(root.routing, ['routing'], RoutingSchema);
  for (const [i, d] of items(root.devices)) {
    check(d, ['devices', i], DeviceSchema);
    if (isObj(d.snmp)) check(d.snmp, ['devices', i, 'snmp'], SnmpSchema);
    for (const [k, itf] of items(d.interfaces))
      check(itf, ['devices', i, 'interfaces', k], DeviceInterfaceSchema);
  }
  return warnings;
}

/** Builds the typed model from a document that passed every check; fills the defaults. */
function build(root: Obj, source: string): Topology {
  const num = (v: unknown, dflt: number): number => (typeof v === 'number' ? v : dflt);
  const sites: Site[] = items(root.sites).map(([, s]) => ({
    id: s.id as string,
    kind: s.kind as SiteKind,
    region: typeof s.region === 'string' ? s.region : '',
    prefixes: Array.isArray(s.prefixes) ? (s.prefixes as string[]).slice() : [],
  }));
  const links: Link[] = items(root.links).map(([, l]) => ({
    id: l.id as string,
    a: l.a as string,
    b: l.b as string,
    transport: l.transport as Transport,
    capacityMbps: l.capacityMbps as number,
    latencyMs: l.latencyMs as number,
    jitterMs: num(l.jitterMs, 0),
    lossPct: num(l.lossPct, 0),
    cost: num(l.cost, 1),
  }));
  const classes: TrafficClass[] = items(root.classes).map(([, c]) => {
    const sla = c.sla as Obj;
    const cls: TrafficClass = {
      id: c.id as string,
      sla: {
        maxLatencyMs: sla.maxLatencyMs as number,
        maxJitterMs: sla.maxJitterMs as number,
        maxLossPct: sla.maxLossPct as number,
      },
      objective: c.objective as Objective,
      maxUtilPct: num(c.maxUtilPct, 100),
      priority: c.priority as number,
    };
    if (!isObj(c.match)) return cls;
    const m = c.match;
    const match: { -readonly [K in keyof ClassMatch]: ClassMatch[K] } = {};
    if (Array.isArray(m.dscp)) match.dscp = (m.dscp as number[]).slice();
    if (m.protocol === 'udp' || m.protocol === 'tcp') match.protocol = m.protocol;
    if (Array.isArray(m.ports)) match.ports = (m.ports as number[]).slice();
    return { ...cls, match };
  });
  const devices: Device[] = items(root.devices).map(([, d]) => {
    const dev: { -readonly [K in keyof Device]: Device[K] } = {
      id: d.id as string,
      site: d.site as string,
      driver: d.driver as Device['driver'],
      interfaces: items(d.interfaces).map(([, itf]) => ({
        ifName: itf.ifName as string,
        link: itf.link as string,
      })),
    };
    if (typeof d.address === 'string') dev.address = d.address;
    if (isObj(d.snmp)) {
      dev.snmp = {
        host: d.snmp.host as string,
        port: num(d.snmp.port, 161),
        community: d.snmp.community as string,
        version: '2c',
      };
    }
    return dev;
  });
  if (!isObj(root.routing)) return { version: 1, source, sites, links, classes, devices };
  const r = root.routing;
  const routing: Routing = Array.isArray(r.hubs)
    ? { scope: r.scope as RoutingScope, hubs: [...new Set(r.hubs as string[])] }
    : { scope: r.scope as RoutingScope };
  return { version: 1, source, sites, links, classes, devices, routing };
}

/**
 * Validates topology YAML text and returns the result as a value: the topology when there are no
 * problems, else every problem (sorted by position); plus warnings (likely key typos).
 * @param sourceName used in messages and as `Topology.source` (a path, or `<inline>`).
 */
export function checkTopology(text: string, sourceName = '<inline>'): TopologyCheck {
  const parsed = parseYamlSource(text, sourceName);
  if (parsed.source === undefined) return { problems: parsed.problems, warnings: [] };
  const src = parsed.source;
  if (!isObj(src.value)) {
    const { line, column } = src.locate([]);
    const problem = makeProblem(
      'TOPO_ERR_NOT_MAPPING',
      sourceName,
      line,
      column,
      '',
      renderValue(src.value),
      'a mapping with version, sites, links and classes',
      `the document is not a mapping: ${renderValue(src.value)}`,
    );
    return { problems: [...parsed.problems, problem], warnings: [] };
  }
  const root = src.value;
  const problems = [...parsed.problems, ...schemaProblems(TopologyFileSchema, src), ...crossCheck(src, root)];
  problems.sort(byPosition);
  const warnings = keyWarnings(src, root).sort(byPosition);
  if (problems.length > 0) return { problems, warnings };
  return { topology: build(root, sourceName), problems, warnings };
}

/**
 * Parses and validates topology YAML text.
 * @throws TopologyError listing every problem when the text is not a valid topology.
 */
export function parseTopology(text: string, sourceName = '<inline>'): Topology {
  const result = checkTopology(text, sourceName);
  if (result.topology === undefined) throw new TopologyError(result.problems);
  return result.topology;
}

/**
 * True when `arg` is YAML text rather than a path: it has a line break, or starts with `version`
 * or `{` (a one-line flow mapping). Paths never do in practice.
 */
export function isInlineYaml(arg: string): boolean {
  const s = arg.trimStart();
  return arg.includes('\n') || s.startsWith('version') || s.startsWith('{');
}

/**
 * Validates a topology file (≤ `MAX_INPUT_BYTES`) and returns every problem as a value, like `checkTopology`;
 * an unreadable or oversized file is a problem too.
 */
export function checkTopologyFile(path: string): TopologyCheck {
  const read = readTextFile(path);
  if ('problem' in read) return { problems: [read.problem], warnings: [] };
  return checkTopology(read.text, path);
}

/**
 * Loads a topology from a file path or from YAML text (see `isInlineYaml`).
 * @returns the validated topology with every default filled (jitterMs 0, lossPct 0, cost 1,
 *   maxUtilPct 100, region '', prefixes [], devices [], SNMP port 161 and version 2c).
 * @throws TopologyError listing every problem (file, line, column, path, found, expected).
 */
export function loadTopology(pathOrYamlText: string): Topology {
  const result = isInlineYaml(pathOrYamlText)
    ? checkTopology(pathOrYamlText)
    : checkTopologyFile(pathOrYamlText);
  if (result.topology === undefined) throw new TopologyError(result.problems);
  return result.topology;
}
