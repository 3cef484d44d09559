import { RequestKeyHasher, requestBlockExtras } from '@kvix/block-keys';
import { decodeEventBatch, type BlockRemoved, type BlockStored, type EventBatch, type KvEvent } from '@kvix/kv-events';
import { readVectorJson } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';
import { EventApplier, InMemoryIndex, scoreLookup, type EngineProfile, type EventRules } from '../src/index.js';

const POD = '10.0.0.9:8000';
const MODEL = 'm';
const B = 16;

const tokens = (n: number, seed = 1): number[] => Array.from({ length: n }, (_, i) => 1000 + ((i * 7919 + seed * 104729) % 150_000));
const batch = (...events: KvEvent[]): EventBatch => ({ ts: 1, events, dataParallelRank: 0 });

function stored(fields: Partial<BlockStored> & { blockHashes: BigUint64Array; tokenIds: Uint32Array }): BlockStored {
  return { type: 'BlockStored', parentBlockHash: null, blockSize: B, loraId: null, medium: 'GPU', loraName: null, extraKeys: null, groupIdx: 0, kvCacheSpecKind: null, kvCacheSpecSlidingWindow: null, ...fields };
}

function setup(engine?: EngineProfile, extra: { now?: () => number; lmcacheTtlMs?: number } = {}) {
  const index = new InMemoryIndex({ sweepIntervalMs: 0 });
  const hasher = new RequestKeyHasher({ blockSize: B });
  const inferred: EventRules[] = [];
  const rejected: string[] = [];
  const applier = new EventApplier(index, { hasher, ...extra, observer: { rulesInferred: (_p, r) => inferred.push(r), batchRejected: (r) => rejected.push(r) } });
  const source = engine === undefined ? { pod: POD, model: MODEL } : { pod: POD, model: MODEL, engine };
  /** Leading request blocks of the prompt the pod holds in `tier`. */
  const held = async (prompt: number[], tier: string, salt?: string): Promise<number> => {
    const extras = salt ? requestBlockExtras({ tokenCount: prompt.length, blockSize: B, cacheSalt: salt }) : null;
    const keys = hasher.keys(prompt, MODEL, { extras });
    const result = await index.lookup(keys, { earlyStop: false });
    let n = 0;
    for (; n < result.keyCount; n++) {
      let found = false;
      for (let j = result.offsets[n]!; j < result.offsets[n + 1]!; j++) if (result.tiers[result.tierIndex[j]!] === tier) found = true;
      if (!found) break;
    }
    return n;
  };
  return { index, hasher, applier, source, held, inferred, rejected };
}

/** What vLLM's LMCache connector publishes for chunks [from, to) of a prompt (chunk = 64 tokens here). */
function lmcacheChunks(prompt: number[], chunk: number, from: number, to: number, hashOf: (c: number) => bigint): BlockStored[] {
  const out: BlockStored[] = [];
  for (let c = from; c < to; c++) {
    const start = c * chunk;
    const end = Math.min(prompt.length, start + chunk);
    out.push(
      stored({
        blockHashes: BigUint64Array.of(hashOf(c)),
        // The running parent starts at 0: a store that skipped saved chunks sends 0 for its first.
        parentBlockHash: c === 0 ? null : c === from ? 0n : hashOf(c - 1),
        tokenIds: Uint32Array.from(prompt.slice(start, end + 1)),
        blockSize: end - start,
        medium: 'cpu',
        groupIdx: null,
      }),
    );
  }
  return out;
}

describe('sanity limits (issue 16 item 3)', () => {
  it('refuses a batch whose one BlockStored carries 1 hash and 16 M tokens, adding nothing', async () => {
    const t = setup();
    const huge = stored({ blockHashes: BigUint64Array.of(1n), tokenIds: new Uint32Array(16 * 1024 * 1024), blockSize: 16 * 1024 * 1024 });
    const r = await t.applier.apply(batch(huge), t.source);
    expect(r.rejected).toBe('block_too_long');
    expect(r.storedBlocks).toBe(0);
    expect((await t.index.stats()).entries).toBe(0);
    expect(t.rejected).toEqual(['block_too_long']);
  });

  it('refuses a batch with an event of more hashes than the limit, the others of it included', async () => {
    const t = setup();
    const applier = new EventApplier(t.index, { hasher: t.hasher, maxBlocksPerEvent: 8 });
    const ok = stored({ blockHashes: BigUint64Array.of(1n), tokenIds: Uint32Array.from(tokens(16)) });
    const many = stored({ blockHashes: new BigUint64Array(9).map((_, i) => BigInt(i + 10)), tokenIds: Uint32Array.from(tokens(9 * 16, 3)) });
    const r = await applier.apply(batch(ok, many), t.source);
    expect(r.rejected).toBe('too_many_hashes');
    expect((await t.index.stats()).entries).toBe(0);
  });
});

