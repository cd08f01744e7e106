/**
 * The controller service: composes the agent gateway (gRPC), the link estimator, the state store
 * (Redis or embedded), the history writer (InfluxDB or embedded), the SNMP poller and the HTTP
 * API, and runs the control loop tick that moves estimator changes to the stores.
 *
 * Extension before `start()`: `addGrpcService()` puts another service on the same gRPC server (the
 * media helper's MediaControl), `addHttpPlugin()` adds routes; `on('link-change')` feeds the route
 * engine.
 *
 * The closed loop (route-loop.ts): link changes -> `RouteEngine` (hysteresis) -> policy compiler ->
 * policy store (versions) -> distributor (agents' streams, acks). Policies are compiled and pushed
 * only when an addressing plan is given (`addressing`); without one the routes are still kept
 * current (`routes`, `GET /api/v1/routes`).
 */
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import type { HysteresisMarginsInput, Route, RouteChange, Topology } from '@meridian/topology';
import { AgentGateway, DEFAULT_MAX_MESSAGE_BYTES, type AgentPresence } from './agent-gateway';
import type { MessageLimits } from './agent-messages';
import { ControllerError } from './errors';
import { MemoryHistoryWriter, type HistoryWriter } from './history-writer';
import { InfluxHistoryWriter, type InfluxHistoryWriterOptions } from './history-writer-influx';
import { createHttpServer, type ApiPlugin, type InterfaceView } from './http-server';
import { LinkEstimator, type EstimatorSettings, type LinkChange, type LinkSnapshot } from './link-estimator';
import { policiesApi } from './policies-api';
import type { AddressingPlan, ForwardingChoice } from './policy-compiler';
import { PolicyDistributor } from './policy-distributor';
import { MemoryPolicyStore, RedisPolicyStore, type PolicyStore } from './policy-store';
import type { ProbeSettings } from './probe-plan';
import { RouteLoop, type RouteLoopSettings } from './route-loop';
import { routesApi } from './routes-api';
import {
  agentKey,
  interfaceKey,
  isoOrNull,
  linkKey,
  linkRecord,
  MemoryStateStore,
  type StateStore,
  type StoreRecord,
} from './state-store';
import { RedisStateStore } from './state-store-redis';

/** Interface counters as the SNMP poller emits them (`'counters'` event). */
export interface InterfaceCountersLike {
  readonly device: string;
  readonly ifName: string;
  readonly link: string;
  readonly operUp: boolean;
  readonly inBps: number;
  readonly outBps: number;
  readonly utilPct: number | null;
  /** ms since epoch, ISO string or Date. */
  readonly updatedAt: number | string | Date;
}

/** What the controller needs of an SNMP poller (`SnmpPoller` fits). */
export interface CountersSource {
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
  on(event: 'counters', fn: (c: InterfaceCountersLike) => void): unknown;
  on(event: 'device-error', fn: (e: { device: string; code: string; message: string }) => void): unknown;
}

export interface HostPort {
  readonly host: string;
  /** 0: any free port (see `ports` after start). */
  readonly port: number;
}

