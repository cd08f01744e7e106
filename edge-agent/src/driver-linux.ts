/**
 * The Linux policy driver: renders a {@link SitePolicy} with iproute2 and nftables, inside a given
 * network namespace (or the current one). Mapping (see policy.ts for the two forwarding modes):
 *
 * | policy                      | kernel object (all tagged as owned)                                   |
 * |-----------------------------|-----------------------------------------------------------------------|
 * | classes × routes            | `table ip meridian`, chain `classify`: `ip daddr {…} ip dscp {…} meta mark set 0x4d52xxxx` |
 * | route slot n, primary path  | table 20000+2n: SRv6 `PREFIX encap seg6 mode encap segs … dev IF` and `SEG1/128 dev IF`, or hop-by-hop `PREFIX via NH dev IF` (proto 77); `ip rule`/`ip -6 rule` pref 20000+2n fwmark → table |
 * | route slot n, backup path   | table 20001+2n, rule pref 20001+2n (right behind the primary rule)    |
 * | unmarked local traffic      | table 20000 (rule pref 29990): one route per destination prefix        |
 * | transit entries (hop-by-hop)| nft chain `transit` (prerouting, before `classify`): `iifname` verdict map to a chain per incoming interface, `ip saddr {…} ip daddr {…} [udp sport {probe ports} \| class match] meta mark set 0x4d52c000+i`; table and rule pref 19000+i: `default via NH dev IF` for outgoing interface i |
 * | localSids                   | main table, proto 77: `SID/128 encap seg6local action End.X nh6 … dev IF`, `End.DX4 nh4 0.0.0.0 dev <first link>` |
 *
 * Ownership: the nftables table `meridian` (whose comment carries `meridian:<hash>:<version>`),
 * rule preferences 19000–29999, routes with protocol 77. Everything else is left alone. What the
 * policy wants is computed without the kernel in linux-render.ts; this file diffs it against the
 * kernel, runs ip and nft, and switches routes for fast reroute.
 */
import { spawn } from 'node:child_process';
import {
  MARK_BASE,
  PROBE_MARK_BASE,
  ROUTE_PROTO,
  TRANSIT_TABLE_BASE,
  policyNeedsSrv6,
  routeKey,
  routeMode,
  validatePolicy,
  type PolicyRoute,
  type SitePolicy,
} from './policy';
import {
  DriverError,
  type ForwardingCapabilities,
  type ActivePath,
  type ApplyOutcome,
  type DriverSnapshot,
  type PolicyDriver,
  type RerouteOutcome,
} from './driver';
import { IpBatchSession, type IpBatchOutcome } from './ip-batch-session';
import { probeLinuxCapabilities } from './capabilities-linux';
import {
  NFT_TABLE,
  backupTable,
  hex,
  markOf,
  normDst,
  pathSignature,
  primaryTable,
  renderKernel,
  renderNft,
  ruleKey,
  ruleSelector,
  type Family,
  type RuleSpec,
} from './linux-render';

export interface LinuxDriverOptions {
  /** Network namespace to work in (`ip -n NS`, `ip netns exec NS nft`); absent: the current one. */
  readonly netns?: string;
  /** Binaries (tests may point elsewhere). */
  readonly ipBin?: string;
  readonly nftBin?: string;
}

interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The owned kernel state, as the driver left it (rules, routes by key → signature, nft comment). */
interface KnownState {
  readonly rules: RuleSpec[];
  readonly routes: Map<string, string>;
  readonly nft: string;
  /** When the kernel was last actually read (performance.now()). */
  readonly at: number;
}

/** Lines per `ip -batch` process, and attempts of a chunk the kernel refused for lack of memory. */
const BATCH_CHUNK = 200;
const ENOMEM_RETRIES = 8;
/** Longest wait for one apply batch (up to BATCH_CHUNK seg6 route adds on a busy machine). */
const APPLY_BATCH_TIMEOUT_MS = 60_000;
/** ip's own refusal of a line's syntax (it then exits): a retry on a new process cannot help. */
const IP_PARSE_ERROR = /Command line is not complete|Error:/;

