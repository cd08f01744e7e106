/**
 * HTTP routes of media steering, registered under `/api/v1` behind the bearer token
 * (`controller.addHttpPlugin(mediaRoutes(steering))`):
 *   POST   /media/sessions            -> 201 {id, ingress, nodes, sites} | 400 (field named) | 503 (reason)
 *   GET    /media/sessions            -> {sessions: [...]}
 *   GET    /media/sessions/:id        -> the session, its nodes and legs with packet counts | 404
 *   DELETE /media/sessions/:id        -> 204 | 404
 *   GET    /media/nodes               -> {nodes: [{id, site, healthy, load}]}
 *   POST   /media/nodes/:id/drain     -> 202 {id, moved} | 404
 *   GET    /events                    -> server-sent events (`media.session.moved` {id, ingress}, ...)
 *
 * A browser `EventSource` cannot send headers, so `mediaEventsRoute(steering, apiToken)` serves
 * `GET /api/v1/events` outside the bearer scope (a public plugin) and checks the token itself:
 * `Authorization: Bearer <token>` or `?token=<token>`, both compared in constant time. The query
 * form is accepted on this route only (a token in a URL can end up in proxy logs: use it where a
 * header is impossible).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { MediaEvent, MediaSteering, SteeringError } from './media-steering';

function errorBody(e: SteeringError): { error: { code: string; message: string } } {
  return { error: { code: e.code, message: e.message } };
}

/** Streams steering events to one client until it goes away. */
function serveEvents(steering: MediaSteering, req: FastifyRequest, reply: FastifyReply): void {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  res.write(': meridian events\n\n');
  const send = (ev: MediaEvent): void => {
    res.write(`event: ${ev.type}\ndata: ${JSON.stringify(ev.data)}\n\n`);
  };
  const ping = setInterval(() => res.write(': ping\n\n'), 15000);
  steering.on('event', send);
  req.raw.on('close', () => {
    clearInterval(ping);
    steering.off('event', send);
  });
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * `GET /api/v1/events` as a public plugin (`controller.addHttpPlugin(p, { public: true })`) that
 * authenticates itself: bearer header or `?token=` (constant-time compare of SHA-256 digests).
 */
export function mediaEventsRoute(
  steering: MediaSteering,
  apiToken: string,
): FastifyPluginAsync<Record<string, unknown>> {
  const expected = digest(apiToken);
  // eslint-disable-next-line @typescript-eslint/require-await
  return async (app) => {
    app.get<{ Querystring: { token?: string } }>('/api/v1/events', (req, reply) => {
      const h = req.headers.authorization;
      const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
      const q = req.query.token;
      const given = m?.[1] ?? (typeof q === 'string' ? q : undefined);
      if (given === undefined || !timingSafeEqual(digest(given), expected)) {
        return reply.code(401).send({
          error: {
            code: 'CTRL_ERR_UNAUTHENTICATED',
            message:
              given === undefined
                ? 'missing "Authorization: Bearer <MERIDIAN_API_TOKEN>" or "?token=<MERIDIAN_API_TOKEN>"'
                : 'token does not match',
          },
        });
      }
      serveEvents(steering, req, reply);
      return reply;
    });
  };
}

/**
 * The media routes as a Fastify plugin (options are ignored, so it fits any ApiPlugin slot).
 * `events: false` leaves `GET /events` out (served by `mediaEventsRoute` instead).
 */
export function mediaRoutes(
  steering: MediaSteering,
  opts: { events?: boolean } = {},
): FastifyPluginAsync<Record<string, unknown>> {
  // eslint-disable-next-line @typescript-eslint/require-await
  return async (app) => {
    app.post('/media/sessions', async (req, reply) => {
      const r = await steering.create(req.body);
      if (!r.ok) return reply.code(r.error.status).send(errorBody(r.error));
      const v = r.value;
      return reply.code(201).send({ id: v.id, ingress: v.ingress, nodes: v.nodes, sites: v.sites });
    });

    app.get('/media/sessions', () => ({ sessions: steering.list() }));

    app.get<{ Params: { id: string } }>('/media/sessions/:id', (req, reply) => {
      const s = steering.get(req.params.id);
      if (s === undefined) {
        return reply.code(404).send(
          errorBody({
            status: 404,
            code: 'CTRL_ERR_NOT_FOUND',
            message: `no media session ${req.params.id}`,
          }),
        );
      }
      return reply.send(s);
    });

    app.delete<{ Params: { id: string } }>('/media/sessions/:id', async (req, reply) => {
      if (!(await steering.remove(req.params.id))) {
        return reply.code(404).send(
          errorBody({
            status: 404,
            code: 'CTRL_ERR_NOT_FOUND',
            message: `no media session ${req.params.id}`,
          }),
        );
      }
      return reply.code(204).send();
    });

    app.get('/media/nodes', () => ({ nodes: steering.nodes() }));

    app.post<{ Params: { id: string } }>('/media/nodes/:id/drain', async (req, reply) => {
      const r = await steering.drain(req.params.id);
      if (!r.ok) return reply.code(r.error.status).send(errorBody(r.error));
      return reply.code(202).send(r.value);
    });

    if (opts.events !== false) app.get('/events', (req, reply) => serveEvents(steering, req, reply));
  };
}
