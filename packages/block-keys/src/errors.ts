/** Stable machine-readable codes for every error this package throws. */
export type BlockKeysErrorCode =
  | 'INVALID_BLOCK_SIZE'
  | 'INVALID_ALGORITHM'
  | 'INVALID_TOKEN'
  | 'INVALID_U64'
  | 'INVALID_EXTRAS'
  | 'INVALID_SEED';

/** Thrown for caller mistakes (bad configuration or input); never for internal faults. */
export class BlockKeysError extends Error {
  override readonly name = 'BlockKeysError';
  constructor(
    readonly code: BlockKeysErrorCode,
    message: string,
  ) {
    super(message);
  }
}
