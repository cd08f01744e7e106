/**
 * Steering orders as they arrive from the controller: validated at the edge with TypeBox, run on
 * the MediaNode, and answered with a result value. A refused order is an expected outcome (a
 * `MediaOrderError` with a MEDIA_ERR_* code), never a throw; only a bug escapes as an exception.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { isCodecName } from './codecs';
import { MediaError, isMediaError } from './errors';
import type { MediaNode } from './media-node';
import type { PbOrder, PbOrderOk, PbOrderResult } from './media-proto';

const TupleSchema = Type.Object({
  ip: Type.String({ minLength: 1, maxLength: 64 }),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
});
const Peer = Type.String({ minLength: 1, maxLength: 128 });

const ACTION_SCHEMAS = {
  createIngress: Type.Object({
    codec: Type.String({ minLength: 1 }),
    payloadType: Type.Integer({ minimum: 0, maximum: 127 }),
    ssrc: Type.Integer({ minimum: 0, maximum: 0xffffffff }),
  }),
  createPipeIn: Type.Object({
    peer: Peer,
    codec: Type.Optional(Type.String()),
    payloadType: Type.Optional(Type.Integer({ minimum: 0, maximum: 127 })),
  }),
  createPipeOut: Type.Object({ peer: Peer, remote: TupleSchema }),
  connectPipeIn: Type.Object({
    peer: Peer,
    remote: TupleSchema,
    kind: Type.Union([Type.Literal('audio'), Type.Literal('video')]),
    rtpParametersJson: Type.String({ minLength: 2, maxLength: 65536 }),
  }),
  createEgress: Type.Object({ sink: TupleSchema, standby: Type.Optional(Type.Boolean()) }),
  tearDown: Type.Object({}),
  closePipeOut: Type.Object({ peer: Peer }),
} as const;

type ActionName = keyof typeof ACTION_SCHEMAS;

/** A validated order. */
export type MediaOrder = {
  [K in ActionName]: {
    orderId: string;
    sessionId: string;
    action: K;
    args: Static<(typeof ACTION_SCHEMAS)[K]>;
  };
}[ActionName];

const checks = Object.fromEntries(
  Object.entries(ACTION_SCHEMAS).map(([k, s]) => [k, TypeCompiler.Compile(s as TSchema)]),
) as Record<ActionName, ReturnType<typeof TypeCompiler.Compile>>;

const RtpParametersSchema = Type.Object({
  codecs: Type.Array(
    Type.Object({ mimeType: Type.String(), payloadType: Type.Integer(), clockRate: Type.Integer() }),
  ),
  encodings: Type.Optional(Type.Array(Type.Object({}))),
});
const rtpParametersCheck = TypeCompiler.Compile(RtpParametersSchema);

function isActionName(v: unknown): v is ActionName {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(ACTION_SCHEMAS, v);
}

