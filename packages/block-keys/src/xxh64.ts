import xxhash from 'xxhash-wasm';

// Loaded once at import: the WASM module is ~3 kB and instantiates in about a millisecond, and a
// synchronous hash API is worth more to callers than deferring that.
const api = await xxhash();
const scratch = new BigUint64Array(1);
const scratchWords = new Uint32Array(scratch.buffer);

/** XXH64 (seed 0) of bytes[0, length), written as [lo, hi] words to out[outIndex..outIndex+1]. */
export function xxh64Into(bytes: Uint8Array, length: number, out: Uint32Array, outIndex: number): void {
  scratch[0] = api.h64Raw(bytes.subarray(0, length), 0n);
  out[outIndex] = scratchWords[0]!;
  out[outIndex + 1] = scratchWords[1]!;
}

export function xxh64(bytes: Uint8Array): bigint {
  return api.h64Raw(bytes, 0n);
}
