/**
 * The route loop: measured link state -> routes -> policies -> agents.
 *
 * It owns the controller's `RouteEngine` (incremental, with hysteresis). `link-change` events are
 * gathered and applied to the engine in one `update()`. How long they are gathered depends on what
 * changed: a link going down, stale or back up is urgent and waits only `coalesceMs` (a failure
 * usually moves several links within a few ms; a link back up gives routes their protection path
 * again, see forwarding-backup.ts); metric changes are not, and run at most once per
 * `qualityIntervalMs`. Without that split a noisy network (or a starved host) turns
 * every report into a policy version: each version costs every agent a kernel update, which adds
 * the very delay and jitter that triggered it, and the loop feeds itself. When routes changed the
 * whole route set is compiled; only
 * sites whose policy hash differs from their current version get a new version (one number per
 * cycle, from the store), which is written to the store and then handed to the distributor. A
 * cycle with a liveness change compiles even when no route changed: the policies' forwarding
 * backups (protection paths) depend on which links are up, not only on the routes.
 *
 * Forwarding modes (`forwarding`, default `auto`): each route is compiled as SRv6 only when its
 * head-end and every site of its paths reported SRv6 in their agents' hello (`setSrv6Sites`), hop
 * by hop otherwise. A change of that set is urgent like a liveness change: until the policies say
 * hop-by-hop, a route through a site that cannot decapsulate SRv6 is black-holed there. The set
 * is the controller's: connected or last known sites, so an agent restart does not flip modes.
 *
 * Without an addressing plan the loop still keeps the routes current (API, events) but compiles
 * and distributes nothing: policies are addresses and SIDs, and only a plan says what they are.
 *
 * Every mutation (cycle, rollback, re-issue) runs on one queue, so versions are issued in order.
 * A failed compile or store write leaves the sites' current versions unchanged and is retried after
 * `retryMs`, compiling even if no route changed in between.
 *
 * Cycle timings (`CycleRecord.timings`, logged as fields): detect = first `link-change` of the
 * cycle -> start of the compute (coalescing and queueing); compute = `RouteEngine.update`; compile;
 * store (version number + write); push (`gateway.send` to every target); ack = end of push -> the
 * last target settled (acked ok or failed, or ack timeout). `total` = detect start -> last ack.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import {
  DEFAULT_MARGINS,
  routingPairs,
  RouteEngine,
  type HysteresisMarginsInput,
  type LinkState,
  type NetworkState,
  type Route,
  type RouteChange,
  type Topology,
} from '@meridian/topology';
import { ControllerError } from './errors';
import { linkStateOf, type LinkChange, type LinkSnapshot } from './link-estimator';
import {
  compilePoliciesDetailed,
  type AddressingPlan,
  type CompiledSitePolicy,
  type ForwardingChoice,
  type ForwardingMode,
} from './policy-compiler';
import { forwardingBackups } from './forwarding-backup';
import type { PolicyDistributor } from './policy-distributor';
import type { PolicyRef, PolicyStore, PolicyVersionMeta, PolicyVersionReason } from './policy-store';

/**
 * The controller's default hysteresis: the library's 10 %, but 5 ms instead of 2 ms absolute.
 * Measured latency moves by a few ms with queueing and host load, and a call gains nothing from a
 * 5 ms shorter path (G.114 budgets 150 ms one way); each move is a policy version at every site.
 */
export const CONTROLLER_MARGINS: HysteresisMarginsInput = {
  relativePct: DEFAULT_MARGINS.relativePct,
  absolute: { ...DEFAULT_MARGINS.absolute, latency: 5 },
};

