export { BlockKeysError, type BlockKeysErrorCode } from './errors.js';
export { U64_MAX, parseU64, asU64, u64ToDecimal, u64FromTrailingBytes } from './u64.js';
export { fnv1a64 } from './fnv.js';
export {
  RequestKeyHasher,
  DEFAULT_BLOCK_SIZE,
  REQUEST_KEY_ALGORITHMS,
  isRequestKeyAlgorithm,
  type RequestKeyAlgorithm,
  type RequestKeyConfig,
  type RequestKeyOptions,
  type BlockExtras,
} from './request-keys.js';
export {
  requestBlockExtras,
  blockExtrasFromEventKeys,
  sortPlaceholders,
  type MultimodalPlaceholder,
  type RequestExtrasInput,
} from './block-extras.js';
export { forEachEngineRequestPair, lastRequestIndexForEngine, engineRequestPairs } from './engine-map.js';
export {
  EngineHasher,
  ENGINE_HASH_ALGORITHMS,
  VLLM_DEFAULT_NONE_HASH_SEED,
  ENGINE_HASH_FORMATS,
  isEngineHashAlgorithm,
  wireHashOf,
  type EngineHashAlgorithm,
  type EngineHashConfig,
  type EngineHashFormat,
  type EngineRequestExtras,
  type EngineBlockHashes,
} from './engine/engine-hasher.js';
export type { PyValue } from './cbor.js';
