import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { noDriverApplier, type PolicyApplier } from './agent-applier';
import type { AgentEventMsg, ForwardingCapabilitiesMsg, PolicyAckMsg, WelcomeMsg } from './agent-proto';
import {
  ControllerClient,
  parseHostPort,
  type BackoffOptions,
  type ControllerClientCounters,
} from './controller-client';
import type { ForwardingCapabilities } from './driver';
import { AgentError } from './errors';
import {
  ProbeEngine,
  type EffectivePlan,
  type LinkProbeView,
  type LivenessChange,
  type ProbeEngineCounters,
  type ProbeEngineOptions,
  type ProbePlan,
  type ProbeReport,
} from './probe-engine';
import { ProbeReflector, type ReflectorCounters } from './probe-reflector';

export interface EdgeAgentOptions {
  /** Topology site id this agent speaks for. */
  readonly site: string;
  /** Controller gRPC address, HOST:PORT. */
  readonly controller: string;
  /** MERIDIAN_AGENT_TOKEN. */
  readonly token: string;
  /** Where the reflector listens; default 127.0.0.1:0 (a free port, announced in hello). */
  readonly probeListen?: { readonly host: string; readonly port: number };
  /** Nice value of the reflector's thread (see `ProbeReflectorOptions.threadNice`). */
  readonly reflectorNice?: number | null;
  readonly log: Logger;
  /** Receives policy pushes; default {@link noDriverApplier}. */
  readonly applier?: PolicyApplier;
  readonly backoff?: BackoffOptions;
  /** Path of meridian.proto; default the one in @meridian/controller. */
  readonly protoPath?: string;
  /** Probe engine knobs (see {@link ProbeEngineOptions}). */
  readonly probe?: Pick<ProbeEngineOptions, 'probeBytes' | 'reportOnLivenessChange'>;
  /**
   * Per-link probe endpoints announced in hello (the reflector's port, this host): peers probe a
   * link at this end's address on that link. The reflector must listen on a wildcard address.
   */
  readonly announce?: readonly { readonly link: string; readonly host: string }[];
}

export type EdgeAgentEvents = {
  liveness: [LivenessChange];
  report: [ProbeReport];
  connected: [WelcomeMsg];
  disconnected: [{ code: number; details: string; retryInMs: number }];
  plan: [EffectivePlan];
  'policy-ack': [PolicyAckMsg];
  /** Retrying cannot help (wrong token); the agent keeps probing but no longer reconnects. */
  fatal: [AgentError];
};

export interface EdgeAgentStats {
  readonly connected: boolean;
  readonly probe: ProbeEngineCounters;
  readonly reflector: ReflectorCounters;
  readonly client: ControllerClientCounters;
  readonly links: LinkProbeView[];
}

