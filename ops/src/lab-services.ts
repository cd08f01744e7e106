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
 * - Given {@link LabServicesContext} by `labUp`, every process is in the lab's state file as soon as
 *   it is spawned (so an interrupted or killed `lab up` leaves `lab down` everything to stop), the
 *   controller gets `--forwarding <the lab's mode>`, and progress is reported: controller
 *   listening, agents connected n/N (`GET /api/v1/agents`), policies applied n/N.
 * - `startServices` resolves once every agent has applied a first policy (`GET /api/v1/policies`),
 *   so `lab up` returns a lab that forwards along the computed paths. It fails fast instead of
 *   waiting out its timeout: when a service process exits, and when an agent refuses its policy
 *   ({@link policyFailure}: at once for a refusal that a retry cannot fix, after a few retries for a
 *   transient one), naming the site, the agent's error code and message and what to do.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { OpsError } from './errors';
import { freePort } from './free-port';
import {
  LAB_STATE_DIR,
  checkInterrupted,
  readLabState,
  type LabForwarding,
  type LabServicesContext,
  type LabState,
} from './lab';
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

/**
 * The last error a service logged (pino JSON: level ≥ 40, its `code` and `msg`), or else its last
 * line (a crash or a refused flag prints plain text), for a message that says why it stopped.
 */
export function lastLoggedError(logFile: string): string | null {
  let text: string;
  try {
    text = readFileSync(logFile, 'utf8').slice(-65_536);
  } catch {
    return null;
  }
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const o = JSON.parse(lines[i] ?? '') as {
        level?: number;
        code?: string;
        msg?: string;
        err?: { code?: string; message?: string };
      };
      if ((o.level ?? 0) < 40) continue;
      const code = o.code ?? o.err?.code;
      const msg = [o.msg, o.err?.message].filter((x) => x !== undefined && x !== '').join(': ');
      return `${code !== undefined ? `${code}: ` : ''}${msg}`.slice(0, 500);
    } catch {
      return (lines[i] ?? '').trim().slice(0, 500);
    }
  }
  return null;
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
  readonly attempts?: number;
  readonly updatedAt?: string;
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

/**
 * Refusals a later push may fix (a device under load, an ack that came too late): the controller
 * re-pushes these (its `TRANSIENT_FAILURES`, kept in step by hand: ops does not depend on the
 * controller). Anything else is the policy against this device, and retrying cannot help.
 */
const TRANSIENT_POLICY_FAILURES: ReadonlySet<string> = new Set([
  'AGENT_ERR_DRIVER_APPLY',
  'AGENT_ERR_DRIVER_UNREACHABLE',
  'AGENT_ERR_DRIVER_STATE',
  'AGENT_ERR_STATE_DIR',
  'AGENT_ERR_APPLY_FAILED',
  'CTRL_ERR_POLICY_ACK_TIMEOUT',
]);
/** The kernel's words for an `encap seg6` / `encap seg6local` route it cannot do. */
const SRV6_REFUSAL = /lwt encapsulation type not supported/i;
/** A transient refusal seen this many times (the controller re-pushes 1, 2, 4 s apart) is final. */
const TRANSIENT_FAILURES_TO_GIVE_UP = 3;
/** ...or failing this long without a success in between. */
const TRANSIENT_FAILURE_WINDOW_MS = 20_000;

/** Per site, the refusals seen so far (kept by the caller across polls). */
export type PolicyFailureHistory = Map<string, { readonly firstAt: number; readonly seen: Set<string> }>;

/** An agent that cannot apply its policy: what it said and what to do. */
export interface PolicyFailure {
  readonly site: string;
  readonly code: string;
  readonly message: string;
  readonly hint: string;
}

