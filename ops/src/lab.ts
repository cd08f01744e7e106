/**
 * The network-namespace lab (root only): one namespace `mrd-<site>` per site, one emulated
 * point-to-point link per topology link, a host address per site, a management path per site to
 * the root namespace (where the controller listens).
 *
 * Per site i (plan from the controller's `defaultAddressingPlan`, so lab and compiler agree):
 * - `lo` carries the host address (first address of the site's first prefix, /32) and the SRv6
 *   tunnel source; forwarding and SRv6 are enabled.
 * - veth `mm<i>` (root, 10.254.0.0/16 /30 number i, .1) ↔ `mgmt0` (site, .2): the management path;
 *   the controller listens on the root ends (127.0.0.1 of the root namespace is not reachable).
 * Per link k: a TUN `ml<k>` in each of the two site namespaces, attached by `socat` to a UDP
 * socket on the site's management address; the link emulator (one process, root namespace) relays
 * the datagrams between the two ends with the link's delay, jitter and loss (faults change them).
 *
 * Everything made is recorded in a state file before it is made (a process: as it is started,
 * before anything is awaited), so `lab down` removes it all even after a crash; it also sweeps
 * namespaces named `mrd-*` and devices `mm<N>`, every process inside a namespace it deletes and
 * every process whose command line names the lab's state directory.
 *
 * Bring-up reports progress ({@link LabProgress}) and can be interrupted (`signal`): each step
 * checks it, and an interrupted or failed bring-up removes what it made before it rejects.
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import type { Topology } from '@meridian/topology';
import { OpsError } from './errors';
import type { EmulatedLinkConfig, EmulatorConfig } from './link-emulator';
import { labPlan, type LabPlan } from './lab-plan';
import { dataPlaneScheduling } from './data-plane-scheduling';

export const LAB_STATE_DIR = process.env['MERIDIAN_LAB_DIR'] ?? '/run/meridian-lab';

/** How the lab's policies forward: SRv6 source routes, or a route per hop (no SRv6 in the kernel). */
export type LabForwarding = 'srv6' | 'hop-by-hop';
/** What `--forwarding` takes: a mode, or `auto` (SRv6 if this kernel accepts an SRv6 route). */
export type LabForwardingOption = LabForwarding | 'auto';
export const LAB_FORWARDING_OPTIONS: readonly LabForwardingOption[] = ['auto', 'srv6', 'hop-by-hop'];

/** Validates a `--forwarding` value (OPS_ERR_BAD_ARGS otherwise). */
export function parseForwarding(text: string | undefined): LabForwardingOption {
  if (text === undefined) return 'auto';
  if ((LAB_FORWARDING_OPTIONS as readonly string[]).includes(text)) return text as LabForwardingOption;
  throw new OpsError(
    'OPS_ERR_BAD_ARGS',
    `--forwarding must be one of ${LAB_FORWARDING_OPTIONS.join(', ')}; got '${text}'`,
  );
}

/** What `lab up --json` prints (a public contract). */
export interface LabDescription {
  sites: { id: string; netns: string; address: string }[];
  links: { id: string; a: string; b: string; ifA: string; ifB: string }[];
  controller: { http: string | null; grpc: string | null };
  apiToken: string | null;
  /** The forwarding mode in force (the one asked for, or what `auto` found). */
  forwarding: LabForwarding;
}

/** One step of bring-up (or of the teardown after a failed or interrupted one). */
export type LabProgress =
  | {
      readonly stage: 'sites' | 'links' | 'agents' | 'policies';
      readonly done: number;
      readonly total: number;
    }
  | {
      readonly stage: 'forwarding';
      readonly mode: LabForwarding;
      readonly asked: LabForwardingOption;
      /** Why `auto` chose hop-by-hop (the kernel's refusal). */
      readonly why: string | null;
    }
  | { readonly stage: 'controller'; readonly http: string }
  | { readonly stage: 'teardown'; readonly removed: number; readonly processes: number };

