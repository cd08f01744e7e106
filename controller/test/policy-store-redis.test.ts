/**
 * The Redis policy store against a real private Redis: policies stored deflated and read back,
 * values written before compression still read, a corrupt value is a typed error that leaves the
 * store working, and the in-memory cache stays within its bound while every version stays readable.
 */
import { inflateSync } from 'node:zlib';
import { Redis } from 'ioredis';
import t from 'tap';
import { computeRoutes } from '@meridian/topology';
import {
  compilePolicies,
  RedisPolicyStore,
  type CompiledSitePolicy,
  type PolicyVersionMeta,
} from '../src/index';
import { ops, quietLog, smallTopology } from './helpers';
import { planFor } from './policy-helpers';

const topology = smallTopology();
const compiled = [...compilePolicies(topology, computeRoutes(topology).routes, planFor(topology)).values()];

/** Every site's compiled policy stamped with `version`, frozen as issued policies are. */
function issue(version: number): CompiledSitePolicy[] {
  return compiled.map((p) => Object.freeze({ ...p, version }));
}

function meta(version: number, policies: readonly CompiledSitePolicy[]): PolicyVersionMeta {
  return {
    version,
    createdAt: new Date().toISOString(),
    reason: 'routes',
    rollbackOf: null,
    sites: policies.map((p) => p.site).sort(),
  };
}

t.test('Redis policy store', async (t) => {
  const redis = await ops.startRedis();
  t.teardown(() => redis.dispose());
  const reader = new Redis(redis.url);
  t.teardown(() => reader.disconnect());
  const store = new RedisPolicyStore({ url: redis.url, log: quietLog, cacheEntries: 2 });
  t.teardown(() => store.close());
  await store.start();
  t.ok(store.loaded);

  const versions = [1, 2, 3, 4].map((v) => issue(v));
  for (const [i, ps] of versions.entries()) await store.commit(meta(i + 1, ps), ps);
  const sites = compiled.map((p) => p.site);
  t.ok(sites.length >= 3, `${sites.length} sites`);

  t.test('stored deflated, read back whole', async (t) => {
    const key = `meridian:policy:${sites[0]}:1`;
    const raw = (await reader.getBuffer(key))!;
    t.equal(raw[0], 0x78, 'a zlib stream');
    const json = JSON.stringify(versions[0]![0]);
    t.ok(raw.length * 3 < json.length, `${raw.length} bytes stored for ${json.length} bytes of JSON`);
    t.same(JSON.parse(inflateSync(raw).toString('utf8')), versions[0]![0]);
    t.same(await store.get(sites[0]!, 1), versions[0]![0]);
  });

  t.test('the cache stays within its bound; every version stays readable from Redis', async (t) => {
    t.ok(store.cachedPolicies <= 2, `${store.cachedPolicies} cached`);
    for (const [i, ps] of versions.entries()) {
      for (const p of ps) t.same(await store.get(p.site, i + 1), p, `${p.site} v${i + 1}`);
    }
    t.ok(store.cachedPolicies <= 2, `${store.cachedPolicies} cached after reading them all`);
    t.equal(await store.get(sites[0]!, 99), null, 'never issued: null');
    t.equal((await store.policyAt(sites[0]!, 3))?.version, 3);
    t.equal((await store.policiesAt(2))?.size, sites.length);
  });

  t.test('a value from before compression (plain JSON) is still read', async (t) => {
    const legacy = { ...versions[0]![1]!, version: 1 };
    await reader.set(`meridian:policy:${legacy.site}:1`, JSON.stringify(legacy));
    // Push it out of the cache so the read goes to Redis.
    for (const p of versions[3]!) await store.get(p.site, 4);
    t.same(await store.get(legacy.site, 1), legacy);
  });

  t.test('a corrupt value is CTRL_ERR_POLICY_STORE naming the key; the store goes on', async (t) => {
    const site = sites[2]!;
    for (const [value, why] of [
      [Buffer.from([0x78, 0x9c, 1, 2, 3, 4]), /neither JSON nor zlib-deflated JSON/],
      [Buffer.from('{"site": tru'), /does not hold valid JSON/],
      [Buffer.from('{"hello": 1}'), /not a site policy/],
    ] as const) {
      await reader.set(`meridian:policy:${site}:2`, value);
      for (const p of versions[3]!) await store.get(p.site, 4);
      await t.rejects(store.get(site, 2), {
        code: 'CTRL_ERR_POLICY_STORE',
        message: `meridian:policy:${site}:2`,
      });
      await t.rejects(store.get(site, 2), { message: why });
    }
    const ps = issue(5);
    await store.commit(meta(5, ps), ps);
    t.same(await store.get(site, 5), ps[2], 'writes and reads go on');
    t.same(await store.get(site, 3), versions[2]![2]);
  });

  t.test('a restarted store loads versions and reads policies from Redis', async (t) => {
    const again = new RedisPolicyStore({ url: redis.url, log: quietLog });
    t.teardown(() => again.close());
    await again.start();
    t.same(
      again.versions().map((m) => m.version),
      [1, 2, 3, 4, 5],
    );
    t.equal(again.cachedPolicies, 0);
    t.same(await again.get(sites[1]!, 4), versions[3]![1]);
    t.same(again.current().get(sites[0]!), { version: 5, hash: compiled[0]!.hash });
  });
});
