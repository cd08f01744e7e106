/**
 * `meridian start` (what `npm start` runs): the quick start. As root with ip/nft/socat it builds
 * the namespace lab for the topology with its services (`labUp` + `labServices`: controller, one
 * agent per site applying policies), prints the API URL and token, and runs `lab down` on Ctrl-C.
 * Otherwise (or `--loopback`) it starts a controller and one edge agent
 * per site of the topology on loopback, waits until every agent is connected and the links have
 * measurements, prints the API URL and token, and runs until Ctrl-C.
 *
 * The network-namespace lab (`meridian lab up`, root) is the full data plane; this loopback variant
 * needs no privileges: probes between agents all cross 127.0.0.1, so link metrics are real
 * measurements of this host, not of the topology's links.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REFERENCE_TOPOLOGY_PATH, isTopologyError, loadTopology, type Topology } from '@meridian/topology';
import { OpsError } from './errors';
import { LAB_STATE_DIR, labDown, labPrerequisites, parseForwarding, type LabForwardingOption } from './lab';
import { exitCodeOf, formatLabDown, labSlotWaitMs, labUpInterruptible } from './lab-command';
import { labServices } from './lab-services';
import { startControllerDaemon, startDaemon, type Daemon } from './meridian-process';
import { sleep } from './service-process';

const USAGE = `usage: meridian start [--topology FILE] [--redis URL] [--influx URL]
                      [--forwarding auto|srv6|hop-by-hop]
                      [--loopback [--http HOST:PORT] [--grpc HOST:PORT]]

As root (with ip, nft and socat): builds the network-namespace lab for the topology (default the
reference one) with the controller and one agent per site (meridian lab up), showing progress on
stderr, prints the API URL and token, and removes the lab on Ctrl-C (meridian lab down). If an
agent cannot apply its policy, or on Ctrl-C during bring-up, it says why, removes the lab and exits
non-zero. --forwarding (default auto: SRv6 if this kernel takes SRv6 routes, else hop-by-hop) is
passed to the controller. Otherwise, or with --loopback (or
--http/--grpc, which only the loopback variant takes), it says why and runs a controller and one
edge agent per site on loopback. Tokens come from MERIDIAN_API_TOKEN / MERIDIAN_AGENT_TOKEN or are
generated for this run.`;

function say(line: string): void {
  process.stdout.write(line + '\n');
}

async function waitForAgents(http: string, token: string, sites: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let connected = 0;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://${http}/api/v1/agents`, {
        headers: { authorization: `Bearer ${token}` },
      });
      if (res.ok) {
        const body = (await res.json()) as { agents: { connected: boolean }[] };
        connected = body.agents.filter((a) => a.connected).length;
        if (connected >= sites) return connected;
      }
    } catch {
      // controller still coming up: try again
    }
    await sleep(200);
  }
  return connected;
}

/** The lab variant: `lab up` with services on the topology, `lab down` on SIGINT/SIGTERM. */
async function startLab(
  topology: Topology,
  values: { redis?: string; influx?: string },
  forwarding: LabForwardingOption,
): Promise<number> {
  const stateDir = LAB_STATE_DIR;
  say(
    `Building the namespace lab for ${topology.source} (${topology.sites.length} sites, ${topology.links.length} links)...`,
  );
  // Installed before bring-up and kept until the end: between bring-up's own handlers and these a
  // signal must never find none (the default action would kill this process and leave the lab),
  // and a second Ctrl-C during the teardown must not cut it short.
  let running = false;
  let stop: (() => void) | null = null;
  let stopRequested = false;
  const onSignal = (): void => {
    if (!running || stopRequested) return; // bring-up's handler (labUpInterruptible) has it
    stopRequested = true;
    stop?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const done = (code: number): number => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    return code;
  };
  let lab;
  try {
    lab = await labUpInterruptible(
      topology,
      {
        stateDir,
        forwarding,
        waitMs: labSlotWaitMs(),
        startServices: labServices({
          stateDir,
          ...(values.redis !== undefined ? { redisUrl: values.redis } : {}),
          ...(values.influx !== undefined ? { influxUrl: values.influx } : {}),
        }),
      },
      'meridian start',
    );
  } catch (err) {
    if (err instanceof OpsError) {
      process.stderr.write(`meridian start: ${err.code}: ${err.message}\n`);
      return done(exitCodeOf(err));
    }
    done(1);
    throw err;
  }
  running = true;
  const http = lab.controller.http ?? '';
  const token = lab.apiToken ?? '';
  say(
    `Meridian is running on the namespace lab (${lab.sites.length} sites, ${lab.links.length} links, forwarding ${lab.forwarding}); every agent applied its first policy.`,
  );
  say(`  API:   http://${http}/api/v1   (health: http://${http}/api/v1/health)`);
  say(`  token: ${token}`);
  say(`  try:   curl -s -H 'Authorization: Bearer ${token}' http://${http}/api/v1/routes?class=voice`);
  say(`         meridian lab status; meridian lab fault LINK down|clear`);
  say(`  logs:  ${stateDir}`);
  say('Ctrl-C removes the lab (meridian lab down).');
  // The lab's processes are detached and the signal handlers do not hold the event loop: without a
  // timer this process would end here, leaving the lab up and nobody to remove it on Ctrl-C.
  const keepAlive = setInterval(() => undefined, 3_600_000);
  return new Promise<number>((resolve) => {
    stop = (): void => {
      clearInterval(keepAlive);
      say('Removing the lab...');
      labDown({ stateDir }).then(
        (r) => {
          say(formatLabDown(r));
          resolve(done(r.survivors.length > 0 ? 1 : 0));
        },
        (err: unknown) => {
          process.stderr.write(`meridian start: lab down failed: ${String(err)}\n`);
          resolve(done(1));
        },
      );
    };
  });
}

