/**
 * The error catalog of `@meridian/media`. Every order a media node refuses, and every failure it
 * reports, carries one of these stable codes; the controller steers on the code, never on the
 * message. Codes are listed in the package README; never rename one.
 */

/** Stable codes of refused orders and node failures. */
export const MEDIA_ERROR_CODES = [
  /** Every worker is at its session limit (or no worker is alive): the order cannot be placed. */
  'MEDIA_ERR_CAPACITY',
  /** The order needs something the session does not have yet (a pipe-out before any source). */
  'MEDIA_ERR_BAD_ORDER',
  /** The session already exists here with different parameters (another SSRC, another sink). */
  'MEDIA_ERR_ORDER_CONFLICT',
  /** The order names a session this node does not carry. */
  'MEDIA_ERR_UNKNOWN_SESSION',
  /** A field of the order is invalid (codec, payload type, SSRC, address, port). */
  'MEDIA_ERR_INVALID',
  /** The worker carrying the session died; the session's legs are gone. */
  'MEDIA_ERR_WORKER_DIED',
  /** The node is closed (shutting down) and takes no more orders. */
  'MEDIA_ERR_CLOSED',
  /** mediasoup refused the operation (port range exhausted, bad RTP parameters...). */
  'MEDIA_ERR_MEDIASOUP',
  /** The link to the controller failed (bad token, controller refused the node). */
  'MEDIA_ERR_CONTROLLER',
] as const;

export type MediaErrorCode = (typeof MEDIA_ERROR_CODES)[number];

/** A refused order or a node failure: `code` is stable, `message` says what, where and why. */
export class MediaError extends Error {
  override readonly name = 'MediaError';
  readonly code: MediaErrorCode;
  /** The session the error is about, when there is one. */
  readonly sessionId: string | undefined;

  constructor(code: MediaErrorCode, message: string, options: { sessionId?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.sessionId = options.sessionId;
  }

  /** The JSON shape carried in order results and logs. */
  toJSON(): { code: MediaErrorCode; message: string; sessionId?: string } {
    return this.sessionId === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, sessionId: this.sessionId };
  }
}

/** True when `value` is a MediaError (also across module copies). */
export function isMediaError(value: unknown): value is MediaError {
  return (
    value instanceof MediaError ||
    (value instanceof Error &&
      (MEDIA_ERROR_CODES as readonly unknown[]).includes((value as Error & { code?: unknown }).code))
  );
}

/**
 * gRPC status code for an error code (numbers from grpc's `Status` enum, so this file needs no
 * gRPC import): used when a refused order has to end a call rather than travel as a result.
 */
export function grpcStatusOf(code: MediaErrorCode): number {
  switch (code) {
    case 'MEDIA_ERR_CAPACITY':
      return 8; // RESOURCE_EXHAUSTED
    case 'MEDIA_ERR_BAD_ORDER':
      return 9; // FAILED_PRECONDITION
    case 'MEDIA_ERR_ORDER_CONFLICT':
      return 6; // ALREADY_EXISTS
    case 'MEDIA_ERR_UNKNOWN_SESSION':
      return 5; // NOT_FOUND
    case 'MEDIA_ERR_INVALID':
      return 3; // INVALID_ARGUMENT
    case 'MEDIA_ERR_WORKER_DIED':
    case 'MEDIA_ERR_CLOSED':
      return 14; // UNAVAILABLE
    case 'MEDIA_ERR_MEDIASOUP':
      return 13; // INTERNAL
    case 'MEDIA_ERR_CONTROLLER':
      return 16; // UNAUTHENTICATED
    default: {
      const never: never = code;
      throw new Error(`unhandled media error code ${String(never)}`);
    }
  }
}

/** Wraps whatever mediasoup threw into a MediaError (a MediaError passes through unchanged). */
export function toMediaError(err: unknown, what: string, sessionId?: string): MediaError {
  if (isMediaError(err)) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new MediaError('MEDIA_ERR_MEDIASOUP', `${what}: ${detail}`, { sessionId, cause: err });
}
