// The edge agent against the real Controller (in process, embedded stores, gRPC on loopback):
// the contract between the two ends, not a stand-in server.
import t, { type Test } from 'tap';
import pino from 'pino';
import type { Topology } from '@meridian/topology';
import { Controller } from '@meridian/controller';
import { EdgeAgent } from '../src/agent';
import type { AgentError } from '../src/errors';
import { until } from './udp-fixtures';

const log = pino({ level: 'silent' });
const TOKEN = 'agent-e2e-token';
const LINK = 'bj1-sh1';

const topology: Topology = {
  version: 1,
  source: '<agent-e2e>',
  sites: [
    { id: 'bj1', kind: 'dc', region: 'cn-north', prefixes: ['10.1.0.0/16'] },
    { id: 'sh1', kind: 'dc', region: 'cn-east', prefixes: ['10.2.0.0/16'] },
  ],
  links: [
    {
      id: LINK,
      a: 'bj1',
      b: 'sh1',
      transport: 'fiber',
      capacityMbps: 10_000,
      latencyMs: 14,
      jitterMs: 1,
      lossPct: 0,
      cost: 10,
    },
  ],
  classes: [
    {
      id: 'voice',
      sla: { maxLatencyMs: 150, maxJitterMs: 30, maxLossPct: 1 },
      objective: 'latency',
      maxUtilPct: 80,
      priority: 1,
    },
  ],
  devices: [],
};

async function controller(t: Test): Promise<{ ctl: Controller; address: string; up: () => boolean | null }> {
  const ctl = new Controller({
    topology,
    apiToken: 'api',
    agentToken: TOKEN,
    grpc: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    log,
    probe: { timeoutMs: 300 },
  });
  const ports = await ctl.start();
  t.teardown(() => ctl.stop());
  let up: boolean | null = null;
  ctl.on('link-change', (c) => {
    if (c.id === LINK) up = c.state.up;
  });
  return { ctl, address: `127.0.0.1:${ports.grpc}`, up: () => up };
}

function agent(t: Test, site: string, address: string, token = TOKEN): EdgeAgent {
  const a = new EdgeAgent({ site, controller: address, token, log, backoff: { baseMs: 50, capMs: 500 } });
  t.teardown(() => a.stop());
  return a;
}

t.test(
  'two agents on loopback: the link goes up, down when the peer stops, up when it is back',
  async (t) => {
    const { address, up } = await controller(t);
    const bj1 = agent(t, 'bj1', address);
    let sh1 = agent(t, 'sh1', address);
    await bj1.start();
    await sh1.start();
    t.ok(await until(() => up() === true, 10_000), 'link up at the controller');
    t.ok(bj1.connected && sh1.connected);
    await sh1.stop();
    t.ok(await until(() => up() === false, 10_000), 'link down at the controller after the peer stopped');
    sh1 = agent(t, 'sh1', address);
    await sh1.start();
    t.ok(await until(() => up() === true, 10_000), 'link up again with the restarted peer (new probe port)');
    const s = bj1.stats().probe.received + sh1.stats().probe.received;
    t.ok(s > 0, 'probes answered');
  },
);

t.test(
  'the real controller refuses a wrong token: the agent stops with AGENT_ERR_UNAUTHENTICATED',
  async (t) => {
    const { address } = await controller(t);
    const a = agent(t, 'bj1', address, 'not-the-token');
    const fatal = new Promise<AgentError>((resolve) => a.on('fatal', resolve));
    await a.start();
    t.equal((await fatal).code, 'AGENT_ERR_UNAUTHENTICATED');
    t.notOk(a.connected);
  },
);
