/** Why a prediction could not be had; `code` is stable (metrics and logs use it). */
export type PredictorErrorCode =
  /** The model has not seen enough observations to predict yet. */
  | 'NOT_READY'
  /** No prediction server answered in time. */
  | 'TIMEOUT'
  /** A prediction server could not be reached (connection refused, reset, DNS). */
  | 'UNREACHABLE'
  /** A prediction server answered with a non-success status. */
  | 'HTTP_STATUS'
  /** A prediction server answered something that is not a bulk prediction of the right length. */
  | 'BAD_RESPONSE'
  /** Every prediction server's circuit is open: not even tried. */
  | 'CIRCUIT_OPEN'
  /** A row failed validation (a feature out of range). */
  | 'INVALID_ROW'
  /** The predictor was closed. */
  | 'CLOSED';

export class PredictorError extends Error {
  override readonly name = 'PredictorError';
  constructor(
    readonly code: PredictorErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A predictor configuration that cannot work (named keys). */
export class PredictorConfigError extends Error {
  override readonly name = 'PredictorConfigError';
  readonly code = 'INVALID_CONFIG';
}