export interface ControllerOptions {
  readonly topology: Topology;
  readonly apiToken: string;
  readonly agentToken: string;
  /** Default 127.0.0.1:7400. */
  readonly grpc?: HostPort;
  /** Default 127.0.0.1:8080. */
  readonly http?: HostPort;
  /** `redis://...`; absent: embedded in-memory state. */
  readonly redisUrl?: string;
  /** `http://host:port` of InfluxDB 1.x; absent: embedded in-memory history. */
  readonly influxUrl?: string;
  readonly log?: Logger;
  readonly estimator?: Partial<EstimatorSettings>;
  /** Probe plan sent to agents. */
  readonly probe?: Partial<ProbeSettings>;
  readonly limits?: Partial<MessageLimits>;
  readonly helloTimeoutMs?: number;
  readonly agentStaleMs?: number;
  /** grpc.max_receive_message_length (default 4 MiB). */
  readonly maxMessageBytes?: number;
  /** Control loop period: staleness, change events, store writes (default 100 ms). */
  readonly tickIntervalMs?: number;
  /** Link state is written to the store at most this often per link (default 250 ms; liveness at once). */
  readonly storeIntervalMs?: number;
  /** One `link_probe` point per reported link per this period (default 1000 ms). */
  readonly historyIntervalMs?: number;
  readonly redis?: { readonly flushIntervalMs?: number };
  readonly influx?: Omit<InfluxHistoryWriterOptions, 'url' | 'log'>;
  /** Interface counters (the SNMP poller); absent: no interfaces. */
  readonly snmp?: CountersSource;
  /** Where sites and links live in address space; absent: routes only, no policies are distributed. */
  readonly addressing?: AddressingPlan;
  /** Route hysteresis margins (default `CONTROLLER_MARGINS`: route-loop.ts), `false` for the pure optimum. */
  readonly hysteresis?: HysteresisMarginsInput | false;
  /** Route loop: coalescing of link changes, cycles kept, retry delay. */
  readonly routeLoop?: Omit<RouteLoopSettings, 'hysteresis' | 'forwarding'>;
  /**
   * Forwarding mode of the compiled routes (`--forwarding`): `auto` (default) = SRv6 for a route
   * whose every site's agent reported SRv6, hop-by-hop otherwise; `srv6` / `hop-by-hop` = every route.
   */
  readonly forwarding?: ForwardingChoice;
  /**
   * Policy acks: timeout per push (default 5000 ms), pushes per version (default 3), and the
   * re-push backoff after a transient failure (1 s doubling to 30 s; see `PolicyDistributor`).
   */
  readonly policy?: {
    readonly ackTimeoutMs?: number;
    readonly maxAttempts?: number;
    readonly retryBaseMs?: number;
    readonly retryMaxMs?: number;
  };
}

/** A site's agent acknowledged its current policy version (`policy-applied` event). */
export interface PolicyApplied {
  readonly site: string;
  readonly version: number;
  readonly hash: string;
}

export type ControllerEvents = {
  'link-change': [LinkChange];
  'agent-connected': [AgentPresence];
  'agent-disconnected': [AgentPresence];
  /** A site's agent reported other forwarding capabilities than before (`presence.forwarding`). */
  'agent-capabilities': [AgentPresence];
  'interface-counters': [InterfaceView];
  /** Routes whose status, primary or backup changed in one loop cycle. */
  'routes-changed': [RouteChange[]];
  'policy-applied': [PolicyApplied];
};

function toIso(t: number | string | Date): string | null {
  if (t instanceof Date) return Number.isNaN(t.getTime()) ? null : t.toISOString();
  if (typeof t === 'number') return isoOrNull(t);
  return t === '' ? null : t;
}

function agentRecord(p: AgentPresence): StoreRecord {
  return {
    site: p.site,
    connected: String(p.connected),
    address: p.address ?? 'null',
    lastSeen: isoOrNull(p.lastSeenMs) ?? 'null',
    instanceId: p.instanceId ?? 'null',
    agentVersion: p.agentVersion ?? 'null',
  };
}

