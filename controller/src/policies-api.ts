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
 *   GET  /policies/sites/:site[?version=N]
 *                           -> 200 {"site","version","hash","asOf","policy"}: the site's policy in force
 *                              right after version N (default: its current one), exactly as pushed;
 *                              400 bad site or N, 404 CTRL_ERR_POLICY_UNKNOWN_VERSION (N never issued),
 *                              404 CTRL_ERR_NOT_FOUND (no policy for the site by then), 503 CTRL_ERR_POLICY_STORE
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ControllerError } from './errors';
import type { CompiledSitePolicy } from './policy-compiler';
import type { PolicyDistributor } from './policy-distributor';
import type { PolicyStore } from './policy-store';
import type { RouteLoop } from './route-loop';

export const RollbackBody = Type.Object(
  { version: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) },
  { additionalProperties: false },
);
export type RollbackBody = Static<typeof RollbackBody>;

export const SitePolicyParams = Type.Object({ site: Type.String({ minLength: 1, maxLength: 64 }) });
export const SitePolicyQuery = Type.Object(
  { version: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })) },
  { additionalProperties: false },
);
export type SitePolicyParams = Static<typeof SitePolicyParams>;
export type SitePolicyQuery = Static<typeof SitePolicyQuery>;

/**
 * Fastify's validator strips unknown fields; an operator's typo (`?verison=3`, `{"vresion": 3}`)
 * must fail instead of silently meaning something else. Only `version` is known here.
 */
function unknownField(
  where: 'body' | 'query',
  value: unknown,
  expected: string,
): ControllerError | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const extra = Object.keys(value).find((k) => k !== 'version');
  return extra === undefined
    ? undefined
    : new ControllerError(
        'CTRL_ERR_BAD_REQUEST',
        `${where}.${extra.slice(0, 64)}: unknown field (expected ${expected})`,
      );
}

/** The body of `GET /api/v1/policies/sites/:site`. */
async function sitePolicyView(
  store: PolicyStore,
  siteIds: readonly string[],
  site: string,
  version: number | undefined,
): Promise<{ site: string; version: number; hash: string; asOf: number; policy: CompiledSitePolicy }> {
  if (!siteIds.includes(site)) {
    const list = siteIds.length > 12 ? `${siteIds.slice(0, 12).join(', ')}, ...` : siteIds.join(', ');
    throw new ControllerError(
      'CTRL_ERR_BAD_REQUEST',
      `params.site: unknown site '${site.slice(0, 64)}' (expected one of ${list})`,
    );
  }
  const asOf = version ?? store.current().get(site)?.version;
  if (version !== undefined && !store.issued(version)) {
    throw new ControllerError(
      'CTRL_ERR_POLICY_UNKNOWN_VERSION',
      `query.version: version ${version} was never issued`,
    );
  }
  const policy = asOf === undefined ? null : await store.policyAt(site, asOf);
  if (asOf === undefined || policy === null) {
    throw new ControllerError(
      'CTRL_ERR_NOT_FOUND',
      `site ${site} had no policy ${version === undefined ? 'yet' : `by version ${version}`}`,
    );
  }
  return { site, version: policy.version, hash: policy.hash, asOf, policy };
}

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
  siteIds: readonly string[],
): FastifyPluginAsync<Record<string, unknown>> {
  // eslint-disable-next-line @typescript-eslint/require-await
  return async (app) => {
    app.get('/policies', () => policiesView(loop, store, distributor));

    app.post<{ Body: RollbackBody }>(
      '/policies/rollback',
      {
        schema: { body: RollbackBody },
        preValidation: (req, _reply, done) => done(unknownField('body', req.body, '{"version": N}')),
      },
      async (req) => loop.rollback(req.body.version, `api ${req.ip}`),
    );

    app.get('/policies/audit', async () => ({ entries: await store.auditLog(100) }));

    app.get<{ Params: SitePolicyParams; Querystring: SitePolicyQuery }>(
      '/policies/sites/:site',
      {
        schema: { params: SitePolicyParams, querystring: SitePolicyQuery },
        preValidation: (req, _reply, done) => done(unknownField('query', req.query, '?version=N')),
      },
      (req) => sitePolicyView(store, siteIds, req.params.site, req.query.version),
    );
  };
}