export interface RouteLoopSettings {
  /** Hysteresis margins (missing fields: `DEFAULT_MARGINS`), or `false` for the pure optimum. Default {@link CONTROLLER_MARGINS}. */
  readonly hysteresis?: HysteresisMarginsInput | false;
  /** How long urgent link changes (down, stale) are gathered into one cycle (default 5 ms). */
  readonly coalesceMs?: number;
  /**
   * Metric changes and links coming back up run at most once per this period (default 1000 ms):
   * they move routes for quality, not reachability, and each version costs every agent a kernel update.
   */
  readonly qualityIntervalMs?: number;
  /** Cycles kept for the API (default 100). */
  readonly cycleHistory?: number;
  /** Delay before retrying a failed compile or store write (default 1000 ms). */
  readonly retryMs?: number;
  /**
   * Above this many routes (classes x ordered site pairs) the loop stays off and says so (default
   * 200,000: the full route set of ~300 sites with 2 classes; synthetic 1,000-site telemetry benches
   * would otherwise spend their memory and CPU on a million routes).
   */
  readonly maxRoutes?: number;
  /**
   * `auto` (default): per route, SRv6 where every site can do it (`setSrv6Sites`), hop-by-hop
   * otherwise; `srv6` / `hop-by-hop`: every route in that mode, whatever the agents said.
   */
  readonly forwarding?: ForwardingChoice;
}

export interface RouteLoopOptions extends RouteLoopSettings {
  readonly topology: Topology;
  readonly log: Logger;
  readonly store: PolicyStore;
  readonly distributor: PolicyDistributor;
  /** Absent: routes only, no policies (see the module comment). */
  readonly addressing?: AddressingPlan;
  /** The link state at start (the estimator's snapshots). */
  readonly initial?: readonly LinkSnapshot[];
}

/** One loop cycle, as kept for `GET /api/v1/routes/cycles` and logged. */
export interface CycleRecord {
  readonly id: number;
  /** ISO time the cycle's first link change arrived (or the rollback/start was asked). */
  readonly startedAt: string;
  readonly trigger: 'start' | 'link-change' | 'capabilities' | 'retry' | 'rollback' | 'reissue';
  /** Links whose state the cycle applied. */
  readonly links: string[];
  /** Routes whose status, primary or backup changed. */
  routeChanges: number;
  recomputed: number;
  /**
   * Routes whose policy backup is a link-disjoint protection path instead of the route's own
   * backup (which shares a link with the primary; see forwarding-backup.ts); null if not compiled.
   */
  protectedRoutes: number | null;
  /** Routes compiled per forwarding mode; null if not compiled. */
  modes: Record<ForwardingMode, number> | null;
  /** The version issued, or null (no site changed, no plan, or an error). */
  version: number | null;
  /** Sites the version was issued for. */
  sites: string[];
  /** Of those, sites whose agent was not connected: they get it on (re)connect, the cycle does not wait. */
  deferred: string[];
  acked: number;
  failed: number;
  error: { code: string; message: string } | null;
  readonly timings: {
    detectMs: number;
    computeMs: number;
    compileMs: number | null;
    storeMs: number | null;
    pushMs: number | null;
    /** null until every pushed site settled. */
    ackMs: number | null;
    totalMs: number | null;
  };
}

/** What a rollback did. */
export interface RollbackResult {
  readonly rollbackOf: number;
  /** The new version carrying the old content, or null when every site already had it. */
  readonly version: number | null;
  readonly sites: string[];
}

export type RouteLoopEvents = {
  'routes-changed': [changes: RouteChange[]];
  cycle: [CycleRecord];
};

const round = (x: number): number => Math.round(x * 1000) / 1000;

interface OpenCycle {
  readonly record: CycleRecord;
  readonly pushEnd: number;
  readonly detectStart: number;
  readonly waiting: Set<string>;
}

