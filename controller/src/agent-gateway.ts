/**
 * The agents' side of the gRPC server: the `meridian.v1.AgentControl/Connect` stream.
 *
 * A stream must open with `hello` within `helloTimeoutMs`. Checks, in order (each failure ends
 * the stream with the catalog's gRPC status, the code in trailer `meridian-error-code`, and one
 * log line):
 * 1. token (constant-time) -> `UNAUTHENTICATED`; nothing else is looked at or done;
 * 2. site known -> `NOT_FOUND`; hello fields sane -> `INVALID_ARGUMENT`;
 * 3. one stream per site -> `ALREADY_EXISTS` for the newcomer, unless the held stream is the same
 *    agent process (same `instance_id`: a reconnect whose old TCP connection is not yet known
 *    dead) or has been silent for `agentStaleMs` (its process died): then the old stream is ended
 *    and the new one takes over.
 * Then: `welcome`, and a `probe_plan` (re-sent to every agent whose targets change as agents come
 * and go). The hello's forwarding capabilities stay in the site's presence after its agent
 * disconnects (the data plane is still what it was); `capabilities-changed` fires when a hello
 * says something else than the site's previous one. Undecodable bytes end the stream with `INVALID_ARGUMENT`; a report that decodes but
 * breaks the contract is dropped whole and answered with an `ErrorNotice` (the stream stays).
 * Messages over `maxMessageBytes` are refused by grpc-js itself with `RESOURCE_EXHAUSTED`.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Topology } from '@meridian/topology';
import {
  checkForwarding,
  checkHello,
  checkReport,
  DEFAULT_MESSAGE_LIMITS,
  plausibleSiteId,
  type AgentForwarding,
  type MessageLimits,
} from './agent-messages';
import { ControllerError, type ControllerErrorCode } from './errors';
import type { LinkEstimator } from './link-estimator';
import { computeProbeTargets, DEFAULT_PROBE_SETTINGS, linkReporters, type ProbeSettings } from './probe-plan';
import {
  agentControlService,
  type AgentEvent,
  type AgentMessage,
  type ControllerMessage,
  type Hello,
  type PolicyAck,
  type ProbeEndpoint,
  type ProbePlan,
  type ProbeReport,
} from './proto';

/** What the API and Redis say about an agent. */
export interface AgentPresence {
  readonly site: string;
  readonly connected: boolean;
  /** Remote address of its stream (`ip:port`), `null` when never connected. */
  readonly address: string | null;
  /** Last message received, ms since epoch; 0 = never. */
  readonly lastSeenMs: number;
  readonly instanceId: string | null;
  readonly agentVersion: string | null;
  /** The policy in force at the agent as its last hello said (version 0: none). */
  readonly appliedPolicy: { readonly version: number; readonly hash: string };
  /**
   * What the site's data plane can do, as its agent's last hello said; kept while the agent is
   * away. null: never said (no hello yet, or an agent of an earlier release).
   */
  readonly forwarding: AgentForwarding | null;
}

export type AgentGatewayEvents = {
  'agent-connected': [AgentPresence];
  'agent-disconnected': [AgentPresence];
  /** A hello said other capabilities than the site's previous hello (`presence.forwarding` is the new). */
  'capabilities-changed': [presence: AgentPresence, previous: AgentForwarding | null];
  /** An accepted report, after the estimator ingested it. */
  report: [site: string, report: ProbeReport];
  'agent-event': [site: string, event: AgentEvent];
  'policy-ack': [site: string, ack: PolicyAck];
};

export interface AgentGatewayOptions {
  readonly topology: Pick<Topology, 'sites' | 'links'>;
  readonly agentToken: string;
  readonly estimator: LinkEstimator;
  readonly log: Logger;
  readonly probe?: Partial<ProbeSettings>;
  readonly limits?: Partial<MessageLimits>;
  /** Default 5000 ms. */
  readonly helloTimeoutMs?: number;
  /** A held stream silent for this long may be replaced by a new agent process (default 5000 ms). */
  readonly agentStaleMs?: number;
  readonly controllerVersion?: string;
}