describe('LMCache in-process (vLLM connector)', () => {
  const hashOf = (c: number): bigint => 0xabc000n + BigInt(c);

  it('keys a 4-chunk prompt stored from chunk 0 exactly (block length from block_size, the next chunk\'s token dropped)', async () => {
    const t = setup({ engine: 'vllm', lmcache: 'inproc' });
    const prompt = tokens(256);
    const r = await t.applier.apply(batch(...lmcacheChunks(prompt, 64, 0, 4, hashOf)), t.source);
    expect(r.skippedStores).toEqual({});
    expect(await t.held(prompt, 'cpu')).toBe(16);
  });

  it('never takes parent 0 for a root: a store from chunk 2 is indexed only once its prefix is known', async () => {
    const t = setup({ engine: 'vllm', lmcache: 'inproc' });
    const prompt = tokens(256, 5);
    const late = await t.applier.apply(batch(...lmcacheChunks(prompt, 64, 2, 4, hashOf)), t.source);
    // Chunk 3's parent is chunk 2, itself unknown.
    expect(late.skippedStores).toEqual({ lmcache_unknown_prefix: 2 });
    expect(late.needsReplay).toBe(false);
    // Chunk 2's tokens as a prompt of their own must not match: they were not indexed as a root.
    expect(await t.held(prompt.slice(128), 'cpu')).toBe(0);
    expect(await t.held(prompt, 'cpu')).toBe(0);
  });

  it("resolves parent 0 through the same request's GPU blocks (vLLM's own events show the prefix)", async () => {
    const t = setup({ engine: 'vllm', lmcache: 'inproc' });
    const prompt = tokens(256, 6);
    const gpu = stored({ blockHashes: new BigUint64Array(16).map((_, i) => BigInt(5000 + i)), tokenIds: Uint32Array.from(prompt) });
    const r = await t.applier.apply(batch(gpu, ...lmcacheChunks(prompt, 64, 2, 4, hashOf)), t.source);
    expect(r.skippedStores).toEqual({});
    // The CPU tier holds chunks 2–3 only: its run from block 0 is empty, but the blocks are there.
    const keys = t.hasher.keys(prompt, MODEL);
    const result = await t.index.lookup(keys.subarray(8), { earlyStop: false });
    expect(scoreLookup(result, 8).find((s) => s.pod === POD)?.matchedBlocks).toBe(8);
    expect(await t.held(prompt, 'gpu')).toBe(16);
  });

  it('expires LMCache entries by TTL (no removals ever come)', async () => {
    let now = 0;
    const t = setup({ engine: 'vllm', lmcache: 'inproc' }, { now: () => now, lmcacheTtlMs: 1000 });
    const prompt = tokens(128, 7);
    await t.applier.apply(batch(...lmcacheChunks(prompt, 64, 0, 2, hashOf)), t.source);
    expect(await t.held(prompt, 'cpu')).toBe(8);
    now = 1500;
    expect(await t.applier.expireLmcache()).toBe(2);
    expect(await t.held(prompt, 'cpu')).toBe(0);
  });

  it('expires a chunk announced twice (stored again after its first announcement) in one go', async () => {
    let now = 0;
    const t = setup({ engine: 'vllm', lmcache: 'inproc' }, { now: () => now, lmcacheTtlMs: 1000 });
    const prompt = tokens(128, 17);
    await t.applier.apply(batch(...lmcacheChunks(prompt, 64, 0, 2, hashOf)), t.source);
    now = 500;
    await t.applier.apply(batch(...lmcacheChunks(prompt, 64, 0, 2, hashOf)), t.source);
    now = 1200;
    expect(await t.applier.expireLmcache()).toBe(0);
    now = 1600;
    expect(await t.applier.expireLmcache()).toBe(2);
    expect(await t.held(prompt, 'cpu')).toBe(0);
  });

  it('skips and counts a chunk whose tokens LMCache rewrote for a multimodal placeholder', async () => {
    const t = setup({ engine: 'vllm', lmcache: 'inproc' });
    const prompt = [...tokens(64, 8), ...Array.from({ length: 64 }, () => 0x1a2b)];
    const r = await t.applier.apply(batch(...lmcacheChunks(prompt, 64, 1, 2, hashOf).map((e) => ({ ...e, parentBlockHash: null }))), t.source);
    expect(r.skippedStores).toEqual({ lmcache_multimodal: 1 });
  });

  it('infers LMCache in-process rules from the wire without configuration, and says so', async () => {
    const t = setup();
    const prompt = tokens(128, 9);
    await t.applier.apply(batch(...lmcacheChunks(prompt, 64, 0, 2, hashOf)), t.source);
    expect(t.inferred).toEqual(['lmcache-inproc']);
    expect(await t.held(prompt, 'cpu')).toBe(8);
  });
});

