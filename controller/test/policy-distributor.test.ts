/**
 * Distribution over real gRPC streams: acks, typed failures, ack timeouts, re-sends on reconnect,
 * late acks, and version numbers across controller restarts (Redis and embedded).
 */
import { inflateSync } from 'node:zlib';
import { Redis } from 'ioredis';
import t from 'tap';
import { eventually, ops, report, sleep, smallTopology, startController } from './helpers';
import { allApplied, connectAgents, planFor, PolicyAgent } from './policy-helpers';
import type { CompiledSitePolicy } from '../src/policy-compiler';

const SITES = ['bj1', 'sh1', 'sh2'];
const plan = planFor(smallTopology());

/** bj1's agent reports 5 lost probes on bj1-sh1-a (down) or 5 answered ones (up). */
function flap(agent: PolicyAgent, up: boolean): void {
  agent.stream!.call.write(up ? report('bj1-sh1-a', 'sh1', 5, 20) : report('bj1-sh1-a', 'sh1', 0, 0, 5));
}

t.test('acks, failures, reconnects and late acks', async (t) => {
  const c = await startController({ addressing: plan });
  t.teardown(() => c.stop());
  const agents = await connectAgents(c, SITES);
  t.teardown(() => {
    for (const a of agents.values()) a.close();
  });
  const bj1 = agents.get('bj1')!;
  await eventually(() => allApplied(c, SITES), 10_000, 'first version applied');
  const v1 = c.distributor.statusOf('bj1')!;
  t.equal(v1.version, 1);
  t.equal(bj1.applied.version, 1);

  t.test('a refusing agent: failed with its code, its previous version stays in force', async (t) => {
    bj1.mode = { kind: 'fail', code: 'AGENT_ERR_DRIVER', message: 'nft said no' };
    flap(bj1, false);
    const st = await eventually(
      () => {
        const s = c.distributor.statusOf('bj1')!;
        return s.version > 1 && s.status === 'failed' ? s : undefined;
      },
      10_000,
      'bj1 failed',
    );
    t.same(st.error, { code: 'AGENT_ERR_DRIVER', message: 'nft said no' });
    t.equal(st.appliedVersion, 1, 'the agent says v1 is still in force');
    t.equal(bj1.applied.version, 1);
    await eventually(
      () =>
        c.distributor.statusOf('sh1')!.status === 'applied' &&
        c.distributor.statusOf('sh1')!.version === st.version,
    );
    const view = c.distributor.status().find((s) => s.site === 'bj1')!;
    t.equal(view.status, 'failed');
  });

  t.test('the agent reconnects: the current version is re-sent and applied', async (t) => {
    const target = c.distributor.statusOf('bj1')!.version;
    bj1.mode = { kind: 'ok' };
    bj1.close();
    await eventually(() => c.distributor.statusOf('bj1')!.connected === false);
    await bj1.connect();
    await bj1.waitPush((p) => p.version === target);
    await eventually(() => c.distributor.statusOf('bj1')!.status === 'applied', 10_000, 'applied');
    t.equal(bj1.applied.version, target);
    t.equal(c.distributor.statusOf('bj1')!.error, null);
  });

  t.test('a hello with the current version and hash: applied, nothing pushed', async (t) => {
    const n = bj1.pushes.length;
    bj1.close();
    await eventually(() => c.distributor.statusOf('bj1')!.connected === false);
    await bj1.connect();
    await eventually(() => c.distributor.statusOf('bj1')!.connected);
    await sleep(200);
    t.equal(bj1.pushes.length, n, 'no push');
    t.equal(c.distributor.statusOf('bj1')!.status, 'applied');
  });

  t.test('late acks of older versions change nothing', async (t) => {
    const before = c.distributor.statusOf('bj1')!;
    const ignored = c.distributor.counters.ignoredAcks;
    bj1.ack({ version: 1, hash: v1.hash, ok: true, appliedVersion: 1 });
    bj1.ack({ version: 1, hash: v1.hash, ok: false, errorCode: 'AGENT_ERR_DRIVER', appliedVersion: 1 });
    bj1.ack({ version: before.version, hash: before.hash, ok: false, errorCode: 'AGENT_ERR_DRIVER' });
    await eventually(() => c.distributor.counters.ignoredAcks === ignored + 3, 5000, 'acks seen');
    const after = c.distributor.statusOf('bj1')!;
    t.equal(after.status, 'applied');
    t.equal(after.version, before.version);
    t.equal(after.appliedVersion, before.appliedVersion);
    t.equal(after.error, null);
  });

  t.test('an ack of an outdated push still moves appliedVersion up (never down)', async (t) => {
    const before = c.distributor.statusOf('bj1')!;
    const acks = c.distributor.counters.acks;
    bj1.ack({ version: 1, hash: v1.hash, ok: true, appliedVersion: before.appliedVersion + 1 });
    bj1.ack({ version: 1, hash: v1.hash, ok: true, appliedVersion: 1 });
    await eventually(() => c.distributor.counters.acks === acks + 2, 5000, 'acks seen');
    const after = c.distributor.statusOf('bj1')!;
    t.equal(
      after.appliedVersion,
      before.appliedVersion + 1,
      'moved up by the first ack, not back by the second',
    );
    t.equal(after.status, before.status, 'the target status is untouched');
    t.equal(after.version, before.version);
  });
});

