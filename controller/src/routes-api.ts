/**
 * HTTP routes of the route engine, under `/api/v1` behind the bearer token:
 *   GET /routes[?class=&from=&to=] -> exactly `meridian routes --json`: {"routes":[{class,src,dst,status,primary,backup}]}
 *                                     400 CTRL_ERR_BAD_REQUEST naming the field for an unknown class or site
 *   GET /routes/cycles             -> {"cycles":[CycleRecord...]} (recent loop cycles and their timings, oldest first)
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { routesJson, type Topology } from '@meridian/topology';
import { ControllerError } from './errors';
import type { RouteLoop } from './route-loop';

export const RoutesQuery = Type.Object({
  class: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  from: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  to: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
});
export type RoutesQuery = Static<typeof RoutesQuery>;

function known(field: string, what: string, value: string | undefined, ids: readonly string[]): void {
  if (value === undefined || ids.includes(value)) return;
  const list = ids.length > 12 ? `${ids.slice(0, 12).join(', ')}, ...` : ids.join(', ');
  throw new ControllerError(
    'CTRL_ERR_BAD_REQUEST',
    `query.${field}: unknown ${what} '${value.slice(0, 64)}' (expected one of ${list})`,
  );
}

/** The routes API as a Fastify plugin (options ignored, so it fits any ApiPlugin slot). */
export function routesApi(topology: Topology, loop: RouteLoop): FastifyPluginAsync<Record<string, unknown>> {
  const classIds = topology.classes.map((c) => c.id);
  const siteIds = topology.sites.map((s) => s.id);
  // eslint-disable-next-line @typescript-eslint/require-await
  return async (app) => {
    app.get<{ Querystring: RoutesQuery }>('/routes', { schema: { querystring: RoutesQuery } }, (req) => {
      if (!loop.enabled) {
        throw new ControllerError(
          'CTRL_ERR_ROUTES_DISABLED',
          'the route loop is off: the topology has more routes than routeLoop.maxRoutes',
        );
      }
      const q = req.query;
      known('class', 'class', q.class, classIds);
      known('from', 'site', q.from, siteIds);
      known('to', 'site', q.to, siteIds);
      const routes = loop.routes.filter(
        (r) =>
          (q.class === undefined || r.class === q.class) &&
          (q.from === undefined || r.src === q.from) &&
          (q.to === undefined || r.dst === q.to),
      );
      return routesJson(routes);
    });

    app.get('/routes/cycles', () => ({ cycles: loop.cycles() }));
  };
}
