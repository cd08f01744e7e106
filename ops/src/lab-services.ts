/**
 * The lab's services (`LabUpOptions.startServices`): the controller in the root namespace and one
 * `meridian agent` per site inside its namespace, as real processes that outlive `lab up`.
 *
 * - Controller: gRPC on `0.0.0.0:<free port>` (reached by each site at the root end `.1` of its
 *   management veth: 127.0.0.1 of the root namespace is not reachable from a namespace; the lab's
 *   management addresses are the only non-loopback addresses it is reached by), HTTP API on
 *   `127.0.0.1:<free port>`, `--topology` the lab's file, `--addressing <state dir>/plan.json`,
 *   Redis/InfluxDB when given (embedded otherwise). Tokens are generated per lab (or taken from
 *   MERIDIAN_API_TOKEN / MERIDIAN_AGENT_TOKEN).
 * - Agent of site s: `ip netns exec mrd-s meridian agent --site s --controller <mgmt .1>:<grpc>
 *   --probe-listen 0.0.0.0:7500 --driver linux --state-dir <state dir>/agent-s --announce
 *   LINK=ADDR…`: its probe reflector answers on every address of the namespace, peers probe each
 *   link at this end's address on that link (so link telemetry crosses the emulated link), and
 *   per-path probes reach it at its host address. `fastReroute: false` adds `--no-fast-reroute`
 *   (controller-only failover, for the benchmark's comparison).
 * - Processes are detached (logs: `<state dir>/<name>.log`) and recorded in the lab state's pids,
 *   so `lab down` stops them; their command lines are kept in `<state dir>/services.json` (mode
 *   0600, it holds the tokens) so {@link restartLabService} can restart one (tests: agent and
 *   controller restarts).
 * - `startServices` resolves once every agent has acked the first policy (`GET /api/v1/policies`:
 *   every site `applied`), so `lab up` returns a lab that forwards along the computed paths.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { OpsError } from './errors';
import { freePort } from './free-port';
import { LAB_STATE_DIR, readLabState, type LabState } from './lab';
import type { LabPlan } from './lab-plan';
import { MERIDIAN_BIN } from './meridian-process';

/** The probe reflector port of every lab agent (namespaces are private, so one port fits all). */
export const LAB_PROBE_PORT = 7500;

export interface LabServicesOptions {
  /** The lab's state directory (as given to labUp). */
  readonly stateDir?: string;
  readonly redisUrl?: string;
  readonly influxUrl?: string;
  /** Per-path probes and local fast reroute in the agents (default true). */
  readonly fastReroute?: boolean;
  /** Per-path probe period (agent `--frr-interval`, default the agent's: 20 ms). */
  readonly frrIntervalMs?: number;
  /**
   * Per-path probes per second for the whole lab, shared by the agents (`--frr-max-pps`, default
   * 300). Every lab packet crosses userspace relays on two shared cores: at 20 ms per path the
   * reference topology's ~300 paths would send 15,000 probes/s and starve everything, telemetry
   * included. Link alarms carry the fast failover; per-path probes are the end-to-end backstop.
   */
  readonly pathProbeBudgetPps?: number;
  /** Link probe period of the controller's probe plan (`--probe-interval`, default 30 ms). */
  readonly probeIntervalMs?: number;
  /** How long to wait for every agent to apply its first policy (default 180 s). */
  readonly readyTimeoutMs?: number;
  /** pino level of the services (default info). */
  readonly logLevel?: string;
}

export interface ServiceRecord {
  readonly name: string;
  pid: number;
  readonly netns: string | null;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
}

interface ServicesFile {
  readonly http: string;
  readonly grpc: string;
  readonly apiToken: string;
  services: ServiceRecord[];
}

const SERVICES_FILE = 'services.json';
const WHAT = 'meridian.js';

function spawnService(dir: string, rec: Omit<ServiceRecord, 'pid'>): number {
  const log = openSync(path.join(dir, `${rec.name}.log`), 'a');
  const node = [process.execPath, MERIDIAN_BIN, ...rec.args];
  const [cmd, args] =
    rec.netns !== null ? ['ip', ['netns', 'exec', rec.netns, ...node]] : [node[0]!, node.slice(1)];
  const child = spawn(cmd, args, {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, ...rec.env },
  });
  closeSync(log);
  child.unref();
  if (child.pid === undefined)
    throw new OpsError('OPS_ERR_SERVICE_START', `${rec.name}: cannot start ${cmd}`);
  return child.pid;
}

function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(WHAT);
  } catch {
    return false;
  }
}

async function stopPid(pid: number, graceMs = 5000): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

