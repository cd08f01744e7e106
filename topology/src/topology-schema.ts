/**
 * The topology file format (version 1) and the link-state file format as TypeBox schemas: the one
 * description of their shapes, used by the loaders here and by anything else that accepts these
 * documents (the controller's API). Cross-field rules (ids, references, prefixes) live in
 * `loader.ts`. `errorCode` on a schema overrides the problem code derived from the error kind.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { OBJECTIVES, ROUTING_SCOPES, SITE_KINDS, TRANSPORTS } from './types';

function oneOf(values: readonly string[], description: string): TSchema {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  );
}

const Id = (description: string): TSchema => Type.String({ minLength: 1, description });
const NonNegative = (description: string): TSchema => Type.Number({ minimum: 0, description });
const Percent = (description: string): TSchema => Type.Number({ minimum: 0, maximum: 100, description });

/** `sites[]`: id, kind, optional region and IPv4 prefixes. */
export const SiteSchema = Type.Object({
  id: Id('site id'),
  kind: oneOf(SITE_KINDS, 'site kind'),
  region: Type.Optional(Type.String({ description: 'region name' })),
  prefixes: Type.Optional(
    Type.Array(Type.String({ description: 'IPv4 CIDR' }), { description: 'IPv4 CIDRs' }),
  ),
});

/** `links[]`: an undirected link with its nominal metrics (jitter, loss default 0, cost 1). */
export const LinkSchema = Type.Object({
  id: Id('link id'),
  a: Id('site id'),
  b: Id('site id'),
  transport: oneOf(TRANSPORTS, 'transport'),
  capacityMbps: Type.Number({ exclusiveMinimum: 0, description: 'capacity in Mbit/s' }),
  latencyMs: NonNegative('one-way latency in ms'),
  jitterMs: Type.Optional(NonNegative('jitter in ms')),
  lossPct: Type.Optional(Percent('loss in percent')),
  cost: Type.Optional(NonNegative('cost')),
});

/** `classes[].sla`: the three bounds a feasible path must meet. */
export const SlaSchema = Type.Object({
  maxLatencyMs: NonNegative('one-way latency bound in ms'),
  maxJitterMs: NonNegative('jitter bound in ms'),
  maxLossPct: Percent('loss bound in percent'),
});

/** `classes[].match`: how traffic is recognised (DSCP, protocol, destination ports). */
export const ClassMatchSchema = Type.Object({
  dscp: Type.Optional(Type.Array(Type.Integer({ minimum: 0, maximum: 63, description: 'DSCP value' }))),
  protocol: Type.Optional(oneOf(['udp', 'tcp'], 'protocol')),
  ports: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535, description: 'port' }))),
});

/** `classes[]`: an application class, its SLA, objective, utilisation limit and priority. */
export const ClassSchema = Type.Object({
  id: Id('class id'),
  sla: SlaSchema,
  objective: oneOf(OBJECTIVES, 'objective'),
  maxUtilPct: Type.Optional(
    Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'utilisation bound in percent' }),
  ),
  priority: Type.Integer({ minimum: 0, description: 'priority (1 is the most important)' }),
  match: Type.Optional(ClassMatchSchema),
});

/** `devices[].snmp`: SNMP v2c polling target (port defaults to 161). */
export const SnmpSchema = Type.Object({
  host: Type.String({ minLength: 1, description: 'SNMP agent host' }),
  port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'UDP port' })),
  community: Type.String({ minLength: 1, description: 'SNMP community' }),
  version: Type.Optional(oneOf(['2c'], 'SNMP version')),
});

/** `devices[].interfaces[]`: which interface carries which topology link. */
export const DeviceInterfaceSchema = Type.Object({
  ifName: Type.String({ minLength: 1, description: 'interface name' }),
  link: Id('link id'),
});

/** `devices[]`: a router at a site, its driver and how to reach it. */
export const DeviceSchema = Type.Object({
  id: Id('device id'),
  site: Id('site id'),
  driver: oneOf(['linux', 'routeros'], 'driver'),
  address: Type.Optional(Type.String({ minLength: 1, description: 'host:port' })),
  snmp: Type.Optional(SnmpSchema),
  interfaces: Type.Optional(Type.Array(DeviceInterfaceSchema)),
});

/**
 * `routing`: which (src, dst) pairs need routes. `full-mesh` (the default): every ordered pair of
 * distinct sites. `hub-and-spoke`: between hubs both ways and between each other site and every hub
 * both ways, never spoke to spoke; `hubs` lists them (default: every `dc` and `cloud` site).
 */
export const RoutingSchema = Type.Object({
  scope: oneOf(ROUTING_SCOPES, 'routing scope'),
  hubs: Type.Optional(Type.Array(Id('site id'), { description: 'hub site ids' })),
});

/** A topology file, version 1. Unknown keys are allowed everywhere (forward compatibility). */
export const TopologyFileSchema = Type.Object({
  version: Type.Literal(1, { errorCode: 'TOPO_ERR_VERSION', description: 'format version' }),
  sites: Type.Array(SiteSchema, { minItems: 1, errorCode: 'TOPO_ERR_EMPTY_SITES', description: 'sites' }),
  links: Type.Array(LinkSchema, { description: 'links' }),
  classes: Type.Array(ClassSchema, {
    minItems: 1,
    errorCode: 'TOPO_ERR_EMPTY_CLASSES',
    description: 'traffic classes',
  }),
  devices: Type.Optional(Type.Array(DeviceSchema, { description: 'devices' })),
  routing: Type.Optional(RoutingSchema),
});

/** One link's measured state; any subset of the fields. */
export const LinkStateSchema = Type.Object({
  up: Type.Optional(Type.Boolean({ description: 'link up' })),
  latencyMs: Type.Optional(NonNegative('measured one-way latency in ms')),
  jitterMs: Type.Optional(NonNegative('measured jitter in ms')),
  lossPct: Type.Optional(Percent('measured loss in percent')),
  utilPct: Type.Optional(NonNegative('utilisation in percent')),
});

/** A link-state document: `{ links: { <link id>: LinkState } }`. */
export const NetworkStateSchema = Type.Object({
  links: Type.Record(Type.String(), LinkStateSchema, { description: 'link states by link id' }),
});
