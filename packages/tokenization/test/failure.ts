import { TokenizationError } from '../src/index.js';

/** The TokenizationError a call fails with (fails the test if it succeeds or throws anything else). */
export async function failure(promise: Promise<unknown>): Promise<TokenizationError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof TokenizationError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}