/** What to do about an agent's refusal (the part of the message after its own words). */
export function policyFailureHint(
  code: string,
  message: string,
  forwarding: LabForwarding | null,
  logFile: string,
): string {
  if (SRV6_REFUSAL.test(message) || (code === 'AGENT_ERR_DRIVER_UNSUPPORTED' && /srv6|seg6/i.test(message))) {
    return forwarding === 'hop-by-hop'
      ? `the lab asked for hop-by-hop forwarding but the agent was given SRv6 routes: this build's controller or agent does not do hop-by-hop forwarding yet; see ${logFile}`
      : 'this kernel has no SRv6; run with --forwarding hop-by-hop (or auto, which probes the kernel)';
  }
  switch (code) {
    case 'AGENT_ERR_DRIVER_UNSUPPORTED':
      return `the site's data plane lacks a feature the policy needs (named above); see ${logFile}`;
    case 'AGENT_ERR_POLICY_INVALID':
    case 'AGENT_ERR_POLICY_STALE':
      return `the agent refuses what the controller compiled (controller and agent from different builds?); see ${logFile} and controller.log beside it`;
    case 'CTRL_ERR_POLICY_ACK_TIMEOUT':
      return `the agent never answered the push (overloaded machine, or the agent is stuck); see ${logFile}`;
    case 'AGENT_ERR_DRIVER_APPLY':
    case 'AGENT_ERR_DRIVER_STATE':
    case 'AGENT_ERR_DRIVER_UNREACHABLE':
      return `the kernel refused a change in the site's namespace (its words above); see ${logFile}`;
    default:
      return `see ${logFile}`;
  }
}

/**
 * The first site whose agent cannot apply its first policy, or null. A refusal a retry cannot fix
 * (or the kernel's SRv6 refusal) is final at once; a transient one after
 * {@link TRANSIENT_FAILURES_TO_GIVE_UP} refusals or {@link TRANSIENT_FAILURE_WINDOW_MS}. Sites that
 * applied a policy already are not waited for, so they are not judged. `history` is updated.
 */
export function policyFailure(
  statuses: readonly LabPolicyStatus[],
  waitingFor: ReadonlySet<string>,
  history: PolicyFailureHistory,
  now: number,
): { site: string; code: string; message: string } | null {
  for (const a of statuses) {
    if (!waitingFor.has(a.site)) continue;
    if (a.status !== 'failed' || a.error === undefined || a.error === null) {
      if (a.status === 'applied') history.delete(a.site);
      continue;
    }
    const { code, message } = a.error;
    const h = history.get(a.site) ?? { firstAt: now, seen: new Set<string>() };
    history.set(a.site, h);
    // One refusal per push: a push changes the version, the attempt count or the time of the change.
    h.seen.add(`${a.version ?? ''}|${a.attempts ?? ''}|${a.updatedAt ?? ''}`);
    if (
      !TRANSIENT_POLICY_FAILURES.has(code) ||
      SRV6_REFUSAL.test(message) ||
      h.seen.size >= TRANSIENT_FAILURES_TO_GIVE_UP ||
      now - h.firstAt >= TRANSIENT_FAILURE_WINDOW_MS
    ) {
      return { site: a.site, code, message };
    }
  }
  return null;
}

/**
 * Bring-up's wait: until every site's agent has applied a first policy, reporting agents connected
 * and policies applied as they change, and failing as soon as `check` throws, an agent cannot apply
 * its policy ({@link policyFailure}) or `signal` is aborted.
 */
