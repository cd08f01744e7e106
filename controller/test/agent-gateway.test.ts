import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import {
  API_TOKEN,
  AGENT_TOKEN,
  eventually,
  hello,
  openRawStream,
  openStream,
  report,
  startController,
  type TestStream,
} from './helpers';
import type { ControllerMessage, ProbePlan } from '../src/index';

const isPlan = (m: ControllerMessage): m is { probePlan: ProbePlan } =>
  'probePlan' in m && m.probePlan !== undefined && m.probePlan !== null;

t.test('agent gateway over real gRPC', async (t) => {
  const c = await startController({ helloTimeoutMs: 500, maxMessageBytes: 64 * 1024 });
  t.teardown(() => c.stop());
  const port = c.ports.grpc;
  const base = `http://127.0.0.1:${c.ports.http}`;
  const alive = async (): Promise<boolean> => (await fetch(`${base}/api/v1/health`)).status === 200;

  t.test('wrong token: UNAUTHENTICATED, nothing registered', async (t) => {
    const s = openStream(port);
    s.call.write(hello('bj1', 9000, 'wrong'));
    const end = await s.ended;
    t.equal(end.code, grpc.status.UNAUTHENTICATED);
    t.equal(end.errorCode, 'CTRL_ERR_UNAUTHENTICATED');
    t.same(s.received, [], 'no welcome');
    t.notOk(c.gateway.connectedSites().includes('bj1'));
    s.close();
  });

  t.test('unknown site: NOT_FOUND', async (t) => {
    const s = openStream(port);
    s.call.write(hello('nowhere', 9000));
    t.equal((await s.ended).code, grpc.status.NOT_FOUND);
    s.close();
  });

  t.test('hello with a bad endpoint: INVALID_ARGUMENT', async (t) => {
    const s = openStream(port);
    const h = hello('sh2', 9000);
    h.hello.probeEndpoints = [{ host: '127.0.0.1', port: 0, link: '' }];
    s.call.write(h);
    const end = await s.ended;
    t.equal(end.code, grpc.status.INVALID_ARGUMENT);
    t.equal(end.errorCode, 'CTRL_ERR_INVALID_MESSAGE');
    t.match(end.details, /port 0 out of range/);
    s.close();
  });

  t.test('a second hello on a stream: ErrorNotice, stream kept', async (t) => {
    const s = openStream(port);
    t.teardown(() => s.close());
    s.call.write(hello('sh2', 9300));
    await s.waitFor((m) => 'welcome' in m && !!m.welcome);
    s.call.write(hello('sh2', 9300));
    const n = await s.waitFor((m) => 'error' in m && !!m.error);
    t.match(n, { error: { code: 'CTRL_ERR_UNEXPECTED_HELLO' } });
    t.ok(c.gateway.connectedSites().includes('sh2'));
    s.close();
    await eventually(() => !c.gateway.connectedSites().includes('sh2'));
  });

  t.test('first message not hello: FAILED_PRECONDITION', async (t) => {
    const s = openStream(port);
    s.call.write(report('bj1-sh1-a', 'sh1', 1, 5));
    const end = await s.ended;
    t.equal(end.code, grpc.status.FAILED_PRECONDITION);
    t.equal(end.errorCode, 'CTRL_ERR_HELLO_REQUIRED');
    s.close();
  });

  t.test('no hello in time: DEADLINE_EXCEEDED', async (t) => {
    const s = openStream(port);
    t.equal((await s.ended).code, grpc.status.DEADLINE_EXCEEDED);
    s.close();
  });

  t.test('garbage bytes: INVALID_ARGUMENT, controller alive', async (t) => {
    const s = openRawStream(port);
    s.call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]));
    const end = await s.ended;
    t.equal(end.code, grpc.status.INVALID_ARGUMENT);
    t.equal(end.errorCode, 'CTRL_ERR_MALFORMED_MESSAGE');
    s.close();
    t.ok(await alive());
  });

  t.test('oversized message: RESOURCE_EXHAUSTED, controller alive', async (t) => {
    const s = openRawStream(port);
    s.call.write(Buffer.alloc(200 * 1024, 0x41));
    t.equal((await s.ended).code, grpc.status.RESOURCE_EXHAUSTED);
    s.close();
    t.ok(await alive());
  });

  t.test('hello gets welcome and a probe plan; reports reach /api/v1/links', async (t) => {
    const sh1 = openStream(port);
    sh1.call.write(hello('sh1', 9101));
    await sh1.waitFor((m) => 'welcome' in m && !!m.welcome);
    const bj1 = openStream(port);
    t.teardown(() => {
      sh1.close();
      bj1.close();
    });
    bj1.call.write(hello('bj1', 9100));
    const plan = (await bj1.waitFor((m) => isPlan(m) && m.probePlan.targets.length > 0)) as {
      probePlan: ProbePlan;
    };
    t.match(plan.probePlan, { intervalMs: 100, downAfterMisses: 3 });
    t.same(
      plan.probePlan.targets.map((x) => `${x.link}>${x.peerSite}:${x.port}`).sort(),
      ['bj1-sh1-a>sh1:9101', 'bj1-sh1-b>sh1:9101', 'bj1-sh2>sh2:9300'],
      'bj1 (the a end) probes its links; sh2 disconnected but its last endpoint is kept',
    );
    // sh1 lost the bj1 links to bj1 (the a end) once bj1 connected; it keeps sh1-sh2 only if sh2 announced.
    bj1.call.write(report('bj1-sh1-a', 'sh1', 10, 20));
    const body = await eventually(async () => {
      const res = await fetch(`${base}/api/v1/links`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
      const j = (await res.json()) as {
        links: { id: string; up: boolean | null; samples: number; latencyMs: number }[];
      };
      const l = j.links.find((x) => x.id === 'bj1-sh1-a')!;
      return l.samples === 10 ? l : undefined;
    });
    t.equal(body.up, true);
    t.equal(body.latencyMs, 10, 'rtt/2');
    const agents = (await (
      await fetch(`${base}/api/v1/agents`, { headers: { authorization: `Bearer ${API_TOKEN}` } })
    ).json()) as {
      agents: { site: string; connected: boolean; address: string | null; lastSeen: string | null }[];
    };
    t.match(
      agents.agents.find((a) => a.site === 'bj1'),
      { connected: true, address: /127\.0\.0\.1/, lastSeen: /^\d{4}-/ },
    );

    t.test('report on a link the agent is not an end of: ErrorNotice, stream kept', async (t) => {
      bj1.call.write(report('sh1-sh2', 'sh2', 3, 5));
      const n = await bj1.waitFor((m) => 'error' in m && !!m.error);
      t.match(n, { error: { code: 'CTRL_ERR_INVALID_MESSAGE', message: /not an end/ } });
      bj1.call.write({
        report: {
          sentAtMs: 1,
          links: [{ link: 'bj1-sh1-b', peerSite: 'sh1', samples: [{ seq: 1, rttMs: NaN, fwdMs: -1 }] }],
        },
      });
      await eventually(() => bj1.received.filter((m) => 'error' in m && !!m.error).length >= 2);
      t.equal(c.estimator.snapshot('bj1-sh1-b')!.samples, 0, 'nothing of the bad report ingested');
      bj1.call.write(report('bj1-sh1-b', 'sh1', 2, 8));
      await eventually(() => c.estimator.snapshot('bj1-sh1-b')!.samples === 2);
      t.pass('stream still works');
    });

    t.test('both ends probe a link; the estimator takes its reporter (the a end) only', async (t) => {
      const plan = (await sh1.waitFor(
        (m) => isPlan(m) && m.probePlan.targets.some((x) => x.link === 'bj1-sh1-a'),
      )) as { probePlan: ProbePlan };
      t.match(
        plan.probePlan.targets.find((x) => x.link === 'bj1-sh1-a'),
        { peerSite: 'bj1', port: 9100 },
        'the b end probes it too (its own liveness verdict drives fast reroute)',
      );
      const before = c.estimator.snapshot('bj1-sh1-a')!.samples;
      const r0 = c.gateway.counters.reports;
      sh1.call.write(report('bj1-sh1-a', 'bj1', 5, 40));
      await eventually(() => c.gateway.counters.reports > r0);
      t.equal(
        c.estimator.snapshot('bj1-sh1-a')!.samples,
        before,
        'the b end’s measurements are not ingested',
      );
      bj1.call.write(report('bj1-sh1-a', 'sh1', 1, 20));
      await eventually(() => c.estimator.snapshot('bj1-sh1-a')!.samples === before + 1);
      t.pass('the reporter’s are');
    });

    t.test('duplicate site from another live process: ALREADY_EXISTS', async (t) => {
      const dup = openStream(port);
      dup.call.write(hello('bj1', 9200, AGENT_TOKEN, 'other-instance'));
      const end = await dup.ended;
      t.equal(end.code, grpc.status.ALREADY_EXISTS);
      t.equal(end.errorCode, 'CTRL_ERR_DUPLICATE_SITE');
      dup.close();
      t.ok(c.gateway.connectedSites().includes('bj1'), 'old stream kept');
    });

    t.test('same instance reconnecting replaces its old stream', async (t) => {
      const again = openStream(port);
      again.call.write(hello('bj1', 9100));
      await again.waitFor((m) => 'welcome' in m && !!m.welcome);
      const oldEnd = await bj1.ended;
      t.equal(oldEnd.code, grpc.status.ALREADY_EXISTS, 'old stream ended');
      again.close();
      await eventually(() => !c.gateway.connectedSites().includes('bj1'));
    });

    t.test('a disconnected a-end hands the reporting of its links to the b end', async (t) => {
      const plan2 = (await sh1.waitFor(
        (m) => isPlan(m) && m.probePlan.targets.some((x) => x.link === 'bj1-sh1-a'),
      )) as {
        probePlan: ProbePlan;
      };
      t.match(
        plan2.probePlan.targets.find((x) => x.link === 'bj1-sh1-a'),
        { peerSite: 'bj1', port: 9100 },
      );
      const before = c.estimator.snapshot('bj1-sh1-a')!.samples;
      sh1.call.write(report('bj1-sh1-a', 'bj1', 3, 40));
      await eventually(() => c.estimator.snapshot('bj1-sh1-a')!.samples === before + 3);
      t.pass('the b end’s measurements are ingested now');
    });
  });
});