export class RouteLoop extends EventEmitter<RouteLoopEvents> {
  readonly #topology: Topology;
  readonly #log: Logger;
  readonly #store: PolicyStore;
  readonly #distributor: PolicyDistributor;
  readonly #plan: AddressingPlan | undefined;
  readonly #engine: RouteEngine | undefined;
  readonly #coalesceMs: number;
  readonly #qualityIntervalMs: number;
  readonly #historySize: number;
  readonly #retryMs: number;
  readonly #forwarding: ForwardingChoice;
  /** Sites whose data plane can do SRv6 (see {@link RouteLoop.setSrv6Sites}). */
  #srv6Sites: ReadonlySet<string> = new Set();
  /** The route set of the last compile that was issued (or changed nothing): make before break. */
  #previousRoutes: readonly Route[] | undefined;
  readonly #pending = new Map<string, LinkState | null>();
  #detectStart = 0;
  #detectWall = 0;
  #timer: NodeJS.Timeout | undefined;
  /** When `#timer` fires (performance.now() ms), Infinity when unarmed. */
  #timerAt = Infinity;
  /** When the last link-change cycle started (quality changes wait `qualityIntervalMs` after it). */
  /** A liveness change (up, down, stale) is among the pending changes: compile even if no route moves. */
  #pendingLiveness = false;
  /** The SRv6 site set changed since the last cycle: compile even if no route moves. */
  #pendingForwarding = false;
  #lastCycleAt = -Infinity;
  #retryTimer: NodeJS.Timeout | undefined;
  #queue: Promise<void> = Promise.resolve();
  /** A compile or store write failed: the next cycle compiles even without route changes. */
  #dirty = false;
  #closed = false;
  #cycleId = 0;
  readonly #cycles: CycleRecord[] = [];
  readonly #open = new Map<number, OpenCycle>();
  /** Per `class|src|dst`: the last route with a primary path (see {@link RouteLoop.#failStatic}). */
  readonly #lastGood = new Map<string, Route>();
  /** Cycles run (including those that changed nothing), route changes, versions issued. */
  readonly counters = { cycles: 0, routeChanges: 0, versions: 0 };

