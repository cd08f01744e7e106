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
 * Everything made is recorded in a state file before it is made, so `lab down` removes it all
 * even after a crash; it also sweeps namespaces named `mrd-*` and devices `mm<N>`.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import type { Topology } from '@meridian/topology';
import { OpsError } from './errors';
import type { EmulatedLinkConfig, EmulatorConfig } from './link-emulator';
import { labPlan, type LabPlan } from './lab-plan';
import { dataPlaneScheduling } from './data-plane-scheduling';

export const LAB_STATE_DIR = process.env['MERIDIAN_LAB_DIR'] ?? '/run/meridian-lab';

/** What `lab up --json` prints (a public contract). */
export interface LabDescription {
  sites: { id: string; netns: string; address: string }[];
  links: { id: string; a: string; b: string; ifA: string; ifB: string }[];
  controller: { http: string | null; grpc: string | null };
  apiToken: string | null;
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

/** Starts a lab data-plane process (emulator, socat), detached, with the data plane's scheduling. */
function spawnDetached(dir: string, name: string, cmd: string, args: readonly string[]): number {
  const log = openSync(path.join(dir, `${name}.log`), 'a');
  const child = spawn(cmd, [...args], { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new OpsError('OPS_ERR_LAB_COMMAND', `cannot start ${cmd}`);
  dataPlaneScheduling(child.pid);
  return child.pid;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
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
async function claimLab(dir: string, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
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

export interface LabUpOptions {
  readonly stateDir?: string;
  /** Wait this long for another lab on the machine to go down (default 0: refuse at once). */
  readonly waitMs?: number;
  /** Hook for starting the controller and agents once the data plane is up (later issue work). */
  readonly startServices?: (
    plan: LabPlan,
    state: LabState,
  ) => Promise<{ http: string; grpc: string; apiToken: string; pids: { pid: number; what: string }[] }>;
}

/** Builds the lab for a topology; on any failure it removes what it made and rethrows. */
export async function labUp(topology: Topology, options: LabUpOptions = {}): Promise<LabDescription> {
  const dir = options.stateDir ?? LAB_STATE_DIR;
  const why = await labPrerequisites();
  if (why !== null) throw new OpsError('OPS_ERR_NOT_ROOT', why);
  mkdirSync(dir, { recursive: true });
  if (readLabState(dir) !== null) {
    throw new OpsError(
      'OPS_ERR_LAB_STATE',
      `a lab is already up (state in ${dir}); run 'meridian lab down' first`,
    );
  }
  await claimLab(dir, options.waitMs ?? 0);
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
    await buildLab(dir, topology, plan, state);
    const description: LabDescription = {
      sites: plan.sites.map((s) => ({ id: s.id, netns: s.netns, address: s.hostAddress })),
      links: plan.links.map((l) => ({ id: l.id, a: l.a, b: l.b, ifA: l.ifA, ifB: l.ifB })),
      controller: { http: null, grpc: null },
      apiToken: null,
    };
    if (options.startServices !== undefined) {
      const svc = await options.startServices(plan, state);
      state.pids.push(...svc.pids);
      description.controller = { http: svc.http, grpc: svc.grpc };
      description.apiToken = svc.apiToken;
    }
    state.description = description;
    writeState(dir, state);
    return description;
  } catch (err) {
    await labDown({ stateDir: dir });
    throw err;
  }
}

async function buildLab(dir: string, topology: Topology, plan: LabPlan, state: LabState): Promise<void> {
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
  for (const s of plan.sites) {
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
  }
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
  const emuPid = spawnDetached(dir, 'emulator', emu.cmd, emu.args);
  state.pids.push({ pid: emuPid, what: 'link-emulator' });
  // From now on the emulator keeps the lab alive (the CLI that built it exits).
  writeFileSync(LAB_ACTIVE_FILE, JSON.stringify({ stateDir: dir, pid: emuPid, what: 'link-emulator' }));
  writeState(dir, state);
  await waitFor('the link emulator', async () => {
    try {
      return (await emulatorRequest(state.emulatorSocket, { op: 'status' }, 500))['ok'] === true;
    } catch {
      return false;
    }
  });
  for (const l of plan.links) {
    for (const end of [
      { site: siteById.get(l.a), ifName: l.ifA, v4: l.a4, v6: l.a6 },
      { site: siteById.get(l.b), ifName: l.ifB, v4: l.b4, v6: l.b6 },
    ]) {
      const s = end.site;
      if (s === undefined) continue;
      const pid = spawnDetached(dir, `socat-${l.index}-${s.index}`, 'ip', [
        'netns',
        'exec',
        s.netns,
        'socat',
        `UDP-DATAGRAM:${s.mgmtRoot}:${l.port},bind=${s.mgmtSite}:${l.port}`,
        `TUN:${end.v4}/30,tun-type=tun,iff-up,tun-name=${end.ifName}`,
      ]);
      state.pids.push({ pid, what: 'socat' });
      writeState(dir, state);
      await waitFor(
        `${end.ifName} in ${s.netns}`,
        async () => (await sh('ip', ['-n', s.netns, 'link', 'show', end.ifName])).code === 0,
      );
      await must('ip', ['-n', s.netns, 'link', 'set', end.ifName, 'mtu', '1400']);
      await must('ip', ['-n', s.netns, '-6', 'address', 'add', `${end.v6}/64`, 'dev', end.ifName, 'nodad']);
    }
  }
}

function alive(pid: number, what: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(what === 'link-emulator' ? 'link-emulator' : what);
  } catch {
    return false;
  }
}

/** Removes everything a lab made (per the state file, plus a sweep). Idempotent. */
export async function labDown(options: { stateDir?: string } = {}): Promise<{ removed: number }> {
  const dir = options.stateDir ?? LAB_STATE_DIR;
  const state = readLabState(dir);
  let removed = 0;
  // Hold the machine's lab slot while tearing down, so no other lab starts building meanwhile
  // (its namespaces would fall to this sweep).
  if (activeElsewhere(dir) === null) {
    writeFileSync(LAB_ACTIVE_FILE, JSON.stringify({ stateDir: dir, pid: process.pid, what: '' }));
  }
  for (const p of state?.pids ?? []) {
    if (!alive(p.pid, p.what)) continue;
    try {
      process.kill(p.pid, 'SIGTERM');
      removed++;
    } catch {
      // already gone
    }
  }
  const namespaces = new Set(state?.namespaces ?? []);
  // The sweep of leftovers (`mrd-*`, `mm<N>`) only while no other lab is alive on the machine.
  const sweep = activeElsewhere(dir) === null;
  const list = await sh('ip', ['netns', 'list']);
  for (const line of sweep ? list.stdout.split('\n') : []) {
    const name = line.split(' ')[0] ?? '';
    if (name.startsWith('mrd-')) namespaces.add(name);
  }
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
  // Give killed processes a moment, then make sure.
  for (const p of state?.pids ?? []) {
    for (let i = 0; i < 20 && alive(p.pid, p.what); i++) await new Promise((r) => setTimeout(r, 50));
    if (alive(p.pid, p.what)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  if (state !== null) rmSync(dir, { recursive: true, force: true });
  const active = readActive();
  if (
    active !== null &&
    (path.resolve(active.stateDir) === path.resolve(dir) || !alive(active.pid, active.what))
  ) {
    rmSync(LAB_ACTIVE_FILE, { force: true });
  }
  return { removed };
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
