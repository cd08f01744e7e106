/**
 * What a Linux data plane can forward with, found by trying: some kernels are built without SRv6
 * (`ip route add … encap seg6 …` answers "lwt encapsulation type not supported"), and reading
 * kernel configs or module lists says less than one attempt does. Each SRv6 feature is an object
 * added where nothing looks it up (table 29999, which no rule of the probe's leads to) and deleted
 * at once; the policy rule matches a mark nothing sets (`0x4d52ffff`). Objects are added and
 * deleted by their exact keys, so a driver's own state in the same table or pref range is never
 * touched. The only state the probe may change is `lo`: down, it is brought up for the routes on
 * it and put down again afterwards.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import type { ForwardingCapabilities } from './driver';
import type { ForwardingMode } from './policy';

export interface LinuxCapabilitiesOptions {
  /** Probe in this network namespace (`ip -n NS`, `ip netns exec NS nft`); absent: the current one. */
  readonly netns?: string;
  /** Default `ip`. */
  readonly ipBin?: string;
  /** Default `nft`. */
  readonly nftBin?: string;
}

/** The features a Linux probe looks for, in report order. */
export const LINUX_FEATURES = [
  'srv6-encap',
  'srv6-end-x',
  'srv6-end-dx4',
  'nftables',
  'policy-routing',
] as const;
export type LinuxFeature = (typeof LINUX_FEATURES)[number];

/** Table and rule preference of the probe's objects (see the module comment). */
export const PROBE_TABLE = 29999;
export const PROBE_RULE_PREF = 29998;
const PROBE_MARK = '0x4d52ffff';
const PROBE_PREFIX4 = '198.18.255.255/32';
const PROBE_PREFIX6 = 'fc00:ffff::1/128';
/** A `missing` entry's reason is cut to this: the controller bounds hello strings. */
const MAX_REASON = 200;

interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(cmd: string, args: readonly string[]): Promise<ExecResult> {
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      resolve({ code: 127, stdout: '', stderr: (err as Error).message });
      return;
    }
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => resolve({ code: 127, stdout, stderr: `${stderr}${err.message}` }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** The tool's words on one line, bounded. */
function reason(r: ExecResult): string {
  const text = (r.stderr.trim() || r.stdout.trim() || `exit code ${r.code}`).replace(/\s*\n\s*/g, '; ');
  return text.length > MAX_REASON ? `${text.slice(0, MAX_REASON - 1)}…` : text;
}

/**
 * Finds what this host's (or namespace's) kernel and tools can do. Never throws: a feature that
 * cannot be tried, for whatever reason, is missing with the tool's own words.
 */
export async function probeLinuxCapabilities(
  opts: LinuxCapabilitiesOptions = {},
): Promise<ForwardingCapabilities> {
  const ipBin = opts.ipBin ?? 'ip';
  const nftBin = opts.nftBin ?? 'nft';
  const ns = opts.netns !== undefined ? ['-n', opts.netns] : [];
  const ip = (...args: string[]): Promise<ExecResult> => run(ipBin, [...ns, ...args]);
  const nft = (...args: string[]): Promise<ExecResult> =>
    opts.netns === undefined ? run(nftBin, args) : run(ipBin, ['netns', 'exec', opts.netns, nftBin, ...args]);

  const found = new Set<LinuxFeature>();
  const missing: string[] = [];
  /** Adds an object and deletes it again; "File exists" is a leftover of an interrupted probe. */
  const tryAdd = async (feature: LinuxFeature, add: string[], del: string[]): Promise<void> => {
    let r = await ip(...add);
    if (r.code !== 0 && /File exists/i.test(r.stderr)) {
      await ip(...del);
      r = await ip(...add);
    }
    if (r.code !== 0) {
      missing.push(`${feature}: ${reason(r)}`);
      return;
    }
    found.add(feature);
    await ip(...del);
  };

  try {
    // Routes on `lo` need it up; a namespace just created has it down.
    const lo = await ip('-o', 'link', 'show', 'dev', 'lo');
    const loWasDown = lo.code === 0 && !/[<,]UP[,>]/.test(lo.stdout);
    if (loWasDown) await ip('link', 'set', 'dev', 'lo', 'up');
    try {
      const t = ['table', String(PROBE_TABLE), 'proto', '77'];
      const encap = [PROBE_PREFIX4, 'encap', 'seg6', 'mode', 'encap', 'segs', 'fc00::1', 'dev', 'lo'];
      await tryAdd(
        'srv6-encap',
        ['route', 'add', ...encap, ...t],
        ['route', 'del', PROBE_PREFIX4, 'dev', 'lo', ...t],
      );
      const sid = (action: string[]): string[] => [
        PROBE_PREFIX6,
        'encap',
        'seg6local',
        'action',
        ...action,
        'dev',
        'lo',
        ...t,
      ];
      const del6 = ['-6', 'route', 'del', PROBE_PREFIX6, 'dev', 'lo', ...t];
      await tryAdd('srv6-end-x', ['-6', 'route', 'add', ...sid(['End.X', 'nh6', 'fe80::1'])], del6);
      await tryAdd('srv6-end-dx4', ['-6', 'route', 'add', ...sid(['End.DX4', 'nh4', '0.0.0.0'])], del6);
    } finally {
      if (loWasDown) await ip('link', 'set', 'dev', 'lo', 'down');
    }
    const tables = await nft('list', 'tables');
    if (tables.code === 0) found.add('nftables');
    else missing.push(`nftables: ${reason(tables)}`);
    const rule = ['pref', String(PROBE_RULE_PREF), 'fwmark', PROBE_MARK, 'table', String(PROBE_TABLE)];
    await tryAdd('policy-routing', ['rule', 'add', ...rule], ['rule', 'del', ...rule]);
  } catch (err) {
    // Only a bug gets here (run() resolves on every failure); still a report, not a crash.
    missing.push(`probe: ${(err as Error).message}`);
  }

  const hopByHop = found.has('nftables') && found.has('policy-routing');
  const srv6 = hopByHop && found.has('srv6-encap') && found.has('srv6-end-x') && found.has('srv6-end-dx4');
  const modes: ForwardingMode[] = [];
  if (srv6) modes.push('srv6');
  if (hopByHop) modes.push('hop-by-hop');
  return {
    platform: 'linux',
    // A namespace shares its host's kernel: `uname -r` inside it says the same.
    platformVersion: os.release(),
    modes,
    features: LINUX_FEATURES.filter((f) => found.has(f)),
    missing,
  };
}