/** `meridian start`; resolves to the exit code once stopped by SIGINT/SIGTERM. */
export async function startCommand(argv: string[]): Promise<number> {
  let values: {
    topology?: string;
    http?: string;
    grpc?: string;
    redis?: string;
    influx?: string;
    forwarding?: string;
    loopback?: boolean;
    help?: boolean;
  };
  try {
    values = parseArgs({
      args: argv,
      options: {
        topology: { type: 'string' },
        http: { type: 'string' },
        grpc: { type: 'string' },
        redis: { type: 'string' },
        influx: { type: 'string' },
        forwarding: { type: 'string' },
        loopback: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`meridian start: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help === true) {
    say(USAGE);
    return 0;
  }
  let forwarding: LabForwardingOption;
  try {
    forwarding = parseForwarding(values.forwarding);
  } catch (err) {
    process.stderr.write(`meridian start: ${(err as Error).message}\n`);
    return 2;
  }
  const topologyFile = values.topology ?? REFERENCE_TOPOLOGY_PATH;
  let topology: Topology;
  try {
    topology = loadTopology(topologyFile);
  } catch (err) {
    if (isTopologyError(err)) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }

  if (values.loopback !== true && values.http === undefined && values.grpc === undefined) {
    const why = await labPrerequisites();
    if (why === null) return startLab(topology, values, forwarding);
    say(`meridian start: not building the namespace lab (${why}); running the loopback variant.`);
  }

  const apiToken = process.env.MERIDIAN_API_TOKEN ?? randomBytes(24).toString('base64url');
  const agentToken = process.env.MERIDIAN_AGENT_TOKEN ?? randomBytes(24).toString('base64url');
  const env = { MERIDIAN_API_TOKEN: apiToken, MERIDIAN_AGENT_TOKEN: agentToken };
  const logDir = mkdtempSync(path.join(os.tmpdir(), 'meridian-start-'));
  const daemons: Daemon[] = [];
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    stopping = true;
    await Promise.all(daemons.filter((d) => d.name !== 'controller').map((d) => d.stop()));
    await Promise.all(daemons.filter((d) => d.name === 'controller').map((d) => d.stop()));
  };

  try {
    const args = ['--topology', topologyFile, '--http', values.http ?? '127.0.0.1:8080'];
    args.push('--grpc', values.grpc ?? '127.0.0.1:7400');
    if (values.redis !== undefined) args.push('--redis', values.redis);
    if (values.influx !== undefined) args.push('--influx', values.influx);
    // Only when asked: on loopback no agent applies policies, and auto cannot probe without root.
    if (values.forwarding !== undefined) args.push('--forwarding', forwarding);
    const { daemon, address } = await startControllerDaemon({
      args,
      env,
      logFile: path.join(logDir, 'controller.log'),
    });
    daemons.push(daemon);
    for (const site of topology.sites) {
      daemons.push(
        startDaemon(`agent ${site.id}`, {
          args: ['agent', '--site', site.id, '--controller', address.grpc, '--probe-listen', '127.0.0.1:0'],
          env,
          logFile: path.join(logDir, `agent-${site.id}.log`),
        }),
      );
    }
    const connected = await waitForAgents(address.http, apiToken, topology.sites.length, 30_000);
    say(`Meridian is running on loopback (${topology.sites.length} sites, ${topology.links.length} links).`);
    say(`  agents connected: ${connected}/${topology.sites.length}`);
    say(`  API:   http://${address.http}/api/v1   (health: http://${address.http}/api/v1/health)`);
    say(`  token: ${apiToken}`);
    say(`  try:   curl -s -H 'Authorization: Bearer ${apiToken}' http://${address.http}/api/v1/links`);
    say(`  logs:  ${logDir}`);
    say('Ctrl-C stops everything.');
  } catch (err) {
    await stopAll();
    if (err instanceof OpsError) {
      process.stderr.write(`meridian start: ${err.message}\nlogs: ${logDir}\n`);
      return 1;
    }
    throw err;
  }

  return new Promise<number>((resolve) => {
    const finish = (code: number): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      void stopAll().then(() => resolve(code));
    };
    const onSignal = (): void => finish(0);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    for (const d of daemons) {
      d.child.once('exit', (code, signal) => {
        if (stopping) return;
        process.stderr.write(
          `meridian start: ${d.name} exited (code ${code}, signal ${signal}); see ${logDir}\n`,
        );
        if (d.name === 'controller') finish(1);
      });
    }
  });
}