  constructor(opts: RouteLoopOptions) {
    super();
    this.#topology = opts.topology;
    this.#log = opts.log.child({ module: 'route-loop' });
    this.#store = opts.store;
    this.#distributor = opts.distributor;
    this.#plan = opts.addressing;
    this.#coalesceMs = opts.coalesceMs ?? 5;
    this.#qualityIntervalMs = opts.qualityIntervalMs ?? 1000;
    this.#historySize = opts.cycleHistory ?? 100;
    this.#retryMs = opts.retryMs ?? 1000;
    this.#forwarding = opts.forwarding ?? 'auto';
    // The pairs the topology's routing scope asks for (every ordered pair without one): a
    // hub-and-spoke WAN of 300 sites needs 3,558 pairs, not 89,700.
    const count = opts.topology.classes.length * routingPairs(opts.topology).length;
    const max = opts.maxRoutes ?? 200_000;
    if (count > max) {
      this.#engine = undefined;
      this.#log.warn(
        { routes: count, maxRoutes: max, code: 'CTRL_ERR_ROUTES_DISABLED' },
        'route loop off: the topology has more routes than routeLoop.maxRoutes',
      );
      return;
    }
    const links: Record<string, LinkState> = {};
    for (const s of opts.initial ?? []) {
      const st = linkStateOf(s);
      if (st !== null) links[s.id] = st;
    }
    this.#engine = new RouteEngine(opts.topology, {
      state: { links },
      hysteresis: opts.hysteresis === undefined ? CONTROLLER_MARGINS : opts.hysteresis,
    });
    this.#distributor.on('settled', (site, version, ok) => this.#settled(site, version, ok));
  }

  /** The routes in force (with hysteresis), in `computeRoutes` order. */
  get routes(): Route[] {
    return this.#engine?.routes ?? [];
  }

  /** False when the topology has more routes than `maxRoutes` (no routes, no policies). */
  get enabled(): boolean {
    return this.#engine !== undefined;
  }

  /** The measured link state the routes were computed for (`meridian routes --state` form). */
  get state(): NetworkState {
    return this.#engine?.state ?? { links: {} };
  }

  /** True when an addressing plan is configured (policies are compiled and distributed). */
  get distributing(): boolean {
    return this.#plan !== undefined && this.#engine !== undefined;
  }

  /** The forwarding mode choice (`auto`, or one mode forced for every route). */
  get forwarding(): ForwardingChoice {
    return this.#forwarding;
  }

  /** Sites counted as able to do SRv6 (what `setSrv6Sites` last said). */
  get srv6Sites(): ReadonlySet<string> {
    return this.#srv6Sites;
  }

  /** Recent cycles, oldest first. */
  cycles(): CycleRecord[] {
    return [...this.#cycles];
  }

  /** Compiles and distributes the initial policies (when a plan is configured). */
  async start(): Promise<void> {
    if (this.#engine === undefined) return;
    if (this.#plan === undefined) {
      this.#log.info('no addressing plan: routes are computed, no policy is compiled or distributed');
      return;
    }
    await this.#enqueue(() => this.#cycle('start', new Map(), performance.now(), Date.now(), true));
  }

  /** Feeds one estimator change (the controller wires `link-change` here). */
  linkChange(c: LinkChange): void {
    if (this.#closed || this.#engine === undefined) return;
    this.#markDetect();
    this.#pending.set(c.id, linkStateOf(c.state));
    if (c.liveness) this.#pendingLiveness = true;
    this.#arm(c.liveness);
  }

  /**
   * The sites whose agents reported SRv6 (connected, or last known while away). In `auto` a change
   * compiles and pushes at once (coalesced like a liveness change); forced modes ignore it.
   */
  setSrv6Sites(sites: ReadonlySet<string>): void {
    if (sites.size === this.#srv6Sites.size && [...sites].every((s) => this.#srv6Sites.has(s))) return;
    this.#srv6Sites = new Set(sites);
    if (this.#closed || this.#engine === undefined || this.#plan === undefined) return;
    if (this.#forwarding !== 'auto') return;
    this.#markDetect();
    this.#pendingForwarding = true;
    this.#arm(true);
  }

  /** The first change of a cycle starts its detect timing. */
  #markDetect(): void {
    if (this.#pending.size === 0 && !this.#pendingForwarding && this.#timer === undefined) {
      this.#detectStart = performance.now();
      this.#detectWall = Date.now();
    }
  }

  /** Schedules the next cycle: `coalesceMs` from now when urgent, else after the quality interval. */
  #arm(urgent: boolean): void {
    const now = performance.now();
    const due = urgent
      ? now + this.#coalesceMs
      : Math.max(now + this.#coalesceMs, this.#lastCycleAt + this.#qualityIntervalMs);
    if (due >= this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#lastCycleAt = performance.now();
      const changes = new Map(this.#pending);
      this.#pending.clear();
      const force = this.#pendingLiveness || this.#pendingForwarding;
      const trigger = changes.size > 0 ? 'link-change' : 'capabilities';
      this.#pendingLiveness = false;
      this.#pendingForwarding = false;
      const start = this.#detectStart;
      const wall = this.#detectWall;
      void this.#enqueue(() => this.#cycle(trigger, changes, start, wall, force));
    }, due - now);
  }

  /**
   * Re-issues the content that was in force right after `version` as a new version, for every site
   * whose current content differs. The loop's own compile takes over again at the next route change.
   * @throws ControllerError `CTRL_ERR_POLICY_UNKNOWN_VERSION`, `CTRL_ERR_POLICY_NO_PLAN`, `CTRL_ERR_POLICY_STORE`.
   */
  rollback(version: number, actor = 'api'): Promise<RollbackResult> {
    return this.#enqueue(async () => {
      if (this.#plan === undefined || this.#engine === undefined) {
        throw new ControllerError(
          'CTRL_ERR_POLICY_NO_PLAN',
          'policies are not distributed: the controller has no addressing plan (--addressing FILE)',
        );
      }
      const old = await this.#store.policiesAt(version);
      if (old === null) {
        const last = this.#store.versions().at(-1)?.version;
        throw new ControllerError(
          'CTRL_ERR_POLICY_UNKNOWN_VERSION',
          `policy version ${version} was never issued (issued: ${last === undefined ? 'none' : `1..${last}`})`,
        );
      }
      const current = this.#store.current();
      const changed = [...old.values()].filter((p) => current.get(p.site)?.hash !== p.hash);
      const t0 = performance.now();
      const record = this.#newRecord('rollback', [], Date.now());
      const issued = await this.#issue(changed, 'rollback', version, record, t0, t0);
      await this.#store.audit('policy.rollback', {
        actor,
        rollbackOf: version,
        version: issued,
        sites: record.sites,
      });
      this.#log.info({ rollbackOf: version, version: issued, sites: record.sites }, 'policy rollback');
      return { rollbackOf: version, version: issued, sites: record.sites };
    });
  }

  /** An agent holds a version above its site's current one: re-issue the site's content above it. */
  reissue(site: string, held: PolicyRef): void {
    void this.#enqueue(async () => {
      await this.#store.observe(held.version);
      const ref = this.#store.current().get(site);
      const p = ref === undefined ? null : await this.#store.get(site, ref.version);
      if (p === null) return;
      const t0 = performance.now();
      await this.#issue([p], 'reissue', null, this.#newRecord('reissue', [], Date.now()), t0, t0);
    }).catch((err: unknown) => this.#log.error({ err, site }, 're-issue failed'));
  }

  stop(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    return this.#queue;
  }

  /**
   * Fail static: an unreachable route is compiled with its last path (status `degraded`) instead of
   * withdrawing its forwarding state. "No path of up links" is what the probes say, and the probes
   * answer from the agents: a crashed agent at a site makes the links probed towards it read down
   * while its routers still forward. If the site is really gone, the kept path costs nothing (its
   * traffic is lost either way); if only the agent is, traffic keeps flowing. The routes API still
   * says `unreachable`: only forwarding is kept.
   */
  #failStatic(routes: readonly Route[]): Route[] {
    return routes.map((r) => {
      const key = `${r.class}|${r.src}|${r.dst}`;
      if (r.primary !== null && r.status !== 'unreachable') {
        this.#lastGood.set(key, r);
        return r;
      }
      const last = this.#lastGood.get(key);
      return last === undefined ? r : { ...last, status: 'degraded' };
    });
  }

  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  async #cycle(
    trigger: CycleRecord['trigger'],
    changes: Map<string, LinkState | null>,
    detectStart: number,
    detectWall: number,
    forceCompile: boolean,
  ): Promise<void> {
    const engine = this.#engine;
    if (this.#closed || engine === undefined) return;
    this.counters.cycles++;
    const t0 = performance.now();
    const record = this.#newRecord(trigger, [...changes.keys()], detectWall);
    record.timings.detectMs = round(t0 - detectStart);
    const update: Record<string, LinkState | null> = Object.fromEntries(changes);
    const res = engine.update(update);
    const t1 = performance.now();
    record.routeChanges = res.changes.length;
    this.counters.routeChanges += res.changes.length;
    record.recomputed = res.recomputed;
    record.timings.computeMs = round(t1 - t0);
    if (res.changes.length > 0) {
      this.#log.info(
        {
          links: record.links,
          changed: res.changes.length,
          routes: res.changes.slice(0, 20).map((c) => `${c.class}:${c.src}>${c.dst}:${c.reason}`),
        },
        'routes changed',
      );
      this.emit('routes-changed', res.changes);
    }
    if (this.#plan === undefined || (res.changes.length === 0 && !forceCompile && !this.#dirty)) {
      if (res.changes.length > 0) this.#keep(record, t0 - detectStart + (t1 - t0));
      return;
    }
    let compiled: Map<string, CompiledSitePolicy>;
    let routes: readonly Route[];
    try {
      // The data plane's backups protect against any single link failure (forwarding-backup.ts).
      const fwd = forwardingBackups(this.#topology, engine.state, this.#failStatic(engine.routes));
      record.protectedRoutes = fwd.protectedRoutes;
      routes = fwd.routes;
      const out = compilePoliciesDetailed(this.#topology, routes, this.#plan, {
        forwarding: this.#forwarding,
        srv6Sites: this.#srv6Sites,
        ...(this.#previousRoutes !== undefined ? { previousRoutes: this.#previousRoutes } : {}),
      });
      compiled = out.policies;
      record.modes = { ...out.modes };
    } catch (err) {
      this.#failed(record, 'CTRL_ERR_POLICY_COMPILE', (err as Error).message);
      return;
    }
    const t2 = performance.now();
    record.timings.compileMs = round(t2 - t1);
    const current = this.#store.current();
    const changed = [...compiled.values()].filter((p) => current.get(p.site)?.hash !== p.hash);
    try {
      await this.#issue(changed, 'routes', null, record, t2, detectStart);
    } catch {
      return; // recorded and scheduled for retry by #issue
    }
    // In force at the sites now (or on its way): the next compile keeps its transit one more version.
    this.#previousRoutes = routes;
  }

  /** Stamps a new version on `policies`, stores and distributes them; returns the version (null: none). */
  async #issue(
    policies: CompiledSitePolicy[],
    reason: PolicyVersionReason,
    rollbackOf: number | null,
    record: CycleRecord,
    t2: number,
    detectStart: number,
  ): Promise<number | null> {
    if (policies.length === 0) {
      this.#dirty = false;
      this.#keep(record, performance.now() - detectStart);
      return null;
    }
    let version: number;
    try {
      version = await this.#store.nextVersion();
      for (const p of policies) {
        p.version = version;
        Object.freeze(p); // issued: never changes again (policyJson caches its JSON)
      }
      const meta: PolicyVersionMeta = {
        version,
        createdAt: new Date().toISOString(),
        reason,
        rollbackOf,
        sites: policies.map((p) => p.site).sort(),
      };
      await this.#store.commit(meta, policies);
    } catch (err) {
      const code = err instanceof ControllerError ? err.code : 'CTRL_ERR_POLICY_STORE';
      this.#failed(record, code, (err as Error).message);
      throw err;
    }
    this.#dirty = false;
    this.counters.versions++;
    const t3 = performance.now();
    record.version = version;
    record.sites = policies.map((p) => p.site).sort();
    record.timings.storeMs = round(t3 - t2);
    const pushed = new Set(this.#distributor.distribute(policies));
    const t4 = performance.now();
    record.timings.pushMs = round(t4 - t3);
    record.deferred = record.sites.filter((s) => !pushed.has(s));
    // Acks cannot arrive before this (they come from the event loop), so the wait set is complete.
    this.#open.set(version, { record, pushEnd: t4, detectStart, waiting: pushed });
    if (pushed.size === 0) this.#complete(version);
    this.#keep(record, null);
    this.#log.info(
      {
        cycle: record.id,
        trigger: record.trigger,
        version,
        sites: record.sites,
        routeChanges: record.routeChanges,
        modes: record.modes,
        ...record.timings,
      },
      'policy version pushed',
    );
    return version;
  }

  #settled(site: string, version: number, ok: boolean): void {
    const open = this.#open.get(version);
    if (open === undefined || !open.waiting.delete(site)) return;
    if (ok) open.record.acked++;
    else open.record.failed++;
    if (open.waiting.size === 0 && open.pushEnd > 0) this.#complete(version);
  }

  #complete(version: number): void {
    const open = this.#open.get(version);
    if (open === undefined) return;
    this.#open.delete(version);
    const now = performance.now();
    const r = open.record;
    r.timings.ackMs = round(now - open.pushEnd);
    r.timings.totalMs = round(now - open.detectStart);
    this.#log.info(
      { cycle: r.id, version, sites: r.sites.length, acked: r.acked, failed: r.failed, ...r.timings },
      'policy version settled',
    );
    this.emit('cycle', r);
  }

  #newRecord(trigger: CycleRecord['trigger'], links: string[], wall: number): CycleRecord {
    return {
      id: ++this.#cycleId,
      startedAt: new Date(wall).toISOString(),
      trigger,
      links,
      routeChanges: 0,
      recomputed: 0,
      protectedRoutes: null,
      modes: null,
      version: null,
      sites: [],
      deferred: [],
      acked: 0,
      failed: 0,
      error: null,
      timings: {
        detectMs: 0,
        computeMs: 0,
        compileMs: null,
        storeMs: null,
        pushMs: null,
        ackMs: null,
        totalMs: null,
      },
    };
  }

  /** Keeps a record in the history; `totalMs` set when the cycle ends without a push. */
  #keep(record: CycleRecord, totalMs: number | null): void {
    if (totalMs !== null) record.timings.totalMs = round(totalMs);
    if (!this.#cycles.includes(record)) {
      this.#cycles.push(record);
      if (this.#cycles.length > this.#historySize)
        this.#cycles.splice(0, this.#cycles.length - this.#historySize);
    }
    if (totalMs !== null) this.emit('cycle', record);
  }

  #failed(record: CycleRecord, code: string, message: string): void {
    record.error = { code, message };
    this.#dirty = true;
    this.#keep(record, null);
    this.emit('cycle', record);
    this.#log.error({ cycle: record.id, code }, message);
    if (!this.#closed && this.#retryTimer === undefined) {
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        const now = performance.now();
        void this.#enqueue(() => this.#cycle('retry', new Map(), now, Date.now(), true));
      }, this.#retryMs);
      this.#retryTimer.unref();
    }
  }
}
