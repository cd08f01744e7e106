import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { PolicyApplier, PolicyApplyResult } from './agent-applier';
import {
  agentControlClient,
  type AgentEventMsg,
  type AgentMessage,
  type ControllerMessage,
  type ErrorNoticeMsg,
  type HelloMsg,
  type PolicyAckMsg,
  type PolicyPushMsg,
  type WelcomeMsg,
} from './agent-proto';
import { AgentError } from './errors';
import type { ProbePlan, ProbeReport } from './probe-engine';

/** Reconnect timing: exponential backoff with full jitter (AWS "Exponential Backoff and Jitter"). */
export interface BackoffOptions {
  /** First retry waits up to this long. Default 200 ms. */
  readonly baseMs?: number;
  /** No wait is longer than this. Default 15 s. */
  readonly capMs?: number;
  /** A stream that stayed up this long resets the backoff. Default 10 s. */
  readonly healthyMs?: number;
}

export interface ControllerClientOptions {
  /** Controller gRPC address, HOST:PORT. */
  readonly address: string;
  /** Built at every (re)connect: the applied policy and probe endpoints may have changed. */
  readonly hello: () => HelloMsg;
  readonly applier: PolicyApplier;
  readonly log: Logger;
  readonly backoff?: BackoffOptions;
  /** Reports kept while disconnected (oldest dropped first). Default 120 (two minutes). */
  readonly maxBufferedReports?: number;
  /** Events kept while disconnected (oldest dropped first). Default 1000. */
  readonly maxBufferedEvents?: number;
  /** A stream without `welcome` this long after hello is given up and retried. Default 10 s. */
  readonly welcomeTimeoutMs?: number;
  /** Path of meridian.proto; default: the one in the @meridian/controller package. */
  readonly protoPath?: string;
}

export type ControllerClientEvents = {
  /** The controller accepted the hello. */
  connected: [WelcomeMsg];
  /** The stream ended; a reconnect is scheduled in `retryInMs`. */
  disconnected: [{ code: grpc.status; details: string; retryInMs: number }];
  plan: [ProbePlan];
  /** A policy push was applied (or refused) and acked. */
  'policy-ack': [PolicyAckMsg];
  /** An ErrorNotice from the controller. */
  notice: [ErrorNoticeMsg];
  /** Retrying cannot help (wrong token): the client has stopped. */
  fatal: [AgentError];
};

export interface ControllerClientCounters {
  connects: number;
  reportsSent: number;
  eventsSent: number;
  /** Reports dropped because the disconnected buffer was full. */
  reportsDropped: number;
  eventsDropped: number;
  /** Policy pushes never applied because a newer one arrived while they waited. */
  pushesSuperseded: number;
}

type Stream = grpc.ClientDuplexStream<AgentMessage, ControllerMessage>;

/** Parses HOST:PORT (IPv6 as [::1]:PORT); null when it is not one. */
export function parseHostPort(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s.trim());
  if (!m) return null;
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return null;
  return { host: (m[1] ?? m[2]) as string, port };
}

/**
 * The agent's end of the `AgentControl.Connect` stream: hello, then welcome / probe plan / policy
 * pushes from the controller, reports, events and acks from the agent. Reconnects by itself with
 * exponential backoff and full jitter; while down it keeps a bounded backlog (events before
 * reports) and sends it once the controller welcomes it back. A wrong token is fatal: it is an
 * operator error that retrying cannot fix.
 */