export class Controller extends EventEmitter<ControllerEvents> {
  readonly topology: Topology;
  readonly estimator: LinkEstimator;
  readonly gateway: AgentGateway;
  readonly store: StateStore;
  readonly history: HistoryWriter;
  /** Every issued policy version (Redis when `redisUrl`, else in memory). */
  readonly policies: PolicyStore;
  readonly distributor: PolicyDistributor;
  readonly routeLoop: RouteLoop;
  readonly log: Logger;
  readonly #opts: ControllerOptions;
  readonly #grpcServices: {
    definition: grpc.ServiceDefinition;
    implementation: grpc.UntypedServiceImplementation;
  }[] = [];
  readonly #httpPlugins: ApiPlugin[] = [];
  readonly #publicPlugins: ApiPlugin[] = [];
  readonly #interfaces = new Map<string, InterfaceView>();
  readonly #historySamples = new Map<string, number>();
  #grpcServer: grpc.Server | undefined;
  #http: FastifyInstance | undefined;
  #tickTimer: NodeJS.Timeout | undefined;
  #lastHistory = 0;
  #lastSave = 0;
  readonly #unsaved = new Set<string>();
  #lastPresence = 0;
  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  #ports = { grpc: 0, http: 0 };

  constructor(opts: ControllerOptions) {
    super();
    this.#opts = opts;
    this.topology = opts.topology;
    this.log = opts.log ?? pino({ level: 'info' });
    const log = this.log.child({ module: 'controller' });
    this.estimator = new LinkEstimator(opts.topology, opts.estimator);
    this.gateway = new AgentGateway({
      topology: opts.topology,
      agentToken: opts.agentToken,
      estimator: this.estimator,
      log: this.log,
      probe: {
        downAfterMisses: this.estimator.settings.downAfterMisses,
        upAfterSuccesses: this.estimator.settings.upAfterSuccesses,
        ...opts.probe,
      },
      ...(opts.limits ? { limits: opts.limits } : {}),
      ...(opts.helloTimeoutMs !== undefined ? { helloTimeoutMs: opts.helloTimeoutMs } : {}),
      ...(opts.agentStaleMs !== undefined ? { agentStaleMs: opts.agentStaleMs } : {}),
    });
    this.store = opts.redisUrl
      ? new RedisStateStore({ url: opts.redisUrl, log: this.log, ...opts.redis })
      : new MemoryStateStore();
    this.history = opts.influxUrl
      ? new InfluxHistoryWriter({ url: opts.influxUrl, log: this.log, ...opts.influx })
      : new MemoryHistoryWriter();
    if (!opts.redisUrl) log.info('no --redis: link state kept in embedded in-memory store');
    if (!opts.influxUrl) log.info('no --influx: history kept in embedded in-memory buffer');

    this.estimator.on('link-change', (c) => {
      if (c.liveness) this.store.put(linkKey(c.id), linkRecord(c.state), true);
      this.store.publish({ type: 'link-change', id: c.id, changed: c.changed, state: c.state });
      this.emit('link-change', c);
    });
    const presence = (p: AgentPresence): void => {
      this.store.put(agentKey(p.site), agentRecord(p), true);
      this.store.publish({ type: 'agent', ...p });
    };
    this.gateway.on('agent-connected', (p) => {
      presence(p);
      this.emit('agent-connected', p);
    });
    this.gateway.on('agent-disconnected', (p) => {
      presence(p);
      this.emit('agent-disconnected', p);
    });
    this.policies = opts.redisUrl
      ? new RedisPolicyStore({ url: opts.redisUrl, log: this.log })
      : new MemoryPolicyStore();
    this.distributor = new PolicyDistributor({
      gateway: this.gateway,
      log: this.log,
      ...opts.policy,
      onAgentAhead: (site, held) => this.routeLoop.reissue(site, held),
    });
    this.routeLoop = new RouteLoop({
      topology: opts.topology,
      log: this.log,
      store: this.policies,
      distributor: this.distributor,
      initial: this.estimator.snapshots(),
      ...(opts.addressing !== undefined ? { addressing: opts.addressing } : {}),
      ...(opts.hysteresis !== undefined ? { hysteresis: opts.hysteresis } : {}),
      ...(opts.forwarding !== undefined ? { forwarding: opts.forwarding } : {}),
      ...opts.routeLoop,
    });
    this.gateway.on('capabilities-changed', (p) => {
      // Last known capabilities count too: a site whose agent restarts keeps its routes' modes.
      const srv6 = this.gateway
        .agents()
        .filter((a) => a.forwarding?.modes.includes('srv6') === true)
        .map((a) => a.site);
      this.routeLoop.setSrv6Sites(new Set(srv6));
      this.emit('agent-capabilities', p);
    });
    this.on('link-change', (c) => this.routeLoop.linkChange(c));
    this.routeLoop.on('routes-changed', (changes) => this.emit('routes-changed', changes));
    this.distributor.on('applied', (site, version, hash) =>
      this.emit('policy-applied', { site, version, hash }),
    );
    this.#httpPlugins.push(
      routesApi(opts.topology, this.routeLoop),
      policiesApi(
        this.routeLoop,
        this.policies,
        this.distributor,
        opts.topology.sites.map((s) => s.id),
      ),
    );
    opts.snmp?.on('counters', (c) => this.#counters(c));
    opts.snmp?.on('device-error', (e) => log.warn({ device: e.device, code: e.code }, e.message));
  }

  /** Adds a gRPC service to the controller's server (before `start()`). */
  addGrpcService(
    definition: grpc.ServiceDefinition,
    implementation: grpc.UntypedServiceImplementation,
  ): void {
    if (this.#state !== 'new') throw new Error('addGrpcService() must be called before start()');
    this.#grpcServices.push({ definition, implementation });
  }

  /** Adds HTTP routes (a Fastify plugin) under `/api/v1` behind the bearer token, or at the root without auth. */
  addHttpPlugin(plugin: ApiPlugin, opts: { public?: boolean } = {}): void {
    if (this.#state !== 'new') throw new Error('addHttpPlugin() must be called before start()');
    (opts.public ? this.#publicPlugins : this.#httpPlugins).push(plugin);
  }

  /** Bound ports (after `start()`; useful with port 0). */
  get ports(): { readonly grpc: number; readonly http: number } {
    return this.#ports;
  }

  /** The Fastify instance (after `start()`), e.g. for `inject()`. */
  get http(): FastifyInstance | undefined {
    return this.#http;
  }

  /** Links as the API shows them. */
  links(): LinkSnapshot[] {
    return this.estimator.snapshots();
  }

  /** The routes in force (with hysteresis), in `meridian routes` order. */
  get routes(): Route[] {
    return this.routeLoop.routes;
  }

  /** Latest counters of every polled interface. */
  interfaces(): InterfaceView[] {
    return [...this.#interfaces.values()];
  }

  health(): { redis: 'up' | 'down' | 'embedded'; influx: 'up' | 'down' | 'embedded' } {
    return { redis: this.store.health(), influx: this.history.health() };
  }

  /** Starts stores, gRPC and HTTP servers, the control loop and the SNMP poller. */
  async start(): Promise<{ grpc: number; http: number }> {
    if (this.#state !== 'new') throw new Error(`start() in state ${this.#state}`);
    this.#state = 'starting';
    const log = this.log.child({ module: 'controller' });
    // The store holds every link and site from the start, measured or not.
    for (const snap of this.estimator.snapshots()) this.store.put(linkKey(snap.id), linkRecord(snap));
    for (const p of this.gateway.agents()) this.store.put(agentKey(p.site), agentRecord(p));
    await this.store.start();
    await this.history.start();
    // Versions loaded and the first policies issued before agents can connect and say hello.
    await this.policies.start();
    await this.routeLoop
      .start()
      .catch((err: unknown) =>
        log.error({ err: (err as Error).message }, 'initial policies not issued (retrying)'),
      );

    const g = this.#opts.grpc ?? { host: '127.0.0.1', port: 7400 };
    const server = new grpc.Server({
      'grpc.max_receive_message_length': this.#opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    });
    const agent = this.gateway.service();
    server.addService(agent.definition, agent.implementation);
    for (const s of this.#grpcServices) server.addService(s.definition, s.implementation);
    this.#grpcServer = server;
    this.#ports.grpc = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${g.host}:${g.port}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err
          ? reject(
              new ControllerError(
                'CTRL_ERR_BAD_OPTION',
                `cannot listen for gRPC on ${g.host}:${g.port}: ${err.message}`,
              ),
            )
          : resolve(port),
      );
    });

    const h = this.#opts.http ?? { host: '127.0.0.1', port: 8080 };
    const app = createHttpServer(
      {
        health: () => this.health(),
        links: () =>
          this.estimator.snapshots().map((s) => ({
            id: s.id,
            a: s.a,
            b: s.b,
            up: s.up,
            latencyMs: s.latencyMs,
            jitterMs: s.jitterMs,
            lossPct: s.lossPct,
            utilPct: s.utilPct,
            samples: s.samples,
            updatedAt: isoOrNull(s.updatedAtMs),
          })),
        agents: () =>
          this.gateway.agents().map((p) => ({
            site: p.site,
            connected: p.connected,
            address: p.address,
            lastSeen: isoOrNull(p.lastSeenMs),
            forwarding:
              p.forwarding === null
                ? null
                : {
                    modes: [...p.forwarding.modes],
                    platform: p.forwarding.platform,
                    platformVersion: p.forwarding.platformVersion,
                    features: [...p.forwarding.features],
                    missing: [...p.forwarding.missing],
                  },
          })),
        interfaces: () => this.interfaces(),
      },
      {
        apiToken: this.#opts.apiToken,
        log: this.log,
        plugins: this.#httpPlugins,
        publicPlugins: this.#publicPlugins,
      },
    );
    this.#http = app;
    try {
      await app.listen({ host: h.host, port: h.port });
    } catch (err) {
      server.forceShutdown();
      throw new ControllerError(
        'CTRL_ERR_BAD_OPTION',
        `cannot listen for HTTP on ${h.host}:${h.port}: ${(err as Error).message}`,
      );
    }
    this.#ports.http = (app.server.address() as AddressInfo).port;

    const every = this.#opts.tickIntervalMs ?? 100;
    this.#tickTimer = setInterval(() => this.#tick(), every);
    await this.#opts.snmp?.start();
    this.#state = 'running';
    log.info(
      {
        grpc: `${g.host}:${this.#ports.grpc}`,
        http: `${h.host}:${this.#ports.http}`,
        redis: this.store.kind === 'redis' ? this.store.health() : 'embedded',
        influx: this.history.kind === 'influx' ? this.history.health() : 'embedded',
        sites: this.topology.sites.length,
        links: this.topology.links.length,
      },
      'controller started',
    );
    return { ...this.#ports };
  }

  /** Stops everything; pending Redis writes and buffered history are flushed when reachable. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    this.#state = 'stopping';
    if (this.#tickTimer) clearInterval(this.#tickTimer);
    await this.#opts.snmp?.stop();
    await this.routeLoop.stop();
    this.distributor.close();
    this.gateway.close();
    const server = this.#grpcServer;
    if (server) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await this.#http?.close();
    this.#tick();
    await this.store.close();
    await this.policies.close();
    await this.history.close();
    this.#state = 'stopped';
    this.log.child({ module: 'controller' }).info('controller stopped');
  }

  #tick(): void {
    const now = Date.now();
    this.estimator.tick(now);
    for (const id of this.estimator.collectChanges()) this.#unsaved.add(id);
    // Full snapshots (percentiles sort the RTT window) only at the store's pace, not every tick.
    if (now - this.#lastSave >= (this.#opts.storeIntervalMs ?? 250) || this.#state !== 'running') {
      this.#lastSave = now;
      for (const id of this.#unsaved) {
        const snap = this.estimator.snapshot(id);
        if (snap) this.store.put(linkKey(id), linkRecord(snap));
      }
      this.#unsaved.clear();
    }
    const historyEvery = this.#opts.historyIntervalMs ?? 1000;
    if (now - this.#lastHistory >= historyEvery) {
      this.#lastHistory = now;
      this.#writeHistory(now);
    }
    if (now - this.#lastPresence >= 1000) {
      this.#lastPresence = now;
      for (const site of this.gateway.connectedSites()) {
        const p = this.gateway.presence(site);
        if (p) this.store.put(agentKey(site), agentRecord(p));
      }
    }
  }

  #writeHistory(now: number): void {
    for (const s of this.estimator.snapshots()) {
      if (s.stale || s.src === null || s.samples === (this.#historySamples.get(s.id) ?? 0)) continue;
      this.#historySamples.set(s.id, s.samples);
      this.history.write({
        measurement: 'link_probe',
        tags: { link: s.id, src: s.src, dst: s.src === s.a ? s.b : s.a },
        fields: {
          ...(s.rttMs !== null ? { rtt_ms: s.rttMs } : {}),
          ...(s.jitterMs !== null ? { jitter_ms: s.jitterMs } : {}),
          loss_pct: s.lossPct ?? 0,
        },
        timestamp: now,
      });
    }
  }

  #counters(c: InterfaceCountersLike): void {
    const view: InterfaceView = {
      device: c.device,
      ifName: c.ifName,
      link: c.link,
      operUp: c.operUp,
      inBps: c.inBps,
      outBps: c.outBps,
      utilPct: c.utilPct,
      updatedAt: toIso(c.updatedAt),
    };
    this.#interfaces.set(`${c.device}\u0000${c.ifName}`, view);
    const at = view.updatedAt ? Date.parse(view.updatedAt) : Date.now();
    if (c.utilPct !== null) this.estimator.setUtilisation(c.link, `${c.device}/${c.ifName}`, c.utilPct, at);
    this.history.write({
      measurement: 'if_counters',
      tags: { device: c.device, ifname: c.ifName, link: c.link },
      fields: { in_bps: c.inBps, out_bps: c.outBps, util_pct: c.utilPct ?? 0, oper_up: c.operUp },
      timestamp: Number.isFinite(at) ? at : Date.now(),
    });
    this.store.put(interfaceKey(c.device, c.ifName), {
      device: c.device,
      ifName: c.ifName,
      link: c.link,
      operUp: String(c.operUp),
      inBps: String(c.inBps),
      outBps: String(c.outBps),
      utilPct: String(c.utilPct),
      updatedAt: view.updatedAt ?? 'null',
    });
    this.emit('interface-counters', view);
  }
}