function agentVersion(): string {
  try {
    const file = require.resolve('@meridian/edge-agent/package.json');
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/**
 * The edge agent's telemetry side: a reflector answering peers' probes, a probe engine probing
 * the peers of the controller's plan, and the controller stream carrying reports, liveness events
 * and policy acks. Probing goes on while the controller is unreachable (with the last plan); what
 * was measured meanwhile is sent when the stream is back.
 */
export class EdgeAgent extends EventEmitter<EdgeAgentEvents> {
  readonly #opts: EdgeAgentOptions;
  readonly #log: Logger;
  /** Logger for the parts (each adds its own `module`), bound to the site. */
  readonly #baseLog: Logger;
  readonly #instanceId = randomUUID();
  readonly #version = agentVersion();
  readonly #applier: PolicyApplier;
  readonly #reflector: ProbeReflector;
  #engine: ProbeEngine | undefined;
  #client: ControllerClient | undefined;
  #endpoint: { host: string; port: number } | undefined;
  /** The applier's capabilities, asked once at start (undefined: not asked yet, or it does not say). */
  #forwarding: ForwardingCapabilities | undefined;
  #closed = false;

  constructor(opts: EdgeAgentOptions) {
    super();
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(opts.site)) {
      throw new AgentError('AGENT_ERR_BAD_OPTION', `site id '${opts.site}' is not a topology site id`);
    }
    if (opts.token === '') throw new AgentError('AGENT_ERR_BAD_OPTION', 'the agent token is empty');
    if (!parseHostPort(opts.controller)) {
      throw new AgentError(
        'AGENT_ERR_BAD_OPTION',
        `controller address '${opts.controller}' is not HOST:PORT`,
      );
    }
    this.#opts = opts;
    this.#baseLog = opts.log.child({ site: opts.site });
    this.#log = this.#baseLog.child({ module: 'agent' });
    this.#applier = opts.applier ?? noDriverApplier();
    this.#reflector = new ProbeReflector({
      host: opts.probeListen?.host ?? '127.0.0.1',
      port: opts.probeListen?.port ?? 0,
      threadNice: opts.reflectorNice ?? null,
      log: this.#baseLog,
    });
  }

  get site(): string {
    return this.#opts.site;
  }

  /** Random per process start; sent in hello so the controller tells a restart from a reconnect. */
  get instanceId(): string {
    return this.#instanceId;
  }

  /** The reflector's bound address (what hello announces), once started. */
  get probeEndpoint(): { host: string; port: number } | undefined {
    return this.#endpoint;
  }

  get connected(): boolean {
    return this.#client?.connected ?? false;
  }

  /** What the data plane can do, as sent in every hello (after start; undefined: not said). */
  get forwarding(): ForwardingCapabilities | undefined {
    return this.#forwarding;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Binds the probe port, starts the probe engine and connects to the controller. */
  async start(): Promise<void> {
    if (this.#engine) return;
    // Before the first hello: the controller compiles SRv6 for this site only once it says so.
    this.#forwarding = await this.#askCapabilities();
    this.#endpoint = await this.#reflector.start();
    const wildcard = this.#endpoint.host === '0.0.0.0' || this.#endpoint.host === '::';
    const engine = new ProbeEngine({
      ...this.#opts.probe,
      log: this.#baseLog,
      // A wildcard reflector serves every address: probe from any too (the kernel picks the source).
      bindHost: wildcard ? '0.0.0.0' : this.#endpoint.host,
    });
    try {
      await engine.start();
    } catch (err) {
      await this.#reflector.stop();
      throw err;
    }
    this.#engine = engine;
    const f = this.#forwarding;
    const forwarding: ForwardingCapabilitiesMsg | undefined =
      f === undefined
        ? undefined
        : {
            modes: [...f.modes],
            platform: f.platform,
            platformVersion: f.platformVersion,
            features: [...f.features],
            missing: [...f.missing],
          };
    const client = new ControllerClient({
      address: this.#opts.controller,
      applier: this.#applier,
      log: this.#baseLog,
      backoff: this.#opts.backoff,
      protoPath: this.#opts.protoPath,
      hello: () => {
        const applied = this.#applier.applied();
        const ep = this.#endpoint ?? { host: '', port: 0 };
        return {
          site: this.#opts.site,
          agentVersion: this.#version,
          token: this.#opts.token,
          probeEndpoints: [
            ...(this.#opts.announce ?? []).map((a) => ({ host: a.host, port: ep.port, link: a.link })),
            { host: ep.host, port: ep.port, link: '' },
          ],
          instanceId: this.#instanceId,
          appliedPolicyVersion: applied.version,
          appliedPolicyHash: applied.hash,
          ...(forwarding !== undefined ? { forwarding } : {}),
        };
      },
    });
    this.#client = client;
    engine.on('liveness', (c) => {
      client.sendEvent({
        kind: 'liveness',
        atMs: c.atMs,
        link: c.link,
        peerSite: c.peerSite,
        up: c.up,
        detailJson: JSON.stringify({ streak: c.streak, lastRttMs: c.lastRttMs }),
      });
      this.emit('liveness', c);
    });
    engine.on('report', (r) => {
      client.sendReport(r);
      this.emit('report', r);
    });
    client.on('plan', (plan) => this.#installPlan(plan));
    client.on('connected', (w) => this.emit('connected', w));
    client.on('disconnected', (d) => this.emit('disconnected', d));
    client.on('policy-ack', (a) => this.emit('policy-ack', a));
    client.on('fatal', (err) => this.emit('fatal', err));
    client.start();
    this.#log.info(
      { controller: this.#opts.controller, probe: this.#endpoint, instance: this.#instanceId },
      'edge agent started',
    );
  }

  /** Sends an agent event (e.g. `fast-reroute`) to the controller; buffered while disconnected. */
  sendEvent(event: AgentEventMsg): void {
    this.#client?.sendEvent(event);
  }

  /** Installs a probe plan directly (what the controller's plan does); useful without a controller. */
  setPlan(plan: ProbePlan): void {
    this.#installPlan(plan);
  }

  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#client?.stop();
    await this.#engine?.stop();
    await this.#reflector.stop();
    this.#log.info('edge agent stopped');
  }

  stats(): EdgeAgentStats {
    return {
      connected: this.connected,
      probe: this.#engine?.counters() ?? {
        sent: 0,
        received: 0,
        lost: 0,
        reordered: 0,
        duplicates: 0,
        late: 0,
        malformed: 0,
        foreign: 0,
        sendErrors: 0,
      },
      reflector: this.#reflector.counters(),
      client: this.#client?.counters() ?? {
        connects: 0,
        reportsSent: 0,
        eventsSent: 0,
        reportsDropped: 0,
        eventsDropped: 0,
        pushesSuperseded: 0,
      },
      links: this.#engine?.links() ?? [],
    };
  }

  async #askCapabilities(): Promise<ForwardingCapabilities | undefined> {
    const ask = this.#applier.capabilities?.bind(this.#applier);
    if (ask === undefined) {
      this.#log.info('forwarding capabilities not known: the policy applier does not report them');
      return undefined;
    }
    let caps: ForwardingCapabilities;
    try {
      caps = await ask();
    } catch (err) {
      // Drivers promise not to throw; a bug here must not keep the agent from probing and reporting.
      this.#log.error({ err }, 'forwarding capabilities could not be found: reporting none');
      caps = {
        platform: 'none',
        platformVersion: '',
        modes: [],
        features: [],
        missing: [`capabilities: ${(err as Error).message}`],
      };
    }
    this.#log.info(
      {
        platform: caps.platform,
        platformVersion: caps.platformVersion,
        modes: caps.modes,
        features: caps.features,
        missing: caps.missing,
      },
      'forwarding capabilities',
    );
    return caps;
  }

  #installPlan(plan: ProbePlan): void {
    const engine = this.#engine;
    if (!engine) return;
    // The plan comes from the network: drop targets we cannot probe rather than the whole plan.
    const targets = plan.targets.filter((t) => {
      const ok =
        typeof t.host === 'string' &&
        t.host !== '' &&
        Number.isInteger(t.port) &&
        t.port > 0 &&
        t.port <= 65535 &&
        typeof t.link === 'string' &&
        t.link !== '';
      if (!ok)
        this.#log.warn(
          { code: 'AGENT_ERR_BAD_PLAN', target: t },
          'probe target ignored: bad host, port or link',
        );
      return ok;
    });
    engine.setPlan({ ...plan, targets });
    this.emit('plan', engine.plan);
  }
}