/** The largest message the server accepts (grpc.max_receive_message_length), default 4 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

const MALFORMED = Symbol('malformed');
type Decoded = AgentMessage | { [MALFORMED]: string };

type Call = grpc.ServerDuplexStream<Decoded, ControllerMessage>;

interface Session {
  readonly id: string;
  readonly site: string;
  readonly instanceId: string;
  readonly agentVersion: string;
  readonly appliedPolicy: { readonly version: number; readonly hash: string };
  readonly forwarding: AgentForwarding | null;
  readonly call: Call;
  readonly address: string;
  lastSeen: number;
  /** JSON of the last probe plan targets sent. */
  planSent: string | undefined;
  closed: boolean;
  invalid: number;
}

function sameForwarding(a: AgentForwarding | null, b: AgentForwarding | null): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Ends `call` with the catalog status of `code`. */
function fail(call: Call, code: ControllerErrorCode, message: string): void {
  const err = new ControllerError(code, message);
  const md = new grpc.Metadata();
  md.set('meridian-error-code', code);
  call.emit('error', { code: err.grpcStatus, details: message, metadata: md });
}

export class AgentGateway extends EventEmitter<AgentGatewayEvents> {
  readonly #log: Logger;
  readonly #token: Buffer;
  readonly #estimator: LinkEstimator;
  readonly #links: readonly { id: string; a: string; b: string }[];
  readonly #siteLinks = new Map<string, Set<string>>();
  readonly #probe: ProbeSettings;
  readonly #limits: MessageLimits;
  readonly #helloTimeoutMs: number;
  readonly #agentStaleMs: number;
  readonly #version: string;
  readonly #sessions = new Map<string, Session>();
  readonly #presence = new Map<string, AgentPresence>();
  readonly #endpoints = new Map<string, readonly ProbeEndpoint[]>();
  readonly #pending = new Set<Call>();
  #replanTimer: NodeJS.Timeout | undefined;
  /** Per link, the site whose reports the estimator takes (see probe-plan.ts). */
  #reporters = new Map<string, string>();
  #closing = false;
  /** Counters for health and benchmarks. */
  readonly counters = { reports: 0, invalidReports: 0, malformed: 0, rejectedHellos: 0 };