t.test('transient failures are re-pushed with backoff; a refusal of the policy itself is not', async (t) => {
  const c = await startController({ addressing: plan, policy: { retryBaseMs: 100, retryMaxMs: 400 } });
  t.teardown(() => c.stop());
  const agents = await connectAgents(c, SITES);
  t.teardown(() => {
    for (const a of agents.values()) a.close();
  });
  await eventually(() => allApplied(c, SITES), 10_000, 'first version applied');
  const bj1 = agents.get('bj1')!;
  const sh1 = agents.get('sh1')!;
  bj1.mode = { kind: 'fail', code: 'AGENT_ERR_DRIVER_UNREACHABLE', message: 'device dropped the session' };
  sh1.mode = { kind: 'fail', code: 'AGENT_ERR_POLICY_INVALID', message: 'does not fit the device' };
  flap(bj1, false);
  const target = await eventually(
    () => {
      const s = c.distributor.statusOf('bj1')!;
      return s.version > 1 && s.status === 'failed' ? s : undefined;
    },
    10_000,
    'bj1 failed',
  );
  t.match(target.error, { code: 'AGENT_ERR_DRIVER_UNREACHABLE' }, 'failed, the error shown');
  // Re-pushed 100, 200, 400, 400 ms after each failure: at least 4 pushes of the version in ~1.5 s.
  await eventually(
    () => bj1.pushes.filter((p) => p.version === target.version).length >= 4,
    10_000,
    're-pushed',
  );
  t.ok(c.distributor.counters.retries >= 3, `${c.distributor.counters.retries} retries`);
  t.equal(bj1.applied.version, 1, 'still the previous version in force');
  // The device is back: the next re-push applies.
  bj1.mode = { kind: 'ok' };
  await eventually(() => c.distributor.statusOf('bj1')!.status === 'applied', 10_000, 'bj1 applied');
  t.equal(bj1.applied.version, target.version);
  t.equal(c.distributor.statusOf('bj1')!.error, null);
  const pushes = bj1.pushes.length;
  // sh1 refused the content: pushed once, not again.
  const sh1Target = c.distributor.statusOf('sh1')!;
  t.equal(sh1Target.status, 'failed');
  t.equal(sh1Target.error?.code, 'AGENT_ERR_POLICY_INVALID');
  await sleep(800);
  t.equal(
    sh1.pushes.filter((p) => p.version === sh1Target.version).length,
    1,
    'the refused policy: one push',
  );
  t.equal(bj1.pushes.length, pushes, 'no push after applied');
});

t.test(
  'an agent that never acks: re-sent, then failed with CTRL_ERR_POLICY_ACK_TIMEOUT; a late ack still counts',
  async (t) => {
    // No re-push after the failure during this test (retryBaseMs): the push count is checked.
    const c = await startController({
      addressing: plan,
      policy: { ackTimeoutMs: 150, maxAttempts: 2, retryBaseMs: 60_000 },
    });
    t.teardown(() => c.stop());
    const agents = await connectAgents(c, SITES);
    t.teardown(() => {
      for (const a of agents.values()) a.close();
    });
    await eventually(() => allApplied(c, SITES), 10_000, 'first version applied');
    const sh1 = agents.get('sh1')!;
    sh1.mode = { kind: 'silent' };
    flap(agents.get('bj1')!, false);
    const st = await eventually(
      () => {
        const s = c.distributor.statusOf('sh1')!;
        return s.version > 1 && s.status === 'failed' ? s : undefined;
      },
      10_000,
      'sh1 failed',
    );
    t.equal(st.error?.code, 'CTRL_ERR_POLICY_ACK_TIMEOUT');
    t.equal(st.attempts, 2);
    t.equal(sh1.pushes.filter((p) => p.version === st.version).length, 2, 'pushed twice');
    sh1.ack({ version: st.version, hash: st.hash, ok: true, appliedVersion: st.version });
    await eventually(
      () => c.distributor.statusOf('sh1')!.status === 'applied',
      5000,
      'late ack of the current version',
    );
  },
);

