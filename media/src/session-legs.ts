/**
 * Everything one session has on one media node: its own router (on one worker), one source leg
 * (an ingress, or a pipe-in from the upstream node), any number of pipe-outs to downstream nodes
 * (a standby pipe is simply a second pipe-out) and at most one egress to the sink.
 *
 * Every `ensure*` order is idempotent: the same order again returns the same result and creates
 * nothing; an order that contradicts what exists (another SSRC, another sink, another remote for
 * the same peer) is refused with MEDIA_ERR_ORDER_CONFLICT. The caller (MediaNode) runs the orders
 * of one session one at a time.
 *
 * Across processes, a pipe is made in three steps that the controller relays (mediasoup's
 * `pipeToRouter()` does the same inside one process):
 *   1. downstream `ensurePipeIn(peer)`             -> its tuple {ip, port}
 *   2. upstream   `ensurePipeOut(peer, tuple)`     -> its tuple + the pipe consumer's RTP parameters
 *   3. downstream `connectPipeIn(peer, tuple, rtp)` -> connects and creates the pipe producer
 * A PipeTransport drops RTP from an unknown address, so each side must know the other's tuple.
 */
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import type { Logger } from 'pino';
import { ingressRtpParameters, type CodecName } from './codecs';
import { MediaError, toMediaError } from './errors';
import { MediaLeg, type Tuple } from './media-leg';

/** What the RTP source sends to an ingress leg. */
export interface IngressSpec {
  codec: CodecName;
  payloadType: number;
  ssrc: number;
}

/** What an upstream pipe-out tells the downstream pipe-in (step 2 of a pipe). */
export interface PipeOutInfo extends Tuple {
  kind: ms.MediaKind;
  rtpParameters: ms.RtpParameters;
}

/** A session as the node announces it to the controller (after a reconnect, for instance). */
export interface SessionInfo {
  sessionId: string;
  workerIndex: number;
  ingress?: Tuple & IngressSpec;
  pipeIns: Array<{ peer: string; local: Tuple; remote?: Tuple; connected: boolean }>;
  pipeOuts: Array<{ peer: string; local: Tuple; remote: Tuple }>;
  egress?: { local: Tuple; sink: Tuple; consuming: boolean; standby: boolean };
}

export interface SessionLegsOptions {
  sessionId: string;
  workerIndex: number;
  router: ms.Router;
  listenIp: ms.TransportListenIp;
  log: Logger;
}

export type SessionLegsEvents = {
  /** A leg was created (the RTP monitor starts watching it). */
  leg: [MediaLeg];
  /** The session closed; `error` says why when it was not a teardown order. */
  close: [MediaError | undefined];
};

export type SessionLegsObserverEvents = SessionLegsEvents;

/** One session's router and legs on one node. */
export class SessionLegs extends EventEmitter<SessionLegsEvents> {
  readonly #sessionId: string;
  readonly #workerIndex: number;
  readonly #router: ms.Router;
  readonly #listenIp: ms.TransportListenIp;
  readonly #log: Logger;
  #ingressSpec: IngressSpec | undefined;
  /** The leg whose producer feeds the router: the ingress or the current pipe-in. */
  #source: MediaLeg | undefined;
  readonly #pipeOuts = new Map<string, MediaLeg>();
  #egress: MediaLeg | undefined;
  #sink: Tuple | undefined;
  /** A warm standby egress: consuming but paused until an active createEgress for the same sink. */
  #egressStandby = false;
  #closed = false;
  readonly #observer = new EventEmitter<SessionLegsObserverEvents>();