t.test('a new agent process replaces a stream that went silent', async (t) => {
  const c = await startController({ agentStaleMs: 300 });
  t.teardown(() => c.stop());
  const old = openStream(c.ports.grpc);
  t.teardown(() => old.close());
  old.call.write(hello('bj1', 9100, AGENT_TOKEN, 'process-1'));
  await old.waitFor((m) => 'welcome' in m && !!m.welcome);
  await new Promise((r) => setTimeout(r, 500));
  const fresh = openStream(c.ports.grpc);
  t.teardown(() => fresh.close());
  fresh.call.write(hello('bj1', 9101, AGENT_TOKEN, 'process-2'));
  await fresh.waitFor((m) => 'welcome' in m && !!m.welcome);
  const end = await old.ended;
  t.equal(end.code, grpc.status.ALREADY_EXISTS, 'the silent stream was ended');
  t.match(end.details, /replaced/);
  t.same(c.gateway.connectedSites(), ['bj1']);
});

t.test('forwarding capabilities: kept per site, shown by the API, refused when malformed', async (t) => {
  const c = await startController();
  t.teardown(() => c.stop());
  const port = c.ports.grpc;
  const base = `http://127.0.0.1:${c.ports.http}`;
  type View = { site: string; connected: boolean; forwarding: unknown };
  const agentsApi = async (): Promise<View[]> =>
    (
      (await (
        await fetch(`${base}/api/v1/agents`, { headers: { authorization: `Bearer ${API_TOKEN}` } })
      ).json()) as { agents: View[] }
    ).agents.map((a) => ({ site: a.site, connected: a.connected, forwarding: a.forwarding }));
  const linux = {
    modes: ['hop-by-hop'],
    platform: 'linux',
    platformVersion: '6.18.44-fc-v1272',
    features: ['nftables', 'policy-routing'],
    missing: [
      'srv6-encap: Error: lwt encapsulation type not supported.',
      'srv6-end-x: Error: lwt encapsulation type not supported.',
      'srv6-end-dx4: Error: lwt encapsulation type not supported.',
    ],
  };
  const changed: { site: string; modes: readonly string[] | null; previous: readonly string[] | null }[] = [];
  c.gateway.on('capabilities-changed', (p, previous) =>
    changed.push({ site: p.site, modes: p.forwarding?.modes ?? null, previous: previous?.modes ?? null }),
  );
  const connect = async (forwarding: object | undefined, instance: string): Promise<TestStream> => {
    const s = openStream(port);
    const h = hello('bj1', 9100, AGENT_TOKEN, instance);
    s.call.write({ hello: { ...h.hello, ...(forwarding !== undefined ? { forwarding } : {}) } });
    await s.waitFor((m) => 'welcome' in m && !!m.welcome);
    return s;
  };

  t.equal((await agentsApi()).find((a) => a.site === 'bj1')?.forwarding, null, 'null before any hello');

  const s1 = await connect(linux, 'i-1');
  t.same(c.gateway.presence('bj1')?.forwarding, linux, 'kept in the presence record');
  t.same(
    (await agentsApi()).find((a) => a.site === 'bj1'),
    { site: 'bj1', connected: true, forwarding: linux },
  );
  t.same(changed, [{ site: 'bj1', modes: ['hop-by-hop'], previous: null }], 'changed: unknown -> hop-by-hop');

  s1.close();
  await eventually(() => c.gateway.presence('bj1')?.connected === false);
  t.same(
    (await agentsApi()).find((a) => a.site === 'bj1'),
    { site: 'bj1', connected: false, forwarding: linux },
    'last known capabilities kept while the agent is away',
  );

  // The same capabilities from a restarted agent: no change event (it would fire in the same
  // hello handling as agent-connected, before the welcome is written).
  const s2 = await connect(linux, 'i-2');
  t.equal(changed.length, 1, 'same capabilities: no event');
  s2.close();
  await eventually(() => c.gateway.presence('bj1')?.connected === false);

  const srv6 = { ...linux, modes: ['srv6', 'hop-by-hop'], missing: [] };
  const s3 = await connect(srv6, 'i-3');
  t.same(changed.at(-1), { site: 'bj1', modes: ['srv6', 'hop-by-hop'], previous: ['hop-by-hop'] });
  s3.close();
  await eventually(() => c.gateway.presence('bj1')?.connected === false);

  const bad: [string, object, RegExp][] = [
    [
      'an unknown mode',
      { ...linux, modes: ['mpls'] },
      /hello\.forwarding\.modes\[0\] 'mpls' is not a forwarding mode/,
    ],
    [
      'a repeated mode',
      { ...linux, modes: ['srv6', 'srv6'] },
      /hello\.forwarding\.modes\[1\] 'srv6' is repeated/,
    ],
    [
      'too many modes',
      { ...linux, modes: ['srv6', 'hop-by-hop', 'srv6'] },
      /modes has 3 entries \(expected <= 2\)/,
    ],
    [
      'a platform that is no name',
      { ...linux, platform: 'Linux 6' },
      /hello\.forwarding\.platform 'Linux 6'/,
    ],
    ['a long version', { ...linux, platformVersion: 'x'.repeat(129) }, /platform_version is 129 chars/],
    [
      'too many missing entries',
      { ...linux, missing: Array.from({ length: 33 }, (_, i) => `f${i}: no`) },
      /hello\.forwarding\.missing has 33 entries \(expected <= 32\)/,
    ],
    [
      'a long feature',
      { ...linux, features: ['f'.repeat(65)] },
      /hello\.forwarding\.features\[0\] is 65 chars/,
    ],
    ['a control character', { ...linux, missing: ['srv6-encap: a\nb'] }, /missing\[0\] .*control characters/],
  ];
  for (const [what, forwarding, message] of bad) {
    const s = openStream(port);
    const h = hello('sh2', 9300, AGENT_TOKEN, 'i-bad');
    s.call.write({ hello: { ...h.hello, forwarding } });
    const end = await s.ended;
    t.equal(end.code, grpc.status.INVALID_ARGUMENT, `${what}: INVALID_ARGUMENT`);
    t.equal(end.errorCode, 'CTRL_ERR_INVALID_MESSAGE');
    t.match(end.details, message, what);
    s.close();
  }
  t.equal(c.gateway.presence('sh2')?.forwarding, null, 'nothing of a refused hello kept');
  t.notOk(c.gateway.connectedSites().includes('sh2'));
  t.same(
    changed.map((x) => x.site),
    ['bj1', 'bj1'],
    'refused hellos changed nothing',
  );

  // An agent of an earlier release says nothing: unknown again (it may have been downgraded).
  const s4 = await connect(undefined, 'i-4');
  t.teardown(() => s4.close());
  t.equal(c.gateway.presence('bj1')?.forwarding, null);
  t.same(changed.at(-1), { site: 'bj1', modes: null, previous: ['srv6', 'hop-by-hop'] });
});
