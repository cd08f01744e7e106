/**
 * `meridian controller [--topology FILE] [--grpc HOST:PORT] [--http HOST:PORT] [--redis URL]
 * [--influx URL] [--snmp-interval MS] [--addressing FILE] [--forwarding auto|srv6|hop-by-hop] ...`: runs the controller until SIGINT/SIGTERM.
 *
 * Tokens come from MERIDIAN_API_TOKEN / MERIDIAN_AGENT_TOKEN; an unset one is taken from the
 * tokens file (`$MERIDIAN_TOKENS_FILE`, else `$XDG_RUNTIME_DIR/meridian/tokens`, else
 * `~/.meridian/tokens`) or generated and written there (mode 0600), and the path is printed.
 * Once listening it prints one line `meridian controller: grpc HOST:PORT http HOST:PORT` (the
 * bound ports, also with port 0); logs are JSON lines (pino) on stdout.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { loadTopology, REFERENCE_TOPOLOGY_PATH, isTopologyError, type Topology } from '@meridian/topology';
import { Controller, type HostPort } from './controller';
import { loadAddressingPlan } from './addressing-file';
import { attachMediaSteering } from './media-service';
import { ControllerError } from './errors';
import { FORWARDING_CHOICES, type AddressingPlan, type ForwardingChoice } from './policy-compiler';
import { SnmpPoller } from './snmp-poller';

const USAGE = `usage: meridian controller [--topology FILE] [--grpc HOST:PORT] [--http HOST:PORT]
                          [--redis URL] [--influx URL] [--snmp-interval MS] [--addressing FILE]
                          [--media-standby on|off] [--probe-interval MS] [--probe-timeout MS]
                          [--quality-interval MS] [--forwarding auto|srv6|hop-by-hop]

  --topology FILE     topology YAML (default: the reference topology)
  --grpc HOST:PORT    agent gRPC listen address (default 127.0.0.1:7400; port 0 = any free port)
  --http HOST:PORT    HTTP API listen address (default 127.0.0.1:8080; port 0 = any free port)
  --redis URL         redis://HOST:PORT for live state (default: embedded in-memory state)
  --influx URL        http://HOST:PORT of InfluxDB 1.x for history (default: embedded in-memory)
  --snmp-interval MS  SNMP poll period per device (default 10000)
  --addressing FILE   addressing plan JSON (the lab's plan.json): compile and push policies to agents
                      (default: none; routes are computed, no policy is distributed)
  --probe-interval MS link probe period per link end in the agents' probe plan (default 100);
                      a link is declared down after 3 lost probes, so this sets failure detection;
                      loss is measured over the last ~10 s of probes
  --probe-timeout MS  a link probe unanswered this long is lost (default 100; above the longest RTT)
  --quality-interval MS  routes move for measured quality (latency, jitter, loss, a link back up)
                      no more than once per this period (default 5000); a link going down moves
                      them immediately. Every move is a policy version every affected router applies
  --forwarding MODE   auto (default): a route is SRv6 when its head-end and every site of its
                      paths reported SRv6 in their agent's hello, hop-by-hop otherwise (a kernel
                      without SRv6, RouterOS); srv6 or hop-by-hop: every route in that mode
  --media-standby on|off  keep a warm standby egress leg per media session (default on: an egress
                      failure then costs ~50 ms of audio instead of ~300 ms, see BENCHMARKS.md)

environment: MERIDIAN_API_TOKEN (HTTP bearer token), MERIDIAN_AGENT_TOKEN (agents, media nodes);
generated and written to a tokens file when unset.`;

/** Parses `HOST:PORT` (`[v6]:PORT` too). */
export function parseHostPort(flag: string, value: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (m === null || !(port >= 0 && port <= 65535)) {
    throw new ControllerError(
      'CTRL_ERR_BAD_OPTION',
      `${flag} '${value}' is not HOST:PORT (e.g. 127.0.0.1:7400, port 0..65535)`,
    );
  }
  return { host: m[1] ?? m[2]!, port };
}

