import type { BlockStored } from '@kvix/kv-events';

/** A GPU BlockStored event as vLLM ≥ 0.2x fills it (full-attention group 0), for benchmarks. */
export function gpuStored(blockHashes: BigUint64Array, parentBlockHash: bigint | null, tokenIds: Uint32Array, blockSize: number): BlockStored {
  return {
    type: 'BlockStored',
    blockHashes,
    parentBlockHash,
    tokenIds,
    blockSize,
    loraId: null,
    medium: 'GPU',
    loraName: null,
    extraKeys: null,
    groupIdx: 0,
    kvCacheSpecKind: 'full_attention',
    kvCacheSpecSlidingWindow: null,
  };
}
