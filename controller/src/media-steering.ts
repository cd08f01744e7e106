/**
 * Media steering: places sessions on media nodes, builds their legs through the MediaGateway, and
 * re-steers them when a node dies, a worker dies, a pipe stalls or a node is drained.
 *
 * A session is a path of media nodes: an ingress node (RTP source -> PlainTransport), relays at
 * the intermediate sites of the voice route (`route`: the controller's voice route between the
 * ingress and egress nodes' sites), and an egress node (PlainTransport -> sink), consecutive nodes
 * joined by pipes. Placement takes, for each end, a healthy node at the requested site or else the
 * nearest one (`distance`, the voice route's latency), least loaded first, within the per-worker
 * capacity the nodes report. An intermediate site of the route without a usable node is skipped:
 * pipes are node-to-node UDP over IP, so the hop simply spans it (the underlay carries the packets
 * through that site anyway); a relay is only worth a node where one exists.
 *
 * Failover (the sink must hear RTP again within 500 ms) replaces the lost node in the path:
 *  - egress lost: a pipe from its upstream node to a new egress node, an egress to the sink;
 *  - relay lost: pipes upstream -> new relay -> downstream (the downstream pipe-in is replaced);
 *  - ingress lost: a new ingress node piped to the next node (whose egress or pipe-outs follow the
 *    new source), and `media.session.moved` {id, ingress} so the RTP source re-targets;
 *  - pipe stalled while the ingress still receives, or its sites no longer reachable (link state,
 *    `recheckPaths()`): the downstream node of that pipe is replaced;
 *  - a link of the session's voice route goes down (`linkDown()`), or the voice route changes
 *    (`followRoutes()`): the relays are re-placed along the current route, make-before-break (new
 *    pipes first; the first node both paths share switches its source; old relays go last).
 *  - drain: make-before-break (the old legs go once the new ones carry RTP, or after a grace time).
 *
 * After a controller restart the nodes re-announce what they carry; complete chains are adopted
 * (calls keep flowing), fragments are torn down after `adoptGraceMs`.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import * as net from 'node:net';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Logger } from 'pino';
import type { ControllerErrorCode } from './errors';
import type { MediaSessionStore, StoredMediaSession } from './media-session-store';
import { LossWindow, combineLossPct, eModel, type QualityEstimate } from './media-quality';
import type {
  MediaSessionStateMsg,
  MediaGateway,
  MediaNodeRecord,
  MediaOrderAction,
  MediaOrderResult,
  MediaTuple,
} from './media-gateway';

/** `POST /api/v1/media/sessions` body. */
export const MediaSessionRequest = Type.Object(
  {
    ingressSite: Type.String({ minLength: 1, maxLength: 64 }),
    egressSite: Type.String({ minLength: 1, maxLength: 64 }),
    codec: Type.Union([Type.Literal('opus'), Type.Literal('pcmu'), Type.Literal('pcma')]),
    payloadType: Type.Integer({ minimum: 0, maximum: 127 }),
    ssrc: Type.Integer({ minimum: 0, maximum: 4294967295 }),
    sink: Type.Object(
      {
        ip: Type.String({ minLength: 1, maxLength: 45 }),
        port: Type.Integer({ minimum: 1, maximum: 65535 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type MediaSessionRequest = Static<typeof MediaSessionRequest>;
const requestCheck = TypeCompiler.Compile(MediaSessionRequest);

export interface MediaLegView {
  node: string;
  legId: string;
  kind: string;
  peer: string;
  state: string;
  packets: number;
  packetRate: number;
  packetsLost: number;
  jitterMs: number;
}

export interface MediaSessionView {
  id: string;
  ingress: MediaTuple;
  nodes: string[];
  sites: string[];
  status: 'active' | 'rerouting' | 'failed';
  request: MediaSessionRequest;
  moves: number;
  createdAt: string;
  legs: MediaLegView[];
  /** E-model estimate from the receiving legs' loss and jitter and the path delay. */
  quality: QualityEstimate;
  /** Node holding the warm standby egress (only with `warmStandby`). */
  standby?: string;
  lastError?: string;
}

export interface MediaNodeView {
  id: string;
  site: string;
  healthy: boolean;
  draining: boolean;
  load: { sessions: number; freeSessions: number; workers: unknown[] } | null;
}

/** An event for `GET /api/v1/events` (server-sent events). */
export interface MediaEvent {
  type:
    | 'media.session.adopted'
    | 'media.session.moved'
    | 'media.session.rerouted'
    | 'media.session.failed'
    | 'media.node.down'
    | 'media.node.up';
  data: Record<string, unknown>;
}

/** A refused request: HTTP status, stable code, message. */
export interface SteeringError {
  status: 400 | 404 | 503;
  code: ControllerErrorCode;
  message: string;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: SteeringError };

export interface MediaSteeringOptions {
  gateway: MediaGateway;
  log: Logger;
  /**
   * Distance between two sites, in ms of one-way latency (also the path delay of the quality
   * estimate); default 0 for the same site, 1 otherwise.
   */
  distance?: (fromSite: string, toSite: string) => number;
  /**
   * Whether RTP can get from one site to another now (link state from telemetry). Pipes are only
   * placed between reachable sites, and `recheckPaths()` re-steers pipes that lost their path.
   * Default: always.
   */
  reachable?: (fromSite: string, toSite: string) => boolean;
  /**
   * The voice route from one site to another now (primary path: sites and link ids, latency), or
   * null when there is none. Relays sit at its intermediate sites, and a session follows it when a
   * link of it goes down or the route changes. Takes precedence over `relaySites`.
   */
  route?: (fromSite: string, toSite: string) => VoicePath | null;
  /** Intermediate sites of the voice route (relay candidates), when `route` is not given. Default none. */
  relaySites?: (fromSite: string, toSite: string) => string[];
  /**
   * Where sessions outlive the controller (Redis): written on every change, read once at start so
   * that sessions adopted after a restart keep their requested sites. Default: none.
   */
  store?: MediaSessionStore;
  /** Window of the loss behind the MOS estimate (ms). Default 5000. */
  qualityWindowMs?: number;
  /** How long drained legs stay up when the new ones never report RTP. Default 10 s. */
  drainGraceMs?: number;
  /**
   * Keep a warm standby egress for every session: a second node at the egress site already piped
   * and consuming, paused; an egress failure then costs one activation order. Doubles the pipe
   * traffic into the egress site. Default false.
   */
  warmStandby?: boolean;
  /**
   * After a controller restart, nodes announce the sessions they still carry; complete chains are
   * adopted, fragments still incomplete after this long are torn down. Default 5000 ms.
   */
  adoptGraceMs?: number;
}

/** A voice route's primary path as steering needs it. */
export interface VoicePath {
  readonly sites: readonly string[];
  readonly links: readonly string[];
  readonly latencyMs: number;
}

export type MediaSteeringEvents = {
  event: [MediaEvent];
  /** A re-steer finished (for benchmarks): how long it took from detection. */
  resteered: [{ id: string; reason: string; ms: number; ok: boolean }];
};

interface SessionRecord {
  id: string;
  request: MediaSessionRequest;
  /** Node ids from ingress to egress (one node when both ends share it); a node appears once. */
  path: string[];
  /** Node holding the warm standby egress (piped from the node before the egress), if any. */
  standby?: string;
  /** Links of the voice route the session's media follows (between the end nodes' sites). */
  links: readonly string[];
  ingress: MediaTuple;
  status: 'active' | 'rerouting' | 'failed';
  moves: number;
  createdAt: number;
  lastError?: string;
}

class StepError extends Error {
  constructor(
    readonly node: string,
    readonly result: MediaOrderResult,
  ) {
    super(`${node}: ${result.error?.code ?? '?'} ${result.error?.message ?? ''}`);
  }
}

export class MediaSteering extends EventEmitter<MediaSteeringEvents> {
  readonly #gw: MediaGateway;
  readonly #log: Logger;
  readonly #distance: (a: string, b: string) => number;
  readonly #drainGraceMs: number;
  readonly #relaySites: (a: string, b: string) => string[];
  readonly #route: ((a: string, b: string) => VoicePath | null) | undefined;
  readonly #adoptGraceMs: number;
  readonly #reachable: (a: string, b: string) => boolean;
  readonly #warmStandby: boolean;
  /** Fragments of sessions announced by nodes that this controller does not know (yet). */
  readonly #orphans = new Map<
    string,
    { fragments: Map<string, MediaSessionStateMsg>; timer: NodeJS.Timeout }
  >();
  readonly #sessions = new Map<string, SessionRecord>();
  readonly #queues = new Map<string, Promise<unknown>>();
  #closed = false;
  readonly #store: MediaSessionStore | undefined;
  /** Sessions a previous controller stored (resolved once loaded; empty without a store). */
  readonly #stored: Promise<Map<string, StoredMediaSession>>;
  /** Recent loss per leg (`node/legId`) for the quality estimate. */
  readonly #loss: LossWindow;
  readonly #observer = new EventEmitter<MediaSteeringEvents>();

  constructor(options: MediaSteeringOptions) {
    super();
    this.#gw = options.gateway;
    this.#log = options.log.child({ module: 'media-steering' });
    const route = options.route;
    this.#route = route;
    this.#distance =
      options.distance ??
      (route === undefined
        ? (a, b) => (a === b ? 0 : 1)
        : (a, b) => (a === b ? 0 : (route(a, b)?.latencyMs ?? Infinity)));
    this.#drainGraceMs = options.drainGraceMs ?? 10000;
    this.#relaySites =
      route === undefined
        ? (options.relaySites ?? (() => []))
        : (a, b) => [...(route(a, b)?.sites.slice(1, -1) ?? [])];
    this.#adoptGraceMs = options.adoptGraceMs ?? 5000;
    this.#reachable = options.reachable ?? (() => true);
    this.#warmStandby = options.warmStandby ?? false;
    this.#loss = new LossWindow(options.qualityWindowMs ?? 5000);
    this.#store = options.store;
    this.#stored = options.store?.load() ?? Promise.resolve(new Map<string, StoredMediaSession>());
    // Stored sessions no node brought back (their calls ended while no controller ran) are dropped.
    void this.#stored.then((stored) => {
      const timer = setTimeout(() => {
        for (const id of stored.keys()) if (!this.#sessions.has(id)) this.#store?.delete(id);
      }, 30000);
      timer.unref();
    });
    this.#gw.on('health', (node) => {
      const now = Date.now();
      for (const l of node.legs.values())
        this.#loss.record(`${node.id}/${l.legId}`, now, l.packets, l.packetsLost);
      this.#loss.prune((k) => !k.startsWith(`${node.id}/`) || node.legs.has(k.slice(node.id.length + 1)));
    });
    this.#gw.on('nodedown', (node, why) => this.#onNodeDown(node, why));
    this.#gw.on('nodeup', (node) => {
      this.#publish({ type: 'media.node.up', data: { id: node.id, site: node.site } });
      for (const st of node.announced) if (!this.#sessions.has(st.sessionId)) this.#collect(node.id, st);
      // A node joining may be the spare that sessions without a standby were missing.
      if (this.#warmStandby)
        for (const s of this.#sessions.values()) if (s.standby === undefined) this.#scheduleStandby(s);
    });
    this.#gw.on('nodeevent', (node, ev) => {
      if (ev.sessionLost) this.#onSessionLost(node.id, ev.sessionLost.sessionId);
      if (ev.legStalled && ev.legStalled.kind === 'pipe-in')
        this.#onPipeStalled(node.id, ev.legStalled.sessionId);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get observer(): EventEmitter<MediaSteeringEvents> {
    return this.#observer;
  }

  /**
   * For the gateway: which sessions a (re)connecting node announces must go. Sessions steering
   * knows elsewhere are stale; sessions it does not know are kept for adoption (a restarted
   * controller re-learns them from the nodes) and torn down later if they never form a chain.
   */
  sessionsToDrop(nodeId: string, announced: string[]): string[] {
    return announced.filter((id) => {
      const s = this.#sessions.get(id);
      return s !== undefined && !s.path.includes(nodeId) && s.standby !== nodeId;
    });
  }

  #collect(nodeId: string, st: MediaSessionStateMsg): void {
    let o = this.#orphans.get(st.sessionId);
    if (o === undefined) {
      const timer = setTimeout(() => this.#dropOrphan(st.sessionId), this.#adoptGraceMs);
      timer.unref();
      o = { fragments: new Map(), timer };
      this.#orphans.set(st.sessionId, o);
    }
    o.fragments.set(nodeId, st);
    const frag = o;
    // Adoption waits for the stored sessions (loaded once, at start) to recover the requests.
    void this.#stored.then((stored) => {
      if (this.#orphans.get(st.sessionId) === frag) this.#tryAdopt(st.sessionId, frag, stored);
    });
  }

  /** Adopts a session once its fragments form a chain: ingress -> connected pipes -> egress. */
  #tryAdopt(
    id: string,
    o: { fragments: Map<string, MediaSessionStateMsg>; timer: NodeJS.Timeout },
    stored: Map<string, StoredMediaSession>,
  ): void {
    const head = [...o.fragments].find(([, f]) => f.ingress);
    if (head === undefined) return;
    const path = [head[0]];
    let cur = head[1];
    while (!cur.egress) {
      const last = path[path.length - 1] as string;
      const next = cur.pipeOuts
        .map((p) => p.peer)
        .find((peer) => {
          const f = o.fragments.get(peer);
          return (
            f !== undefined &&
            !path.includes(peer) &&
            f.pipeIns.some((pi) => pi.peer === last && pi.connected)
          );
        });
      if (next === undefined) return;
      path.push(next);
      cur = o.fragments.get(next) as MediaSessionStateMsg;
    }
    const ing = head[1].ingress;
    const eg = cur.egress;
    if (!ing || !eg) return;
    clearTimeout(o.timer);
    this.#orphans.delete(id);
    const v = MediaSteering.validate({
      ingressSite: this.#gw.node(path[0] as string)?.site ?? '',
      egressSite: this.#gw.node(path[path.length - 1] as string)?.site ?? '',
      codec: ing.codec,
      payloadType: ing.payloadType,
      ssrc: ing.ssrc,
      sink: { ip: eg.sink.ip, port: eg.sink.port },
    });
    if (!v.ok) {
      this.#teardown(id, [...o.fragments.keys()]);
      return;
    }
    // The stored request, when it describes what the nodes carry, gives back the requested sites.
    const saved = stored.get(id);
    const sv = saved === undefined ? undefined : MediaSteering.validate(saved.request);
    const same =
      sv?.ok === true &&
      sv.value.codec === v.value.codec &&
      sv.value.payloadType === v.value.payloadType &&
      sv.value.ssrc === v.value.ssrc &&
      sv.value.sink.ip === v.value.sink.ip &&
      sv.value.sink.port === v.value.sink.port;
    const rec: SessionRecord = {
      id,
      request: same && sv.ok ? sv.value : v.value,
      path,
      links: this.#routeLinks(path),
      ingress: { ip: ing.local.ip, port: ing.local.port },
      status: 'active',
      moves: same && saved !== undefined ? saved.moves : 0,
      createdAt: same && saved !== undefined ? saved.createdAt : Date.now(),
    };
    this.#sessions.set(id, rec);
    this.#save(rec);
    this.#teardown(
      id,
      [...o.fragments.keys()].filter((n) => !path.includes(n)),
    );
    this.#log.info({ session: id, path }, 'media session adopted from the nodes');
    this.#publish({ type: 'media.session.adopted', data: { id, ingress: rec.ingress, nodes: [...path] } });
  }

  #dropOrphan(id: string): void {
    const o = this.#orphans.get(id);
    if (o === undefined) return;
    this.#orphans.delete(id);
    this.#log.warn({ session: id, nodes: [...o.fragments.keys()] }, 'incomplete announced session torn down');
    this.#teardown(id, [...o.fragments.keys()]);
  }

  /** Validates a request body; the error names the field. */
  static validate(body: unknown): Outcome<MediaSessionRequest> {
    if (!requestCheck.Check(body)) {
      const e = requestCheck.Errors(body).First();
      const field = (e?.path ?? '').replace(/^\//, '').replace(/\//g, '.') || 'body';
      return {
        ok: false,
        error: { status: 400, code: 'CTRL_ERR_BAD_REQUEST', message: `${field}: ${e?.message ?? 'invalid'}` },
      };
    }
    if (net.isIP(body.sink.ip) === 0) {
      return {
        ok: false,
        error: {
          status: 400,
          code: 'CTRL_ERR_BAD_REQUEST',
          message: `sink.ip: not an IP address ('${body.sink.ip}')`,
        },
      };
    }
    return { ok: true, value: body };
  }

  /** Places and builds a session. */
  async create(body: unknown): Promise<Outcome<MediaSessionView>> {
    const v = MediaSteering.validate(body);
    if (!v.ok) return v;
    const req = v.value;
    const id = randomUUID();
    return this.#serial(id, async () => {
      // Nodes that refused for lack of capacity (their last load report was older than their
      // sessions) or failed an order are avoided on the next attempt.
      const avoid: string[] = [];
      let lastError: SteeringError | undefined;
      for (let attempt = 0; attempt < 3; attempt++) {
        const path = this.#place(req, avoid);
        if (typeof path === 'string') {
          return {
            ok: false,
            error: lastError ?? {
              status: 503,
              code: 'CTRL_ERR_MEDIA_NO_CAPACITY',
              message: `no healthy media node with free capacity for site ${path}`,
            },
          };
        }
        const rec: SessionRecord = {
          id,
          request: req,
          path,
          links: this.#routeLinks(path),
          ingress: { ip: '', port: 0 },
          status: 'active',
          moves: 0,
          createdAt: Date.now(),
        };
        try {
          rec.ingress = await this.#buildChain(rec, path);
        } catch (err) {
          this.#teardown(id, path);
          const msg = err instanceof Error ? err.message : String(err);
          const capacity = err instanceof StepError && err.result.error?.code === 'MEDIA_ERR_CAPACITY';
          lastError = {
            status: 503,
            code: capacity ? 'CTRL_ERR_MEDIA_NO_CAPACITY' : 'CTRL_ERR_MEDIA_STEERING',
            message: `session could not be built: ${msg}`,
          };
          if (err instanceof StepError) avoid.push(err.node);
          else break;
          continue;
        }
        this.#sessions.set(id, rec);
        this.#save(rec);
        this.#log.info({ session: id, path }, 'media session created');
        this.#scheduleStandby(rec);
        return { ok: true, value: this.#view(rec) };
      }
      return { ok: false, error: lastError as SteeringError };
    });
  }

  get(id: string): MediaSessionView | undefined {
    const s = this.#sessions.get(id);
    return s === undefined ? undefined : this.#view(s);
  }

  list(): MediaSessionView[] {
    return [...this.#sessions.values()].map((s) => this.#view(s));
  }

  /** Tears a session down everywhere; false when unknown. */
  async remove(id: string): Promise<boolean> {
    const s = this.#sessions.get(id);
    if (s === undefined) return false;
    this.#sessions.delete(id);
    this.#store?.delete(id);
    const nodes = s.standby === undefined ? s.path : [...s.path, s.standby];
    await this.#serial(id, () => Promise.all(nodes.map((n) => this.#gw.order(n, id, { tearDown: {} }))));
    return true;
  }

  nodes(): MediaNodeView[] {
    return this.#gw.nodes().map((n) => ({
      id: n.id,
      site: n.site,
      healthy: n.connected && !n.draining,
      draining: n.draining,
      load:
        n.load === undefined
          ? null
          : { sessions: n.load.sessions, freeSessions: n.load.freeSessions, workers: n.load.workers },
    }));
  }

  /** Marks a node draining (no new placements) and moves its sessions off, make-before-break. */
  async drain(nodeId: string): Promise<Outcome<{ id: string; moved: number; remaining: number }>> {
    const node = this.#gw.node(nodeId);
    if (node === undefined)
      return {
        ok: false,
        error: { status: 404, code: 'CTRL_ERR_NOT_FOUND', message: `no media node ${nodeId}` },
      };
    node.draining = true;
    const affected = [...this.#sessions.values()].filter(
      (s) => s.path.includes(nodeId) || s.standby === nodeId,
    );
    const moved = await Promise.all(
      affected.map((s) =>
        this.#serial(s.id, async () => {
          const moved = await this.#drainSession(s, nodeId);
          if (moved) this.#save(s);
          return moved;
        }).catch((err: unknown) => {
          this.#log.error(
            { session: s.id, err: err instanceof Error ? err.message : String(err) },
            'drain failed',
          );
          return false;
        }),
      ),
    );
    const n = moved.filter(Boolean).length;
    // Sessions that could not move (no spare node) stay on the draining node: `remaining` says so.
    return { ok: true, value: { id: nodeId, moved: n, remaining: affected.length - n } };
  }

  /**
   * Re-steers every pipe whose two sites can no longer reach each other (call it when link state
   * changes): the downstream node is replaced by one the upstream node can reach.
   */
  recheckPaths(reason = 'link state changed'): number {
    const detectedAt = Date.now();
    let n = 0;
    for (const s of this.#sessions.values()) {
      for (let i = 0; i + 1 < s.path.length; i++) {
        const a = this.#gw.node(s.path[i] as string)?.site;
        const b = this.#gw.node(s.path[i + 1] as string)?.site;
        if (a === undefined || b === undefined || a === b || this.#reachable(a, b)) continue;
        const failed = s.path[i + 1] as string;
        n += 1;
        void this.#serial(s.id, () =>
          this.#resteer(s, failed, `${reason}: ${a} cannot reach ${b}`, detectedAt, true),
        );
        break;
      }
    }
    return n;
  }

  /**
   * A link went down (telemetry): every session whose voice route crosses it follows the current
   * route at once (relays re-placed), and pipes whose sites can no longer reach each other are
   * re-steered (`recheckPaths`). Returns the number of sessions re-steered.
   */
  linkDown(linkId: string, reason = `link ${linkId} down`): number {
    const detectedAt = Date.now();
    let n = this.recheckPaths(reason);
    for (const s of this.#sessions.values()) {
      if (!s.links.includes(linkId)) continue;
      n += 1;
      void this.#serial(s.id, () => this.#follow(s, reason, detectedAt, linkId));
    }
    return n;
  }

  /**
   * The voice routes changed: sessions whose relays are not those of the current route move to it
   * (make-before-break). Returns the number of sessions checked.
   */
  followRoutes(reason = 'voice route changed'): number {
    const detectedAt = Date.now();
    for (const s of this.#sessions.values())
      void this.#serial(s.id, () => this.#follow(s, reason, detectedAt));
    return this.#sessions.size;
  }

  /** Re-places the relays of `s` along the current voice route between its end nodes' sites. */
  async #follow(s: SessionRecord, reason: string, detectedAt: number, downLink?: string): Promise<void> {
    if (this.#sessions.get(s.id) !== s || s.status === 'rerouting' || s.path.length < 2) return;
    const first = this.#gw.node(s.path[0] as string);
    const last = this.#gw.node(s.path[s.path.length - 1] as string);
    if (first === undefined || last === undefined || !first.connected || !last.connected) return;
    const links = this.#routeLinks(s.path);
    if (downLink !== undefined && links.includes(downLink)) return; // no route avoids it: nothing better
    const old = [...s.path];
    const relays = this.#relaysFor(first, last, [], old.slice(1, -1));
    const next = [first.id, ...relays, last.id];
    if (next.length === old.length && next.every((id, i) => id === old[i])) {
      s.links = links;
      return;
    }
    s.status = 'rerouting';
    let ok = true;
    try {
      this.#dropStandby(s);
      const pairs = new Set(old.slice(1).map((id, i) => `${old[i] as string}>${id}`));
      // New pipes in path order: each new relay has its source before it pipes on, and the first
      // node both paths share (at worst the egress) switches to the new upstream last.
      for (let i = 1; i < next.length; i++) {
        const up = next[i - 1] as string;
        const down = next[i] as string;
        if (!pairs.has(`${up}>${down}`)) await this.#pipe(s, up, down);
      }
      s.path = next;
      s.links = links;
      const kept = new Set(next.map((id, i) => `${next[i - 1] ?? ''}>${id}`));
      for (let i = 1; i < old.length; i++) {
        const up = old[i - 1] as string;
        const down = old[i] as string;
        if (next.includes(up) && !kept.has(`${up}>${down}`))
          void this.#gw.order(up, s.id, { closePipeOut: { peer: down } });
      }
      this.#teardown(
        s.id,
        old.filter((id) => !next.includes(id)),
      );
      s.status = 'active';
      s.moves += 1;
      delete s.lastError;
      this.#publish({ type: 'media.session.rerouted', data: { id: s.id, nodes: [...s.path], reason } });
    } catch (err) {
      ok = false;
      // The old path is left as it was (its legs were not touched before the switch).
      s.status = 'active';
      s.lastError = `${reason}: ${err instanceof Error ? err.message : String(err)}`;
      this.#log.error({ session: s.id, err: s.lastError }, 'media session could not follow the voice route');
    }
    this.#scheduleStandby(s);
    const ms = Date.now() - detectedAt;
    this.#log.info({ session: s.id, reason, ms, ok, path: s.path }, 'media session follows the voice route');
    if (ok) this.#save(s);
    this.emit('resteered', { id: s.id, reason, ms, ok });
    this.#observer.emit('resteered', { id: s.id, reason, ms, ok });
  }

  close(): void {
    this.#closed = true;
    void this.#store?.close();
    for (const o of this.#orphans.values()) clearTimeout(o.timer);
    this.#orphans.clear();
  }

  // ---------------------------------------------------------------- building

  /** Nodes for a new session (ingress, relays, egress), or the site nothing can serve. */
  #place(req: MediaSessionRequest, avoid: string[] = []): string[] | string {
    const ingress = this.#pick(req.ingressSite, avoid);
    if (ingress === undefined) return req.ingressSite;
    const egress = this.#pick(req.egressSite, avoid, ingress);
    if (egress === undefined) return req.egressSite;
    if (egress.id === ingress.id) return [ingress.id]; // one node carries both ends (no relay then)
    return [ingress.id, ...this.#relaysFor(ingress, egress, [...avoid, egress.id]), egress.id];
  }

  /**
   * Relay nodes between two end nodes: one per intermediate site of the voice route where a usable
   * node sits (`keep` first: a relay already carrying the session stays), none elsewhere.
   */
  #relaysFor(from: MediaNodeRecord, to: MediaNodeRecord, exclude: string[], keep: string[] = []): string[] {
    const relays: string[] = [];
    let prev = from;
    for (const site of this.#relaySites(from.site, to.site)) {
      if (site === from.site || site === to.site) continue;
      const kept = keep
        .map((id) => this.#gw.node(id))
        .find(
          (n) => n !== undefined && n.site === site && n.connected && !n.draining && !relays.includes(n.id),
        );
      const relay = kept ?? this.#pick(site, [from.id, to.id, ...exclude, ...relays], prev);
      if (relay === undefined || relay.site !== site) continue;
      relays.push(relay.id);
      prev = relay;
    }
    return relays;
  }

  /** Links of the voice route between the sites of a path's end nodes (empty without `route`). */
  #routeLinks(path: readonly string[]): string[] {
    const a = this.#gw.node(path[0] ?? '')?.site;
    const b = this.#gw.node(path[path.length - 1] ?? '')?.site;
    if (this.#route === undefined || a === undefined || b === undefined || a === b) return [];
    return [...(this.#route(a, b)?.links ?? [])];
  }

  /** Ingress on path[0], pipes between consecutive nodes, egress on the last; returns the ingress tuple. */
  async #buildChain(rec: SessionRecord, path: string[]): Promise<MediaTuple> {
    const { request: r, id } = rec;
    const first = path[0] as string;
    const ingress = await this.#step(first, id, {
      createIngress: { codec: r.codec, payloadType: r.payloadType, ssrc: r.ssrc },
    });
    for (let i = 0; i + 1 < path.length; i++) await this.#pipe(rec, path[i] as string, path[i + 1] as string);
    await this.#step(path[path.length - 1] as string, id, { createEgress: { sink: r.sink } });
    return tupleOf(ingress);
  }

  /** The three-step cross-process pipe `up` -> `down`. */
  async #pipe(s: SessionRecord, up: string, down: string): Promise<void> {
    const { id, request: r } = s;
    // The codec and payload type shape a new router on `down`: its egress keeps the source's PT.
    const pipeIn = await this.#step(down, id, {
      createPipeIn: { peer: up, codec: r.codec, payloadType: r.payloadType },
    });
    const out = await this.#step(up, id, { createPipeOut: { peer: down, remote: tupleOf(pipeIn) } });
    await this.#step(down, id, {
      connectPipeIn: {
        peer: up,
        remote: tupleOf(out),
        kind: out.ok?.kind ?? 'audio',
        rtpParametersJson: out.ok?.rtpParametersJson ?? '',
      },
    });
  }

  async #step(node: string, id: string, action: MediaOrderAction): Promise<MediaOrderResult> {
    const r = await this.#gw.order(node, id, action);
    if (r.outcome !== 'ok') throw new StepError(node, r);
    return r;
  }

  #teardown(id: string, nodes: string[]): void {
    for (const n of new Set(nodes)) void this.#gw.order(n, id, { tearDown: {} });
  }

  /**
   * Replaces path[k] by `node` (RTP keeps its path otherwise): ingress or a pipe from the upstream
   * node, then a pipe to the downstream node (replacing its pipe-in) or the egress. The upstream
   * pipe-out to the old node is dropped afterwards, off the critical path. Returns the new ingress
   * tuple when k = 0.
   */
  async #replace(s: SessionRecord, k: number, node: string): Promise<MediaTuple | undefined> {
    const old = s.path[k] as string;
    const prev = k > 0 ? s.path[k - 1] : undefined;
    const next = s.path[k + 1];
    const r = s.request;
    let ingress: MediaTuple | undefined;
    if (prev === undefined) {
      ingress = tupleOf(
        await this.#step(node, s.id, {
          createIngress: { codec: r.codec, payloadType: r.payloadType, ssrc: r.ssrc },
        }),
      );
    } else {
      // The same node again (its worker restarted): its old pipe-out stands in the way.
      if (node === old) await this.#gw.order(prev, s.id, { closePipeOut: { peer: old } });
      await this.#pipe(s, prev, node);
    }
    if (next !== undefined) await this.#pipe(s, node, next);
    else await this.#step(node, s.id, { createEgress: { sink: r.sink } });
    s.path[k] = node;
    if (prev !== undefined && node !== old) void this.#gw.order(prev, s.id, { closePipeOut: { peer: old } });
    return ingress;
  }

  /** Where path[k] should be re-placed: near the site it served, away from the rest of the path. */
  #replacement(s: SessionRecord, k: number, excludeOld: boolean): MediaNodeRecord | undefined {
    const old = s.path[k] as string;
    const last = s.path.length - 1;
    const site =
      k === 0
        ? s.request.ingressSite
        : k === last
          ? s.request.egressSite
          : (this.#gw.node(old)?.site ?? s.request.egressSite);
    const exclude = s.path.filter((n, i) => i !== k || excludeOld);
    const near = this.#gw.node(s.path[k === 0 ? 1 : k - 1] ?? '');
    return this.#pick(site, exclude, near);
  }

  // ---------------------------------------------------------------- failover

  #onNodeDown(node: MediaNodeRecord, why: string): void {
    this.#publish({ type: 'media.node.down', data: { id: node.id, site: node.site, reason: why } });
    const detectedAt = Date.now();
    for (const s of this.#sessions.values()) {
      if (s.path.includes(node.id)) {
        void this.#serial(s.id, () => this.#resteer(s, node.id, `node ${node.id} down`, detectedAt, true));
      } else if (s.standby === node.id) {
        s.standby = undefined;
        this.#scheduleStandby(s);
      }
    }
  }

  #onSessionLost(nodeId: string, sessionId: string): void {
    const s = this.#sessions.get(sessionId);
    if (s !== undefined && s.standby === nodeId) {
      s.standby = undefined;
      this.#scheduleStandby(s);
      return;
    }
    if (s === undefined || !s.path.includes(nodeId)) return;
    const detectedAt = Date.now();
    // The node is alive (its worker restarted): it may carry the session again.
    void this.#serial(s.id, () => this.#resteer(s, nodeId, `worker died on ${nodeId}`, detectedAt, false));
  }

  #onPipeStalled(nodeId: string, sessionId: string): void {
    const s = this.#sessions.get(sessionId);
    if (s === undefined || s.path.indexOf(nodeId) <= 0) return;
    const detectedAt = Date.now();
    // A pipe-in stall is a path failure only if the ingress still receives RTP: check its latest
    // health a moment later (the ingress' own stall event would arrive within the same window).
    setTimeout(() => {
      const k = s.path.indexOf(nodeId);
      const head = this.#gw.node(s.path[0] ?? '');
      const up = this.#gw.node(s.path[k - 1] ?? '');
      const leg = head?.legs.get(`${sessionId}/ingress`);
      // A dead upstream or ingress node is the node-down handler's business (its last health still
      // says flowing): only a stall between live nodes is a path failure.
      if (this.#sessions.get(sessionId) !== s || k <= 0 || leg?.state !== 'flowing') return;
      if (head?.connected !== true || up?.connected !== true) return;
      void this.#serial(s.id, () =>
        this.#resteer(s, nodeId, `pipe into ${nodeId} stalled`, detectedAt, true),
      );
    }, 60);
  }

  /** Rebuilds what `failed` carried for session `s`. */
  async #resteer(
    s: SessionRecord,
    failed: string,
    reason: string,
    detectedAt: number,
    nodeDown: boolean,
    attempt = 0,
  ): Promise<void> {
    const k = s.path.indexOf(failed);
    if (this.#sessions.get(s.id) !== s || k < 0) return;
    s.status = 'rerouting';
    let ok = true;
    try {
      const last = s.path.length - 1;
      const standby = s.standby;
      if (k === last && k > 0 && standby !== undefined && this.#gw.node(standby)?.connected === true) {
        // The warm standby is already piped from the node before the egress: activate it.
        s.standby = undefined;
        await this.#step(standby, s.id, { createEgress: { sink: s.request.sink } });
        s.path[k] = standby;
        const prev = s.path[k - 1] as string;
        void this.#gw.order(prev, s.id, { closePipeOut: { peer: failed } });
        if (!nodeDown) void this.#gw.order(failed, s.id, { tearDown: {} });
      } else {
        this.#dropStandby(s);
        // A restarted worker may take the session back only as the last node: a downstream node
        // still holds a pipe-in keyed by this node's id and connected to its old address.
        const excludeOld = nodeDown || k < last;
        const node = this.#replacement(s, k, excludeOld);
        if (node === undefined) throw new Error(`no media node available to replace ${failed}`);
        const ingress = await this.#replace(s, k, node.id);
        if (ingress !== undefined) {
          s.ingress = ingress;
          this.#publish({ type: 'media.session.moved', data: { id: s.id, ingress: s.ingress } });
        }
      }
      s.status = 'active';
      s.moves += 1;
      s.links = this.#routeLinks(s.path);
      delete s.lastError;
      this.#scheduleStandby(s);
      this.#publish({ type: 'media.session.rerouted', data: { id: s.id, nodes: [...s.path], reason } });
    } catch (err) {
      ok = false;
      s.status = 'failed';
      s.lastError = `${reason}: ${err instanceof Error ? err.message : String(err)}`;
      if (attempt < 3 && !this.#closed) {
        // Nodes come back (a restarted worker, a reconnecting node): try again a little later.
        const delay = 100 * 2 ** attempt;
        setTimeout(() => {
          void this.#serial(s.id, () => this.#resteer(s, failed, reason, detectedAt, nodeDown, attempt + 1));
        }, delay).unref();
      }
      this.#log.error({ session: s.id, err: s.lastError }, 'media session re-steer failed');
      this.#publish({ type: 'media.session.failed', data: { id: s.id, reason: s.lastError } });
    }
    const ms = Date.now() - detectedAt;
    this.#log.info({ session: s.id, reason, ms, ok, path: s.path }, 'media session re-steered');
    if (ok) this.#save(s);
    this.emit('resteered', { id: s.id, reason, ms, ok });
    this.#observer.emit('resteered', { id: s.id, reason, ms, ok });
  }

  async #drainSession(s: SessionRecord, nodeId: string): Promise<boolean> {
    if (s.standby === nodeId) {
      this.#dropStandby(s);
      this.#scheduleStandby(s);
      return true;
    }
    const k = s.path.indexOf(nodeId);
    if (this.#sessions.get(s.id) !== s || k < 0) return false;
    this.#dropStandby(s);
    if (k > 0) {
      // Egress or relay: build the replacement next to the old node, switch, then drop the old one
      // (the sink hears both for a moment rather than nothing).
      const node = this.#replacement(s, k, true);
      if (node === undefined) return false;
      await this.#replace(s, k, node.id);
      await this.#gw.order(nodeId, s.id, { tearDown: {} });
    } else {
      // The ingress moves: a complete new path on other nodes, announced; the old one stays until
      // the source has re-targeted (the new ingress sees RTP) or the grace time ends.
      const old = [...s.path];
      const saved = new Set(old);
      const ingress = this.#pick(s.request.ingressSite, old);
      const egress = this.#pick(s.request.egressSite, [...old, ...(ingress ? [ingress.id] : [])], ingress);
      if (ingress === undefined || egress === undefined || saved.has(egress.id)) {
        // Not enough spare nodes for a second path: move the ingress alone. The next node takes
        // the new ingress as its source at once, so the source must re-target (gap = its delay).
        const node = this.#replacement(s, 0, true);
        if (node === undefined) return false;
        const moved = await this.#replace(s, 0, node.id);
        if (moved !== undefined) s.ingress = moved;
        this.#publish({ type: 'media.session.moved', data: { id: s.id, ingress: s.ingress } });
        if (s.path.length === 1) void this.#retireWhenFlowing(s, node.id, old);
        else await this.#gw.order(nodeId, s.id, { tearDown: {} });
        s.moves += 1;
        return true;
      }
      const path = [ingress.id, ...this.#relaysFor(ingress, egress, old), egress.id];
      s.ingress = await this.#buildChain(s, path);
      s.path = path;
      s.links = this.#routeLinks(path);
      this.#publish({ type: 'media.session.moved', data: { id: s.id, ingress: s.ingress } });
      void this.#retireWhenFlowing(s, ingress.id, old);
    }
    s.moves += 1;
    return true;
  }

  /** Builds the warm standby egress of `s` later (after the current order of the session). */
  #scheduleStandby(s: SessionRecord): void {
    if (!this.#warmStandby || this.#closed) return;
    void this.#serial(s.id, () => this.#buildStandby(s));
  }

  async #buildStandby(s: SessionRecord): Promise<void> {
    if (this.#sessions.get(s.id) !== s || s.standby !== undefined || s.path.length < 1) return;
    // Piped from the node before the egress (or from the only node of a one-node path).
    const from = s.path[Math.max(0, s.path.length - 2)] as string;
    const node = this.#pick(s.request.egressSite, s.path, this.#gw.node(from));
    if (node === undefined) return;
    try {
      await this.#pipe(s, from, node.id);
      await this.#step(node.id, s.id, { createEgress: { sink: s.request.sink, standby: true } });
      if (this.#sessions.get(s.id) !== s) {
        this.#teardown(s.id, [node.id]);
        return;
      }
      s.standby = node.id;
    } catch (err) {
      this.#log.warn(
        { session: s.id, node: node.id, err: err instanceof Error ? err.message : String(err) },
        'standby not built',
      );
      this.#teardown(s.id, [node.id]);
      void this.#gw.order(from, s.id, { closePipeOut: { peer: node.id } });
    }
  }

  #dropStandby(s: SessionRecord): void {
    const sb = s.standby;
    if (sb === undefined) return;
    s.standby = undefined;
    void this.#gw.order(sb, s.id, { tearDown: {} });
    for (const n of s.path) void this.#gw.order(n, s.id, { closePipeOut: { peer: sb } });
  }

  async #retireWhenFlowing(s: SessionRecord, newIn: string, old: string[]): Promise<void> {
    const until = Date.now() + this.#drainGraceMs;
    while (Date.now() < until && this.#sessions.get(s.id) === s) {
      if (this.#gw.node(newIn)?.legs.get(`${s.id}/ingress`)?.state === 'flowing') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    this.#teardown(
      s.id,
      old.filter((n) => !s.path.includes(n)),
    );
  }

  // ---------------------------------------------------------------- placement

  /** Best node for `site`: healthy, not excluded, free capacity; nearest, then least loaded; `near` breaks ties. */
  #pick(site: string, exclude: string[], near?: MediaNodeRecord): MediaNodeRecord | undefined {
    let best: MediaNodeRecord | undefined;
    let bestKey: [number, number, number, string] | undefined;
    for (const n of this.#gw.nodes()) {
      if (!n.connected || n.draining || exclude.includes(n.id)) continue;
      if (
        near !== undefined &&
        near.id !== n.id &&
        near.site !== n.site &&
        !this.#reachable(near.site, n.site)
      )
        continue;
      const free = n.load?.freeSessions ?? n.maxSessionsPerWorker * Math.max(1, n.workers);
      if (free <= 0) continue;
      const placed = [...this.#sessions.values()].filter((s) => s.path.includes(n.id)).length;
      const key: [number, number, number, string] = [
        this.#distance(n.site, site),
        near !== undefined && n.id !== near.id ? 0 : 1, // prefer a second node: a failure then costs one end
        placed,
        n.id,
      ];
      if (bestKey === undefined || compareKeys(key, bestKey) < 0) {
        best = n;
        bestKey = key;
      }
    }
    return best;
  }

  #view(s: SessionRecord): MediaSessionView {
    const nodes = [...s.path];
    const legs: MediaLegView[] = [];
    for (const id of nodes) {
      const n = this.#gw.node(id);
      for (const l of n?.legs.values() ?? []) {
        if (l.sessionId === s.id)
          legs.push({
            legId: l.legId,
            packetsLost: l.packetsLost,
            jitterMs: l.jitterMs,
            node: id,
            kind: l.kind,
            peer: l.peer,
            state: l.state,
            packets: l.packets,
            packetRate: l.packetRate,
          });
      }
    }
    const view: MediaSessionView = {
      id: s.id,
      ingress: s.ingress,
      nodes,
      sites: nodes.map((id) => this.#gw.node(id)?.site ?? ''),
      status: s.status,
      request: s.request,
      moves: s.moves,
      createdAt: new Date(s.createdAt).toISOString(),
      legs,
      quality: this.#quality(s, legs),
    };
    if (s.lastError !== undefined) view.lastError = s.lastError;
    if (s.standby !== undefined) view.standby = s.standby;
    return view;
  }

  #quality(s: SessionRecord, legs: MediaLegView[]): QualityEstimate {
    const inbound = legs.filter((l) => l.kind === 'ingress' || l.kind === 'pipe-in');
    // Path delay: the sum over consecutive nodes of the path.
    let path = 0;
    for (let i = 0; i + 1 < s.path.length; i++) {
      const a = this.#gw.node(s.path[i] ?? '')?.site ?? s.request.ingressSite;
      const b = this.#gw.node(s.path[i + 1] ?? '')?.site ?? s.request.egressSite;
      path += this.#distance(a, b);
    }
    return eModel({
      codec: s.request.codec,
      pathDelayMs: Number.isFinite(path) ? path : 0,
      // Loss over the recent window (cumulative only for a leg never sampled yet).
      lossPct: combineLossPct(inbound.map((l) => this.#loss.recent(`${l.node}/${l.legId}`) ?? l)),
      jitterMs: inbound.reduce((m, l) => Math.max(m, l.jitterMs), 0),
    });
  }

  #save(s: SessionRecord): void {
    if (this.#sessions.get(s.id) !== s) return;
    this.#store?.put({
      id: s.id,
      request: s.request,
      nodes: [...s.path],
      ingress: s.ingress,
      createdAt: s.createdAt,
      moves: s.moves,
    });
  }

  #publish(ev: MediaEvent): void {
    this.emit('event', ev);
    this.#observer.emit('event', ev);
  }

  #serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#queues.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#queues.set(id, tail);
    void tail.then(() => {
      if (this.#queues.get(id) === tail) this.#queues.delete(id);
    });
    return run;
  }
}

function tupleOf(r: MediaOrderResult): MediaTuple {
  const t = r.ok?.tuple;
  if (t === undefined || t === null) throw new Error(`order ${r.orderId} answered without a tuple`);
  return { ip: t.ip, port: t.port };
}

function compareKeys(a: [number, number, number, string], b: [number, number, number, string]): number {
  for (let i = 0; i < 3; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a[3] < b[3] ? -1 : a[3] > b[3] ? 1 : 0;
}