describe('LMCache multiprocess (real parents, CPU removals, resync)', () => {
  it('indexes chunks by their real parents and drops every announced hash on the resync removal', async () => {
    const t = setup({ engine: 'vllm', lmcache: 'mp' });
    const prompt = tokens(192, 11);
    const chunk = (c: number): BlockStored =>
      stored({ blockHashes: BigUint64Array.of(BigInt(900 + c)), parentBlockHash: c === 0 ? null : BigInt(899 + c), tokenIds: Uint32Array.from(prompt.slice(c * 64, (c + 1) * 64)), blockSize: 64, medium: 'CPU', groupIdx: null });
    await t.applier.apply(batch(chunk(0), chunk(1), chunk(2)), t.source);
    expect(await t.held(prompt, 'cpu')).toBe(12);
    const evict: BlockRemoved = { type: 'BlockRemoved', blockHashes: BigUint64Array.of(902n), medium: 'CPU', groupIdx: null };
    await t.applier.apply(batch(evict), t.source);
    expect(await t.held(prompt, 'cpu')).toBe(8);
    const resync: BlockRemoved = { type: 'BlockRemoved', blockHashes: BigUint64Array.of(900n, 901n, 902n), medium: 'CPU', groupIdx: null };
    await t.applier.apply(batch(resync), t.source);
    expect(await t.held(prompt, 'cpu')).toBe(0);
  });
});

describe('SGLang', () => {
  it('keys a salted chain as salted request keys (cache_salt on every event), an unsalted one as plain', async () => {
    const t = setup({ engine: 'sglang' });
    const prompt = tokens(64, 12);
    const page = (i: number, salt: string | null, base: bigint): BlockStored =>
      stored({
        blockHashes: BigUint64Array.of(base + BigInt(i)),
        parentBlockHash: i === 0 ? null : base + BigInt(i - 1),
        tokenIds: Uint32Array.from(prompt.slice(i * 16, (i + 1) * 16)),
        cacheSalt: salt,
        groupIdx: null,
        signedHashes: true,
      });
    await t.applier.apply(batch(page(0, 'tenant-a', 1n << 63n), page(1, 'tenant-a', 1n << 63n), page(2, 'tenant-a', 1n << 63n)), t.source);
    expect(await t.held(prompt, 'gpu', 'tenant-a')).toBe(3);
    expect(await t.held(prompt, 'gpu')).toBe(0);
    await t.applier.apply(batch(page(0, null, 77n), page(1, null, 77n)), t.source);
    expect(await t.held(prompt, 'gpu')).toBe(2);
  });

  it('keeps a partial tail page pending until the next page completes the request block', async () => {
    const t = setup({ engine: 'sglang' });
    const prompt = tokens(32, 13);
    const first = stored({ blockHashes: BigUint64Array.of(1n), tokenIds: Uint32Array.from(prompt.slice(0, 10)), blockSize: 10, groupIdx: null });
    await t.applier.apply(batch(first), t.source);
    expect(await t.held(prompt, 'gpu')).toBe(0);
    const rest = stored({ blockHashes: BigUint64Array.of(2n), parentBlockHash: 1n, tokenIds: Uint32Array.from(prompt.slice(10, 32)), blockSize: 22, groupIdx: null });
    await t.applier.apply(batch(rest), t.source);
    expect(await t.held(prompt, 'gpu')).toBe(2);
  });

  it('skips EAGLE bigram keys with a named reason', async () => {
    const t = setup({ engine: 'sglang' });
    const r = await t.applier.apply(batch(stored({ blockHashes: BigUint64Array.of(1n), tokenIds: new Uint32Array(0), bigramTokens: true })), t.source);
    expect(r.skippedStores).toEqual({ eagle_bigram: 1 });
  });
});