/** What a batch session serves (see `#session`). */
type SessionUse = 'switch' | 'apply';
const PREF_MIN = TRANSIT_TABLE_BASE;
/** The kernel is read again (instead of trusting the last apply) at least this often. */
const KERNEL_REREAD_MS = 30_000;
const PREF_MAX = 29999;

/** ip's words for a rule already deleted / already added: a switch that finds it done. */
const NOT_THERE = /No such file|not exist/i;
const ALREADY_THERE = /File exists/;
/** The kernel's words for an SRv6 route on a kernel without SRv6 lightweight tunnels. */
const NO_LWT = /lwt encapsulation type not supported|seg6.*not supported|Unknown.*seg6/i;
/** ip's words for a route already deleted. */
const ROUTE_NOT_THERE = /No such process/;

/**
 * Whether ip's error for an apply line says the line's goal already holds: a `rule add` of a rule
 * that is there, a `rule del` or `route del` of one that is gone. An apply diffs against a view of
 * the kernel taken before it writes, and a fast-reroute switch may run in between (a failover does
 * not wait for a policy): at a link restore the switch back to the primary adds the primary's rule
 * while the controller's new policy, computed for the same restore, adds it too. That is the state
 * both want, not a failure.
 */
function alreadyDone(line: string, error: string): boolean {
  if (line.startsWith('rule add ')) return ALREADY_THERE.test(error);
  if (line.startsWith('rule del ')) return NOT_THERE.test(error);
  if (line.startsWith('route del ')) return ROUTE_NOT_THERE.test(error) || NOT_THERE.test(error);
  return false;
}