  constructor(opts: AgentGatewayOptions) {
    super();
    this.#log = opts.log.child({ module: 'agent-gateway' });
    this.#token = digest(opts.agentToken);
    this.#estimator = opts.estimator;
    this.#links = opts.topology.links;
    for (const s of opts.topology.sites) {
      this.#siteLinks.set(s.id, new Set());
      this.#presence.set(s.id, {
        site: s.id,
        connected: false,
        address: null,
        lastSeenMs: 0,
        instanceId: null,
        agentVersion: null,
        appliedPolicy: { version: 0, hash: '' },
        forwarding: null,
      });
    }
    for (const l of opts.topology.links) {
      this.#siteLinks.get(l.a)?.add(l.id);
      this.#siteLinks.get(l.b)?.add(l.id);
    }
    this.#probe = { ...DEFAULT_PROBE_SETTINGS, ...opts.probe };
    this.#limits = { ...DEFAULT_MESSAGE_LIMITS, ...opts.limits };
    this.#helloTimeoutMs = opts.helloTimeoutMs ?? 5000;
    this.#agentStaleMs = opts.agentStaleMs ?? 5000;
    this.#version = opts.controllerVersion ?? '0.1.0';
  }

  /**
   * The service to add to a grpc-js server. Its request deserializer is wrapped so that bytes
   * which do not decode reach the handler as a marker (answered with the catalog's
   * `INVALID_ARGUMENT`) instead of grpc-js' generic `INTERNAL`.
   */
  service(): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
    const base = agentControlService();
    const connect = base.Connect as grpc.MethodDefinition<AgentMessage, ControllerMessage>;
    const definition: grpc.ServiceDefinition = {
      Connect: {
        ...connect,
        requestDeserialize: (bytes: Buffer): Decoded => {
          try {
            return connect.requestDeserialize(bytes);
          } catch (err) {
            return { [MALFORMED]: err instanceof Error ? err.message : String(err) };
          }
        },
      },
    };
    return { definition, implementation: { Connect: (call: Call) => this.#connect(call) } };
  }

  /** Presence of every topology site's agent, in topology order. */
  agents(): AgentPresence[] {
    return [...this.#presence.keys()].map((site) => this.presence(site)!);
  }

  /** Sites with a live stream. */
  connectedSites(): string[] {
    return [...this.#sessions.keys()];
  }

  /** The probe settings in force. */
  get probeSettings(): ProbeSettings {
    return this.#probe;
  }

  /** Sends a message to a site's agent; false when it is not connected. For policy distribution. */
  send(site: string, msg: ControllerMessage): boolean {
    const s = this.#sessions.get(site);
    if (s === undefined || s.closed) return false;
    s.call.write(msg);
    return true;
  }

  /** Ends every stream (agents reconnect to the next controller). */
  close(): void {
    this.#closing = true;
    if (this.#replanTimer) clearTimeout(this.#replanTimer);
    for (const call of this.#pending) fail(call, 'CTRL_ERR_SHUTTING_DOWN', 'controller stopping');
    for (const s of [...this.#sessions.values()]) {
      fail(s.call, 'CTRL_ERR_SHUTTING_DOWN', 'controller stopping');
      this.#drop(s);
    }
  }

  #connect(call: Call): void {
    const address = call.getPeer();
    if (this.#closing) {
      fail(call, 'CTRL_ERR_SHUTTING_DOWN', 'controller stopping');
      return;
    }
    this.#pending.add(call);
    let session: Session | undefined;
    let ended = false;
    const reject = (code: ControllerErrorCode, message: string, extra: object = {}): void => {
      if (ended) return;
      ended = true;
      clearTimeout(helloTimer);
      this.#pending.delete(call);
      this.#log.warn({ code, address, ...extra }, message);
      fail(call, code, message);
      if (session) this.#drop(session);
    };
    const helloTimer = setTimeout(() => {
      this.counters.rejectedHellos++;
      reject('CTRL_ERR_HELLO_TIMEOUT', `no hello within ${this.#helloTimeoutMs} ms`);
    }, this.#helloTimeoutMs);

    call.on('data', (msg: Decoded) => {
      if (ended) return;
      if (MALFORMED in msg) {
        this.counters.malformed++;
        reject(
          'CTRL_ERR_MALFORMED_MESSAGE',
          `message does not decode as meridian.v1.AgentMessage: ${msg[MALFORMED]}`,
          {
            site: session?.site,
          },
        );
        return;
      }
      if (session === undefined) {
        if (msg.body !== 'hello') {
          this.counters.rejectedHellos++;
          reject(
            'CTRL_ERR_HELLO_REQUIRED',
            `first message must be hello, got ${msg.body ?? 'an empty message'}`,
          );
          return;
        }
        clearTimeout(helloTimer);
        const result = this.#hello(call, msg.hello, address);
        if (result instanceof ControllerError) {
          this.counters.rejectedHellos++;
          reject(result.code, result.message, { site: msg.hello.site.slice(0, 64) });
          return;
        }
        this.#pending.delete(call);
        session = result;
        return;
      }
      if (session.closed) return;
      session.lastSeen = Date.now();
      this.#message(session, msg);
    });
    const gone = (why: string): void => {
      clearTimeout(helloTimer);
      this.#pending.delete(call);
      if (session && !session.closed) {
        this.#log.info({ site: session.site, address, why }, 'agent stream closed');
        this.#drop(session);
      }
      ended = true;
    };
    call.on('end', () => {
      gone('end');
      call.end();
    });
    call.on('cancelled', () => gone('cancelled'));
    call.on('error', (err: Error) => gone(`error: ${err.message}`));
  }

  #hello(call: Call, h: Hello, address: string): Session | ControllerError {
    if (!timingSafeEqual(digest(h.token), this.#token)) {
      return new ControllerError(
        'CTRL_ERR_UNAUTHENTICATED',
        'agent token does not match MERIDIAN_AGENT_TOKEN',
      );
    }
    const links = plausibleSiteId(h.site) ? this.#siteLinks.get(h.site) : undefined;
    if (links === undefined) {
      return new ControllerError(
        'CTRL_ERR_UNKNOWN_SITE',
        `hello.site '${h.site.slice(0, 64)}' is not a site of the topology`,
      );
    }
    const bad = checkHello(h, links, this.#limits);
    if (bad !== undefined) return new ControllerError('CTRL_ERR_INVALID_MESSAGE', bad);
    const now = Date.now();
    const held = this.#sessions.get(h.site);
    if (held !== undefined) {
      const sameProcess = h.instanceId !== '' && h.instanceId === held.instanceId;
      const silent = now - held.lastSeen > this.#agentStaleMs;
      if (!sameProcess && !silent) {
        return new ControllerError(
          'CTRL_ERR_DUPLICATE_SITE',
          `site '${h.site}' already has a live agent stream from ${held.address} (instance ${held.instanceId || '?'})`,
        );
      }
      this.#log.warn(
        {
          site: h.site,
          old: held.address,
          address,
          reason: sameProcess ? 'same instance reconnected' : 'old stream silent',
        },
        'replacing agent stream',
      );
      fail(
        held.call,
        'CTRL_ERR_DUPLICATE_SITE',
        `replaced by a newer stream of site '${h.site}' from ${address}`,
      );
      this.#drop(held, false);
    }
    // Valid: checkHello checked it.
    const forwarding = checkForwarding(h.forwarding) as AgentForwarding | null;
    const previous = this.#presence.get(h.site)?.forwarding ?? null;
    const session: Session = {
      id: randomUUID(),
      site: h.site,
      instanceId: h.instanceId,
      agentVersion: h.agentVersion,
      appliedPolicy: { version: Number(h.appliedPolicyVersion) || 0, hash: h.appliedPolicyHash || '' },
      forwarding,
      call,
      address,
      lastSeen: now,
      planSent: undefined,
      closed: false,
      invalid: 0,
    };
    this.#sessions.set(h.site, session);
    if (h.probeEndpoints.length > 0)
      this.#endpoints.set(
        h.site,
        h.probeEndpoints.map((e) => ({ ...e })),
      );
    const presence = this.#setPresence(session, true);
    call.write({ welcome: { controllerVersion: this.#version, serverTimeMs: now, sessionId: session.id } });
    this.#log.info(
      {
        site: h.site,
        address,
        instance: h.instanceId,
        version: h.agentVersion,
        platform: forwarding?.platform ?? null,
        modes: forwarding?.modes ?? null,
      },
      'agent connected',
    );
    this.emit('agent-connected', presence);
    if (!sameForwarding(previous, forwarding)) {
      this.#log.info(
        { site: h.site, previous: previous?.modes ?? null, modes: forwarding?.modes ?? null, forwarding },
        'site forwarding capabilities changed',
      );
      this.emit('capabilities-changed', presence, previous);
    }
    this.#scheduleReplan();
    return session;
  }

  #message(s: Session, msg: AgentMessage): void {
    switch (msg.body) {
      case 'hello':
        this.#notice(s, 'CTRL_ERR_UNEXPECTED_HELLO', 'hello already received on this stream');
        return;
      case 'report': {
        const bad = checkReport(s.site, msg.report, (id) => this.#estimator.ends(id), this.#limits);
        if (bad !== undefined) {
          this.counters.invalidReports++;
          this.#notice(s, 'CTRL_ERR_INVALID_MESSAGE', `report dropped: ${bad}`);
          return;
        }
        this.counters.reports++;
        const now = Date.now();
        // Each link is probed from both ends; the estimator takes its reporter's measurements only
        // (a link the plan gives no reporter yet: whichever end reports).
        const links = msg.report.links.filter((l) => (this.#reporters.get(l.link) ?? s.site) === s.site);
        for (const l of links) this.#estimator.ingestLinkStats(s.site, l, now);
        this.emit(
          'report',
          s.site,
          links.length === msg.report.links.length ? msg.report : { ...msg.report, links },
        );
        return;
      }
      case 'event':
        this.emit('agent-event', s.site, msg.event);
        return;
      case 'ack':
        this.emit('policy-ack', s.site, msg.ack);
        return;
      default: {
        // An AgentMessage with no member set (or one added to the proto later).
        const body: never = msg;
        this.#notice(
          s,
          'CTRL_ERR_INVALID_MESSAGE',
          `message has no known body (${String((body as { body?: unknown }).body)})`,
        );
      }
    }
  }

  /** Answers a bad message without ending the stream; logs the first and every 100th per stream. */
  #notice(s: Session, code: ControllerErrorCode, message: string): void {
    s.invalid++;
    if (s.invalid === 1 || s.invalid % 100 === 0) {
      this.#log.warn({ site: s.site, code, count: s.invalid }, message);
    }
    s.call.write({ error: { code, message } });
  }

  #drop(s: Session, replan = true): void {
    if (s.closed) return;
    s.closed = true;
    if (this.#sessions.get(s.site) === s) {
      this.#sessions.delete(s.site);
      const presence = this.#setPresence(s, false);
      this.emit('agent-disconnected', presence);
      if (replan) this.#scheduleReplan();
    }
  }

  #setPresence(s: Session, connected: boolean): AgentPresence {
    const p: AgentPresence = {
      site: s.site,
      connected,
      address: s.address,
      lastSeenMs: s.lastSeen,
      instanceId: s.instanceId,
      agentVersion: s.agentVersion,
      appliedPolicy: s.appliedPolicy,
      forwarding: s.forwarding,
    };
    this.#presence.set(s.site, p);
    return p;
  }

  /** Presence with `lastSeen` refreshed from the live session. */
  presence(site: string): AgentPresence | undefined {
    const p = this.#presence.get(site);
    const s = this.#sessions.get(site);
    return p && s ? { ...p, lastSeenMs: s.lastSeen } : p;
  }

  // Replans are batched: a burst of (re)connecting agents costs one computation.
  #scheduleReplan(): void {
    if (this.#replanTimer !== undefined || this.#closing) return;
    this.#replanTimer = setTimeout(() => {
      this.#replanTimer = undefined;
      this.#replan();
    }, 10);
  }

  #replan(): void {
    const targets = computeProbeTargets(this.#links, new Set(this.#sessions.keys()), this.#endpoints);
    this.#reporters = linkReporters(this.#links, targets);
    const p = this.#probe;
    for (const [site, list] of targets) {
      const s = this.#sessions.get(site);
      if (s === undefined || s.closed) continue;
      const json = JSON.stringify(list);
      if (json === s.planSent) continue;
      s.planSent = json;
      const plan: ProbePlan = {
        intervalMs: p.intervalMs,
        timeoutMs: p.timeoutMs,
        downAfterMisses: p.downAfterMisses,
        upAfterSuccesses: p.upAfterSuccesses,
        reportIntervalMs: p.reportIntervalMs,
        targets: list,
      };
      s.call.write({ probePlan: plan });
      this.#log.debug({ site, targets: list.length }, 'probe plan sent');
    }
  }
}