function checkUrl(flag: string, value: string, protocols: readonly string[]): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new ControllerError(
      'CTRL_ERR_BAD_OPTION',
      `${flag} '${value}' is not a URL (e.g. ${protocols[0]}//127.0.0.1:PORT)`,
    );
  }
  if (!protocols.includes(u.protocol)) {
    throw new ControllerError(
      'CTRL_ERR_BAD_OPTION',
      `${flag} '${value}': expected a ${protocols.join(' or ')} URL`,
    );
  }
  return value;
}

/** Where generated tokens are kept. */
export function tokensFilePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MERIDIAN_TOKENS_FILE) return env.MERIDIAN_TOKENS_FILE;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'meridian', 'tokens');
  return path.join(os.homedir(), '.meridian', 'tokens');
}

/**
 * Tokens from the environment, else from the tokens file, else generated and saved there.
 * Returns the file path when the file was used.
 */
export function resolveTokens(env: NodeJS.ProcessEnv = process.env): {
  apiToken: string;
  agentToken: string;
  file: string | undefined;
} {
  let api = env.MERIDIAN_API_TOKEN || undefined;
  let agent = env.MERIDIAN_AGENT_TOKEN || undefined;
  if (api && agent) return { apiToken: api, agentToken: agent, file: undefined };
  const file = tokensFilePath(env);
  const saved: Record<string, string> = {};
  if (existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = /^(MERIDIAN_[A-Z_]+)=(\S+)$/.exec(line.trim());
      if (m) saved[m[1]!] = m[2]!;
    }
  }
  const gen = (): string => randomBytes(24).toString('base64url');
  api ??= saved.MERIDIAN_API_TOKEN ?? gen();
  agent ??= saved.MERIDIAN_AGENT_TOKEN ?? gen();
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `MERIDIAN_API_TOKEN=${api}\nMERIDIAN_AGENT_TOKEN=${agent}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { apiToken: api, agentToken: agent, file };
}

async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        topology: { type: 'string' },
        grpc: { type: 'string', default: '127.0.0.1:7400' },
        http: { type: 'string', default: '127.0.0.1:8080' },
        redis: { type: 'string' },
        influx: { type: 'string' },
        'snmp-interval': { type: 'string' },
        addressing: { type: 'string' },
        'media-standby': { type: 'string', default: 'on' },
        'probe-interval': { type: 'string' },
        'probe-timeout': { type: 'string' },
        'quality-interval': { type: 'string' },
        forwarding: { type: 'string', default: 'auto' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`meridian controller: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const standby = values['media-standby'];
  if (standby !== 'on' && standby !== 'off') {
    process.stderr.write(
      `meridian controller: --media-standby: expected on or off, got '${standby}'\n${USAGE}\n`,
    );
    return 2;
  }
  const forwarding = values.forwarding;
  if (!(FORWARDING_CHOICES as readonly string[]).includes(forwarding)) {
    process.stderr.write(
      `meridian controller: --forwarding: expected ${FORWARDING_CHOICES.join(', ')}, got '${forwarding}'\n${USAGE}\n`,
    );
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let topology: Topology;
  let grpcAddr: HostPort;
  let httpAddr: HostPort;
  let snmpInterval: number | undefined;
  const probe: { intervalMs?: number; timeoutMs?: number } = {};
  let qualityIntervalMs = 5000;
  let addressing: AddressingPlan | undefined;
  try {
    grpcAddr = parseHostPort('--grpc', values.grpc);
    httpAddr = parseHostPort('--http', values.http);
    if (values.redis !== undefined) checkUrl('--redis', values.redis, ['redis:', 'rediss:']);
    if (values.influx !== undefined) checkUrl('--influx', values.influx, ['http:', 'https:']);
    if (values['snmp-interval'] !== undefined) {
      snmpInterval = Number(values['snmp-interval']);
      if (!Number.isInteger(snmpInterval) || snmpInterval < 100) {
        throw new ControllerError(
          'CTRL_ERR_BAD_OPTION',
          `--snmp-interval '${values['snmp-interval']}' (expected an integer >= 100, ms)`,
        );
      }
    }
    for (const [flag, field] of [
      ['probe-interval', 'intervalMs'],
      ['probe-timeout', 'timeoutMs'],
    ] as const) {
      const text = values[flag];
      if (text === undefined) continue;
      const ms = Number(text);
      if (!Number.isInteger(ms) || ms < 10 || ms > 60_000) {
        throw new ControllerError(
          'CTRL_ERR_BAD_OPTION',
          `--${flag} '${text}' (expected an integer in 10..60000, ms)`,
        );
      }
      probe[field] = ms;
    }
    if (values['quality-interval'] !== undefined) {
      qualityIntervalMs = Number(values['quality-interval']);
      if (!Number.isInteger(qualityIntervalMs) || qualityIntervalMs < 0 || qualityIntervalMs > 3_600_000) {
        throw new ControllerError(
          'CTRL_ERR_BAD_OPTION',
          `--quality-interval '${values['quality-interval']}' (expected an integer in 0..3600000, ms)`,
        );
      }
    }
    topology = loadTopology(values.topology ?? REFERENCE_TOPOLOGY_PATH);
    if (values.addressing !== undefined) addressing = loadAddressingPlan(values.addressing, topology);
  } catch (err) {
    if (err instanceof ControllerError || isTopologyError(err)) {
      process.stderr.write(`meridian controller: ${err.message}\n`);
      return 2;
    }
    throw err;
  }

  const log = pino({ level: process.env.MERIDIAN_LOG_LEVEL ?? 'info' });
  const tokens = resolveTokens();
  if (tokens.file) process.stdout.write(`meridian controller: tokens in ${tokens.file}\n`);
  const devices = topology.devices.filter((d) => d.snmp !== undefined);
  const snmp =
    devices.length > 0
      ? new SnmpPoller({ devices, log, ...(snmpInterval !== undefined ? { intervalMs: snmpInterval } : {}) })
      : undefined;
  const controller = new Controller({
    topology,
    apiToken: tokens.apiToken,
    agentToken: tokens.agentToken,
    grpc: grpcAddr,
    http: httpAddr,
    log,
    ...(values.redis !== undefined ? { redisUrl: values.redis } : {}),
    ...(values.influx !== undefined ? { influxUrl: values.influx } : {}),
    ...(snmp ? { snmp } : {}),
    ...(addressing ? { addressing } : {}),
    ...(Object.keys(probe).length > 0 ? { probe } : {}),
    routeLoop: { qualityIntervalMs },
    forwarding: forwarding as ForwardingChoice,
    // Loss is judged over ~10 s of probes from both ends whatever the period: fewer samples make a
    // 0.5 % link read 0 % or 2 % by chance, and a class SLA of 1 % would flap with it.
    ...(probe.intervalMs !== undefined
      ? { estimator: { lossWindow: Math.max(100, Math.round(20_000 / probe.intervalMs)) } }
      : {}),
  });
  // Media nodes share the agents' gRPC server and token; sessions persist in the same Redis.
  const media = attachMediaSteering(controller, {
    agentToken: tokens.agentToken,
    apiToken: tokens.apiToken,
    log,
    warmStandby: standby === 'on',
    ...(values.redis !== undefined ? { redisUrl: values.redis } : {}),
  });
  try {
    const ports = await controller.start();
    const fmt = (h: string): string => (h.includes(':') ? `[${h}]` : h);
    process.stdout.write(
      `meridian controller: grpc ${fmt(grpcAddr.host)}:${ports.grpc} http ${fmt(httpAddr.host)}:${ports.http}` +
        ` redis ${values.redis ? controller.health().redis : 'embedded'} influx ${values.influx ? controller.health().influx : 'embedded'}\n`,
    );
  } catch (err) {
    media.close();
    await controller.stop().catch(() => undefined);
    if (err instanceof ControllerError) {
      process.stderr.write(`meridian controller: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string): void => {
      log.info({ signal: sig }, 'shutting down');
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  media.close();
  await controller.stop();
  return 0;
}

/** `meridian controller`. */
export const controllerCommand = run;
