import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { AgentError } from './errors';
import { encodeProbeRequest, nowUs, parseProbe, probeRttMs, randomId32 } from './probe-packet';
import { TimerQueue } from './timer-queue';

/** One peer to probe, as the controller's probe plan names it. */
export interface ProbeTarget {
  readonly link: string;
  readonly peerSite: string;
  readonly host: string;
  readonly port: number;
}

/** The controller's probe plan (proto `ProbePlan`); 0 in a number means "agent default". */
export interface ProbePlan {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly downAfterMisses: number;
  readonly upAfterSuccesses: number;
  readonly reportIntervalMs: number;
  readonly targets: readonly ProbeTarget[];
}

/**
 * Defaults for plan fields the controller leaves at 0. Detection time of a silent peer is about
 * `(downAfterMisses - 1) * intervalMs + timeoutMs` plus up to one interval (where in the interval
 * the peer died): 250-350 ms with these values, inside the 400 ms target.
 */
export const PROBE_PLAN_DEFAULTS = {
  intervalMs: 100,
  /** Half the interval, at least 20 ms: see {@link effectivePlan}. */
  timeoutMs: 0,
  downAfterMisses: 3,
  upAfterSuccesses: 3,
  reportIntervalMs: 1000,
} as const;

/** A plan with every default applied and every number in range. */
export type EffectivePlan = Omit<ProbePlan, 'targets'> & { readonly targets: readonly ProbeTarget[] };

/** Applies the defaults and clamps numbers to sane ranges (the plan comes from the network). */
export function effectivePlan(plan: ProbePlan): EffectivePlan {
  const int = (v: number, def: number, min: number, max: number): number =>
    Number.isFinite(v) && v > 0 ? Math.min(max, Math.max(min, Math.round(v))) : def;
  const intervalMs = int(plan.intervalMs, PROBE_PLAN_DEFAULTS.intervalMs, 10, 60_000);
  return {
    intervalMs,
    timeoutMs: int(plan.timeoutMs, Math.max(20, Math.round(intervalMs / 2)), 5, 60_000),
    downAfterMisses: int(plan.downAfterMisses, PROBE_PLAN_DEFAULTS.downAfterMisses, 1, 1000),
    upAfterSuccesses: int(plan.upAfterSuccesses, PROBE_PLAN_DEFAULTS.upAfterSuccesses, 1, 1000),
    reportIntervalMs: int(plan.reportIntervalMs, PROBE_PLAN_DEFAULTS.reportIntervalMs, 50, 600_000),
    targets: plan.targets,
  };
}

/** One probe's outcome (proto `ProbeSample`). */
export interface ProbeSample {
  seq: number;
  /** Sender clock, µs. */
  sentAtUs: number;
  /** Round trip without the reflector's hold time; -1 when lost. */
  rttMs: number;
  /** One-way sender -> reflector estimate (needs synced clocks); -1 when unknown. */
  fwdMs: number;
  lost: boolean;
}

/** Results of one link since the previous report (proto `LinkProbeStats`). */
export interface LinkProbeStats {
  link: string;
  peerSite: string;
  sent: number;
  received: number;
  lost: number;
  reordered: number;
  duplicates: number;
  /** The agent's liveness verdict with hysteresis (false until first declared up). */
  alive: boolean;
  /** Every probe resolved in the window (answered or timed out), in send order. */
  samples: ProbeSample[];
}

/** One aggregated report (proto `ProbeReport`). */
export interface ProbeReport {
  sentAtMs: number;
  links: LinkProbeStats[];
}

/** A liveness verdict change of one link. */
export interface LivenessChange {
  readonly link: string;
  readonly peerSite: string;
  readonly up: boolean;
  /** Wall clock, ms. */
  readonly atMs: number;
  /** Consecutive misses (down) or successes (up) that decided it. */
  readonly streak: number;
  /** Last answered probe's RTT, ms, or null. */
  readonly lastRttMs: number | null;
}

