/**
 * Fast reroute at the source site: a {@link RerouteDecider} fed by two failure signals, and the
 * driver's `activateBackup` / `activatePrimary` when it decides, without waiting for the controller.
 *
 * 1. Link alarms (link-alarm.ts), the fast and scalable signal: the agents at the two ends of a
 *    link probe it; when one declares it down ({@link FastReroute.linkDown}) it moves its own
 *    routes off the link and sends a signed alarm to every other site along every path it has there
 *    there; each receiver moves every route whose primary uses the link. Cost: O(links) probes.
 * 2. Per-path probes along every route's primary and backup path, the end-to-end check: they also
 *    see failures no link probe sees (a router that answers probes but drops transit traffic, a
 *    wrong SID). They cost O(paths) packets, so their rate has a budget (`maxPps`).
 *
 * How a path is probed (see policy.ts, `pathProbePortBase`): a UDP probe (the TWAMP-light format of
 * probe-packet.ts) sent from the site's host address and the path's probe source port
 * (`base + 2×slot`, `+1` for the backup) to the destination's host address always takes that path
 * (the driver pins it by source port), whichever path the route's traffic uses; the destination
 * agent's path reflector (`reflectorPort` on its host address, the same at every site) answers
 * twice, from the probe ports of its own primary and backup paths back (link-disjoint), so a dead
 * link on one way back does not look like the probed path dying. So a link dying
 * anywhere on the path shows at the source as lost probes. Routes whose paths are the same link
 * sequence share one prober (one representative port): probe load grows with distinct paths, not
 * with classes.
 *
 * A probe is lost when no answer came within the path's retransmission timeout (TCP style:
 * max(srtt + 4·rttvar, srtt + `slackMs`), 1 s until the first answer); losses before a path's
 * first answer are not counted for `warmupMs` (neighbour discovery, a path still being installed).
 * Failover time ≈ srtt + slack + (downAfterMisses − 1) × interval + one kernel operation.
 *
 * After a switch the route stays on its backup until the controller's next policy changes its
 * paths (the driver then installs and activates the new primary), or, as a safety net when the
 * controller never noticed (a short outage), until the primary has answered for `revertAfterMs`.
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { DriverPolicyApplier } from './agent-policy';
import type { RerouteOutcome } from './driver';
import { encodeProbeRequest, nowUs, parseProbe, randomId32, stampReply } from './probe-packet';
import { decodeLinkAlarm, encodeLinkAlarm, looksLikeAlarm, type LinkAlarm } from './link-alarm';
import { pathProbePort, routeKey, type PathState, type SitePolicy } from './policy';
import { RerouteDecider, type RerouteAction } from './policy-reroute';

export interface FastRerouteOptions {
  readonly applier: DriverPolicyApplier;
  /**
   * UDP port of the path reflectors (every agent with fast reroute runs one on its host address;
   * the same port at every site: the lab uses the probe port + 1).
   */
  readonly reflectorPort: number;
  readonly log: Logger;
  /** Probe period per distinct path (default 20 ms). */
  readonly intervalMs?: number;
  /** Consecutive losses that declare a path down (default 3). */
  readonly downAfterMisses?: number;
  /** Added to the smoothed RTT for the loss timeout (default 50 ms: scheduling stalls here). */
  readonly slackMs?: number;
  /** Back to the primary after it answered this long, if no new policy came (default 3000 ms). */
  readonly revertAfterMs?: number;
  /** Losses before a path's first answer are ignored this long (default 2000 ms). */
  readonly warmupMs?: number;
  /**
   * Per-path probes per second at most (default: no limit): with more distinct paths than
   * `maxPps × intervalMs / 1000` the probe period grows to fit. Link alarms stay fast either way.
   */
  readonly maxPps?: number;
  /** Key of the link alarms ({@link alarmKey} of the agent token); absent: no alarms sent or taken. */
  readonly alarmKey?: Buffer;
}

/** One switch, as reported (also sent to the controller as agent event `fast-reroute`). */
export interface FastRerouteEvent {
  readonly atMs: number;
  readonly action: RerouteAction['action'];
  readonly route: string;
  readonly slot: number;
  readonly dst: string;
  readonly reason: string;
  readonly policyVersion: number;
  /** Links of the path now in use. */
  readonly links: readonly string[];
  /** Time of the kernel operation. */
  readonly switchMs: number;
  readonly ok: boolean;
  readonly error?: string;
}

