/**
 * HTTP routes of policy versions and distribution, under `/api/v1` behind the bearer token:
 *   GET  /policies          -> {"distributing","current":{"version","sites":{<site>:{"version","hash"}}},
 *                               "versions":[{"version","createdAt","reason","rollbackOf","sites"}] (newest first),
 *                               "agents":[{"site","status","version","hash","appliedVersion","connected","attempts","error","updatedAt"}]}
 *   POST /policies/rollback {"version": N}
 *                           -> 200 {"rollbackOf": N, "version": M|null, "sites": [...]}
 *                              400 bad body, 404 CTRL_ERR_POLICY_UNKNOWN_VERSION, 409 CTRL_ERR_POLICY_NO_PLAN,
 *                              503 CTRL_ERR_POLICY_STORE
 *   GET  /policies/audit    -> {"entries":[{"at","action","detail"}]} (oldest first, last 100)
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ControllerError } from './errors';
import type { PolicyDistributor } from './policy-distributor';
import type { PolicyStore } from './policy-store';
import type { RouteLoop } from './route-loop';

export const RollbackBody = Type.Object(
  { version: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) },
  { additionalProperties: false },
);
export type RollbackBody = Static<typeof RollbackBody>;

/** The body of `GET /api/v1/policies`. */
export function policiesView(
  loop: RouteLoop,
  store: PolicyStore,
  distributor: PolicyDistributor,
): {
  distributing: boolean;
  current: { version: number | null; sites: Record<string, { version: number; hash: string }> };
  versions: unknown[];
  agents: unknown[];
} {
  const sites: Record<string, { version: number; hash: string }> = {};
  let top: number | null = null;
  for (const [site, ref] of [...store.current()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    sites[site] = { version: ref.version, hash: ref.hash };
    if (top === null || ref.version > top) top = ref.version;
  }
  return {
    distributing: loop.distributing,
    current: { version: top, sites },
    versions: [...store.versions()].reverse(),
    agents: distributor.status(),
  };
}

/** The policies API as a Fastify plugin (options ignored, so it fits any ApiPlugin slot). */
export function policiesApi(
  loop: RouteLoop,
  store: PolicyStore,
  distributor: PolicyDistributor,
): FastifyPluginAsync<Record<string, unknown>> {
  // eslint-disable-next-line @typescript-eslint/require-await
  return async (app) => {
    app.get('/policies', () => policiesView(loop, store, distributor));

    app.post<{ Body: RollbackBody }>(
      '/policies/rollback',
      {
        schema: { body: RollbackBody },
        // Fastify's validator strips unknown fields; an operator's typo must fail instead.
        preValidation: (req, _reply, done) => {
          const body = req.body as unknown;
          const extra =
            body !== null && typeof body === 'object' && !Array.isArray(body)
              ? Object.keys(body).find((k) => k !== 'version')
              : undefined;
          done(
            extra === undefined
              ? undefined
              : new ControllerError(
                  'CTRL_ERR_BAD_REQUEST',
                  `body.${extra.slice(0, 64)}: unknown field (expected {"version": N})`,
                ),
          );
        },
      },
      async (req) => loop.rollback(req.body.version, `api ${req.ip}`),
    );

    app.get('/policies/audit', async () => ({ entries: await store.auditLog(100) }));
  };
}
