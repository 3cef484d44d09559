import { createXXHash128 } from 'hash-wasm';

// hash-wasm only hands out its hashers asynchronously; loading one at import keeps hashing sync.
const hasher = await createXXHash128();

/** XXH3-128 digest in canonical (big-endian) byte order, as Python's xxh3_128_digest returns it. */
export function xxh3_128(bytes: Uint8Array): Uint8Array {
  hasher.init();
  hasher.update(bytes);
  return hasher.digest('binary');
}