/** Totals since the engine started. */
export interface ProbeEngineCounters {
  sent: number;
  received: number;
  lost: number;
  reordered: number;
  duplicates: number;
  /** Replies that came after their probe had been declared lost. */
  late: number;
  /** Datagrams on the engine's socket that are not probe packets. */
  malformed: number;
  /** Probe packets not answering one of this engine's probes (other sender, unknown session, a request). */
  foreign: number;
  sendErrors: number;
}

/** Current view of one probed link. */
export interface LinkProbeView {
  readonly link: string;
  readonly peerSite: string;
  readonly host: string;
  readonly port: number;
  readonly alive: boolean | null;
  readonly lastRttMs: number | null;
  /** Smoothed RTT (EWMA 1/8). */
  readonly srttMs: number | null;
  /** RFC 3550 interarrival jitter of the RTT, ms. */
  readonly jitterMs: number;
}

export type ProbeEngineEvents = {
  /** About once per report interval, and at once after a liveness change. */
  report: [ProbeReport];
  liveness: [LivenessChange];
};

export interface ProbeEngineOptions {
  /** Local address to send probes from; default 127.0.0.1. */
  readonly bindHost?: string;
  readonly log: Logger;
  /** Probe size in bytes (header plus padding); default the header only. */
  readonly probeBytes?: number;
  /**
   * Send a report at once when a link's liveness changes (default true). False gives the naive
   * "report on the timer only" behaviour, kept as the detection benchmark's baseline.
   */
  readonly reportOnLivenessChange?: boolean;
}

/** Answered seqs remembered per target for duplicate detection (100 s at the default interval). */
const RECENT = 1024;

interface Window {
  sent: number;
  received: number;
  lost: number;
  reordered: number;
  duplicates: number;
  samples: ProbeSample[];
}

interface TargetState {
  readonly key: string;
  readonly target: ProbeTarget;
  readonly sessionId: number;
  active: boolean;
  nextSeq: number;
  nextSendAt: number;
  /** seq -> sender µs timestamp of probes awaiting a reply. */
  readonly pending: Map<number, number>;
  /** Ring of recently answered seqs (stored +1 so 0 means empty), for duplicate detection. */
  readonly answered: Float64Array;
  maxAnswered: number;
  misses: number;
  successes: number;
  /** Pending probes already counted as a miss at their liveness deadline (see #send). */
  readonly overdue: Set<number>;
  /** Loop time (ms) of the last reply, or null: for the link-down log. */
  lastReplyAt: number | null;
  alive: boolean | null;
  lastRttMs: number | null;
  srttMs: number | null;
  jitterMs: number;
  window: Window;
}

const emptyWindow = (): Window => ({
  sent: 0,
  received: 0,
  lost: 0,
  reordered: 0,
  duplicates: 0,
  samples: [],
});
const targetKey = (t: ProbeTarget): string => `${t.link}\u0000${t.host}\u0000${t.port}`;

/**
 * Sends UDP probes to every target of the plan, matches replies, and turns them into loss,
 * reordering, duplicate, RTT and jitter figures and a liveness verdict with hysteresis. All timing
 * runs on one {@link TimerQueue}; all probes leave from one socket.
 */
/** Least time beyond the smoothed RTT before a probe counts as a liveness miss (scheduling noise). */
const LIVENESS_SLACK_MS = 30;
/** Datagrams libuv reads from one UDP socket per loop iteration (`count = 32` in uv__udp_recvmsg). */
const UV_UDP_READS_PER_POLL = 32;
/** Polls a verdict may wait for a socket that keeps reading full batches. */
const MAX_JUDGE_DEFERRALS = 16;

