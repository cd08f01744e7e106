/**
 * One leg of a session on one media node: a mediasoup transport plus the producer (legs that bring
 * RTP into the router) or the consumer (legs that send RTP out of it).
 *
 *  - `ingress`:  PlainTransport, comedia, producer built from codec/payload type/SSRC. The RTP
 *                source sends to its tuple; mediasoup learns the source address from the first packet.
 *  - `pipe-in`:  PipeTransport receiving from an upstream node's `pipe-out`; its producer is created
 *                from the RTP parameters the upstream pipe consumer announced.
 *  - `pipe-out`: PipeTransport sending to a downstream node's `pipe-in`, with a pipe consumer of the
 *                session's source producer.
 *  - `egress`:   PlainTransport (no comedia, rtcp-mux) connected to the sink, with a consumer.
 */
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';

/** An IP address and UDP port, as exchanged between nodes and with the controller. */
export interface Tuple {
  ip: string;
  port: number;
}

/** What the RTP monitor samples from a leg. */
export interface LegCounters {
  packets: number;
  lost: number;
  jitterMs: number;
}

/** RTP clock rate of a mime type as mediasoup reports it in stats (0 when unknown). */
function clockRateOf(mimeType: string): number {
  const m = mimeType.toLowerCase();
  if (m === 'audio/opus') return 48000;
  if (m === 'audio/pcmu' || m === 'audio/pcma') return 8000;
  return 0;
}

export const MEDIA_LEG_KINDS = ['ingress', 'pipe-in', 'pipe-out', 'egress'] as const;
export type MediaLegKind = (typeof MEDIA_LEG_KINDS)[number];

export interface MediaLegOptions {
  sessionId: string;
  kind: MediaLegKind;
  /** The peer node of a pipe leg (or the sink `ip:port` of an egress leg); `''` for ingress. */
  peer: string;
  transport: ms.PlainTransport | ms.PipeTransport;
}

export type MediaLegEvents = {
  /** The leg closed (by close(), or because its transport, router or worker went away). */
  close: [];
};

export type MediaLegObserverEvents = {
  close: [];
  /** A producer or consumer was attached (or replaced) on the leg. */
  attach: [];
};

/** A session leg: the transport it owns, and its producer or consumer once attached. */
export class MediaLeg extends EventEmitter<MediaLegEvents> {
  readonly #sessionId: string;
  readonly #kind: MediaLegKind;
  readonly #peer: string;
  readonly #transport: ms.PlainTransport | ms.PipeTransport;
  #producer: ms.Producer | undefined;
  #consumer: ms.Consumer | undefined;
  /** Where a pipe-out or egress transport sends (set by connect()). */
  #remote: Tuple | undefined;
  #closed = false;
  readonly #observer = new EventEmitter<MediaLegObserverEvents>();

  constructor(options: MediaLegOptions) {
    super();
    this.#sessionId = options.sessionId;
    this.#kind = options.kind;
    this.#peer = options.peer;
    this.#transport = options.transport;
    // Closing the router (session teardown) or losing the worker closes the transport without
    // calling our close(): mirror it so nobody keeps using a dead leg.
    this.#transport.on('routerclose', () => this.#onClosed());
    this.#transport.observer.on('close', () => this.#onClosed());
  }

  /** `session/kind` or `session/kind/peer`: unique on the node, stable across re-orders. */
  get id(): string {
    return this.#peer === ''
      ? `${this.#sessionId}/${this.#kind}`
      : `${this.#sessionId}/${this.#kind}/${this.#peer}`;
  }

  get sessionId(): string {
    return this.#sessionId;
  }

  get kind(): MediaLegKind {
    return this.#kind;
  }

  get peer(): string {
    return this.#peer;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get observer(): EventEmitter<MediaLegObserverEvents> {
    return this.#observer;
  }

  get transport(): ms.PlainTransport | ms.PipeTransport {
    return this.#transport;
  }

  get producer(): ms.Producer | undefined {
    return this.#producer;
  }

  get consumer(): ms.Consumer | undefined {
    return this.#consumer;
  }

  /** The leg's own address (announced IP when configured): where a peer or RTP source sends. */
  get localTuple(): Tuple {
    const t = this.#transport.tuple;
    return { ip: t.localIp, port: t.localPort };
  }

  get remote(): Tuple | undefined {
    return this.#remote;
  }

  /** Connects a pipe or egress transport to its remote address (once; the caller checks). */
  async connect(remote: Tuple): Promise<void> {
    await this.#transport.connect({ ip: remote.ip, port: remote.port });
    this.#remote = { ...remote };
  }

  /** Attaches the producer of an ingress or pipe-in leg. */
  setProducer(producer: ms.Producer): void {
    this.#producer?.close();
    this.#producer = producer;
    producer.observer.once('close', () => {
      if (this.#producer === producer) this.#producer = undefined;
    });
    this.#observer.emit('attach');
  }

  /** Attaches (or replaces) the consumer of a pipe-out or egress leg. */
  setConsumer(consumer: ms.Consumer): void {
    this.#consumer?.close();
    this.#consumer = consumer;
    consumer.observer.once('close', () => {
      if (this.#consumer === consumer) this.#consumer = undefined;
    });
    this.#observer.emit('attach');
  }

  /**
   * RTP counters of the leg so far: packets received by its producer (ingress, pipe-in) or sent by
   * its consumer (pipe-out, egress); for receiving legs also packets lost and interarrival jitter
   * (RFC 3550, converted from RTP timestamp units to ms). Zeros before the first packet.
   */
  async counters(): Promise<LegCounters> {
    if (this.#closed) return { packets: 0, lost: 0, jitterMs: 0 };
    if (this.#producer !== undefined) {
      const stats = await this.#producer.getStats();
      let packets = 0;
      let lost = 0;
      let jitterMs = 0;
      for (const s of stats) {
        packets += s.packetCount;
        lost += Math.max(0, s.packetsLost);
        const rate = clockRateOf(s.mimeType);
        jitterMs = Math.max(jitterMs, rate > 0 ? (s.jitter * 1000) / rate : 0);
      }
      return { packets, lost, jitterMs };
    }
    if (this.#consumer !== undefined) {
      const stats = await this.#consumer.getStats();
      let packets = 0;
      for (const s of stats) if (s.type === 'outbound-rtp') packets += s.packetCount;
      return { packets, lost: 0, jitterMs: 0 };
    }
    return { packets: 0, lost: 0, jitterMs: 0 };
  }

  /** Number of producers and consumers the leg holds (for load reports). */
  counts(): { producers: number; consumers: number } {
    return {
      producers: this.#producer !== undefined && !this.#producer.closed ? 1 : 0,
      consumers: this.#consumer !== undefined && !this.#consumer.closed ? 1 : 0,
    };
  }

  /** Closes the transport (and with it the producer or consumer). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#transport.close();
    this.#onClosed();
  }

  #onClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#producer = undefined;
    this.#consumer = undefined;
    this.emit('close');
    this.#observer.emit('close');
  }
}
