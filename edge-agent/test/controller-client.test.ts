import t, { type Test } from 'tap';
import pino from 'pino';
import { EdgeAgent } from '../src/agent';
import { parseHostPort } from '../src/controller-client';
import type { AgentError } from '../src/errors';
import { agentCommand } from '../src/command-agent';
import { startTestController, type TestController } from './grpc-fixture';
import { testReflector, until, sleep } from './udp-fixtures';

const log = pino({ level: 'silent' });
const TOKEN = 'test-token';
const fastBackoff = { baseMs: 50, capMs: 400, healthyMs: 1000 };

function planFor(port: number) {
  return () => ({
    intervalMs: 20,
    timeoutMs: 60,
    downAfterMisses: 3,
    upAfterSuccesses: 2,
    reportIntervalMs: 200,
    targets: [{ link: 'L-AB', peerSite: 'B', host: '127.0.0.1', port }],
  });
}

async function agentFor(t: Test, ctl: TestController, token = TOKEN): Promise<EdgeAgent> {
  const agent = new EdgeAgent({ site: 'A', controller: ctl.address, token, log, backoff: fastBackoff });
  t.teardown(() => agent.stop());
  await agent.start();
  return agent;
}

t.test('parseHostPort', (t) => {
  t.same(parseHostPort('127.0.0.1:7400'), { host: '127.0.0.1', port: 7400 });
  t.same(parseHostPort('[::1]:0'), { host: '::1', port: 0 });
  t.equal(parseHostPort('127.0.0.1'), null);
  t.equal(parseHostPort('127.0.0.1:99999'), null);
  t.equal(parseHostPort('a:b:1'), null);
  t.end();
});

t.test('hello, welcome, plan; reports and a liveness event reach the controller', async (t) => {
  const peer = await testReflector();
  t.teardown(() => peer.close());
  const ctl = await startTestController({ token: TOKEN, plan: planFor(peer.port) });
  t.teardown(() => ctl.stop());
  const agent = await agentFor(t, ctl);
  t.ok(await until(() => ctl.of('event').length >= 1 && ctl.of('report').length >= 2));
  const hello = ctl.of('hello')[0]?.msg['hello'] as Record<string, unknown>;
  t.equal(hello['site'], 'A');
  t.equal(hello['token'], TOKEN);
  t.equal(hello['instanceId'], agent.instanceId);
  t.same(hello['probeEndpoints'], [{ host: '127.0.0.1', port: agent.probeEndpoint?.port, link: '' }]);
  t.ok((agent.probeEndpoint?.port ?? 0) > 0, 'probe port 0 became a real port');
  t.equal(hello['appliedPolicyVersion'], 0);
  const ev = ctl.of('event')[0]?.msg['event'] as { detailJson: string };
  t.match(ev, { kind: 'liveness', link: 'L-AB', peerSite: 'B', up: true });
  t.same((JSON.parse(ev.detailJson) as { streak: number }).streak, 2);
  const report = ctl.of('report').at(-1)?.msg['report'] as { links: { link: string; samples: unknown[] }[] };
  t.equal(report.links[0]?.link, 'L-AB');
  t.ok((report.links[0]?.samples.length ?? 0) > 0);
  t.ok(agent.connected);
});

t.test('a policy push is acked (no driver installed: AGENT_ERR_NO_DRIVER)', async (t) => {
  const peer = await testReflector();
  t.teardown(() => peer.close());
  const ctl = await startTestController({ token: TOKEN, plan: planFor(peer.port) });
  t.teardown(() => ctl.stop());
  const agent = await agentFor(t, ctl);
  t.ok(await until(() => agent.connected));
  ctl.push({ policy: { version: 7, hash: 'abc', policyJson: '{}' } });
  t.ok(await until(() => ctl.of('ack').length === 1));
  t.match(ctl.of('ack')[0]?.msg['ack'], {
    version: 7,
    hash: 'abc',
    ok: false,
    errorCode: 'AGENT_ERR_NO_DRIVER',
    appliedVersion: 0,
  });
});

t.test(
  'controller restart: the agent keeps probing, reconnects with backoff, sends the backlog events first',
  async (t) => {
    const peer = await testReflector();
    t.teardown(() => peer.close());
    const ctl = await startTestController({ token: TOKEN, plan: planFor(peer.port) });
    t.teardown(() => ctl.stop());
    const agent = await agentFor(t, ctl);
    t.ok(await until(() => ctl.of('event').length === 1));
    await ctl.stop();
    t.ok(await until(() => !agent.connected));
    // While the controller is away the peer goes silent: the agent still probes and notices.
    const downs: boolean[] = [];
    agent.on('liveness', (c) => downs.push(c.up));
    peer.silent(true);
    t.ok(await until(() => downs.includes(false)), 'liveness still evaluated while disconnected');
    await sleep(600);
    const attemptsWhileDown = agent.stats().client.connects;
    t.ok(attemptsWhileDown >= 3, `kept retrying (${attemptsWhileDown} attempts)`);
    t.ok(attemptsWhileDown < 40, 'but with backoff, not in a tight loop');
    const before = ctl.received.length;
    await ctl.restart();
    t.ok(await until(() => agent.connected, 5000), 'reconnected once the controller is back');
    t.ok(await until(() => ctl.received.slice(before).some((r) => r.msg.body === 'report')));
    const after = ctl.received.slice(before).map((r) => r.msg.body);
    t.equal(after[0], 'hello');
    t.equal(after[1], 'event', 'the buffered liveness event goes first');
    t.match(ctl.received[before + 1]?.msg['event'], { kind: 'liveness', up: false });
    t.equal(after[2], 'report', 'then the buffered reports');
    t.equal(agent.stats().client.reportsDropped, 0);
  },
);