export interface FastRerouteCounters {
  sent: number;
  answered: number;
  lost: number;
  switches: number;
  failedSwitches: number;
  /** Link alarms sent (each copy), accepted, and refused (bad signature, replay, too old). */
  alarmsSent: number;
  alarmsAccepted: number;
  alarmsRefused: number;
}

/** Alarms older than this (sender clock vs ours) are refused as replays. */
const ALARM_MAX_AGE_MS = 30_000;
/** Each alarm copy is sent again after this long: one lost packet must not cost a failover. */
const ALARM_REPEAT_MS = 15;

interface Member {
  readonly slot: number;
  readonly role: 'primary' | 'backup';
}

interface Prober {
  readonly id: string;
  readonly port: number;
  readonly dstHost: string;
  /** The path's links, in order. */
  readonly links: readonly string[];
  members: Member[];
  socket: dgram.Socket | null;
  readonly session: number;
  seq: number;
  readonly pending: Map<number, number>;
  srtt: number;
  rttvar: number;
  answeredOnce: boolean;
  readonly startedAt: number;
}

/** The first usable IPv4 address of a prefix (where the destination's host address is). */
function firstHost(prefix: string): string {
  const [addr = '0.0.0.0', lenText = '32'] = prefix.split('/');
  const n = addr.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const h = Number(lenText) >= 31 ? n : n + 1;
  return [24, 16, 8, 0].map((s) => Math.floor(h / 2 ** s) % 256).join('.');
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

function cidrRange(cidr: string): [number, number] {
  const [addr = '0.0.0.0', lenText = '32'] = cidr.split('/');
  const size = 2 ** (32 - Number(lenText));
  const lo = Math.floor(ipToInt(addr) / size) * size;
  return [lo, lo + size - 1];
}

export class FastReroute extends EventEmitter<{ reroute: [FastRerouteEvent] }> {
  readonly #opts: FastRerouteOptions;
  readonly #log: Logger;
  /** Configured per-path probe period, and the one in use (grown to fit `maxPps`). */
  readonly #baseInterval: number;
  #interval: number;
  readonly #slack: number;
  readonly #warmup: number;
  readonly #decider: RerouteDecider;
  #revertAfter: number;
  readonly #revertAfterMs: number;
  /** Link alarms: last sequence number taken per sender, and this process's own sequence. */
  readonly #alarmSeen = new Map<number, number>();
  #alarmSeq = 0;
  /** Per slot on backup: consecutive answers of its primary path. */
  readonly #primaryStreak = new Map<number, number>();
  readonly #senderId = randomId32();
  #policy: SitePolicy | null = null;
  #probers = new Map<string, Prober>();
  #timer: NodeJS.Timeout | null = null;
  #reflector: dgram.Socket | null = null;
  #reflectorHost = '';
  /** Per destination site: the probers of its routes' primary and backup (the ways back for replies). */
  #wayBack = new Map<string, { prefixes: [number, number][]; probers: string[] }>();
  #stopped = false;
  /** Switches run one after another (see #act). */
  #switching: Promise<void> = Promise.resolve();
  readonly #counters: FastRerouteCounters = {
    sent: 0,
    answered: 0,
    lost: 0,
    switches: 0,
    failedSwitches: 0,
    alarmsSent: 0,
    alarmsAccepted: 0,
    alarmsRefused: 0,
  };

  constructor(opts: FastRerouteOptions) {
    super();
    this.#opts = opts;
    this.#log = opts.log.child({ module: 'fast-reroute' });
    this.#baseInterval = opts.intervalMs ?? 20;
    this.#interval = this.#baseInterval;
    this.#slack = opts.slackMs ?? 50;
    this.#warmup = opts.warmupMs ?? 2000;
    // A path is up again after a few answers (so a route never moves onto a path still dead);
    // going back to the primary after a switch waits much longer (see #revertCheck).
    this.#decider = new RerouteDecider({ downAfterMisses: opts.downAfterMisses ?? 3, upAfterOks: 2 });
    this.#revertAfterMs = opts.revertAfterMs ?? 3000;
    this.#revertAfter = Math.max(1, Math.ceil(this.#revertAfterMs / this.#interval));
    opts.applier.onApplied((p, active) => this.setPolicy(p, active));
  }

  counters(): FastRerouteCounters {
    return { ...this.#counters };
  }

  /** Which path the decider has a route on (`class/dst`), or null. */
  active(key: string): 'primary' | 'backup' | null {
    const r = this.#policy?.routes.find((x) => routeKey(x) === key);
    return r === undefined ? null : this.#decider.active(r.slot);
  }

  /** Takes a newly applied policy: re-plans the probers, keeps health of unchanged paths. */
  setPolicy(policy: SitePolicy, activeBackups: ReadonlySet<number>): void {
    if (this.#stopped) return;
    const old = this.#policy;
    this.#decider.setPolicy(policy, activeBackups);
    for (const r of policy.routes) {
      const prev = old?.routes.find((x) => x.slot === r.slot);
      const same = (a: PathState | null | undefined, b: PathState | null): boolean =>
        (a ?? null) === null ? b === null : b !== null && a!.links.join('>') === b.links.join('>');
      const changed = prev === undefined || !same(prev.primary, r.primary) || !same(prev.backup, r.backup);
      // The decider must agree with the kernel. The driver activates a changed primary, but keeps a
      // route on its backup while the primary path is unchanged (only the backup moved): the
      // decider then holds it on backup too, or it would never revert it (stuck on backup until
      // the controller happened to move the primary).
      if (activeBackups.has(r.slot)) {
        if (changed || this.#decider.active(r.slot) !== 'backup') this.#decider.heldOnBackup(r.slot);
      } else if (changed || this.#decider.active(r.slot) === 'backup') {
        this.#decider.restored(r.slot);
      }
    }
    this.#policy = policy;
    // Distinct paths (destination + link sequence) and the (slot, role) pairs that use them.
    const plan = new Map<string, { dstHost: string; links: readonly string[]; members: Member[] }>();
    for (const r of policy.routes) {
      const dstHost = firstHost(r.dstPrefixes[0] ?? '0.0.0.0/32');
      for (const role of ['primary', 'backup'] as const) {
        const path = role === 'primary' ? r.primary : r.backup;
        if (path === null || pathProbePort(policy, r.slot, role) === null) continue;
        const id = `${dstHost}|${path.links.join('>')}`;
        const entry = plan.get(id) ?? { dstHost, links: path.links, members: [] };
        entry.members.push({ slot: r.slot, role });
        plan.set(id, entry);
      }
    }
    const next = new Map<string, Prober>();
    const toOpen: Prober[] = [];
    for (const [id, e] of plan) {
      const ports = e.members.map((m) => pathProbePort(policy, m.slot, m.role));
      const old = this.#probers.get(id);
      if (old !== undefined && ports.includes(old.port)) {
        old.members = e.members; // same path, same port: keep its RTT and pending probes
        next.set(id, old);
        continue;
      }
      const p: Prober = {
        id,
        port: ports[0]!,
        dstHost: e.dstHost,
        links: e.links,
        members: e.members,
        socket: null,
        session: randomId32(),
        seq: 0,
        pending: new Map(),
        srtt: 0,
        rttvar: 0,
        answeredOnce: false,
        startedAt: performance.now(),
      };
      next.set(id, p);
      toOpen.push(p);
    }
    // Close the probers that go before binding new ones (a port may pass to another path).
    for (const [id, p] of this.#probers) if (next.get(id) !== p) p.socket?.close();
    for (const p of toOpen) p.socket = this.#open(policy.hostAddress, p.port, p.id);
    this.#probers = next;
    // Ways back: for each destination, the probers of one route's primary and backup (link-disjoint).
    this.#wayBack = new Map();
    for (const r of [...policy.routes].sort((x, y) => x.slot - y.slot)) {
      if (this.#wayBack.has(r.dst)) continue;
      const ids = [r.primary, r.backup]
        .filter((x): x is PathState => x !== null)
        .map((x) => `${firstHost(r.dstPrefixes[0] ?? '0.0.0.0/32')}|${x.links.join('>')}`)
        .filter((id) => next.has(id));
      this.#wayBack.set(r.dst, { prefixes: r.dstPrefixes.map(cidrRange), probers: ids });
    }
    if (this.#reflector === null || this.#reflectorHost !== policy.hostAddress) {
      this.#reflector?.close();
      this.#reflectorHost = policy.hostAddress;
      const r = dgram.createSocket('udp4');
      r.on('error', (err) => this.#log.warn({ err }, 'path reflector socket error'));
      r.on('message', (msg, rinfo) => this.#reflect(msg, rinfo.address, rinfo.port));
      r.bind(this.#opts.reflectorPort, policy.hostAddress);
      this.#reflector = r;
    }
    const maxPps = this.#opts.maxPps;
    const interval =
      maxPps !== undefined && maxPps > 0
        ? Math.max(this.#baseInterval, Math.ceil((next.size * 1000) / maxPps))
        : this.#baseInterval;
    if (interval !== this.#interval && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
    this.#interval = interval;
    this.#revertAfter = Math.max(1, Math.ceil(this.#revertAfterMs / interval));
    if (this.#timer === null) this.#timer = setInterval(() => this.#tick(), this.#interval);
    this.#log.info(
      { paths: next.size, routes: policy.routes.length, version: policy.version, intervalMs: interval },
      'path probes planned',
    );
  }

  /**
   * Answers a path probe of another site twice: from the probe ports of this site's primary and
   * backup path towards the asking site, so the answers go back along two link-disjoint paths and
   * one dead link cannot silence both (the asker's primary and backup probes would otherwise share
   * one way back, and a link on it would look like both of its paths dying).
   */
  #reflect(msg: Buffer, host: string, port: number): void {
    if (looksLikeAlarm(msg)) {
      this.#onAlarm(msg, host);
      return;
    }
    const t2 = nowUs();
    const parsed = parseProbe(msg);
    if (!parsed.ok || parsed.packet.type !== 'request') return;
    const ip = ipToInt(host);
    let sockets: dgram.Socket[] = [];
    for (const w of this.#wayBack.values()) {
      if (!w.prefixes.some(([lo, hi]) => ip >= lo && ip <= hi)) continue;
      sockets = w.probers.map((id) => this.#probers.get(id)?.socket).filter((x): x is dgram.Socket => !!x);
      break;
    }
    if (sockets.length === 0 && this.#reflector !== null) sockets = [this.#reflector];
    stampReply(msg, t2, nowUs());
    for (const s of sockets) s.send(msg, port, host, () => undefined);
  }

  /**
   * This agent declared one of its own links down: move its routes off the link and alarm every
   * other site (see link-alarm.ts). Called by the agent on its probe engine's liveness change.
   */
  linkDown(link: string): void {
    const policy = this.#policy;
    if (this.#stopped || policy === null) return;
    this.#applyLinkDown(link, `link ${link} down (own probes)`);
    const key = this.#opts.alarmKey;
    if (key === undefined) return;
    const alarm: LinkAlarm = {
      origin: policy.site,
      link,
      up: false,
      senderId: this.#senderId,
      seq: ++this.#alarmSeq,
      atMs: Date.now(),
    };
    const buf = encodeLinkAlarm(alarm, key);
    // To every site along every distinct path there that avoids the dead link (primary and backup
    // of the routes of all classes); when none does, unpinned from the reflector's socket, which
    // follows this site's routing (already moved off the link where a backup exists).
    const ways = new Map<string, dgram.Socket[]>();
    for (const p of this.#probers.values()) {
      const list = ways.get(p.dstHost) ?? [];
      if (p.socket !== null && !p.links.includes(link)) list.push(p.socket);
      ways.set(p.dstHost, list);
    }
    const send = (): void => {
      if (this.#stopped) return;
      for (const [host, sockets] of ways) {
        const via = sockets.length > 0 ? sockets : this.#reflector !== null ? [this.#reflector] : [];
        for (const sock of via) {
          try {
            sock.send(buf, this.#opts.reflectorPort, host, () => undefined);
            this.#counters.alarmsSent++;
          } catch {
            // A new policy closed this path's socket before the repeat: that path is gone.
          }
        }
      }
    };
    send();
    setTimeout(send, ALARM_REPEAT_MS).unref();
    this.#log.warn({ link, seq: alarm.seq, sites: ways.size }, 'link down: alarm sent');
  }

  #onAlarm(msg: Buffer, host: string): void {
    const key = this.#opts.alarmKey;
    if (key === undefined) return;
    const d = decodeLinkAlarm(msg, key);
    if (!d.ok) {
      this.#counters.alarmsRefused++;
      this.#log.warn({ from: host, reason: d.reason }, 'link alarm refused');
      return;
    }
    const a = d.alarm;
    if (a.senderId === this.#senderId) return;
    const last = this.#alarmSeen.get(a.senderId);
    if (last !== undefined && a.seq <= last) return; // the repeated copy, or a replay
    if (Math.abs(Date.now() - a.atMs) > ALARM_MAX_AGE_MS) {
      this.#counters.alarmsRefused++;
      this.#log.warn({ from: host, origin: a.origin, link: a.link }, 'link alarm refused: too old');
      return;
    }
    this.#alarmSeen.set(a.senderId, a.seq);
    this.#counters.alarmsAccepted++;
    if (!a.up) this.#applyLinkDown(a.link, `link ${a.link} down (alarm from ${a.origin})`);
  }

  #applyLinkDown(link: string, reason: string): void {
    const policy = this.#policy;
    if (policy === null) return;
    const actions: RerouteAction[] = [];
    for (const r of policy.routes) {
      const onPrimary = r.primary.links.includes(link);
      const onBackup = r.backup?.links.includes(link) ?? false;
      if (!onPrimary && !onBackup) continue;
      const a = this.#decider.linkDown(r.slot, onPrimary, onBackup, reason);
      if (a !== null) actions.push(a);
    }
    if (actions.length > 0) void this.#act(actions);
  }

  #open(host: string, port: number, id: string): dgram.Socket {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    s.on('error', (err) => this.#log.warn({ err, path: id, port }, 'path probe socket error'));
    s.on('message', (msg) => this.#onReply(id, msg));
    s.bind(port, host);
    return s;
  }

  #onReply(id: string, msg: Buffer): void {
    const p = this.#probers.get(id);
    const parsed = parseProbe(msg);
    if (p === undefined || !parsed.ok || parsed.packet.type !== 'reply') return;
    if (parsed.packet.sessionId !== p.session) return;
    const sentAt = p.pending.get(parsed.packet.seq);
    if (sentAt === undefined) return; // late (already counted lost) or duplicate
    p.pending.delete(parsed.packet.seq);
    const rtt = performance.now() - sentAt;
    if (!p.answeredOnce) {
      p.srtt = rtt;
      p.rttvar = rtt / 2;
    } else {
      p.rttvar = 0.75 * p.rttvar + 0.25 * Math.abs(p.srtt - rtt);
      p.srtt = 0.875 * p.srtt + 0.125 * rtt;
    }
    p.answeredOnce = true;
    this.#counters.answered++;
    this.#outcome(p, true);
  }

  #tick(): void {
    const now = performance.now();
    for (const p of this.#probers.values()) {
      if (p.socket === null) continue;
      const seq = p.seq++ >>> 0;
      p.pending.set(seq, now);
      const buf = encodeProbeRequest({ senderId: this.#senderId, sessionId: p.session, seq, t1: nowUs() });
      p.socket.send(buf, this.#opts.reflectorPort, p.dstHost, () => undefined);
      this.#counters.sent++;
    }
    // Losses are judged after the next I/O poll: after a stall, timers run before the sockets are
    // read, and answers already in the receive buffers must not count as lost (see probe-engine.ts).
    setImmediate(() => this.#judge());
  }

  #judge(): void {
    if (this.#stopped) return;
    const now = performance.now();
    const lost: Prober[] = [];
    for (const p of this.#probers.values()) {
      const rto = p.answeredOnce ? Math.max(p.srtt + this.#slack, p.srtt + 4 * p.rttvar) : 1000;
      for (const [seq, at] of p.pending) {
        if (now - at < rto) break; // insertion order = send order
        p.pending.delete(seq);
        this.#counters.lost++;
        if (p.answeredOnce || now - p.startedAt > this.#warmup) lost.push(p);
      }
    }
    // Backups' losses first: when the way back (the destination's route to us) breaks, primary and
    // backup probes die together, and the backup must already count as down, or the route would
    // move to a backup that is no better.
    for (const p of lost) this.#outcome(p, false, 'backup');
    for (const p of lost) this.#outcome(p, false, 'primary');
  }

  #outcome(p: Prober, answered: boolean, only?: 'primary' | 'backup'): void {
    const actions: RerouteAction[] = [];
    for (const m of p.members) {
      if (only !== undefined && m.role !== only) continue;
      const a = this.#decider.observe(m.slot, m.role, answered);
      if (a !== null) actions.push(a);
      else if (m.role === 'primary') {
        // Safety net when no new policy comes (an outage too short for the controller to see):
        // back to the primary once it has answered for revertAfterMs.
        const onBackup = this.#decider.active(m.slot) === 'backup';
        const streak = onBackup && answered ? (this.#primaryStreak.get(m.slot) ?? 0) + 1 : 0;
        this.#primaryStreak.set(m.slot, streak);
        const r = this.#policy?.routes.find((x) => x.slot === m.slot);
        if (streak >= this.#revertAfter && r !== undefined) {
          this.#primaryStreak.set(m.slot, 0);
          this.#decider.restored(m.slot);
          actions.push({
            action: 'activate-primary',
            routeKey: routeKey(r),
            slot: m.slot,
            reason: `primary path answered ${streak} probes in a row`,
          });
        }
      }
    }
    if (actions.length > 0) void this.#act(actions);
  }

  async #act(actions: RerouteAction[]): Promise<void> {
    const policy = this.#policy;
    if (policy === null) return;
    const driver = this.#opts.applier.driver;
    // Most urgent class first (the policy lists classes in priority order): voice moves first.
    const rank = new Map(policy.classes.map((c, i) => [c.id, i]));
    const classOf = (a: RerouteAction): number =>
      rank.get(policy.routes.find((r) => r.slot === a.slot)?.class ?? '') ?? rank.size;
    const ordered = [...actions].sort((a, b) => classOf(a) - classOf(b));
    // Not behind a policy apply (that can take hundreds of ms on a busy router): the driver keeps
    // a switch made during an apply (see LinuxPolicyDriver #epoch). Switches queue among themselves.
    const run = this.#switching.then(async () => {
      const t0 = performance.now();
      const backups = ordered.filter((a) => a.action === 'activate-backup').map((a) => a.routeKey);
      const batched =
        driver.activateBackups !== undefined && backups.length > 1
          ? await driver.activateBackups(backups)
          : new Map<string, RerouteOutcome>();
      const batchMs = performance.now() - t0;
      await Promise.all(
        ordered.map(async (a) => {
          const t1 = performance.now();
          const done = batched.get(a.routeKey);
          const out =
            done ??
            (a.action === 'activate-backup'
              ? await driver.activateBackup(a.routeKey)
              : await driver.activatePrimary(a.routeKey));
          const route = policy.routes.find((r) => r.slot === a.slot);
          const path = a.action === 'activate-backup' ? route?.backup : route?.primary;
          const ev: FastRerouteEvent = {
            atMs: Date.now(),
            action: a.action,
            route: a.routeKey,
            slot: a.slot,
            dst: route?.dst ?? '',
            reason: a.reason,
            policyVersion: policy.version,
            links: path?.links ?? [],
            switchMs: Math.round((done !== undefined ? batchMs : performance.now() - t1) * 10) / 10,
            ok: out.ok,
            ...(out.ok ? {} : { error: `${out.error.code}: ${out.error.message}` }),
          };
          if (out.ok) this.#counters.switches++;
          else {
            this.#counters.failedSwitches++;
            // The kernel did not move: let the decider try again on the next outcomes.
            this.#decider.restored(a.slot);
          }
          this.#log.warn({ ...ev }, `fast reroute: ${a.routeKey} ${a.action}`);
          this.emit('reroute', ev);
        }),
      );
    });
    this.#switching = run.catch((err: unknown) => this.#log.error({ err }, 'fast reroute failed'));
    await this.#switching;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const p of this.#probers.values()) p.socket?.close();
    this.#probers.clear();
    this.#reflector?.close();
    this.#reflector = null;
  }
}