async function waitForFirstPolicies(
  http: string,
  apiToken: string,
  sites: readonly string[],
  timeoutMs: number,
  hooks: {
    progress: (p: { stage: 'agents' | 'policies'; done: number; total: number }) => void;
    signal: AbortSignal | undefined;
    check: () => void;
    fail: (f: { site: string; code: string; message: string }) => Error;
  },
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const history: PolicyFailureHistory = new Map();
  let connected = -1;
  let applied = -1;
  let last: LabPolicyStatus[] = [];
  for (;;) {
    checkInterrupted(hooks.signal);
    hooks.check();
    const [agents, policies] = await Promise.all([
      api<{ agents: { site: string; connected: boolean }[] }>(http, apiToken, '/api/v1/agents'),
      labPolicyStatus(http, apiToken),
    ]);
    if (agents !== null) {
      const n = agents.agents.filter((a) => a.connected && sites.includes(a.site)).length;
      if (n !== connected) hooks.progress({ stage: 'agents', done: (connected = n), total: sites.length });
    }
    if (policies !== null) {
      last = policies;
      const done = (s: string): boolean => (policies.find((a) => a.site === s)?.appliedVersion ?? 0) > 0;
      const n = sites.filter(done).length;
      if (n !== applied) hooks.progress({ stage: 'policies', done: (applied = n), total: sites.length });
      if (n === sites.length) return;
      const waiting = new Set(sites.filter((s) => !done(s)));
      const f = policyFailure(policies, waiting, history, Date.now());
      if (f !== null) throw hooks.fail(f);
    }
    if (Date.now() >= deadline) {
      const bad = sites
        .map((s) => last.find((x) => x.site === s) ?? { site: s, status: 'unknown', connected: false })
        .filter((a) => !('appliedVersion' in a) || (a.appliedVersion ?? 0) === 0)
        .map((a) => `${a.site}: ${a.status}${a.connected ? '' : ' (not connected)'}`);
      throw new OpsError(
        'OPS_ERR_SERVICE_START',
        `agents did not apply a first policy within ${timeoutMs} ms: ${bad.join(', ')}`,
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
  ctx?: LabServicesContext,
) => Promise<{ http: string; grpc: string; apiToken: string; pids: { pid: number; what: string }[] }> {
  return async (plan, state, ctx) => {
    const dir = ctx?.stateDir ?? options.stateDir ?? LAB_STATE_DIR;
    const signal = ctx?.signal;
    const progress = ctx?.onProgress ?? ((): void => undefined);
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
      checkInterrupted(signal);
      const r = { ...rec, pid: spawnService(dir, rec) };
      ctx?.recordPid({ pid: r.pid, what: WHAT });
      services.push(r);
      save();
      return r;
    };
    const logOf = (name: string): string => path.join(dir, `${name}.log`);
    const exited = (r: ServiceRecord, when: string): OpsError => {
      const last = lastLoggedError(logOf(r.name));
      const who = r.name.startsWith('agent-') ? `the agent of site ${r.name.slice(6)}` : `the ${r.name}`;
      return new OpsError(
        'OPS_ERR_SERVICE_START',
        `${who} exited ${when}${last !== null ? `: ${last}` : ''}; see ${logOf(r.name)}`,
      );
    };
    try {
      const ctlArgs = ['controller', '--topology', topologyFile, '--grpc', `0.0.0.0:${grpcPort}`];
      ctlArgs.push('--http', http, '--addressing', path.join(dir, 'plan.json'));
      // Link probes decide how fast a dead link is declared (3 misses) and alarmed to every site.
      ctlArgs.push('--probe-interval', String(options.probeIntervalMs ?? 30), '--probe-timeout', '100');
      if (options.redisUrl !== undefined) ctlArgs.push('--redis', options.redisUrl);
      if (options.influxUrl !== undefined) ctlArgs.push('--influx', options.influxUrl);
      if (ctx !== undefined) ctlArgs.push('--forwarding', ctx.forwarding);
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
        checkInterrupted(signal);
        if (!alive(controller.pid)) throw exited(controller, 'at start');
        if (Date.now() > healthDeadline) {
          throw new OpsError('OPS_ERR_SERVICE_START', `the controller did not answer on ${http} within 30 s`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      progress({ stage: 'controller', http });
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
      await waitForFirstPolicies(
        http,
        apiToken,
        plan.sites.map((s) => s.id),
        options.readyTimeoutMs ?? 180_000,
        {
          progress,
          signal,
          check: () => {
            const dead = services.find((r) => !alive(r.pid));
            if (dead !== undefined) throw exited(dead, 'during bring-up');
          },
          fail: (f) =>
            new OpsError(
              'OPS_ERR_AGENT_POLICY',
              `the agent of site ${f.site} cannot apply its policy: ${f.code}: ${f.message.slice(0, 600)}; ${policyFailureHint(f.code, f.message, ctx?.forwarding ?? null, logOf(`agent-${f.site}`))}`,
            ),
        },
      );
      return { http, grpc: file.grpc, apiToken, pids: services.map((r) => ({ pid: r.pid, what: WHAT })) };
    } catch (err) {
      // Without labUp's context, its clean-up does not know these processes.
      if (ctx === undefined) await Promise.all(services.map((r) => stopPid(r.pid, 2000)));
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
