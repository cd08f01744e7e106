/** Stable error codes of @meridian/ops (listed in ops/README.md). */
export type OpsErrorCode =
  | 'OPS_ERR_SERVICE_START'
  | 'OPS_ERR_NOT_ROOT'
  | 'OPS_ERR_MISSING_TOOL'
  | 'OPS_ERR_LAB_STATE'
  | 'OPS_ERR_LAB_COMMAND'
  | 'OPS_ERR_BAD_ARGS'
  | 'OPS_ERR_AGENT_POLICY'
  | 'OPS_ERR_INTERRUPTED';

/** The one error class of the ops package; `code` is stable, `message` says what and where. */
export class OpsError extends Error {
  readonly code: OpsErrorCode;
  constructor(code: OpsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OpsError';
    this.code = code;
  }
}
