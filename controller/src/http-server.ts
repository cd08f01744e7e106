/**
 * The HTTP API (Fastify 5). `GET /api/v1/health` is open; everything else under `/api/v1` needs
 * `Authorization: Bearer <MERIDIAN_API_TOKEN>` (compared in constant time). Later features add
 * routes as Fastify plugins registered inside the authenticated scope (`plugins`) or beside it
 * (`publicPlugins`), so they inherit auth, the schema validator and the error mapping.
 *
 * Every error leaves as `{ "error": { "code": "CTRL_ERR_*", "message": "..." } }` with the HTTP
 * status of the catalog.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyPluginAsync,
} from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Logger } from 'pino';
import { ControllerError, isControllerError } from './errors';
import type { StoreHealth } from './state-store';

const Nullable = <T extends ReturnType<typeof Type.Number>>(t: T) => Type.Union([t, Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);

export const HealthBody = Type.Object({
  status: Type.Literal('ok'),
  redis: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('embedded')]),
  influx: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('embedded')]),
});
export type HealthBody = Static<typeof HealthBody>;

export const LinkView = Type.Object({
  id: Type.String(),
  a: Type.String(),
  b: Type.String(),
  up: Type.Union([Type.Boolean(), Type.Null()]),
  latencyMs: Nullable(Type.Number()),
  jitterMs: Nullable(Type.Number()),
  lossPct: Nullable(Type.Number()),
  utilPct: Nullable(Type.Number()),
  samples: Type.Integer(),
  updatedAt: NullableString,
});
export type LinkView = Static<typeof LinkView>;

/** What a site's data plane can do, as its agent's last hello said (`Hello.forwarding`). */
export const ForwardingView = Type.Object({
  modes: Type.Array(Type.Union([Type.Literal('srv6'), Type.Literal('hop-by-hop')])),
  platform: Type.String(),
  platformVersion: Type.String(),
  features: Type.Array(Type.String()),
  missing: Type.Array(Type.String()),
});
export type ForwardingView = Static<typeof ForwardingView>;

export const AgentView = Type.Object({
  site: Type.String(),
  connected: Type.Boolean(),
  address: NullableString,
  lastSeen: NullableString,
  /** Kept while the agent is away; null: never said (no hello yet, or an earlier agent release). */
  forwarding: Type.Union([ForwardingView, Type.Null()]),
});
export type AgentView = Static<typeof AgentView>;

export const InterfaceView = Type.Object({
  device: Type.String(),
  ifName: Type.String(),
  link: Type.String(),
  operUp: Type.Boolean(),
  inBps: Type.Number(),
  outBps: Type.Number(),
  utilPct: Nullable(Type.Number()),
  updatedAt: NullableString,
});
export type InterfaceView = Static<typeof InterfaceView>;

export const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
});

/** What the API reads; the controller provides it from memory (never from Redis). */
export interface ApiContext {
  health(): { redis: StoreHealth; influx: StoreHealth };
  links(): LinkView[];
  agents(): AgentView[];
  interfaces(): InterfaceView[];
}

/** A route plugin: receives the context in its options. */
export type ApiPlugin = FastifyPluginAsync<{ ctx: ApiContext }>;

export interface HttpServerOptions {
  readonly apiToken: string;
  readonly log: Logger;
  /** Registered under `/api/v1` behind the bearer token. */
  readonly plugins?: readonly ApiPlugin[];
  /** Registered at the root without auth (UI assets, metrics). */
  readonly publicPlugins?: readonly ApiPlugin[];
  /** Largest request body (default 1 MiB). */
  readonly bodyLimit?: number;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Builds the Fastify instance (not listening: call `listen()` or use `inject()`). */
export function createHttpServer(ctx: ApiContext, opts: HttpServerOptions): FastifyInstance {
  // Request lines are logged at info: the API's own logger stays at warn so polling clients do not flood the log.
  const log = opts.log.child(
    { module: 'http' },
    { level: opts.log.isLevelEnabled('debug') ? 'debug' : 'warn' },
  );
  const app = Fastify({
    loggerInstance: log as unknown as FastifyBaseLogger,
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
  });
  const expected = digest(opts.apiToken);

  app.setErrorHandler((err: FastifyError, req, reply) => {
    let e: ControllerError;
    if (isControllerError(err)) e = err;
    else if (err.validation)
      e = new ControllerError('CTRL_ERR_BAD_REQUEST', `${req.method} ${req.url}: ${err.message}`);
    else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      e = new ControllerError('CTRL_ERR_BAD_REQUEST', `${req.method} ${req.url}: ${err.message}`);
      return reply.code(err.statusCode).send(e.toJSON());
    } else {
      log.error({ err, url: req.url }, 'request failed');
      e = new ControllerError('CTRL_ERR_INTERNAL', 'internal error (logged)');
    }
    return reply.code(e.httpStatus).send(e.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new ControllerError('CTRL_ERR_NOT_FOUND', `no route ${req.method} ${req.url.slice(0, 200)}`);
    return reply.code(e.httpStatus).send(e.toJSON());
  });

  app.get('/api/v1/health', { schema: { response: { 200: HealthBody } } }, () => {
    const h = ctx.health();
    return { status: 'ok', redis: h.redis, influx: h.influx };
  });

  void app.register(
    async (api) => {
      api.addHook('onRequest', (req, _reply, done) => {
        const h = req.headers.authorization;
        const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
        if (m === null || !timingSafeEqual(digest(m[1]!), expected)) {
          done(
            new ControllerError(
              'CTRL_ERR_UNAUTHENTICATED',
              m === null
                ? 'missing "Authorization: Bearer <MERIDIAN_API_TOKEN>"'
                : 'bearer token does not match',
            ),
          );
          return;
        }
        done();
      });
      const ok = { 401: ErrorBody };
      api.get(
        '/links',
        { schema: { response: { 200: Type.Object({ links: Type.Array(LinkView) }), ...ok } } },
        () => ({
          links: ctx.links(),
        }),
      );
      api.get(
        '/agents',
        { schema: { response: { 200: Type.Object({ agents: Type.Array(AgentView) }), ...ok } } },
        () => ({
          agents: ctx.agents(),
        }),
      );
      api.get(
        '/interfaces',
        { schema: { response: { 200: Type.Object({ interfaces: Type.Array(InterfaceView) }), ...ok } } },
        () => ({ interfaces: ctx.interfaces() }),
      );
      for (const p of opts.plugins ?? []) await api.register(p, { ctx });
    },
    { prefix: '/api/v1' },
  );

  for (const p of opts.publicPlugins ?? []) void app.register(p, { ctx });
  return app;
}
