/**
 * The error catalog of `@meridian/controller`. Every error the controller reports to an agent, an
 * API client or an operator carries one of these stable codes; `statusOf()` is the one place that
 * maps a code to its HTTP and gRPC status. Codes are listed in the package README; never rename one.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

/** Stable codes, with the HTTP and gRPC status each maps to. */
const CATALOG = {
  /** Missing or wrong bearer token (HTTP) or agent token (gRPC hello). */
  CTRL_ERR_UNAUTHENTICATED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED },
  /** The first message of an agent stream was not `hello`. */
  CTRL_ERR_HELLO_REQUIRED: { http: 400, grpc: GrpcStatus.FAILED_PRECONDITION },
  /** No `hello` arrived within the hello timeout. */
  CTRL_ERR_HELLO_TIMEOUT: { http: 408, grpc: GrpcStatus.DEADLINE_EXCEEDED },
  /** A second `hello` on a stream that already said hello. */
  CTRL_ERR_UNEXPECTED_HELLO: { http: 400, grpc: GrpcStatus.FAILED_PRECONDITION },
  /** `hello.site` is not a site of the topology. */
  CTRL_ERR_UNKNOWN_SITE: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  /** Another live agent already holds the stream of this site. */
  CTRL_ERR_DUPLICATE_SITE: { http: 409, grpc: GrpcStatus.ALREADY_EXISTS },
  /** Bytes on the stream that do not decode as the protobuf message. */
  CTRL_ERR_MALFORMED_MESSAGE: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** A message that decodes but breaks the contract (bad hello fields, a report on a foreign link, NaN counts...). */
  CTRL_ERR_INVALID_MESSAGE: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** A message larger than `grpc.max_receive_message_length` (grpc-js rejects it itself). */
  CTRL_ERR_MESSAGE_TOO_LARGE: { http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED },
  /** An HTTP request whose parameters, query or body fail the route's schema. */
  CTRL_ERR_BAD_REQUEST: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** No such API route or resource. */
  CTRL_ERR_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  /** Controller options or CLI flags that cannot work (bad HOST:PORT, bad URL, unreadable topology). */
  CTRL_ERR_BAD_OPTION: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  /** The controller is stopping; the request or stream is refused. */
  CTRL_ERR_SHUTTING_DOWN: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  /** No healthy media node with free capacity can take the session (at or near the requested site). */
  CTRL_ERR_MEDIA_NO_CAPACITY: { http: 503, grpc: GrpcStatus.RESOURCE_EXHAUSTED },
  /** A media node refused or failed an order while a session was being built (reason in the message). */
  CTRL_ERR_MEDIA_STEERING: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  /** `POST /api/v1/policies/rollback` names a policy version that was never issued. */
  CTRL_ERR_POLICY_UNKNOWN_VERSION: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  /** An agent did not acknowledge a policy push within the ack timeout, after every retry. */
  CTRL_ERR_POLICY_ACK_TIMEOUT: { http: 504, grpc: GrpcStatus.DEADLINE_EXCEEDED },
  /** The routes could not be compiled into policies (the addressing plan does not fit the topology). */
  CTRL_ERR_POLICY_COMPILE: { http: 500, grpc: GrpcStatus.INTERNAL },
  /** Policies need an addressing plan (`addressing` option, `--addressing FILE`) and none is configured. */
  CTRL_ERR_POLICY_NO_PLAN: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION },
  /** The policy store (Redis) refused or failed a write; the version was not issued. */
  CTRL_ERR_POLICY_STORE: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  /** The topology has more routes than `routeLoop.maxRoutes`: the route loop is off. */
  CTRL_ERR_ROUTES_DISABLED: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  /** A bug: an invariant broke. Logged with its stack. */
  CTRL_ERR_INTERNAL: { http: 500, grpc: GrpcStatus.INTERNAL },
} as const satisfies Record<string, { http: number; grpc: GrpcStatus }>;

export type ControllerErrorCode = keyof typeof CATALOG;

/** Every code of the catalog, for docs and tests. */
export const CONTROLLER_ERROR_CODES = Object.keys(CATALOG) as ControllerErrorCode[];

/** The HTTP and gRPC status of a code: the single mapping used by the HTTP API and the gateway. */
export function statusOf(code: ControllerErrorCode): { readonly http: number; readonly grpc: GrpcStatus } {
  return CATALOG[code];
}

/** An error with a stable `code`; its message says what went wrong, where, and what was expected. */
export class ControllerError extends Error {
  readonly code: ControllerErrorCode;

  constructor(code: ControllerErrorCode, message: string) {
    super(message);
    this.name = 'ControllerError';
    this.code = code;
  }

  get httpStatus(): number {
    return CATALOG[this.code].http;
  }

  get grpcStatus(): GrpcStatus {
    return CATALOG[this.code].grpc;
  }

  /** The JSON body of an HTTP error response. */
  toJSON(): { error: { code: ControllerErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** True when `x` carries a catalog code (also across module copies). */
export function isControllerError(x: unknown): x is ControllerError {
  return (
    x instanceof ControllerError ||
    (x instanceof Error &&
      typeof (x as unknown as { code?: unknown }).code === 'string' &&
      (x as unknown as { code: string }).code in CATALOG)
  );
}