async function api<T>(http: string, token: string, p: string): Promise<T | null> {
  try {
    const res = await fetch(`http://${http}${p}`, { headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) return null;
    return (await res.json()) as T;
  } catch {
    return null;
  }
}

/** Per-site policy status as `GET /api/v1/policies` reports it. */
export interface LabPolicyStatus {
  readonly site: string;
  readonly status: string;
  readonly version: number | null;
  readonly appliedVersion: number | null;
  readonly connected: boolean;
  /** Why the site's current version failed (the agent's typed error, or an ack timeout). */
  readonly error?: { readonly code: string; readonly message: string } | null;
}

/** The agents' policy status, or null when the controller does not answer. */
export async function labPolicyStatus(http: string, apiToken: string): Promise<LabPolicyStatus[] | null> {
  const body = await api<{ agents: LabPolicyStatus[] }>(http, apiToken, '/api/v1/policies');
  return body?.agents ?? null;
}

/**
 * Waits until every site's agent has applied its current target policy (or, with `firstOnly`, any
 * policy: while measurements arrive the controller may issue new versions faster than a large
 * site applies them); returns the last status.
 */
export async function waitForPoliciesApplied(
  http: string,
  apiToken: string,
  sites: readonly string[],
  timeoutMs: number,
  check?: () => void,
  firstOnly = false,
): Promise<LabPolicyStatus[]> {
  const deadline = Date.now() + timeoutMs;
  let last: LabPolicyStatus[] = [];
  for (;;) {
    check?.();
    last = (await labPolicyStatus(http, apiToken)) ?? last;
    const ok = sites.every((s) => {
      const a = last.find((x) => x.site === s);
      return a !== undefined && (firstOnly || a.status === 'applied') && (a.appliedVersion ?? 0) > 0;
    });
    if (ok) return last;
    if (Date.now() >= deadline) {
      const bad = sites
        .map((s) => last.find((x) => x.site === s) ?? { site: s, status: 'unknown', connected: false })
        .filter((a) => !('appliedVersion' in a) || a.status !== 'applied')
        .map((a) => {
          const err = 'error' in a && a.error ? ` ${a.error.code}: ${a.error.message.slice(0, 300)}` : '';
          return `${a.site}: ${a.status}${a.connected ? '' : ' (not connected)'}${err}`;
        });
      throw new OpsError(
        'OPS_ERR_SERVICE_START',
        `agents did not apply their ${firstOnly ? 'first ' : 'current '}policy within ${timeoutMs} ms: ${bad.join(', ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Builds the `startServices` hook of {@link labUp} (see the file header). */
export function labServices(
  options: LabServicesOptions = {},
): (
  plan: LabPlan,
  state: LabState,
) => Promise<{ http: string; grpc: string; apiToken: string; pids: { pid: number; what: string }[] }> {
  return async (plan, state) => {
    const dir = options.stateDir ?? LAB_STATE_DIR;
    const topologyFile = state.topologySource;
    if (!existsSync(topologyFile)) {
      throw new OpsError(
        'OPS_ERR_SERVICE_START',
        `the controller needs the topology as a file; '${topologyFile}' is not one`,
      );
    }
    const apiToken = process.env['MERIDIAN_API_TOKEN'] ?? randomBytes(24).toString('base64url');
    const agentToken = process.env['MERIDIAN_AGENT_TOKEN'] ?? randomBytes(24).toString('base64url');
    const level = options.logLevel ?? 'info';
    const httpPort = await freePort('127.0.0.1');
    const grpcPort = await freePort('0.0.0.0');
    const http = `127.0.0.1:${httpPort}`;
    const services: ServiceRecord[] = [];
    // Bound to every address; from the root namespace it is 127.0.0.1:PORT, from site s `<.1 of s>:PORT`.
    const file: ServicesFile = { http, grpc: `127.0.0.1:${grpcPort}`, apiToken, services };
    const save = (): void =>
      writeFileSync(path.join(dir, SERVICES_FILE), JSON.stringify(file, null, 2), { mode: 0o600 });
    const start = (rec: Omit<ServiceRecord, 'pid'>): ServiceRecord => {
      const r = { ...rec, pid: spawnService(dir, rec) };
      services.push(r);
      save();
      return r;
    };
    try {
      const ctlArgs = ['controller', '--topology', topologyFile, '--grpc', `0.0.0.0:${grpcPort}`];
      ctlArgs.push('--http', http, '--addressing', path.join(dir, 'plan.json'));
      // Link probes decide how fast a dead link is declared (3 misses) and alarmed to every site.
      ctlArgs.push('--probe-interval', String(options.probeIntervalMs ?? 30), '--probe-timeout', '100');
      if (options.redisUrl !== undefined) ctlArgs.push('--redis', options.redisUrl);
      if (options.influxUrl !== undefined) ctlArgs.push('--influx', options.influxUrl);
      const controller = start({
        name: 'controller',
        netns: null,
        args: ctlArgs,
        env: {
          MERIDIAN_API_TOKEN: apiToken,
          MERIDIAN_AGENT_TOKEN: agentToken,
          MERIDIAN_LOG_LEVEL: level,
          MERIDIAN_TOKENS_FILE: path.join(dir, 'tokens'),
        },
      });
      const healthDeadline = Date.now() + 30_000;
      while ((await api(http, apiToken, '/api/v1/health')) === null) {
        if (!alive(controller.pid)) {
          throw new OpsError(
            'OPS_ERR_SERVICE_START',
            `the controller exited at start; see ${path.join(dir, 'controller.log')}`,
          );
        }
        if (Date.now() > healthDeadline) {
          throw new OpsError('OPS_ERR_SERVICE_START', `the controller did not answer on ${http} within 30 s`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      for (const s of plan.sites) {
        const args = ['agent', '--site', s.id, '--controller', `${s.mgmtRoot}:${grpcPort}`];
        args.push('--probe-listen', `0.0.0.0:${LAB_PROBE_PORT}`, '--driver', 'linux');
        args.push('--state-dir', path.join(dir, `agent-${s.id}`), '--log-level', level);
        for (const l of plan.links) {
          if (l.a === s.id) args.push('--announce', `${l.id}=${l.a4}`);
          if (l.b === s.id) args.push('--announce', `${l.id}=${l.b4}`);
        }
        if (options.fastReroute === false) args.push('--no-fast-reroute');
        if (options.frrIntervalMs !== undefined) args.push('--frr-interval', String(options.frrIntervalMs));
        const budget = options.pathProbeBudgetPps ?? 300;
        args.push('--frr-max-pps', String(Math.max(1, Math.floor(budget / plan.sites.length))));
        start({ name: `agent-${s.id}`, netns: s.netns, args, env: { MERIDIAN_AGENT_TOKEN: agentToken } });
      }
      await waitForPoliciesApplied(
        http,
        apiToken,
        plan.sites.map((s) => s.id),
        options.readyTimeoutMs ?? 180_000,
        () => {
          const dead = services.find((r) => !alive(r.pid));
          if (dead !== undefined) {
            throw new OpsError(
              'OPS_ERR_SERVICE_START',
              `${dead.name} exited; see ${path.join(dir, `${dead.name}.log`)}`,
            );
          }
        },
        true,
      );
      return { http, grpc: file.grpc, apiToken, pids: services.map((r) => ({ pid: r.pid, what: WHAT })) };
    } catch (err) {
      // labUp's clean-up does not know these processes yet.
      await Promise.all(services.map((r) => stopPid(r.pid, 2000)));
      throw err;
    }
  };
}

function readServices(dir: string): ServicesFile {
  try {
    return JSON.parse(readFileSync(path.join(dir, SERVICES_FILE), 'utf8')) as ServicesFile;
  } catch {
    throw new OpsError('OPS_ERR_LAB_STATE', `no lab services recorded in ${dir} (lab up without services?)`);
  }
}

/** The services of the lab in `stateDir` (name, pid, netns), for tests and tools. */
export function labServiceList(stateDir = LAB_STATE_DIR): { name: string; pid: number; running: boolean }[] {
  return readServices(stateDir).services.map((s) => ({ name: s.name, pid: s.pid, running: alive(s.pid) }));
}

/**
 * Stops a lab service (`controller` or `agent-<site>`) with SIGTERM (SIGKILL with `kill: true`),
 * and starts it again with the same command line unless `restart` is false. Keeps the lab state's
 * pids current so `lab down` stops the new process.
 */
export async function restartLabService(
  name: string,
  options: { stateDir?: string; kill?: boolean; restart?: boolean } = {},
): Promise<{ pid: number | null }> {
  const dir = options.stateDir ?? LAB_STATE_DIR;
  const file = readServices(dir);
  const rec = file.services.find((s) => s.name === name);
  if (rec === undefined) throw new OpsError('OPS_ERR_BAD_ARGS', `no lab service '${name}'`);
  if (options.kill === true && alive(rec.pid)) process.kill(rec.pid, 'SIGKILL');
  await stopPid(rec.pid);
  let pid: number | null = null;
  if (options.restart !== false) {
    pid = spawnService(dir, rec);
    const state = readLabState(dir);
    if (state !== null) {
      state.pids.push({ pid, what: WHAT });
      writeFileSync(path.join(dir, 'state.json'), JSON.stringify(state, null, 2));
    }
    rec.pid = pid;
  }
  writeFileSync(path.join(dir, SERVICES_FILE), JSON.stringify(file, null, 2), { mode: 0o600 });
  return { pid };
}

/** Starts a service that was stopped with `restart: false`. */
export async function startLabService(name: string, options: { stateDir?: string } = {}): Promise<number> {
  const r = await restartLabService(name, { ...options, restart: true });
  return r.pid ?? 0;
}
