/**
 * Keys move between BigUint64Array and Uint32Array views of one buffer (low word first) so hot
 * loops never create BigInts. That aliasing assumes a little-endian host; fail loudly elsewhere.
 */
const probe = new Uint32Array(new BigUint64Array([1n]).buffer);
if (probe[0] !== 1) {
  throw new Error('kvix block-keys requires a little-endian host');
}

/** The u64 words of a BigUint64Array as [lo, hi] pairs. */
export function wordsOf(keys: BigUint64Array): Uint32Array {
  return new Uint32Array(keys.buffer, keys.byteOffset, keys.length * 2);
}