describe('vLLM 0.34 emission paths', () => {
  it("applies the shared hybrid-groups and Mamba frames: full attention indexed, other kinds skipped by name", async () => {
    const frames = (readVectorJson('vllm-0.34-event-frames.json') as { frames: { name: string; payload_hex: string }[] }).frames;
    const decode = (name: string) => decodeEventBatch(new Uint8Array(Buffer.from(frames.find((f) => f.name === name)!.payload_hex, 'hex')));
    const t = setup({ engine: 'vllm' });
    const hybrid = await t.applier.apply(decode('hybrid-groups'), t.source);
    expect(hybrid.storedBlocks).toBe(2);
    expect(hybrid.skippedStores).toEqual({ unsupported_cache_kind: 2 });
    const mamba = await t.applier.apply(decode('mamba-state-checkpoint'), t.source);
    expect(mamba.skippedStores).toEqual({ mamba_state_checkpoint: 1 });
    const offload = await t.applier.apply(decode('offload-cpu-self-describing'), t.source);
    expect(offload.skippedStores).toEqual({});
    expect(offload.storedBlocks).toBe(4);
  });

  it('skips a Mamba state checkpoint with a named reason', async () => {
    const t = setup({ engine: 'vllm' });
    const r = await t.applier.apply(batch(stored({ blockHashes: BigUint64Array.of(5n), parentBlockHash: 4n, tokenIds: new Uint32Array(0), kvCacheSpecKind: 'mamba', groupIdx: 1 })), t.source);
    expect(r.skippedStores).toEqual({ mamba_state_checkpoint: 1 });
  });

  it('takes report-mode re-announcements of held blocks as the same copy: one removal removes it', async () => {
    const t = setup({ engine: 'vllm', reportMode: 'full' });
    const prompt = tokens(32, 14);
    const ev = stored({ blockHashes: BigUint64Array.of(1n, 2n), tokenIds: Uint32Array.from(prompt) });
    await t.applier.apply(batch(ev), t.source);
    await t.applier.apply(batch(ev), t.source);
    await t.applier.apply(batch({ type: 'BlockRemoved', blockHashes: BigUint64Array.of(2n), medium: 'GPU', groupIdx: 0 }, { type: 'BlockRemoved', blockHashes: BigUint64Array.of(1n), medium: 'GPU', groupIdx: 0 }), t.source);
    expect(await t.held(prompt, 'gpu')).toBe(0);
  });

  it('indexes an event with lookahead tokens by its block tokens only', async () => {
    const t = setup({ engine: 'vllm' });
    const prompt = tokens(48, 15);
    await t.applier.apply(batch(stored({ blockHashes: BigUint64Array.of(1n, 2n, 3n), tokenIds: Uint32Array.from(prompt), lookaheadTokenIds: [[7], [8], [9]], sessionId: 's' })), t.source);
    expect(await t.held(prompt, 'gpu')).toBe(3);
  });

  it("indexes a self-describing offload chunk whose parent's GPU copy is gone by its own known hashes", async () => {
    const t = setup({ engine: 'vllm' });
    const prompt = tokens(48, 18);
    await t.applier.apply(batch(stored({ blockHashes: BigUint64Array.of(1n, 2n, 3n), tokenIds: Uint32Array.from(prompt) })), t.source);
    // Block 1 (the parent) evicted from the GPU for good, then block 2's GPU copy offloaded to CPU.
    await t.applier.apply(batch({ type: 'BlockRemoved', blockHashes: BigUint64Array.of(1n), medium: 'GPU', groupIdx: 0 }), t.source);
    const r = await t.applier.apply(batch(stored({ blockHashes: BigUint64Array.of(2n), parentBlockHash: 1n, tokenIds: Uint32Array.from(prompt.slice(16, 32)), medium: 'CPU', locality: 'LOCAL' })), t.source);
    expect(r.needsReplay).toBe(false);
    const keys = t.hasher.keys(prompt, MODEL);
    const result = await t.index.lookup(keys.subarray(1, 2), { earlyStop: false });
    expect(result.tiers[result.tierIndex[0]!]).toBeDefined();
    expect([...Array(result.offsets[1]! - result.offsets[0]!).keys()].map((j) => result.tiers[result.tierIndex[result.offsets[0]! + j]!]).sort()).toEqual(['cpu', 'gpu']);
  });

  it('puts a REMOTE copy in the remote tier, not the pod\'s GPU', async () => {
    const t = setup({ engine: 'vllm' });
    const prompt = tokens(32, 16);
    await t.applier.apply(batch(stored({ blockHashes: BigUint64Array.of(1n, 2n), tokenIds: Uint32Array.from(prompt), medium: 'STORAGE', locality: 'REMOTE', ownership: 'node-b' })), t.source);
    expect(await t.held(prompt, 'gpu')).toBe(0);
    expect(await t.held(prompt, 'remote')).toBe(2);
  });
});