t.test('with Redis: versions survive a controller restart and are never reused', async (t) => {
  const redis = await ops.startRedis();
  t.teardown(() => redis.dispose());
  const reader = new Redis(redis.url);
  t.teardown(() => reader.disconnect());

  const a = await startController({ addressing: plan, redisUrl: redis.url });
  t.teardown(() => a.stop());
  let agents = await connectAgents(a, SITES);
  await eventually(() => allApplied(a, SITES), 10_000, 'v1 applied');
  flap(agents.get('bj1')!, false);
  await eventually(() => a.policies.versions().length === 2 && allApplied(a, SITES), 10_000, 'v2 applied');
  const held = new Map([...agents].map(([s, ag]) => [s, { ...ag.applied }]));
  for (const ag of agents.values()) ag.close();
  await a.stop();

  t.same(
    (await reader.zrange('meridian:policy:versions', '0', '-1')).map(
      (m) => (JSON.parse(m) as { version: number }).version,
    ),
    [1, 2],
  );
  t.equal(await reader.get('meridian:policy:seq'), '2');
  const cur = await reader.hgetall('meridian:policy:current');
  t.same(JSON.parse(cur.bj1!), { version: 2, hash: held.get('bj1')!.hash });
  const stored = JSON.parse(
    inflateSync((await reader.getBuffer('meridian:policy:bj1:1'))!).toString('utf8'),
  ) as {
    version: number;
    site: string;
  };
  t.equal(stored.version, 1);
  t.equal(stored.site, 'bj1');

  // A new controller on the same Redis: link state is back to nominal, so bj1's content is v1's again
  // but it is issued as a NEW number above 2.
  const b = await startController({ addressing: plan, redisUrl: redis.url });
  t.teardown(() => b.stop());
  t.same(
    b.policies
      .versions()
      .map((m) => m.version)
      .slice(0, 2),
    [1, 2],
    'earlier versions loaded',
  );
  const v3 = b.policies.versions().at(-1)!;
  t.equal(v3.version, 3, 'the counter went on');
  const bj1v3 = await b.policies.get('bj1', 3);
  const bj1v1 = await b.policies.get('bj1', 1);
  t.equal(bj1v3?.hash, bj1v1?.hash, 'same content as v1, new number');
  agents = new Map();
  for (const s of SITES) {
    const ag = new PolicyAgent(s, b.ports.grpc);
    ag.applied = held.get(s)!;
    await ag.connect();
    agents.set(s, ag);
  }
  t.teardown(() => {
    for (const ag of agents.values()) ag.close();
  });
  await eventually(() => allApplied(b, SITES), 10_000, 'applied after restart');
  t.equal(agents.get('bj1')!.applied.version, 3);
});

t.test('embedded: a restarted controller re-issues above the versions its agents hold', async (t) => {
  const a = await startController({ addressing: plan });
  t.teardown(() => a.stop());
  const agents = await connectAgents(a, SITES);
  await eventually(() => allApplied(a, SITES), 10_000, 'v1');
  flap(agents.get('bj1')!, false);
  await eventually(() => a.policies.versions().length === 2 && allApplied(a, SITES), 10_000, 'v2');
  const bj1 = agents.get('bj1')!;
  for (const ag of agents.values()) ag.close();
  await a.stop();
  const b = await startController({ addressing: plan });
  t.teardown(() => b.stop());
  t.equal(b.policies.versions().at(-1)!.version, 1, 'a fresh counter');
  const again = new PolicyAgent('bj1', b.ports.grpc);
  again.applied = { ...bj1.applied };
  t.equal(again.applied.version, 2);
  await again.connect();
  t.teardown(() => again.close());
  const push = await again.waitPush((p) => p.version > 2);
  t.equal(push.version, 3);
  await eventually(
    () => b.distributor.statusOf('bj1')!.status === 'applied' && b.distributor.statusOf('bj1')!.version === 3,
  );
  t.equal(b.policies.versions().at(-1)!.reason, 'reissue');
});

t.test(
  'a hello with the target number but other content: re-issued under a new number, never re-used',
  async (t) => {
    const c = await startController({ addressing: plan });
    t.teardown(() => c.stop());
    t.equal(c.distributor.statusOf('sh2')!.version, 1);
    const a = new PolicyAgent('sh2', c.ports.grpc);
    a.applied = { version: 1, hash: 'f'.repeat(64) }; // v1 of an earlier, embedded controller
    await a.connect();
    t.teardown(() => a.close());
    const push = await a.waitPush(() => true);
    t.equal(push.version, 2, 'not v1 again');
    t.equal(push.hash, c.distributor.statusOf('sh2')!.hash);
    await eventually(() => c.distributor.statusOf('sh2')!.status === 'applied');
    t.notOk(
      a.pushes.some((p) => p.version === 1),
      'v1 never sent with other content',
    );
  },
);

