/** Stable codes for what can go wrong finding, configuring or running Envoy. */
export type EnvoyErrorCode =
  /** No Envoy binary: not on PATH, not in KVIX_ENVOY_BIN, not in the repo's .venv-envoy. */
  | 'ENVOY_NOT_FOUND'
  /** The configuration lacks a piece the adapter needs (a listener or cluster by name). */
  | 'ENVOY_CONFIG_SHAPE'
  /** Envoy exited or stayed unready at start; the message carries its last output. */
  | 'ENVOY_START_FAILED'
  /** The admin API answered something unexpected. */
  | 'ENVOY_ADMIN';

export class EnvoyError extends Error {
  override readonly name = 'EnvoyError';
  constructor(
    readonly code: EnvoyErrorCode,
    message: string,
  ) {
    super(message);
  }
}