function run(cmd: string, args: readonly string[], input?: string): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => resolve({ code: 127, stdout, stderr: `${stderr}${err.message}` }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

export class LinuxPolicyDriver implements PolicyDriver {
  readonly kind = 'linux' as const;
  readonly #netns: string | undefined;
  readonly #ip: string;
  readonly #nft: string;
  /** The last policy applied successfully by this process (restored when an apply fails). */
  #current: SitePolicy | null = null;
  /**
   * Sysctls set and interfaces seen by the last successful apply: each check is a process spawn,
   * and a spawn blocks the agent's event loop (and its probes) for ~10 ms under a policy burst.
   */
  #sysctlsSet: 'ip' | 'srv6' | null = null;
  #interfacesSeen = '';
  /**
   * What this driver left in the kernel after its last successful apply, so the next apply diffs
   * against it instead of reading the kernel (four process spawns). Dropped on any failure, any
   * fast-reroute switch, for the same content applied again (a reconcile) and after
   * {@link KERNEL_REREAD_MS}: the kernel is read then, which is how changes made behind the agent's
   * back are reconciled.
   */
  #known: KnownState | null = null;
  /**
   * Bumped by every fast-reroute switch: those run while an apply may be in progress (a failover
   * must not wait for a policy), and an apply that saw a switch cannot know the rules it left.
   */
  #epoch = 0;
  /**
   * Persistent `ip -force -batch -` processes by use and family (see `#session`): a switch or an
   * apply batch is a write to a pipe, not a process spawn (which forks the agent and took 40–95 ms
   * under load). The switch ones start after the first successful apply; all restart on demand and
   * end with {@link close}.
   */
  readonly #sessions = new Map<string, IpBatchSession>();
  #capabilities: Promise<ForwardingCapabilities> | null = null;

  /** The state left by the last apply, while it can be trusted (see `#known`). */
  #fresh(): KnownState | null {
    const k = this.#known;
    return k !== null && performance.now() - k.at < KERNEL_REREAD_MS ? k : null;
  }

  constructor(options: LinuxDriverOptions = {}) {
    this.#netns = options.netns;
    this.#ip = options.ipBin ?? 'ip';
    this.#nft = options.nftBin ?? 'nft';
  }

  /** The last policy this driver applied, or null. */
  get current(): SitePolicy | null {
    return this.#current;
  }

  capabilities(): Promise<ForwardingCapabilities> {
    this.#capabilities ??= probeLinuxCapabilities({
      ...(this.#netns !== undefined ? { netns: this.#netns } : {}),
      ipBin: this.#ip,
      nftBin: this.#nft,
    });
    return this.#capabilities;
  }

  /** Null when this kernel can render the policy, else why not (before anything is touched). */
  async #unsupported(policy: SitePolicy): Promise<DriverError | null> {
    if (!policyNeedsSrv6(policy)) return null;
    const caps = await this.capabilities();
    if (caps.modes.includes('srv6')) return null;
    const srv6Route = policy.routes.find((r) => routeMode(r) === 'srv6');
    const why = caps.missing.filter((m) => m.startsWith('srv6')).join('; ');
    return new DriverError(
      'AGENT_ERR_DRIVER_UNSUPPORTED',
      `policy ${policy.hash.slice(0, 12)} needs SRv6 (${
        srv6Route !== undefined ? `route ${routeKey(srv6Route)} is in srv6 mode` : 'it carries local SIDs'
      }) and this kernel (${caps.platformVersion}) has none: use hop-by-hop forwarding`,
      { detail: why },
    );
  }

  async #ipCmd(args: readonly string[], input?: string): Promise<ExecResult> {
    const ns = this.#netns !== undefined ? ['-n', this.#netns] : [];
    return run(this.#ip, [...ns, ...args], input);
  }

  async #nftCmd(args: readonly string[], input?: string): Promise<ExecResult> {
    if (this.#netns === undefined) return run(this.#nft, args, input);
    return run(this.#ip, ['netns', 'exec', this.#netns, this.#nft, ...args], input);
  }

  /**
   * Runs lines through the apply session of `family` (a long-lived `ip -force -batch -`, see
   * ip-batch-session.ts: an apply on every site after a failure used to fork ~10 processes per
   * agent, and ten agents forking at once saturated the lab's two CPUs — the link emulator then
   * stalled and every link read down), in chunks. A seg6 encapsulation route allocates per-CPU
   * memory atomically, and that pool can run dry for a moment under a burst of route adds
   * (`percpu: allocation failed … atomic`, "Cannot allocate memory"): the lines that failed so are
   * retried after a pause that lets the kernel refill it (`-force` ran the others). Lines must be
   * idempotent (`replace`, or adds and dels whose "already there" / "already gone" answers count as
   * done: see {@link alreadyDone}).
   */
  async #batch(family: Family | null, lines: readonly string[]): Promise<void> {
    for (let start = 0; start < lines.length; start += BATCH_CHUNK) {
      let chunk = lines.slice(start, start + BATCH_CHUNK);
      for (let attempt = 1; ; attempt++) {
        const out = await this.#runLines('apply', family, chunk);
        if (!out.ok) {
          throw new DriverError('AGENT_ERR_DRIVER_APPLY', `ip batch failed (${out.reason})`, {
            detail: out.detail.trim(),
          });
        }
        const failed: [string, string][] = [];
        out.answer.errors.forEach((e, i) => {
          const line = chunk[i] ?? '';
          if (e !== null && !alreadyDone(line, e)) failed.push([line, e]);
        });
        if (failed.length === 0) break;
        const other = failed.find(([, e]) => !/Cannot allocate memory/.test(e));
        if (other === undefined && attempt < ENOMEM_RETRIES) {
          chunk = failed.map(([line]) => line);
          await new Promise((res) => setTimeout(res, 20 * attempt));
          continue;
        }
        const [line, err] = other ?? failed[0]!;
        throw new DriverError('AGENT_ERR_DRIVER_APPLY', `ip refused '${line}'`, { detail: err.trim() });
      }
    }
  }

  async #json<T>(args: readonly string[]): Promise<T> {
    const r = await this.#ipCmd(['-j', ...args]);
    if (r.code !== 0) {
      throw new DriverError('AGENT_ERR_DRIVER_STATE', `cannot read 'ip ${args.join(' ')}'`, {
        detail: r.stderr.trim(),
      });
    }
    const text = r.stdout.trim();
    return (text === '' ? [] : JSON.parse(text)) as T;
  }

  async #readRules(): Promise<RuleSpec[]> {
    const out: RuleSpec[] = [];
    for (const family of [4, 6] as const) {
      const rules = await this.#json<{ priority: number; fwmark?: string; table?: string; iif?: string }[]>([
        `-${family}`,
        'rule',
        'show',
      ]);
      for (const r of rules) {
        if (r.priority < PREF_MIN || r.priority > PREF_MAX) continue;
        const fw = r.fwmark !== undefined ? Number.parseInt(r.fwmark, 16) : null;
        out.push({
          family,
          pref: r.priority,
          fwmark: fw,
          table: Number(r.table),
          ...(r.iif !== undefined ? { iif: r.iif } : {}),
        });
      }
    }
    return out;
  }

  async #readRoutes(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const family of [4, 6] as const) {
      const routes = await this.#json<Record<string, unknown>[]>([
        `-${family}`,
        '-d',
        'route',
        'show',
        'table',
        'all',
        'proto',
        String(ROUTE_PROTO),
      ]);
      for (const r of routes) {
        const dst = normDst(str(r['dst']), family);
        const table = str(r['table']) || 'main';
        out.set(`${family}|${table}|${dst}`, kernelSignature(r));
      }
    }
    return out;
  }

  /** The table's comment (nft's JSON output omits table comments, so the text form is read). */
  async #readNftComment(): Promise<string | null> {
    const r = await this.#nftCmd(['list', 'table', 'ip', NFT_TABLE]);
    if (r.code !== 0) return null;
    return /^\s*comment "([^"]*)"/m.exec(r.stdout)?.[1] ?? '';
  }

  async read(): Promise<DriverSnapshot> {
    const known = this.#fresh();
    const [rules, routes, comment] =
      known !== null
        ? [known.rules, known.routes, known.nft]
        : await Promise.all([this.#readRules(), this.#readRoutes(), this.#readNftComment()]);
    const m = comment !== null ? /^meridian:([0-9a-f]{64}):(\d+)$/.exec(comment) : null;
    const slots = new Map<number, { p: boolean; b: boolean }>();
    for (const r of rules) {
      if (r.family !== 4 || r.fwmark === null || r.fwmark >= PROBE_MARK_BASE) continue;
      const slot = r.fwmark - MARK_BASE;
      const s = slots.get(slot) ?? { p: false, b: false };
      if (r.table === primaryTable(slot)) s.p = true;
      if (r.table === backupTable(slot)) s.b = true;
      slots.set(slot, s);
    }
    const snapshotRoutes = [...slots.entries()]
      .sort(([a], [b]) => a - b)
      .map(([slot, s]): { slot: number; active: ActivePath } => ({
        slot,
        active: s.p ? 'primary' : s.b ? 'backup' : 'none',
      }));
    return {
      hash: m?.[1] ?? null,
      version: m?.[2] !== undefined ? Number(m[2]) : null,
      routes: snapshotRoutes,
      objects: rules.length + routes.size + (comment !== null ? 1 : 0),
    };
  }

  async #checkInterfaces(policy: SitePolicy): Promise<DriverError | null> {
    const wanted = policy.interfaces.map((i) => i.ifName).join(' ');
    if (wanted === this.#interfacesSeen) return null;
    const links = await this.#json<{ ifname: string }[]>(['link', 'show']);
    const names = new Set(links.map((l) => l.ifname));
    const missing = policy.interfaces.map((i) => i.ifName).filter((n) => !names.has(n));
    if (missing.length === 0) {
      this.#interfacesSeen = wanted;
      return null;
    }
    return new DriverError(
      'AGENT_ERR_POLICY_INVALID',
      `policy ${policy.hash.slice(0, 12)} for site '${policy.site}' names interfaces missing here: ${missing.join(', ')}`,
    );
  }

  async apply(policy: SitePolicy): Promise<ApplyOutcome> {
    const problems = validatePolicy(policy);
    const inForce = this.#current?.hash ?? null;
    if (problems.length > 0) {
      const text = problems.map((p) => `${p.path}: ${p.message}`).join('; ');
      return {
        ok: false,
        error: new DriverError('AGENT_ERR_POLICY_INVALID', `invalid policy: ${text}`),
        inForce,
      };
    }
    const unsupported = await this.#unsupported(policy);
    if (unsupported !== null) return { ok: false, error: unsupported, inForce };
    try {
      const bad = await this.#checkInterfaces(policy);
      if (bad !== null) return { ok: false, error: bad, inForce };
      const result = await this.#sync(policy);
      this.#current = policy;
      // Now, so that the first switch does not pay the spawns.
      for (const family of [4, 6] as const) this.#session('switch', family).start();
      return { ok: true, hash: policy.hash, ...result };
    } catch (err) {
      const error = asUnsupported(
        err instanceof DriverError
          ? err
          : new DriverError('AGENT_ERR_DRIVER_APPLY', `applying policy failed: ${String(err)}`, {
              cause: err,
            }),
      );
      // Put the previous policy back (or nothing, if there was none); check everything again.
      this.#sysctlsSet = null;
      this.#interfacesSeen = '';
      const previous = this.#current;
      try {
        if (previous !== null) await this.#sync(previous);
        else await this.removeAll();
      } catch {
        return { ok: false, error, inForce: null };
      }
      return { ok: false, error, inForce };
    }
  }

  async #sync(policy: SitePolicy): Promise<{ changes: number; removed: number }> {
    await this.#ensureSysctls(policyNeedsSrv6(policy));
    const want = renderKernel(policy);
    // The same content again is a reconcile request (a re-send, a restart): read the kernel then.
    const known = this.#current?.hash === policy.hash ? null : this.#fresh();
    const epoch = this.#epoch;
    this.#known = null; // until this apply has completed
    const [haveRules, haveRoutes] =
      known !== null
        ? [known.rules, known.routes]
        : await Promise.all([this.#readRules(), this.#readRoutes()]);

    const v4Rules = new Set(haveRules.filter((x) => x.family === 4).map((x) => `${x.pref}|${x.fwmark}`));
    // Routes switched to backup stay there while their primary path is unchanged.
    const onBackup = new Set<number>();
    for (const r of policy.routes) {
      const p = v4Rules.has(`${primaryTable(r.slot)}|${markOf(r.slot)}`);
      const b = v4Rules.has(`${backupTable(r.slot)}|${markOf(r.slot)}`);
      const prefix = r.dstPrefixes[0] ?? '';
      const sig = haveRoutes.get(`4|${primaryTable(r.slot)}|${prefix}`);
      if (!p && b && r.backup !== null && sig === pathSignature(r, r.primary)) {
        onBackup.add(markOf(r.slot));
      }
    }
    const wantRules = want.rules.filter(
      (r) => !(r.fwmark !== null && onBackup.has(r.fwmark) && r.pref === r.table && r.pref % 2 === 0),
    );
    const wantRuleKeys = new Set(wantRules.map(ruleKey));
    const haveRuleKeys = new Set<string>();
    const ruleSpec = ruleSelector;

    const addRoutes: string[] = [];
    const wantRouteKeys = new Set<string>();
    for (const r of want.routes) {
      const key = `${r.family}|${r.table}|${normDst(r.dst, r.family)}`;
      wantRouteKeys.add(key);
      if (haveRoutes.get(key) === r.signature) continue;
      addRoutes.push(`route replace ${r.dst} ${r.attrs} table ${r.table} proto ${ROUTE_PROTO}`);
    }
    const add4: string[] = [];
    const add6: string[] = [];
    const haveAll = new Set(haveRules.map(ruleKey));
    for (const r of wantRules) {
      if (haveAll.has(ruleKey(r))) continue;
      (r.family === 4 ? add4 : add6).push(`rule add ${ruleSpec(r)}`);
    }
    const del4: string[] = [];
    const del6: string[] = [];
    for (const h of haveRules) {
      const k = ruleKey(h);
      if (wantRuleKeys.has(k) && !haveRuleKeys.has(k)) {
        haveRuleKeys.add(k);
        continue;
      }
      (h.family === 4 ? del4 : del6).push(`rule del ${ruleSpec(h)}`);
    }
    const delRoutes: string[] = [];
    for (const key of haveRoutes.keys()) {
      if (wantRouteKeys.has(key)) continue;
      const [, table, dst] = key.split('|');
      delRoutes.push(`route del ${dst ?? ''} table ${table ?? ''} proto ${ROUTE_PROTO}`);
    }

    // Order: new forwarding state first, then the rules pointing at it, then the classifier
    // (atomic swap), then what is no longer referenced.
    const tunsrc = policyNeedsSrv6(policy) ? [`sr tunsrc set ${policy.tunnelSource}`] : [];
    await this.#batch(null, [...tunsrc, ...addRoutes]);
    await this.#batch(4, add4);
    await this.#batch(6, add6);
    const comment = known !== null ? known.nft : await this.#readNftComment();
    const stamp = `meridian:${policy.hash}:${policy.version}`;
    let nftChanged = 0;
    if (comment !== stamp) {
      const r = await this.#nftCmd(['-f', '-'], renderNft(policy));
      if (r.code !== 0) {
        throw new DriverError('AGENT_ERR_DRIVER_APPLY', 'nft refused the classifier', {
          detail: r.stderr.trim(),
        });
      }
      nftChanged = 1;
    }
    await this.#batch(4, del4);
    await this.#batch(6, del6);
    await this.#batch(null, delRoutes);
    if (this.#epoch === epoch) {
      this.#known = {
        rules: wantRules,
        routes: new Map(
          want.routes.map((r) => [`${r.family}|${r.table}|${normDst(r.dst, r.family)}`, r.signature]),
        ),
        nft: stamp,
        at: known?.at ?? performance.now(),
      };
    }
    return {
      changes:
        addRoutes.length +
        add4.length +
        add6.length +
        nftChanged +
        del4.length +
        del6.length +
        delRoutes.length,
      removed: del4.length + del6.length + delRoutes.length,
    };
  }

  async #ensureSysctls(srv6: boolean): Promise<void> {
    if (this.#sysctlsSet === 'srv6' || (this.#sysctlsSet === 'ip' && !srv6)) return;
    const settings = [
      'net.ipv4.ip_forward=1',
      'net.ipv6.conf.all.forwarding=1',
      // Hop-by-hop transit packets arrive with a far site's source over whichever link their path
      // takes, not necessarily the one this site would use to answer: strict reverse-path
      // filtering would drop them. 0 off, 2 loose; the kernel applies the larger of all and the device.
      'net.ipv4.conf.all.rp_filter=0',
      'net.ipv4.conf.default.rp_filter=0',
      ...(srv6 ? ['net.ipv6.conf.all.seg6_enabled=1', 'net.ipv6.conf.default.seg6_enabled=1'] : []),
    ];
    const args = ['-q', '-w', ...settings];
    const r =
      this.#netns === undefined
        ? await run('sysctl', args)
        : await run(this.#ip, ['netns', 'exec', this.#netns, 'sysctl', ...args]);
    if (r.code !== 0) {
      throw new DriverError('AGENT_ERR_DRIVER_APPLY', `cannot set ${settings.join(' ')}`, {
        detail: r.stderr.trim(),
      });
    }
    this.#sysctlsSet = srv6 ? 'srv6' : 'ip';
  }

  #route(key: string): PolicyRoute | DriverError {
    const r = this.#current?.routes.find((x) => routeKey(x) === key);
    if (r === undefined)
      return new DriverError('AGENT_ERR_NO_ROUTE', `no route '${key}' in the applied policy`);
    return r;
  }

  async activateBackup(key: string): Promise<RerouteOutcome> {
    const out = (await this.activateBackups([key])).get(key);
    return out ?? { ok: false, error: new DriverError('AGENT_ERR_NO_ROUTE', `no route '${key}'`) };
  }

  async activateBackups(keys: readonly string[]): Promise<Map<string, RerouteOutcome>> {
    const out = new Map<string, RerouteOutcome>();
    const lines: string[] = [];
    /** The key of each line. */
    const pending: string[] = [];
    const slots: number[] = [];
    for (const key of keys) {
      const r = this.#route(key);
      if (r instanceof DriverError) out.set(key, { ok: false, error: r });
      else if (r.backup === null) {
        out.set(key, {
          ok: false,
          error: new DriverError('AGENT_ERR_NO_BACKUP', `route '${key}' has no backup path`),
        });
      } else {
        lines.push(
          `rule del pref ${primaryTable(r.slot)} fwmark ${hex(markOf(r.slot))} table ${primaryTable(r.slot)}`,
        );
        pending.push(key);
        slots.push(r.slot);
      }
    }
    if (lines.length === 0) return out;
    this.#epoch++;
    // IPv4 first (those rules pick the encapsulation: traffic moves with them), then IPv6 for the
    // routes whose IPv4 rule is gone. A rule already gone is a success here (`changed: false`).
    const v4 = await this.#runLines('switch', 4, lines);
    const fail = (key: string, detail: string): void => {
      out.set(key, {
        ok: false,
        error: new DriverError('AGENT_ERR_DRIVER_APPLY', `cannot switch '${key}' to backup`, { detail }),
      });
    };
    if (!v4.ok) {
      for (const key of pending) fail(key, `ip -4: ${v4.reason}: ${v4.detail}`);
      return out;
    }
    const gone = (e: string | null): boolean => e === null || NOT_THERE.test(e);
    const e4 = lines.map((_, i) => v4.answer.errors[i] ?? null);
    // IPv6 only where the IPv4 rule is gone: the IPv6 rule resolves the first segment of the
    // path the IPv4 rule still picks.
    const next = lines.flatMap((_, i) => (gone(e4[i] ?? null) ? [i] : []));
    const v6 = await this.#runLines(
      'switch',
      6,
      next.map((i) => lines[i] ?? ''),
    );
    for (const [i, key] of pending.entries()) {
      const e = e4[i] ?? null;
      const j = next.indexOf(i);
      if (!gone(e)) fail(key, `ip -4 ${lines[i] ?? ''}: ${e ?? ''}`);
      else if (!v6.ok) fail(key, `ip -6: ${v6.reason}: ${v6.detail}`);
      else if (!gone(v6.answer.errors[j] ?? null))
        fail(key, `ip -6 ${lines[i] ?? ''}: ${v6.answer.errors[j] ?? ''}`);
      else out.set(key, { ok: true, changed: e === null });
    }
    this.#patchKnown(
      slots,
      pending.every((key) => out.get(key)?.ok === true),
      false,
    );
    return out;
  }

  /**
   * Keeps the last-applied state (`#known`) true after a switch instead of dropping it: a dropped
   * state costs the next apply four kernel reads, and after a failure every site switches and then
   * applies. A switch whose outcome is not fully known drops it. (During an apply `#known` is null
   * and the apply's epoch check keeps it so.)
   */
  #patchKnown(slots: readonly number[], allOk: boolean, present: boolean): void {
    const k = this.#known;
    if (k === null) return;
    if (!allOk) {
      this.#known = null;
      return;
    }
    const switched = new Set(slots.map((slot) => `${primaryTable(slot)}|${markOf(slot)}`));
    const rules = k.rules.filter((r) => !switched.has(`${r.pref}|${r.fwmark}`));
    if (present) {
      for (const slot of slots) {
        for (const family of [4, 6] as const) {
          rules.push({ family, pref: primaryTable(slot), fwmark: markOf(slot), table: primaryTable(slot) });
        }
      }
    }
    this.#known = { ...k, rules };
  }

  async activatePrimary(key: string): Promise<RerouteOutcome> {
    const r = this.#route(key);
    if (r instanceof DriverError) return { ok: false, error: r };
    this.#epoch++;
    // No read of the rules first (a spawn): an add of a rule already there fails "File exists".
    const line = `rule add pref ${primaryTable(r.slot)} fwmark ${hex(markOf(r.slot))} table ${primaryTable(r.slot)}`;
    let changed = false;
    // IPv6 first so the first segment resolves as soon as the IPv4 rule moves traffic.
    for (const family of [6, 4] as const) {
      const res = await this.#runLines('switch', family, [line]);
      const e = res.ok ? (res.answer.errors[0] ?? null) : `${res.reason}: ${res.detail}`;
      if (e !== null && !(res.ok && ALREADY_THERE.test(e))) {
        this.#known = null;
        return {
          ok: false,
          error: new DriverError('AGENT_ERR_DRIVER_APPLY', `cannot switch '${key}' to primary`, {
            detail: `ip -${family} ${line}: ${e}`,
          }),
        };
      }
      changed ||= e === null;
    }
    this.#patchKnown([r.slot], true, true);
    return { ok: true, changed };
  }

  /**
   * The session of one use and family (`null`: no family flag), started on first use. Switches and
   * applies have their own: an apply's batch can take seconds on a busy router (hence its longer
   * timeout) and a switch must not queue behind it.
   */
  #session(use: SessionUse, family: Family | null): IpBatchSession {
    const key = `${use}|${family ?? '-'}`;
    let s = this.#sessions.get(key);
    if (s === undefined) {
      s = new IpBatchSession({
        ...(family !== null ? { family } : {}),
        ipBin: this.#ip,
        ...(use === 'apply' ? { timeoutMs: APPLY_BATCH_TIMEOUT_MS } : {}),
        ...(this.#netns !== undefined ? { netns: this.#netns } : {}),
      });
      this.#sessions.set(key, s);
    }
    return s;
  }

  /**
   * Lines through a session. A process that died under the batch (killed, or gone before the
   * session noticed) gets one more try on a new one — every line the driver sends can run twice
   * (rule add/del find the rule there / gone, routes are `replace`) — unless ip itself refused a
   * line's syntax, which would only make it exit again.
   */
  async #runLines(use: SessionUse, family: Family | null, lines: readonly string[]): Promise<IpBatchOutcome> {
    const session = this.#session(use, family);
    const first = await session.run(lines);
    if (first.ok || first.reason !== 'exited' || IP_PARSE_ERROR.test(first.detail)) return first;
    return session.run(lines);
  }

  async removeAll(): Promise<void> {
    this.#known = null;
    const [rules, routes] = await Promise.all([this.#readRules(), this.#readRoutes()]);
    const ruleLine = (r: RuleSpec): string => `rule del ${ruleSelector(r)}`;
    await this.#batch(4, rules.filter((r) => r.family === 4).map(ruleLine));
    await this.#batch(6, rules.filter((r) => r.family === 6).map(ruleLine));
    const dels = [...routes.keys()].map((key) => {
      const [, table, dst] = key.split('|');
      return `route del ${dst ?? ''} table ${table ?? ''} proto ${ROUTE_PROTO}`;
    });
    await this.#batch(null, dels);
    const comment = await this.#readNftComment();
    if (comment !== null) {
      const r = await this.#nftCmd(['delete', 'table', 'ip', NFT_TABLE]);
      if (r.code !== 0)
        throw new DriverError('AGENT_ERR_DRIVER_APPLY', 'cannot delete nft table', { detail: r.stderr });
    }
    this.#current = null;
    // Nothing owned is left to switch or apply to: no ip process stays behind.
    await this.close();
  }

  /** Ends the sessions' ip processes (a later switch or apply starts new ones). */
  async close(): Promise<void> {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.all(sessions.map((s) => s.close()));
  }
}

/** A route from `ip -j -d route show`, reduced to what the driver compares. */
function kernelSignature(r: Record<string, unknown>): string {
  const dev = str(r['dev']);
  switch (r['encap']) {
    case 'seg6':
      return `seg6|${(r['segs'] as string[] | undefined)?.join(',') ?? ''}|${dev}`;
    case 'seg6local':
      return `${str(r['action'])}|${str(r['nh6']) || str(r['nh4'])}|${dev}`;
    default: {
      const via = str(r['gateway']);
      return via === '' ? `plain|${dev}` : `plain|${dev}|${via}`;
    }
  }
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

/** A kernel refusal that means "no SRv6 here" becomes AGENT_ERR_DRIVER_UNSUPPORTED, not a raw message. */
function asUnsupported(err: DriverError): DriverError {
  if (err.code !== 'AGENT_ERR_DRIVER_APPLY' || !NO_LWT.test(`${err.message} ${err.detail ?? ''}`)) return err;
  return new DriverError(
    'AGENT_ERR_DRIVER_UNSUPPORTED',
    'this kernel has no SRv6 lightweight tunnels (encap seg6): use hop-by-hop forwarding',
    { detail: `${err.message}: ${err.detail ?? ''}`, cause: err },
  );
}