export class ProbeEngine extends EventEmitter<ProbeEngineEvents> {
  readonly #log: Logger;
  readonly #opts: ProbeEngineOptions;
  readonly #senderId = randomId32();
  readonly #queue = new TimerQueue();
  /** Reply deadlines passed, judged after the next I/O poll (see #timeout). */
  #dueTimeouts: [TargetState, number, 'overdue' | 'loss'][] = [];
  /** Datagrams read from the socket since the pending verdicts were scheduled (see #judge). */
  #readsSinceJudge = 0;
  #judgeDeferrals = 0;
  readonly #targets = new Map<string, TargetState>();
  readonly #bySession = new Map<number, TargetState>();
  #plan: EffectivePlan = effectivePlan({
    intervalMs: 0,
    timeoutMs: 0,
    downAfterMisses: 0,
    upAfterSuccesses: 0,
    reportIntervalMs: 0,
    targets: [],
  });
  #socket: dgram.Socket | undefined;
  #reportTimer: NodeJS.Timeout | undefined;
  readonly #counters: ProbeEngineCounters = {
    sent: 0,
    received: 0,
    lost: 0,
    reordered: 0,
    duplicates: 0,
    late: 0,
    malformed: 0,
    foreign: 0,
    sendErrors: 0,
  };

  constructor(opts: ProbeEngineOptions) {
    super();
    this.#opts = opts;
    this.#log = opts.log.child({ module: 'probe-engine' });
  }

  /** Binds the sending socket and starts the report timer (no targets until {@link setPlan}). */
  async start(): Promise<void> {
    if (this.#socket) return;
    const host = this.#opts.bindHost ?? '127.0.0.1';
    const socket = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(
          new AgentError('AGENT_ERR_PROBE_BIND', `cannot bind the probe sender on ${host}: ${err.message}`, {
            cause: err,
          }),
        );
      socket.once('error', onError);
      socket.bind(0, host, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    socket.on('error', (err) => this.#log.warn({ err }, 'probe sender socket error'));
    socket.on('message', (msg) => this.#onReply(msg));
    this.#socket = socket;
    this.#armReportTimer();
  }

  async stop(): Promise<void> {
    this.#queue.stop();
    if (this.#reportTimer) clearInterval(this.#reportTimer);
    this.#reportTimer = undefined;
    for (const st of this.#targets.values()) st.active = false;
    this.#targets.clear();
    this.#bySession.clear();
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  get closed(): boolean {
    return this.#socket === undefined;
  }

  /** The plan in force, defaults applied. */
  get plan(): EffectivePlan {
    return this.#plan;
  }

  /**
   * Installs a new plan. Targets that stay (same link, host and port) keep their liveness state
   * and counters; new ones start staggered over one interval so probes do not leave in bursts.
   */
  setPlan(plan: ProbePlan): void {
    const eff = effectivePlan(plan);
    const reportChanged = eff.reportIntervalMs !== this.#plan.reportIntervalMs;
    this.#plan = eff;
    const wanted = new Map<string, ProbeTarget>();
    for (const t of eff.targets) wanted.set(targetKey(t), t);
    for (const [key, st] of this.#targets) {
      if (!wanted.has(key)) {
        st.active = false;
        this.#targets.delete(key);
        this.#bySession.delete(st.sessionId);
      }
    }
    const now = this.#queue.now();
    const fresh = [...wanted].filter(([key]) => !this.#targets.has(key));
    fresh.forEach(([key, target], i) => {
      let sessionId = randomId32();
      while (this.#bySession.has(sessionId)) sessionId = randomId32();
      const st: TargetState = {
        key,
        target,
        sessionId,
        active: true,
        nextSeq: 0,
        nextSendAt: now + (eff.intervalMs * i) / Math.max(1, fresh.length),
        pending: new Map(),
        answered: new Float64Array(RECENT),
        maxAnswered: -1,
        misses: 0,
        successes: 0,
        overdue: new Set(),
        lastReplyAt: null,
        alive: null,
        lastRttMs: null,
        srttMs: null,
        jitterMs: 0,
        window: emptyWindow(),
      };
      this.#targets.set(key, st);
      this.#bySession.set(sessionId, st);
      this.#queue.at(st.nextSendAt, () => this.#send(st));
    });
    if (reportChanged) this.#armReportTimer();
    this.#log.info(
      { targets: this.#targets.size, intervalMs: eff.intervalMs, timeoutMs: eff.timeoutMs },
      'probe plan installed',
    );
  }

  /** Totals since start. */
  counters(): ProbeEngineCounters {
    return { ...this.#counters };
  }

  /** Current state of every probed link. */
  links(): LinkProbeView[] {
    return [...this.#targets.values()].map((st) => ({
      link: st.target.link,
      peerSite: st.target.peerSite,
      host: st.target.host,
      port: st.target.port,
      alive: st.alive,
      lastRttMs: st.lastRttMs,
      srttMs: st.srttMs,
      jitterMs: st.jitterMs,
    }));
  }

  /** Builds a report of everything since the previous one, emits it and starts a new window. */
  flushReport(): ProbeReport {
    const links: LinkProbeStats[] = [];
    for (const st of this.#targets.values()) {
      const w = st.window;
      st.window = emptyWindow();
      // Samples are recorded as probes resolve; timeouts and replies interleave, so restore send order.
      w.samples.sort((a, b) => a.sentAtUs - b.sentAtUs);
      links.push({
        link: st.target.link,
        peerSite: st.target.peerSite,
        sent: w.sent,
        received: w.received,
        lost: w.lost,
        reordered: w.reordered,
        duplicates: w.duplicates,
        alive: st.alive === true,
        samples: w.samples,
      });
    }
    const report: ProbeReport = { sentAtMs: Date.now(), links };
    this.emit('report', report);
    return report;
  }

  #armReportTimer(): void {
    if (this.#reportTimer) clearInterval(this.#reportTimer);
    if (!this.#socket) return;
    this.#reportTimer = setInterval(() => {
      if (this.#targets.size > 0) this.flushReport();
    }, this.#plan.reportIntervalMs);
  }

  #send(st: TargetState): void {
    const socket = this.#socket;
    if (!st.active || !socket) return;
    const plan = this.#plan;
    const seq = st.nextSeq;
    st.nextSeq = (st.nextSeq + 1) >>> 0;
    const t1 = nowUs();
    const buf = encodeProbeRequest(
      { senderId: this.#senderId, sessionId: st.sessionId, seq, t1 },
      this.#opts.probeBytes,
    );
    st.pending.set(seq, t1);
    st.window.sent++;
    this.#counters.sent++;
    socket.send(buf, st.target.port, st.target.host, (err) => {
      // The probe stays pending: it will time out and count as lost, which is what the peer sees.
      if (err) this.#counters.sendErrors++;
    });
    const now = this.#queue.now();
    this.#queue.at(now + plan.timeoutMs, () => this.#timeout(st, seq, 'loss'));
    // Liveness needs no proof of loss, only a reply that is overdue for this link's RTT: a link
    // with a 10 ms RTT is down long before the plan's timeout (sized for the slowest link). The
    // loss statistics still wait for the plan's timeout, so a late reply is not counted lost.
    const rto =
      st.srttMs === null ? plan.timeoutMs : st.srttMs + Math.max(4 * st.jitterMs, LIVENESS_SLACK_MS);
    if (rto < plan.timeoutMs) this.#queue.at(now + rto, () => this.#timeout(st, seq, 'overdue'));
    // Drift-free cadence; after a stall (GC, busy loop) skip missed slots instead of bursting.
    st.nextSendAt += plan.intervalMs;
    if (st.nextSendAt < now) st.nextSendAt = now + plan.intervalMs;
    this.#queue.at(st.nextSendAt, () => this.#send(st));
  }

  /**
   * A reply deadline passed. The verdict waits for the loop's next I/O poll (`setImmediate`): after
   * a stall (a process spawn, GC, a starved CPU) timers run before the socket is read, and the
   * reply may already be sitting in the receive buffer; judging at once would count it lost and
   * take a healthy link down, which moves routes and causes more stalls.
   */
  #timeout(st: TargetState, seq: number, kind: 'overdue' | 'loss'): void {
    this.#dueTimeouts.push([st, seq, kind]);
    if (this.#dueTimeouts.length === 1) {
      this.#readsSinceJudge = 0;
      setImmediate(() => this.#judge());
    }
  }

  #judge(): void {
    // One poll reads at most UV_UDP_READS_PER_POLL datagrams from a socket (libuv's fairness
    // cap). A poll that read that many may have left replies in the buffer — after a ~100 ms
    // stall every link's replies queue up on this one socket — so judge after another poll, or
    // all the links would be declared down together (seen in the lab: ten agents stalled by a
    // burst of process spawns, and every link of the lab went down at once).
    // Bounded: a flood on the probe port must not postpone verdicts for ever.
    if (
      this.#readsSinceJudge >= UV_UDP_READS_PER_POLL &&
      this.#socket !== undefined &&
      this.#judgeDeferrals < MAX_JUDGE_DEFERRALS
    ) {
      this.#readsSinceJudge = 0;
      this.#judgeDeferrals++;
      setImmediate(() => this.#judge());
      return;
    }
    this.#judgeDeferrals = 0;
    const due = this.#dueTimeouts;
    this.#dueTimeouts = [];
    for (const [t, q, k] of due) {
      if (k === 'loss') this.#lost(t, q);
      else if (t.active && t.pending.has(q) && !t.overdue.has(q)) {
        t.overdue.add(q);
        this.#miss(t);
      }
    }
  }

  #lost(st: TargetState, seq: number): void {
    const sentUs = st.pending.get(seq);
    if (sentUs === undefined || !st.active) return;
    st.pending.delete(seq);
    st.window.lost++;
    this.#counters.lost++;
    st.window.samples.push({ seq, sentAtUs: sentUs, rttMs: -1, fwdMs: -1, lost: true });
    if (!st.overdue.delete(seq)) this.#miss(st);
  }

  #miss(st: TargetState): void {
    st.successes = 0;
    st.misses++;
    if (st.alive !== false && st.misses >= this.#plan.downAfterMisses) this.#setAlive(st, false, st.misses);
  }

  #onReply(msg: Buffer): void {
    const t4 = nowUs();
    this.#readsSinceJudge++;
    const parsed = parseProbe(msg);
    if (!parsed.ok) {
      this.#counters.malformed++;
      return;
    }
    const p = parsed.packet;
    const st =
      p.type === 'reply' && p.senderId === this.#senderId ? this.#bySession.get(p.sessionId) : undefined;
    if (!st) {
      this.#counters.foreign++;
      return;
    }
    const slot = p.seq % RECENT;
    if (!st.pending.has(p.seq)) {
      if (st.answered[slot] === p.seq + 1) {
        st.window.duplicates++;
        this.#counters.duplicates++;
      } else {
        this.#counters.late++;
      }
      return;
    }
    st.pending.delete(p.seq);
    st.overdue.delete(p.seq);
    st.answered[slot] = p.seq + 1;
    if (p.seq < st.maxAnswered) {
      st.window.reordered++;
      this.#counters.reordered++;
    } else {
      st.maxAnswered = p.seq;
    }
    const rtt = Math.max(0, probeRttMs(p, t4));
    const fwd = p.t2 > 0 ? (p.t2 - p.t1) / 1000 : -1;
    st.window.received++;
    this.#counters.received++;
    st.window.samples.push({
      seq: p.seq,
      sentAtUs: p.t1,
      rttMs: rtt,
      fwdMs: fwd >= 0 ? fwd : -1,
      lost: false,
    });
    if (st.lastRttMs !== null) st.jitterMs += (Math.abs(rtt - st.lastRttMs) - st.jitterMs) / 16;
    st.srttMs = st.srttMs === null ? rtt : st.srttMs + (rtt - st.srttMs) / 8;
    st.lastRttMs = rtt;
    st.lastReplyAt = this.#queue.now();
    st.misses = 0;
    st.successes++;
    if (st.alive !== true && st.successes >= this.#plan.upAfterSuccesses)
      this.#setAlive(st, true, st.successes);
  }

  #setAlive(st: TargetState, up: boolean, streak: number): void {
    st.alive = up;
    const change: LivenessChange = {
      link: st.target.link,
      peerSite: st.target.peerSite,
      up,
      atMs: Date.now(),
      streak,
      lastRttMs: st.lastRttMs,
    };
    if (up) this.#log.info(change, 'link up');
    else {
      // What an operator needs to tell a dead link from a stalled agent or data path.
      const now = this.#queue.now();
      this.#log.warn(
        {
          ...change,
          srttMs: st.srttMs,
          silentMs: st.lastReplyAt === null ? null : Math.round(now - st.lastReplyAt),
          pending: st.pending.size,
        },
        'link down',
      );
    }
    this.emit('liveness', change);
    // The controller must hear about it now, not at the next report tick.
    if (this.#opts.reportOnLivenessChange !== false) this.flushReport();
  }
}