  constructor(options: SessionLegsOptions) {
    super();
    this.#sessionId = options.sessionId;
    this.#workerIndex = options.workerIndex;
    this.#router = options.router;
    this.#listenIp = options.listenIp;
    this.#log = options.log.child({ session: options.sessionId });
    this.#router.on('workerclose', () => {
      // The worker died (or the node closes): everything of this session is gone.
      this.#finish(
        new MediaError('MEDIA_ERR_WORKER_DIED', `session ${this.#sessionId}: its mediasoup worker closed`, {
          sessionId: this.#sessionId,
        }),
      );
    });
  }

  get sessionId(): string {
    return this.#sessionId;
  }

  get workerIndex(): number {
    return this.#workerIndex;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get observer(): EventEmitter<SessionLegsObserverEvents> {
    return this.#observer;
  }

  /** Every open leg of the session. */
  legs(): MediaLeg[] {
    const legs: MediaLeg[] = [];
    if (this.#source !== undefined) legs.push(this.#source);
    legs.push(...this.#pipeOuts.values());
    if (this.#egress !== undefined) legs.push(this.#egress);
    return legs.filter((l) => !l.closed);
  }

  /** Creates the ingress leg (PlainTransport, comedia) and its producer; returns where to send RTP. */
  async ensureIngress(spec: IngressSpec): Promise<Tuple> {
    this.#assertOpen();
    if (this.#source !== undefined && this.#source.kind === 'ingress' && !this.#source.closed) {
      const s = this.#ingressSpec;
      if (
        s !== undefined &&
        s.codec === spec.codec &&
        s.payloadType === spec.payloadType &&
        s.ssrc === spec.ssrc
      ) {
        return this.#source.localTuple;
      }
      throw this.#conflict(
        `ingress exists with ${JSON.stringify(s)}, order asks for ${JSON.stringify(spec)}`,
      );
    }
    if (this.#source !== undefined && !this.#source.closed) {
      throw this.#conflict(
        `the session already has a ${this.#source.kind} source from '${this.#source.peer}'`,
      );
    }
    const transport = await this.#try('create ingress PlainTransport', () =>
      this.#router.createPlainTransport({ listenIp: this.#listenIp, comedia: true, rtcpMux: true }),
    );
    const leg = this.#adopt(
      new MediaLeg({ sessionId: this.#sessionId, kind: 'ingress', peer: '', transport }),
    );
    try {
      const producer = await transport.produce({
        kind: 'audio',
        rtpParameters: ingressRtpParameters(spec.codec, spec.payloadType, spec.ssrc),
      });
      leg.setProducer(producer);
    } catch (err) {
      leg.close();
      throw toMediaError(err, `session ${this.#sessionId}: create ingress producer`, this.#sessionId);
    }
    this.#ingressSpec = { ...spec };
    this.#setSource(leg);
    this.#log.info({ leg: leg.id, tuple: leg.localTuple, ...spec }, 'ingress leg created');
    return leg.localTuple;
  }

  /**
   * Step 1 of a pipe: the PipeTransport that will receive from `peer`. A pipe-in from another peer
   * replaces the current one (the upstream node changed: failover or drain).
   */
  async ensurePipeIn(peer: string): Promise<Tuple> {
    this.#assertOpen();
    const src = this.#source;
    if (src !== undefined && !src.closed) {
      if (src.kind === 'ingress')
        throw this.#conflict('the session has an ingress source; it cannot take a pipe-in');
      if (src.peer === peer) return src.localTuple;
    }
    const transport = await this.#try('create pipe-in PipeTransport', () =>
      this.#router.createPipeTransport({ listenIp: this.#listenIp }),
    );
    const leg = this.#adopt(new MediaLeg({ sessionId: this.#sessionId, kind: 'pipe-in', peer, transport }));
    if (src !== undefined && !src.closed) {
      this.#log.info({ old: src.id, new: leg.id }, 'pipe-in replaced');
      src.close();
    }
    this.#setSource(leg);
    this.#log.info({ leg: leg.id, tuple: leg.localTuple }, 'pipe-in leg created');
    return leg.localTuple;
  }

  /** Step 3 of a pipe: connect the pipe-in to the upstream pipe-out and create its producer. */
  async connectPipeIn(
    peer: string,
    remote: Tuple,
    media: { kind: ms.MediaKind; rtpParameters: ms.RtpParameters },
  ): Promise<void> {
    this.#assertOpen();
    const leg = this.#source;
    if (leg === undefined || leg.closed || leg.kind !== 'pipe-in' || leg.peer !== peer) {
      throw new MediaError(
        'MEDIA_ERR_BAD_ORDER',
        `session ${this.#sessionId}: connect pipe-in from '${peer}' before create pipe-in from '${peer}'`,
        { sessionId: this.#sessionId },
      );
    }
    const current = leg.remote;
    if (current !== undefined) {
      if (current.ip === remote.ip && current.port === remote.port && leg.producer !== undefined) return;
      if (current.ip !== remote.ip || current.port !== remote.port) {
        throw this.#conflict(
          `pipe-in from '${peer}' is connected to ${fmt(current)}, order says ${fmt(remote)}`,
        );
      }
    } else {
      await this.#try('connect pipe-in', () => leg.connect(remote));
    }
    try {
      const producer = await leg.transport.produce({ kind: media.kind, rtpParameters: media.rtpParameters });
      leg.setProducer(producer);
    } catch (err) {
      throw new MediaError(
        'MEDIA_ERR_INVALID',
        `session ${this.#sessionId}: pipe-in from '${peer}': RTP parameters refused: ${errText(err)}`,
        { sessionId: this.#sessionId, cause: err },
      );
    }
    this.#setSource(leg); // tells the egress to consume the new producer
    this.#log.info({ leg: leg.id, remote }, 'pipe-in leg connected');
  }

  /** Step 2 of a pipe: a PipeTransport to `peer`'s pipe-in, consuming the session's source. */
  async ensurePipeOut(peer: string, remote: Tuple): Promise<PipeOutInfo> {
    this.#assertOpen();
    const producer = this.#source?.producer;
    if (producer === undefined || producer.closed) {
      throw new MediaError(
        'MEDIA_ERR_BAD_ORDER',
        `session ${this.#sessionId}: pipe-out to '${peer}' needs a source first (create ingress or connect a pipe-in)`,
        { sessionId: this.#sessionId },
      );
    }
    let leg = this.#pipeOuts.get(peer);
    if (leg !== undefined && !leg.closed) {
      const r = leg.remote;
      if (r !== undefined && (r.ip !== remote.ip || r.port !== remote.port)) {
        throw this.#conflict(`pipe-out to '${peer}' is connected to ${fmt(r)}, order says ${fmt(remote)}`);
      }
    } else {
      const transport = await this.#try('create pipe-out PipeTransport', () =>
        this.#router.createPipeTransport({ listenIp: this.#listenIp }),
      );
      const created = this.#adopt(
        new MediaLeg({ sessionId: this.#sessionId, kind: 'pipe-out', peer, transport }),
      );
      created.once('close', () => {
        if (this.#pipeOuts.get(peer) === created) this.#pipeOuts.delete(peer);
      });
      this.#pipeOuts.set(peer, created);
      try {
        await created.connect(remote);
      } catch (err) {
        created.close();
        throw toMediaError(
          err,
          `session ${this.#sessionId}: connect pipe-out to ${fmt(remote)}`,
          this.#sessionId,
        );
      }
      leg = created;
    }
    let consumer = leg.consumer;
    if (consumer === undefined || consumer.producerId !== producer.id) {
      // A pipe-out leg always holds a PipeTransport, whose consume() takes no RTP capabilities.
      const pipe = leg.transport as ms.PipeTransport;
      consumer = await this.#try('consume on pipe-out', () => pipe.consume({ producerId: producer.id }));
      leg.setConsumer(consumer);
      this.#log.info({ leg: leg.id, remote }, 'pipe-out leg consuming');
    }
    return { ...leg.localTuple, kind: consumer.kind, rtpParameters: consumer.rtpParameters };
  }

  /** Closes the pipe-out to `peer`; false when there was none. */
  closePipeOut(peer: string): boolean {
    const leg = this.#pipeOuts.get(peer);
    if (leg === undefined) return false;
    this.#pipeOuts.delete(peer);
    leg.close();
    this.#log.info({ leg: leg.id }, 'pipe-out closed');
    return true;
  }

  /**
   * The egress leg: a PlainTransport sending the session's RTP to `sink`; returns its own tuple.
   * With `standby`, the leg is built and consumes the source but stays paused (a warm standby);
   * the same order without `standby` then activates it, which is one quick request at failover.
   */
  async ensureEgress(sink: Tuple, standby = false): Promise<Tuple> {
    this.#assertOpen();
    if (this.#egress !== undefined && !this.#egress.closed) {
      const s = this.#sink;
      if (s !== undefined && s.ip === sink.ip && s.port === sink.port) {
        if (!standby && this.#egressStandby) {
          this.#egressStandby = false;
          const consumer = this.#egress.consumer;
          if (consumer !== undefined && consumer.paused) await consumer.resume();
          this.#log.info({ leg: this.#egress.id }, 'standby egress activated');
        }
        await this.#attachEgress();
        return this.#egress.localTuple;
      }
      throw this.#conflict(`egress sends to ${s === undefined ? '?' : fmt(s)}, order says ${fmt(sink)}`);
    }
    const transport = await this.#try('create egress PlainTransport', () =>
      this.#router.createPlainTransport({ listenIp: this.#listenIp, comedia: false, rtcpMux: true }),
    );
    const leg = this.#adopt(
      new MediaLeg({ sessionId: this.#sessionId, kind: 'egress', peer: fmt(sink), transport }),
    );
    try {
      await leg.connect(sink);
    } catch (err) {
      leg.close();
      throw toMediaError(err, `session ${this.#sessionId}: connect egress to ${fmt(sink)}`, this.#sessionId);
    }
    leg.once('close', () => {
      if (this.#egress === leg) this.#egress = undefined;
    });
    this.#egress = leg;
    this.#sink = { ...sink };
    this.#egressStandby = standby;
    await this.#attachEgress();
    this.#log.info({ leg: leg.id, sink, standby }, 'egress leg created');
    return leg.localTuple;
  }

  /** Counts for load reports. */
  counts(): { transports: number; producers: number; consumers: number } {
    let transports = 0;
    let producers = 0;
    let consumers = 0;
    for (const leg of this.legs()) {
      transports += 1;
      const c = leg.counts();
      producers += c.producers;
      consumers += c.consumers;
    }
    return { transports, producers, consumers };
  }

  describe(): SessionInfo {
    const info: SessionInfo = {
      sessionId: this.#sessionId,
      workerIndex: this.#workerIndex,
      pipeIns: [],
      pipeOuts: [],
    };
    const src = this.#source;
    if (src !== undefined && !src.closed) {
      if (src.kind === 'ingress' && this.#ingressSpec !== undefined) {
        info.ingress = { ...src.localTuple, ...this.#ingressSpec };
      } else if (src.kind === 'pipe-in') {
        const remote = src.remote;
        info.pipeIns.push({
          peer: src.peer,
          local: src.localTuple,
          ...(remote === undefined ? {} : { remote }),
          connected: src.producer !== undefined,
        });
      }
    }
    for (const leg of this.#pipeOuts.values()) {
      if (!leg.closed && leg.remote !== undefined) {
        info.pipeOuts.push({ peer: leg.peer, local: leg.localTuple, remote: leg.remote });
      }
    }
    const eg = this.#egress;
    if (eg !== undefined && !eg.closed && this.#sink !== undefined) {
      info.egress = {
        local: eg.localTuple,
        sink: { ...this.#sink },
        consuming: eg.consumer !== undefined,
        standby: this.#egressStandby,
      };
    }
    return info;
  }

  /** Tears the session down on this node (closes its router and every leg). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#router.close();
    this.#finish(undefined);
  }

  #finish(error: MediaError | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const leg of this.legs()) leg.close();
    this.#source = undefined;
    this.#pipeOuts.clear();
    this.#egress = undefined;
    this.emit('close', error);
    this.#observer.emit('close', error);
  }

  #adopt(leg: MediaLeg): MediaLeg {
    this.emit('leg', leg);
    this.#observer.emit('leg', leg);
    return leg;
  }

  #setSource(leg: MediaLeg): void {
    this.#source = leg;
    leg.once('close', () => {
      if (this.#source === leg) this.#source = undefined;
    });
    // The egress follows the source: a new upstream (failover) keeps the sink's address unchanged.
    this.#attachEgress().catch((err: unknown) =>
      this.#log.warn({ err: errText(err) }, 'egress could not consume the new source'),
    );
  }

  async #attachEgress(): Promise<void> {
    const leg = this.#egress;
    const producer = this.#source?.producer;
    if (leg === undefined || leg.closed || producer === undefined || producer.closed) return;
    if (leg.consumer !== undefined && leg.consumer.producerId === producer.id) return;
    const consumer = await leg.transport.consume({
      producerId: producer.id,
      rtpCapabilities: this.#router.rtpCapabilities,
      paused: this.#egressStandby,
    });
    if (leg.closed) {
      consumer.close();
      return;
    }
    leg.setConsumer(consumer);
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new MediaError('MEDIA_ERR_UNKNOWN_SESSION', `session ${this.#sessionId} is closed on this node`, {
        sessionId: this.#sessionId,
      });
    }
  }

  #conflict(detail: string): MediaError {
    return new MediaError('MEDIA_ERR_ORDER_CONFLICT', `session ${this.#sessionId}: ${detail}`, {
      sessionId: this.#sessionId,
    });
  }

  async #try<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toMediaError(err, `session ${this.#sessionId}: ${what}`, this.#sessionId);
    }
  }
}

function fmt(t: Tuple): string {
  return `${t.ip}:${t.port}`;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