/** Validates a decoded order; a bad order is a MediaError value (MEDIA_ERR_INVALID, field named). */
export function parseOrder(pb: PbOrder): MediaOrder | MediaError {
  const sessionId = typeof pb.sessionId === 'string' ? pb.sessionId : '';
  if (typeof pb.orderId !== 'string' || pb.orderId === '') {
    return new MediaError('MEDIA_ERR_INVALID', 'order.order_id: required, got an empty string', {
      sessionId,
    });
  }
  if (sessionId === '' || sessionId.length > 128) {
    return new MediaError(
      'MEDIA_ERR_INVALID',
      `order ${pb.orderId}: order.session_id must be 1-128 characters`,
    );
  }
  const action = pb.action;
  if (!isActionName(action)) {
    return new MediaError(
      'MEDIA_ERR_INVALID',
      `order ${pb.orderId}: no action set (expected one of ${Object.keys(ACTION_SCHEMAS).join(', ')})`,
      {
        sessionId,
      },
    );
  }
  const args: unknown = pb[action] ?? {};
  const check = checks[action];
  if (!check.Check(args)) {
    const first = check.Errors(args).First();
    const field = first === undefined ? '' : first.path.replace(/^\//, '').replace(/\//g, '.');
    return new MediaError(
      'MEDIA_ERR_INVALID',
      `order ${pb.orderId}: ${action}.${field}: ${first?.message ?? 'invalid'} (got ${JSON.stringify(first?.value)})`,
      { sessionId },
    );
  }
  return { orderId: pb.orderId, sessionId, action, args } as MediaOrder;
}

/** Runs a validated order on the node; the outcome is a value (ok with data, or a typed error). */
export async function executeOrder(
  node: MediaNode,
  order: MediaOrder,
): Promise<{ ok: PbOrderOk } | { error: MediaError }> {
  const { sessionId } = order;
  try {
    switch (order.action) {
      case 'createIngress': {
        const { codec, payloadType, ssrc } = order.args;
        if (!isCodecName(codec)) {
          return {
            error: new MediaError(
              'MEDIA_ERR_INVALID',
              `order ${order.orderId}: createIngress.codec: unknown codec '${codec}' (expected opus, pcmu or pcma)`,
              { sessionId },
            ),
          };
        }
        return { ok: { tuple: await node.createIngress(sessionId, { codec, payloadType, ssrc }) } };
      }
      case 'createPipeIn': {
        // An unknown or empty codec leaves the router's default payload types (older controllers).
        const { peer, codec, payloadType } = order.args;
        const media =
          codec !== undefined && isCodecName(codec) && payloadType !== undefined
            ? { codec, payloadType }
            : undefined;
        return { ok: { tuple: await node.createPipeIn(sessionId, peer, media) } };
      }
      case 'createPipeOut': {
        const out = await node.createPipeOut(sessionId, order.args.peer, order.args.remote);
        return {
          ok: {
            tuple: { ip: out.ip, port: out.port },
            kind: out.kind,
            rtpParametersJson: JSON.stringify(out.rtpParameters),
          },
        };
      }
      case 'connectPipeIn': {
        let rtpParameters: unknown;
        try {
          rtpParameters = JSON.parse(order.args.rtpParametersJson);
        } catch {
          rtpParameters = undefined;
        }
        if (!rtpParametersCheck.Check(rtpParameters)) {
          return {
            error: new MediaError(
              'MEDIA_ERR_INVALID',
              `order ${order.orderId}: connectPipeIn.rtpParametersJson: not mediasoup RtpParameters JSON`,
              {
                sessionId,
              },
            ),
          };
        }
        await node.connectPipeIn(sessionId, order.args.peer, order.args.remote, {
          kind: order.args.kind,
          rtpParameters: rtpParameters,
        });
        return { ok: {} };
      }
      case 'createEgress':
        return {
          ok: { tuple: await node.createEgress(sessionId, order.args.sink, order.args.standby === true) },
        };
      case 'tearDown':
        return { ok: { existed: await node.closeSession(sessionId) } };
      case 'closePipeOut':
        return { ok: { existed: await node.closePipeOut(sessionId, order.args.peer) } };
      default: {
        const never: never = order;
        throw new Error(`unhandled order ${JSON.stringify(never)}`);
      }
    }
  } catch (err) {
    if (isMediaError(err)) return { error: err };
    throw err;
  }
}

/** Validates, runs and answers one decoded order (never rejects on a refused order). */
export async function answerOrder(node: MediaNode, pb: PbOrder): Promise<PbOrderResult> {
  const order = parseOrder(pb);
  const orderId = typeof pb.orderId === 'string' ? pb.orderId : '';
  const sessionId = typeof pb.sessionId === 'string' ? pb.sessionId : '';
  const outcome = order instanceof MediaError ? { error: order } : await executeOrder(node, order);
  if ('ok' in outcome) return { orderId, sessionId, ok: outcome.ok };
  return { orderId, sessionId, error: { code: outcome.error.code, message: outcome.error.message } };
}
