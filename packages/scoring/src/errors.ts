/** A request the scorer cannot answer as asked; `code` says why (services map it to a status). */
export type ScoringErrorCode =
  /** Malformed input: bad token ids, bad JSON fields, duplicate candidates, … */
  | 'INVALID_REQUEST'
  /** `candidates` given but empty (leave it out to score every pod). */
  | 'EMPTY_CANDIDATES'
  /** More prompt tokens than the configured limit. */
  | 'PROMPT_TOO_LONG'
  /** Text given but no tokenizer is configured. */
  | 'NO_TOKENIZER'
  /** The pod of a routing decision is not a valid pod identity. */
  | 'INVALID_POD'
  /** A setting is out of range. */
  | 'INVALID_CONFIG';

export class ScoringError extends Error {
  override readonly name = 'ScoringError';
  constructor(
    readonly code: ScoringErrorCode,
    message: string,
  ) {
    super(message);
  }
}
