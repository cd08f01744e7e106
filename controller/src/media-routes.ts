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
 */
import type { FastifyPluginAsync } from 'fastify';
import type { MediaEvent, MediaSteering, SteeringError } from './media-steering';

function errorBody(e: SteeringError): { error: { code: string; message: string } } {
  return { error: { code: e.code, message: e.message } };
}

/** The media routes as a Fastify plugin (options are ignored, so it fits any ApiPlugin slot). */
export function mediaRoutes(steering: MediaSteering): FastifyPluginAsync<Record<string, unknown>> {
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

    app.get('/events', (req, reply) => {
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
    });
  };
}