t.test(
  'Redis down at start: no version until it is back, then issued and applied; a Redis that comes back empty does not re-use numbers',
  async (t) => {
    const redis = await ops.startRedis();
    t.teardown(() => redis.dispose());
    await redis.stop();
    const c = await startController({ addressing: plan, redisUrl: redis.url, routeLoop: { retryMs: 200 } });
    t.teardown(() => c.stop());
    const agents = await connectAgents(c, SITES);
    t.teardown(() => {
      for (const a of agents.values()) a.close();
    });
    t.equal(c.policies.versions().length, 0, 'nothing issued without Redis');
    t.equal(c.routeLoop.cycles()[0]?.error?.code, 'CTRL_ERR_POLICY_STORE');
    await redis.restart();
    await eventually(() => allApplied(c, SITES), 20_000, 'v1 applied once Redis is back');
    t.equal(c.distributor.statusOf('bj1')!.version, 1);

    await redis.stop();
    await redis.restart(); // empty again
    const reader = new Redis(redis.url);
    t.teardown(() => reader.disconnect());
    await eventually(
      async () => Number(await reader.get('meridian:policy:seq')) >= 1,
      20_000,
      'counter raised',
    );
    flap(agents.get('bj1')!, false);
    await eventually(
      () => c.policies.versions().length === 2 && allApplied(c, SITES),
      20_000,
      'next version',
    );
    t.equal(c.policies.versions().at(-1)!.version, 2, 'not 1 again');
  },
);

t.test(
  'hop-by-hop: a head-end is pushed after the transit sites of its batch (make before break)',
  async (t) => {
    const c = await startController({ addressing: plan });
    t.teardown(() => c.stop());
    const agents = await connectAgents(c, SITES);
    t.teardown(() => {
      for (const a of agents.values()) a.close();
    });
    await eventually(() => allApplied(c, SITES), 10_000, 'first version applied');
    const bj1 = agents.get('bj1')!;
    const sh1 = agents.get('sh1')!;
    /** The sites' current policies as a new version: bj1's own routes changed, sh1's transit only. */
    const current = (await c.policies.policiesAt(c.distributor.statusOf('bj1')!.version))!;
    const batch = async (changed: number): Promise<CompiledSitePolicy[]> => {
      const version = (await c.policies.nextVersion()) + 1000;
      const head = current.get('bj1')!;
      const transit = current.get('sh1')!;
      const headEnd = {
        ...head,
        version,
        hash: `${head.hash.slice(0, 60)}${String(version % 10000).padStart(4, '0')}`,
        routes: head.routes.map((r, i) =>
          i === changed ? { ...r, forwarding: 'hop-by-hop' as const, status: 'degraded' as const } : r,
        ),
      };
      const transitOnly = {
        ...transit,
        version,
        hash: `${transit.hash.slice(0, 60)}${String(version % 10000).padStart(4, '0')}`,
        transit: [...transit.transit],
      };
      t.ok(head.routes.length > 0, 'bj1 has routes to change');
      return [headEnd, transitOnly];
    };

    await t.test('the head-end waits for the transit site to apply', async (t) => {
      const [headEnd, transitOnly] = await batch(0);
      const pushed = c.distributor.distribute([headEnd!, transitOnly!]);
      t.same(pushed, ['sh1'], 'only the transit site is pushed at once');
      const push = await bj1.waitPush((p) => Number(p.version) === headEnd!.version);
      t.equal(
        c.distributor.statusOf('sh1')!.status,
        'applied',
        `the head-end got v${Number(push.version)} once the transit site had applied it`,
      );
      await eventually(() => c.distributor.statusOf('bj1')!.status === 'applied', 10_000, 'bj1 applied');
    });

    await t.test('a transit site that goes away does not hold the head-end', async (t) => {
      const [headEnd, transitOnly] = await batch(1);
      sh1.mode = { kind: 'silent' };
      t.same(c.distributor.distribute([headEnd!, transitOnly!]), ['sh1']);
      await sh1.waitPush((p) => Number(p.version) === transitOnly!.version);
      sh1.close();
      await bj1.waitPush((p) => Number(p.version) === headEnd!.version);
      t.equal(c.distributor.statusOf('sh1')!.connected, false, 'released when sh1 disconnected');
    });
  },
);