/** One line for humans (stderr) per progress step. */
export function formatLabProgress(p: LabProgress): string {
  switch (p.stage) {
    case 'sites':
      return `namespaces (sites) made ${p.done}/${p.total}`;
    case 'links':
      return `links made ${p.done}/${p.total}`;
    case 'agents':
      return `agents connected ${p.done}/${p.total}`;
    case 'policies':
      return `policies applied ${p.done}/${p.total}`;
    case 'forwarding':
      return `forwarding: ${p.mode}${p.asked === 'auto' ? ` (auto: ${p.why === null ? 'this kernel accepts SRv6 routes' : `this kernel refuses SRv6 routes: ${p.why}`})` : ''}`;
    case 'controller':
      return `controller listening on http://${p.http}/api/v1`;
    case 'teardown':
      return `removed the lab: ${p.removed} objects, ${p.processes} processes`;
    default: {
      const never: never = p;
      throw new Error(`unhandled progress ${JSON.stringify(never)}`);
    }
  }
}

/** The state file: everything the lab made, for `down`, `status` and `fault`. */
export interface LabState {
  readonly topologySource: string;
  namespaces: string[];
  rootDevices: string[];
  pids: { pid: number; what: string }[];
  emulatorSocket: string;
  description: LabDescription | null;
  /** Per link: nominal impairments and the management addresses (for status). */
  links: { id: string; a: string; b: string; mgmtA: string; mgmtB: string }[];
}

function statePath(dir: string): string {
  return path.join(dir, 'state.json');
}

export function readLabState(dir = LAB_STATE_DIR): LabState | null {
  const file = statePath(dir);
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LabState;
  } catch (err) {
    throw new OpsError('OPS_ERR_LAB_STATE', `lab state file ${file} is unreadable: ${String(err)}`);
  }
}

function writeState(dir: string, state: LabState): void {
  writeFileSync(statePath(dir), JSON.stringify(state, null, 2));
}

interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

export function sh(cmd: string, args: readonly string[], input?: string): Promise<Exec> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    c.on('error', (e) => resolve({ code: 127, stdout, stderr: e.message }));
    c.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    c.stdin.on('error', () => undefined);
    c.stdin.end(input ?? '');
  });
}