export class ControllerClient extends EventEmitter<ControllerClientEvents> {
  readonly #opts: ControllerClientOptions;
  readonly #log: Logger;
  readonly #backoff: Required<BackoffOptions>;
  #client: grpc.Client | undefined;
  #stream: Stream | undefined;
  #ready = false;
  #readyAt = 0;
  #attempt = 0;
  #stopped = true;
  #retryTimer: NodeJS.Timeout | undefined;
  #welcomeTimer: NodeJS.Timeout | undefined;
  readonly #reports: ProbeReport[] = [];
  readonly #events: AgentEventMsg[] = [];
  #applyChain: Promise<void> = Promise.resolve();
  readonly #counters: ControllerClientCounters = {
    connects: 0,
    reportsSent: 0,
    eventsSent: 0,
    reportsDropped: 0,
    eventsDropped: 0,
    pushesSuperseded: 0,
  };
  /** The newest push not yet taken by the apply chain (see `#queueApply`). */
  #nextPush: PolicyPushMsg | null = null;

  constructor(opts: ControllerClientOptions) {
    super();
    if (!parseHostPort(opts.address)) {
      throw new AgentError('AGENT_ERR_BAD_OPTION', `controller address '${opts.address}' is not HOST:PORT`);
    }
    this.#opts = opts;
    this.#log = opts.log.child({ module: 'controller-client' });
    this.#backoff = {
      baseMs: opts.backoff?.baseMs ?? 200,
      capMs: opts.backoff?.capMs ?? 15_000,
      healthyMs: opts.backoff?.healthyMs ?? 10_000,
    };
    // Load the contract now so a missing proto is a start-up error, not a retry loop.
    agentControlClient(opts.protoPath);
  }

  /** True between the controller's welcome and the end of that stream. */
  get connected(): boolean {
    return this.#ready;
  }

  counters(): ControllerClientCounters {
    return { ...this.#counters };
  }

  /** Buffered messages waiting for a connection. */
  get backlog(): { reports: number; events: number } {
    return { reports: this.#reports.length, events: this.#events.length };
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  /** Ends the stream and stops reconnecting. Waits for a policy apply in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#teardown();
    await this.#applyChain;
  }

  /** Sends a probe report now, or buffers it while disconnected. */
  sendReport(report: ProbeReport): void {
    if (this.#ready && this.#write({ report })) {
      this.#counters.reportsSent++;
      return;
    }
    this.#reports.push(report);
    const max = this.#opts.maxBufferedReports ?? 120;
    while (this.#reports.length > max) {
      this.#reports.shift();
      this.#counters.reportsDropped++;
    }
  }

  /** Sends an agent event now, or buffers it (ahead of any reports) while disconnected. */
  sendEvent(event: AgentEventMsg): void {
    if (this.#ready && this.#write({ event })) {
      this.#counters.eventsSent++;
      return;
    }
    this.#events.push(event);
    const max = this.#opts.maxBufferedEvents ?? 1000;
    while (this.#events.length > max) {
      this.#events.shift();
      this.#counters.eventsDropped++;
    }
  }

  #connect(): void {
    if (this.#stopped) return;
    const Ctor = agentControlClient(this.#opts.protoPath);
    // A fresh channel per attempt: our backoff decides when to retry, not the channel's own
    // (which can sit in TRANSIENT_FAILURE for up to two minutes after the controller is back).
    const client = new Ctor(this.#opts.address, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
    });
    const connectFn = client['Connect'] as (() => Stream) | undefined;
    if (typeof connectFn !== 'function') {
      throw new AgentError('AGENT_ERR_PROTO', 'meridian.proto has no AgentControl.Connect');
    }
    const stream = connectFn.call(client);
    this.#client = client;
    this.#stream = stream;
    this.#counters.connects++;
    let ended = false;
    const end = (code: grpc.status, details: string): void => {
      if (ended) return;
      ended = true;
      this.#onStreamEnd(stream, code, details);
    };
    stream.on('data', (msg: ControllerMessage) => this.#onMessage(stream, msg));
    stream.on('error', (err: grpc.ServiceError) =>
      end(err.code ?? grpc.status.UNKNOWN, err.details ?? err.message),
    );
    stream.on('status', (s: grpc.StatusObject) => end(s.code, s.details));
    stream.on('end', () => end(grpc.status.OK, 'stream ended by the controller'));
    const hello = this.#opts.hello();
    this.#write({ hello }, stream);
    this.#welcomeTimer = setTimeout(() => {
      this.#log.warn({ address: this.#opts.address }, 'no welcome from the controller: retrying');
      stream.cancel();
    }, this.#opts.welcomeTimeoutMs ?? 10_000);
    this.#log.debug({ address: this.#opts.address, attempt: this.#attempt }, 'connecting to the controller');
  }

  #onMessage(stream: Stream, msg: ControllerMessage): void {
    if (stream !== this.#stream) return;
    switch (msg.body) {
      case 'welcome':
        if (this.#welcomeTimer) clearTimeout(this.#welcomeTimer);
        this.#welcomeTimer = undefined;
        this.#ready = true;
        this.#readyAt = Date.now();
        this.#log.info(
          {
            address: this.#opts.address,
            session: msg.welcome.sessionId,
            controller: msg.welcome.controllerVersion,
          },
          'connected to the controller',
        );
        this.emit('connected', msg.welcome);
        this.#flushBacklog();
        return;
      case 'probePlan':
        this.emit('plan', msg.probePlan);
        return;
      case 'policy':
        this.#queueApply(msg.policy);
        return;
      case 'error':
        this.#log.warn(
          { code: msg.error.code, message: msg.error.message },
          'error notice from the controller',
        );
        this.emit('notice', msg.error);
        return;
      default: {
        // An unknown oneof member from a newer controller: ignore, it is additive by contract.
        const unknown: never = msg;
        this.#log.debug({ msg: unknown }, 'ignoring an unknown controller message');
      }
    }
  }

  /**
   * Applies pushes one at a time, and only the newest of those waiting: when versions come faster
   * than the device applies them (after a failure every site gets several in a row), applying each
   * in turn leaves the site further behind with every version, while the newest is all that
   * matters (the controller counts only an ack of its current target). A skipped push is not acked.
   */
  #queueApply(push: PolicyPushMsg): void {
    const waiting = this.#nextPush;
    if (waiting === null || Number(push.version) >= Number(waiting.version)) {
      if (waiting !== null) this.#counters.pushesSuperseded++;
      this.#nextPush = push;
    } else this.#counters.pushesSuperseded++;
    this.#applyChain = this.#applyChain.then(async () => {
      const next = this.#nextPush;
      if (next === null) return; // taken by an earlier turn of the chain
      this.#nextPush = null;
      push = next;
      let result: PolicyApplyResult;
      try {
        result = await this.#opts.applier.apply(push);
      } catch (err) {
        this.#log.error({ err, version: push.version }, 'policy applier threw');
        result = {
          ok: false,
          errorCode: 'AGENT_ERR_APPLY_FAILED',
          errorMessage: `applying policy v${push.version} failed unexpectedly: ${(err as Error).message}`,
          appliedVersion: this.#opts.applier.applied().version,
        };
      }
      const ack: PolicyAckMsg = { version: push.version, hash: push.hash, ...result };
      // An ack for a stream that has gone is dropped: the next hello carries the applied version.
      if (this.#ready) this.#write({ ack });
      this.emit('policy-ack', ack);
    });
  }

  #flushBacklog(): void {
    // Liveness and other events first: they are what the controller acts on.
    while (this.#ready && this.#events.length > 0) {
      const event = this.#events.shift() as AgentEventMsg;
      if (!this.#write({ event })) break;
      this.#counters.eventsSent++;
    }
    while (this.#ready && this.#reports.length > 0) {
      const report = this.#reports.shift() as ProbeReport;
      if (!this.#write({ report })) break;
      this.#counters.reportsSent++;
    }
  }

  #write(msg: AgentMessage, stream = this.#stream): boolean {
    if (!stream) return false;
    try {
      stream.write(msg);
      return true;
    } catch (err) {
      // Writing after the call ended throws in grpc-js; the end handler reconnects.
      this.#log.debug({ err }, 'write on a closed stream');
      return false;
    }
  }

  #onStreamEnd(stream: Stream, code: grpc.status, details: string): void {
    if (stream !== this.#stream) return;
    const wasReady = this.#ready;
    if (wasReady && Date.now() - this.#readyAt >= this.#backoff.healthyMs) this.#attempt = 0;
    this.#teardown();
    if (this.#stopped) return;
    if (code === grpc.status.UNAUTHENTICATED) {
      const err = new AgentError(
        'AGENT_ERR_UNAUTHENTICATED',
        `controller ${this.#opts.address} refused the agent token (${details}); ` +
          'check MERIDIAN_AGENT_TOKEN against the controller',
      );
      this.#log.error({ code: err.code, address: this.#opts.address }, err.message);
      this.#stopped = true;
      this.emit('fatal', err);
      return;
    }
    const exp = Math.min(this.#backoff.capMs, this.#backoff.baseMs * 2 ** Math.min(this.#attempt, 30));
    const delay = Math.round(Math.random() * exp);
    this.#attempt++;
    // The controller refused this agent (unknown site, duplicate site, a message it rejects): an
    // operator should look, but a topology reload or the old stream timing out can fix it, so retry.
    const rejected =
      code === grpc.status.NOT_FOUND ||
      code === grpc.status.INVALID_ARGUMENT ||
      code === grpc.status.FAILED_PRECONDITION ||
      code === grpc.status.ALREADY_EXISTS;
    if (rejected) {
      this.#log.error(
        { code: 'AGENT_ERR_REJECTED', status: grpc.status[code], details, retryInMs: delay },
        'controller rejected the agent stream',
      );
    } else {
      this.#log.warn(
        { status: grpc.status[code] ?? code, details, retryInMs: delay, wasConnected: wasReady },
        'controller stream ended',
      );
    }
    this.emit('disconnected', { code, details, retryInMs: delay });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#connect();
    }, delay);
  }

  #teardown(): void {
    this.#ready = false;
    if (this.#welcomeTimer) clearTimeout(this.#welcomeTimer);
    this.#welcomeTimer = undefined;
    const stream = this.#stream;
    const client = this.#client;
    this.#stream = undefined;
    this.#client = undefined;
    if (stream) {
      try {
        stream.end();
      } catch {
        // already closed
      }
      stream.cancel();
    }
    client?.close();
  }
}