t.test('wrong token: fatal AGENT_ERR_UNAUTHENTICATED after the first refusal, no retry loop', async (t) => {
  const ctl = await startTestController({ token: TOKEN, plan: planFor(9) });
  t.teardown(() => ctl.stop());
  const agent = new EdgeAgent({
    site: 'A',
    controller: ctl.address,
    token: 'wrong',
    log,
    backoff: fastBackoff,
  });
  t.teardown(() => agent.stop());
  const fatal = new Promise<AgentError>((resolve) => agent.on('fatal', resolve));
  await agent.start();
  const err = await fatal;
  t.equal(err.code, 'AGENT_ERR_UNAUTHENTICATED');
  t.match(err.message, /MERIDIAN_AGENT_TOKEN/);
  await sleep(300);
  t.equal(ctl.connects.length, 1, 'no reconnect after UNAUTHENTICATED');
});

t.test('meridian agent: bad input exits 2; a wrong token exits 2; SIGTERM exits 0', async (t) => {
  const saved = process.env['MERIDIAN_AGENT_TOKEN'];
  t.teardown(() => {
    if (saved === undefined) delete process.env['MERIDIAN_AGENT_TOKEN'];
    else process.env['MERIDIAN_AGENT_TOKEN'] = saved;
  });
  const errs: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = (s: string | Uint8Array) => (errs.push(String(s)), true);
  t.teardown(() => (process.stderr.write = write));

  delete process.env['MERIDIAN_AGENT_TOKEN'];
  t.equal(await agentCommand(['--site', 'A', '--controller', '127.0.0.1:1']), 2);
  t.match(errs.join(''), /MERIDIAN_AGENT_TOKEN is not set/);
  process.env['MERIDIAN_AGENT_TOKEN'] = TOKEN;
  t.equal(await agentCommand(['--controller', '127.0.0.1:1']), 2, 'missing --site');
  t.equal(await agentCommand(['--site', 'A', '--controller', 'nope']), 2, 'bad --controller');
  t.equal(await agentCommand(['--site', 'A', '--controller', '127.0.0.1:1', '--probe-listen', 'x']), 2);
  t.equal(await agentCommand(['--site', 'A', '--controller', '127.0.0.1:1', '--bogus']), 2, 'unknown flag');
  t.notMatch(errs.join(''), /at .*\.ts:\d+/, 'no stack traces');

  const ctl = await startTestController({ token: TOKEN, plan: planFor(9) });
  t.teardown(() => ctl.stop());
  process.env['MERIDIAN_AGENT_TOKEN'] = 'wrong';
  t.equal(
    await agentCommand(['--site', 'A', '--controller', ctl.address, '--log-level', 'silent']),
    2,
    'token refused',
  );
  t.match(errs.join(''), /AGENT_ERR_UNAUTHENTICATED/);

  process.env['MERIDIAN_AGENT_TOKEN'] = TOKEN;
  const run = agentCommand(['--site', 'A', '--controller', ctl.address, '--log-level', 'silent']);
  t.ok(await until(() => ctl.of('hello').length === 2));
  process.emit('SIGTERM', 'SIGTERM');
  t.equal(await run, 0, 'clean stop on SIGTERM');
});

t.test('pushes that a newer one overtook while they waited are never applied', async (t) => {
  const peer = await testReflector();
  t.teardown(() => peer.close());
  const ctl = await startTestController({ token: TOKEN, plan: planFor(peer.port) });
  t.teardown(() => ctl.stop());
  const seen: number[] = [];
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  let applied = { version: 0, hash: '' };
  const agent = new EdgeAgent({
    site: 'A',
    controller: ctl.address,
    token: TOKEN,
    log,
    backoff: fastBackoff,
    applier: {
      applied: () => applied,
      apply: async (push) => {
        seen.push(Number(push.version));
        if (seen.length === 1) await gate; // the device is busy with v1 while v2 and v3 arrive
        applied = { version: Number(push.version), hash: push.hash };
        return { ok: true, errorCode: '', errorMessage: '', appliedVersion: Number(push.version) };
      },
    },
  });
  t.teardown(() => agent.stop());
  await agent.start();
  t.ok(await until(() => agent.connected));
  ctl.push({ policy: { version: 1, hash: 'h1', policyJson: '{}' } });
  t.ok(await until(() => seen.length === 1), 'v1 is being applied');
  ctl.push({ policy: { version: 2, hash: 'h2', policyJson: '{}' } });
  ctl.push({ policy: { version: 3, hash: 'h3', policyJson: '{}' } });
  t.ok(await until(() => agent.stats().client.pushesSuperseded === 1), 'v2 was overtaken by v3');
  release();
  t.ok(await until(() => ctl.of('ack').length === 2));
  t.same(seen, [1, 3], 'v2 never reached the device');
  t.same(
    ctl.of('ack').map((a) => (a.msg['ack'] as { version: number }).version),
    [1, 3],
    'acks of v1 and v3 only',
  );
});