async function must(cmd: string, args: readonly string[], input?: string): Promise<string> {
  const r = await sh(cmd, args, input);
  if (r.code !== 0) {
    throw new OpsError('OPS_ERR_LAB_COMMAND', `'${cmd} ${args.join(' ')}' failed: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** Null when the lab can run here, else why not. */
export async function labPrerequisites(): Promise<string | null> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    return 'the lab needs root (network namespaces)';
  for (const [bin, arg] of [
    ['ip', '-V'],
    ['nft', '-v'],
    ['socat', '-V'],
  ] as const) {
    if ((await sh(bin, [arg])).code !== 0) return `'${bin}' is not installed`;
  }
  return null;
}

function emulatorCommand(configFile: string): { cmd: string; args: string[] } {
  const js = path.join(__dirname, 'link-emulator-main.js');
  if (existsSync(js)) return { cmd: process.execPath, args: [js, configFile] };
  // Running from TypeScript sources (tests): reuse this process's loader flags.
  const ts = path.join(__dirname, 'link-emulator-main.ts');
  return { cmd: process.execPath, args: [...process.execArgv, ts, configFile] };
}

/**
 * Starts a lab data-plane process (emulator, socat), detached (its own process group, so a Ctrl-C
 * at the terminal reaches only the CLI, which then tears down in order), with the data plane's
 * scheduling. The pid is in the state file before this returns.
 */
function spawnDetached(
  dir: string,
  state: LabState,
  what: string,
  name: string,
  cmd: string,
  args: readonly string[],
): number {
  const log = openSync(path.join(dir, `${name}.log`), 'a');
  const child = spawn(cmd, [...args], { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new OpsError('OPS_ERR_LAB_COMMAND', `cannot start ${cmd}`);
  recordLabPid(dir, state, { pid: child.pid, what });
  dataPlaneScheduling(child.pid);
  return child.pid;
}

/** Adds a process the lab started to its state file (synchronously: nothing can come between). */
export function recordLabPid(dir: string, state: LabState, p: { pid: number; what: string }): void {
  state.pids.push(p);
  writeState(dir, state);
}

/** Throws OPS_ERR_INTERRUPTED once `signal` is aborted (bring-up checks it at every step). */
export function checkInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) {
    const why = typeof signal.reason === 'string' ? signal.reason : 'interrupted';
    throw new OpsError('OPS_ERR_INTERRUPTED', `lab bring-up ${why}`);
  }
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  signal: AbortSignal | undefined,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    checkInterrupted(signal);
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new OpsError('OPS_ERR_LAB_COMMAND', `timed out waiting for ${what}`);
}

/** Sends one request to the emulator's control socket. */
export function emulatorRequest(
  socketPath: string,
  req: object,
  timeoutMs = 3000,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const c = connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new OpsError('OPS_ERR_LAB_STATE', `link emulator at ${socketPath} did not answer`));
    }, timeoutMs);
    c.setEncoding('utf8');
    c.on('connect', () => c.write(JSON.stringify(req) + '\n'));
    c.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      c.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    c.on('error', (err) => {
      clearTimeout(timer);
      reject(new OpsError('OPS_ERR_LAB_STATE', `link emulator at ${socketPath} unreachable: ${err.message}`));
    });
  });
}

/**
 * One lab at a time per machine: labs share names (`mrd-*`, `mm<N>`), management addresses and
 * emulator ports. The active lab is recorded here with the process that keeps it alive (the
 * builder while it builds, then the link emulator); a record whose process is gone is stale.
 */
export const LAB_ACTIVE_FILE = process.env['MERIDIAN_LAB_ACTIVE'] ?? '/tmp/meridian-lab.active';

interface ActiveLab {
  readonly stateDir: string;
  readonly pid: number;
  readonly what: string;
}

function readActive(): ActiveLab | null {
  try {
    return JSON.parse(readFileSync(LAB_ACTIVE_FILE, 'utf8')) as ActiveLab;
  } catch {
    return null;
  }
}

function activeElsewhere(dir: string): ActiveLab | null {
  const a = readActive();
  return a !== null && path.resolve(a.stateDir) !== path.resolve(dir) && alive(a.pid, a.what) ? a : null;
}

/** Claims the machine's lab slot for `dir`, waiting up to `waitMs` for another lab to go down. */
async function claimLab(dir: string, waitMs: number, signal: AbortSignal | undefined): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    checkInterrupted(signal);
    const other = activeElsewhere(dir);
    if (other === null) {
      const stale = readActive();
      if (stale !== null) {
        if (path.resolve(stale.stateDir) !== path.resolve(dir)) await labDown({ stateDir: stale.stateDir });
        rmSync(LAB_ACTIVE_FILE, { force: true });
      }
      try {
        writeFileSync(LAB_ACTIVE_FILE, JSON.stringify({ stateDir: dir, pid: process.pid, what: '' }), {
          flag: 'wx',
        });
        return;
      } catch {
        // claimed by someone else in between: look again
      }
    } else if (Date.now() >= deadline) {
      throw new OpsError(
        'OPS_ERR_LAB_STATE',
        `another lab is up (state in ${other.stateDir}); run 'meridian lab down' there first`,
      );
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** What {@link labUp} gives its `startServices` hook besides the plan and the state. */
export interface LabServicesContext {
  readonly stateDir: string;
  readonly forwarding: LabForwarding;
  readonly onProgress: (p: LabProgress) => void;
  readonly signal: AbortSignal | undefined;
  /** Records a started process in the state file; call it right after spawning, before any await. */
  readonly recordPid: (p: { pid: number; what: string }) => void;
}

export interface LabUpOptions {
  readonly stateDir?: string;
  /** Wait this long for another lab on the machine to go down (default 0: refuse at once). */
  readonly waitMs?: number;
  /** Forwarding mode of the lab's policies (default auto: probe the kernel for SRv6). */
  readonly forwarding?: LabForwardingOption;
  /** Called at every step of bring-up (and with the teardown after a failure). */
  readonly onProgress?: (p: LabProgress) => void;
  /** Aborting it interrupts bring-up: what was made is removed, labUp rejects with OPS_ERR_INTERRUPTED. */
  readonly signal?: AbortSignal;
  /** Hook for starting the controller and agents once the data plane is up. */
  readonly startServices?: (
    plan: LabPlan,
    state: LabState,
    ctx?: LabServicesContext,
  ) => Promise<{ http: string; grpc: string; apiToken: string; pids: { pid: number; what: string }[] }>;
}

/** The test route `auto` adds (and deletes at once) to learn whether this kernel takes SRv6 routes. */
const SRV6_PROBE_ROUTE = ['198.18.0.0/32', 'encap', 'seg6', 'mode', 'encap', 'segs', 'fc00::1', 'dev', 'lo'];

/** Null when the kernel accepts an SRv6 encap route in `netns` (lo up), else its refusal. */
export async function probeSrv6(netns: string): Promise<string | null> {
  const add = await sh('ip', ['-n', netns, 'route', 'add', ...SRV6_PROBE_ROUTE, 'table', '29999']);
  if (add.code !== 0) return add.stderr.trim().replace(/^Error: /, '') || `ip exited ${add.code}`;
  await sh('ip', ['-n', netns, 'route', 'del', ...SRV6_PROBE_ROUTE, 'table', '29999']);
  return null;
}

/** Builds the lab for a topology; on any failure it removes what it made and rethrows. */
export async function labUp(topology: Topology, options: LabUpOptions = {}): Promise<LabDescription> {
  const dir = options.stateDir ?? LAB_STATE_DIR;
  const { signal } = options;
  const progress = options.onProgress ?? ((): void => undefined);
  const asked = options.forwarding ?? 'auto';
  const why = await labPrerequisites();
  if (why !== null) throw new OpsError('OPS_ERR_NOT_ROOT', why);
  mkdirSync(dir, { recursive: true });
  if (readLabState(dir) !== null) {
    throw new OpsError(
      'OPS_ERR_LAB_STATE',
      `a lab is already up (state in ${dir}); run 'meridian lab down' first`,
    );
  }
  checkInterrupted(signal);
  await claimLab(dir, options.waitMs ?? 0, signal);
  const plan = labPlan(topology);
  const state: LabState = {
    topologySource: topology.source,
    namespaces: [],
    rootDevices: [],
    pids: [],
    emulatorSocket: path.join(dir, 'emulator.sock'),
    description: null,
    links: [],
  };
  writeState(dir, state);
  // The controller is started with this plan (its policy compiler's input).
  writeFileSync(path.join(dir, 'plan.json'), JSON.stringify(plan.addressing, null, 2));
  try {
    const forwarding = await buildLab(dir, topology, plan, state, asked, progress, signal);
    const description: LabDescription = {
      sites: plan.sites.map((s) => ({ id: s.id, netns: s.netns, address: s.hostAddress })),
      links: plan.links.map((l) => ({ id: l.id, a: l.a, b: l.b, ifA: l.ifA, ifB: l.ifB })),
      controller: { http: null, grpc: null },
      apiToken: null,
      forwarding,
    };
    if (options.startServices !== undefined) {
      const svc = await options.startServices(plan, state, {
        stateDir: dir,
        forwarding,
        onProgress: progress,
        signal,
        recordPid: (p) => recordLabPid(dir, state, p),
      });
      for (const p of svc.pids) if (!state.pids.some((x) => x.pid === p.pid)) state.pids.push(p);
      description.controller = { http: svc.http, grpc: svc.grpc };
      description.apiToken = svc.apiToken;
    }
    checkInterrupted(signal);
    state.description = description;
    writeState(dir, state);
    return description;
  } catch (err) {
    const r = await labDown({ stateDir: dir });
    progress({ stage: 'teardown', removed: r.removed, processes: r.processes });
    throw err;
  }
}

async function buildLab(
  dir: string,
  topology: Topology,
  plan: LabPlan,
  state: LabState,
  asked: LabForwardingOption,
  progress: (p: LabProgress) => void,
  signal: AbortSignal | undefined,
): Promise<LabForwarding> {
  const sysctls = [
    'net.ipv4.ip_forward=1',
    'net.ipv6.conf.all.forwarding=1',
    'net.ipv6.conf.all.seg6_enabled=1',
    'net.ipv6.conf.default.seg6_enabled=1',
    'net.ipv4.conf.all.rp_filter=0',
    'net.ipv4.conf.default.rp_filter=0',
    'net.ipv6.conf.all.accept_dad=0',
    'net.ipv6.conf.default.accept_dad=0',
    'net.ipv6.conf.default.router_solicitations=0',
    'net.ipv6.conf.all.router_solicitations=0',
  ];
  let sitesMade = 0;
  for (const s of plan.sites) {
    checkInterrupted(signal);
    state.namespaces.push(s.netns);
    state.rootDevices.push(s.mgmtRootIf);
    writeState(dir, state);
    await must('ip', ['netns', 'add', s.netns]);
    await must('ip', ['netns', 'exec', s.netns, 'sysctl', '-q', '-w', ...sysctls]);
    await must(
      'ip',
      ['-n', s.netns, '-batch', '-'],
      [
        'link set lo up',
        `address add ${s.hostAddress}/32 dev lo`,
        `address add ${s.tunnelSource}/128 dev lo`,
        '',
      ].join('\n'),
    );
    await must('ip', [
      'link',
      'add',
      s.mgmtRootIf,
      'type',
      'veth',
      'peer',
      'name',
      'mgmt0',
      'netns',
      s.netns,
    ]);
    await must('ip', ['-n', s.netns, 'address', 'add', `${s.mgmtSite}/30`, 'dev', 'mgmt0']);
    await must('ip', ['-n', s.netns, 'link', 'set', 'mgmt0', 'up']);
    await must('ip', ['address', 'add', `${s.mgmtRoot}/30`, 'dev', s.mgmtRootIf]);
    await must('ip', ['link', 'set', s.mgmtRootIf, 'up']);
    progress({ stage: 'sites', done: ++sitesMade, total: plan.sites.length });
  }
  checkInterrupted(signal);
  let forwarding: LabForwarding = asked === 'hop-by-hop' ? 'hop-by-hop' : 'srv6';
  const first = plan.sites[0];
  if (asked === 'auto' && first !== undefined) {
    const refused = await probeSrv6(first.netns);
    forwarding = refused === null ? 'srv6' : 'hop-by-hop';
    progress({ stage: 'forwarding', mode: forwarding, asked, why: refused });
  } else progress({ stage: 'forwarding', mode: forwarding, asked, why: null });
  const siteById = new Map(plan.sites.map((s) => [s.id, s]));
  const emuLinks: EmulatedLinkConfig[] = [];
  for (const l of plan.links) {
    const a = siteById.get(l.a);
    const b = siteById.get(l.b);
    const link = topology.links.find((x) => x.id === l.id);
    if (a === undefined || b === undefined || link === undefined) {
      throw new OpsError('OPS_ERR_LAB_STATE', `link '${l.id}' joins unknown sites`);
    }
    state.links.push({ id: l.id, a: l.a, b: l.b, mgmtA: a.mgmtRoot, mgmtB: b.mgmtRoot });
    emuLinks.push({
      id: l.id,
      a: { bind: a.mgmtRoot, port: l.port, peer: a.mgmtSite, peerPort: l.port },
      b: { bind: b.mgmtRoot, port: l.port, peer: b.mgmtSite, peerPort: l.port },
      nominal: { delayMs: link.latencyMs, jitterMs: link.jitterMs, lossPct: link.lossPct },
    });
  }
  const config: EmulatorConfig = { links: emuLinks, controlSocket: state.emulatorSocket };
  const configFile = path.join(dir, 'emulator.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const emu = emulatorCommand(configFile);
  checkInterrupted(signal);
  const emuPid = spawnDetached(dir, state, 'link-emulator', 'emulator', emu.cmd, emu.args);
  // From now on the emulator keeps the lab alive (the CLI that built it exits).
  writeFileSync(LAB_ACTIVE_FILE, JSON.stringify({ stateDir: dir, pid: emuPid, what: 'link-emulator' }));
  await waitFor(
    'the link emulator',
    async () => {
      try {
        return (await emulatorRequest(state.emulatorSocket, { op: 'status' }, 500))['ok'] === true;
      } catch {
        return false;
      }
    },
    signal,
  );
  let linksMade = 0;
  for (const l of plan.links) {
    for (const end of [
      { site: siteById.get(l.a), ifName: l.ifA, v4: l.a4, v6: l.a6 },
      { site: siteById.get(l.b), ifName: l.ifB, v4: l.b4, v6: l.b6 },
    ]) {
      const s = end.site;
      if (s === undefined) continue;
      checkInterrupted(signal);
      spawnDetached(dir, state, 'socat', `socat-${l.index}-${s.index}`, 'ip', [
        'netns',
        'exec',
        s.netns,
        'socat',
        `UDP-DATAGRAM:${s.mgmtRoot}:${l.port},bind=${s.mgmtSite}:${l.port}`,
        `TUN:${end.v4}/30,tun-type=tun,iff-up,tun-name=${end.ifName}`,
      ]);
      await waitFor(
        `${end.ifName} in ${s.netns}`,
        async () => (await sh('ip', ['-n', s.netns, 'link', 'show', end.ifName])).code === 0,
        signal,
      );
      await must('ip', ['-n', s.netns, 'link', 'set', end.ifName, 'mtu', '1400']);
      await must('ip', ['-n', s.netns, '-6', 'address', 'add', `${end.v6}/64`, 'dev', end.ifName, 'nodad']);
    }
    progress({ stage: 'links', done: ++linksMade, total: plan.links.length });
  }
  return forwarding;
}

function cmdlineOf(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return null;
  }
}

/** The process is there and still the one recorded (its command line names `what`): pids get reused. */
function alive(pid: number, what: string): boolean {
  return cmdlineOf(pid)?.includes(what) === true;
}

/** Sends a signal to a process and its process group (lab processes lead their own); false if gone. */
function signalProcess(pid: number, sig: NodeJS.Signals, group: boolean): boolean {
  let sent = false;
  for (const target of group ? [-pid, pid] : [pid]) {
    try {
      process.kill(target, sig);
      sent = true;
    } catch {
      // gone (or no such group)
    }
  }
  return sent;
}

/**
 * Every process of a lab: the recorded ones, every process inside one of its namespaces (an agent's
 * helpers, a relay whose pid was never recorded because its parent was killed first), and every
 * process whose command line names the state directory (controller, emulator).
 */
async function labProcesses(
  dir: string,
  state: LabState | null,
  namespaces: Iterable<string>,
): Promise<{ pid: number; what: string; group: boolean }[]> {
  const found = new Map<number, { pid: number; what: string; group: boolean }>();
  for (const p of state?.pids ?? []) {
    if (p.pid !== process.pid && alive(p.pid, p.what)) found.set(p.pid, { ...p, group: true });
  }
  for (const ns of namespaces) {
    const r = await sh('ip', ['netns', 'pids', ns]);
    for (const text of r.code === 0 ? r.stdout.split(/\s+/) : []) {
      const pid = Number(text);
      const cmd = Number.isInteger(pid) && pid > 0 && pid !== process.pid ? cmdlineOf(pid) : null;
      if (cmd !== null && cmd !== '' && !found.has(pid)) found.set(pid, { pid, what: cmd, group: false });
    }
  }
  const needle = path.resolve(dir) + '/';
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    // no /proc: only the recorded ones
  }
  for (const e of entries) {
    const pid = Number(e);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || found.has(pid)) continue;
    const cmd = cmdlineOf(pid);
    if (cmd !== null && cmd.split('\0').some((arg) => arg.includes(needle))) {
      found.set(pid, { pid, what: cmd, group: false });
    }
  }
  return [...found.values()];
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves with the processes still there after that. */
async function stopLabProcesses(
  procs: readonly { pid: number; what: string; group: boolean }[],
  graceMs: number,
): Promise<number[]> {
  for (const p of procs) signalProcess(p.pid, 'SIGTERM', p.group);
  const waitGone = async (ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (procs.some((p) => alive(p.pid, p.what)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await waitGone(graceMs);
  for (const p of procs) if (alive(p.pid, p.what)) signalProcess(p.pid, 'SIGKILL', p.group);
  await waitGone(2000);
  return procs.filter((p) => alive(p.pid, p.what)).map((p) => p.pid);
}

/** What {@link labDown} did. */
export interface LabDownResult {
  /** Namespaces and root devices deleted. */
  removed: number;
  /** Processes stopped (recorded, in a lab namespace, or naming the state directory). */
  processes: number;
  /** Processes still there after SIGKILL (normally none). */
  survivors: number[];
}

/**
 * Removes everything a lab made (per the state file, plus a sweep): stops its processes (SIGTERM,
 * SIGKILL after `graceMs`, default 3 s, and checks they are gone), deletes its namespaces and
 * devices. Idempotent.
 */
export async function labDown(options: { stateDir?: string; graceMs?: number } = {}): Promise<LabDownResult> {
  const dir = options.stateDir ?? LAB_STATE_DIR;
  const state = readLabState(dir);
  let removed = 0;
  // Hold the machine's lab slot while tearing down, so no other lab starts building meanwhile
  // (its namespaces would fall to this sweep).
  if (activeElsewhere(dir) === null) {
    writeFileSync(LAB_ACTIVE_FILE, JSON.stringify({ stateDir: dir, pid: process.pid, what: '' }));
  }
  const namespaces = new Set(state?.namespaces ?? []);
  // The sweep of leftovers (`mrd-*`, `mm<N>`) only while no other lab is alive on the machine.
  const sweep = activeElsewhere(dir) === null;
  const list = await sh('ip', ['netns', 'list']);
  for (const line of sweep ? list.stdout.split('\n') : []) {
    const name = line.split(' ')[0] ?? '';
    if (name.startsWith('mrd-')) namespaces.add(name);
  }
  // Processes first: a namespace's processes are found through it, and none may outlive the lab.
  const procs = await labProcesses(dir, state, namespaces);
  const survivors = await stopLabProcesses(procs, options.graceMs ?? 3000);
  for (const ns of namespaces) {
    if ((await sh('ip', ['netns', 'del', ns])).code === 0) removed++;
  }
  const devices = new Set(state?.rootDevices ?? []);
  const links = await sh('ip', ['-j', 'link', 'show']);
  try {
    for (const l of JSON.parse(links.stdout || '[]') as { ifname: string }[]) {
      if (sweep && /^mm\d+$/.test(l.ifname)) devices.add(l.ifname);
    }
  } catch {
    // no JSON: nothing to sweep
  }
  for (const d of devices) {
    if ((await sh('ip', ['link', 'del', d])).code === 0) removed++;
  }
  if (state !== null) rmSync(dir, { recursive: true, force: true });
  const active = readActive();
  if (
    active !== null &&
    (path.resolve(active.stateDir) === path.resolve(dir) || !alive(active.pid, active.what))
  ) {
    rmSync(LAB_ACTIVE_FILE, { force: true });
  }
  return { removed, processes: procs.length - survivors.length, survivors };
}

/** A fault or repair on one link (both directions). */
export type LabFault =
  | { kind: 'down' }
  | { kind: 'up' }
  | { kind: 'clear' }
  | { kind: 'loss'; pct: number }
  | { kind: 'delay'; ms: number; jitterMs?: number };

export async function labFault(
  link: string,
  fault: LabFault,
  options: { stateDir?: string } = {},
): Promise<object> {
  const dir = options.stateDir ?? LAB_STATE_DIR;
  const state = readLabState(dir);
  if (state === null) throw new OpsError('OPS_ERR_LAB_STATE', `no lab is up (no state in ${dir})`);
  if (!state.links.some((l) => l.id === link)) {
    throw new OpsError(
      'OPS_ERR_BAD_ARGS',
      `unknown link '${link}'; links: ${state.links.map((l) => l.id).join(', ')}`,
    );
  }
  const req: Record<string, unknown> = { op: 'set', link };
  switch (fault.kind) {
    case 'down':
      req['up'] = false;
      break;
    case 'up':
      req['up'] = true;
      break;
    case 'clear':
      req['clear'] = true;
      break;
    case 'loss':
      req['lossPct'] = fault.pct;
      break;
    case 'delay':
      req['delayMs'] = fault.ms;
      if (fault.jitterMs !== undefined) req['jitterMs'] = fault.jitterMs;
      break;
    default: {
      const never: never = fault;
      throw new Error(`unhandled fault ${JSON.stringify(never)}`);
    }
  }
  const res = await emulatorRequest(state.emulatorSocket, req);
  if (res['ok'] !== true) throw new OpsError('OPS_ERR_BAD_ARGS', String(res['error']));
  return res['link'] as object;
}

/** The lab's description and every link's current impairments and counters. */
export async function labStatus(options: { stateDir?: string } = {}): Promise<{
  up: boolean;
  description: LabDescription | null;
  links: object[];
}> {
  const dir = options.stateDir ?? LAB_STATE_DIR;
  const state = readLabState(dir);
  if (state === null) return { up: false, description: null, links: [] };
  const res = await emulatorRequest(state.emulatorSocket, { op: 'status' }).catch(() => ({ links: [] }));
  return { up: true, description: state.description, links: (res as { links?: object[] }).links ?? [] };
}
