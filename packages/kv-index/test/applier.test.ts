import { EngineHasher, RequestKeyHasher, requestBlockExtras } from '@kvix/block-keys';
import type { BlockRemoved, BlockStored, EventBatch, KvEvent, MsgpackValue } from '@kvix/kv-events';
import { describe, expect, it } from 'vitest';
import { EventApplier, InMemoryIndex, scoreLookup, type PodScore } from '../src/index.js';

const POD = '10.0.0.7:8000';
const MODEL = 'Qwen/Qwen3-8B';

function tokens(n: number, seed = 1): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % 151_000);
}

/** What a vLLM pod with block size `engineBlock` would publish for a prompt (real sha256 hashes). */
class FakeEngine {
  readonly hasher: EngineHasher;
  constructor(readonly engineBlock = 16) {
    this.hasher = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: engineBlock, hashFormat: 'untagged' });
  }

  hashes(prompt: number[], extras: { loraName?: string; cacheSalt?: string } = {}): BigUint64Array {
    return this.hasher.hashBlocks(prompt, extras).blockHashes;
  }

  /** BlockStored for blocks [from, to) of the prompt, chained to block from-1. */
  stored(prompt: number[], from: number, to: number, options: { medium?: string; loraName?: string; cacheSalt?: string; tokens?: boolean; group?: number; kind?: string } = {}): BlockStored {
    const all = this.hashes(prompt, { ...(options.loraName ? { loraName: options.loraName } : {}), ...(options.cacheSalt ? { cacheSalt: options.cacheSalt } : {}) });
    const extraKeys: (MsgpackValue[] | null)[] = [];
    for (let b = from; b < to; b++) {
      const keys: MsgpackValue[] = [];
      if (options.loraName) keys.push(options.loraName);
      if (b === 0 && options.cacheSalt) keys.push(options.cacheSalt);
      extraKeys.push(keys.length ? keys : null);
    }
    const B = this.engineBlock;
    return {
      type: 'BlockStored',
      blockHashes: all.slice(from, to),
      parentBlockHash: from === 0 ? null : all[from - 1]!,
      tokenIds: options.tokens === false ? new Uint32Array(0) : Uint32Array.from(prompt.slice(from * B, to * B)),
      blockSize: B,
      loraId: null,
      medium: options.medium ?? 'GPU',
      loraName: options.loraName ?? null,
      extraKeys: extraKeys.some((k) => k !== null) ? extraKeys : null,
      groupIdx: options.group ?? null,
      kvCacheSpecKind: options.kind ?? null,
      kvCacheSpecSlidingWindow: null,
    };
  }

  removed(prompt: number[], blocks: number[], medium = 'GPU', group: number | null = null): BlockRemoved {
    const all = this.hashes(prompt);
    return { type: 'BlockRemoved', blockHashes: BigUint64Array.from(blocks.map((b) => all[b]!)), medium, groupIdx: group };
  }
}

const batch = (...events: KvEvent[]): EventBatch => ({ ts: Date.now() / 1000, events, dataParallelRank: null });

function setup(requestBlock = 16) {
  const index = new InMemoryIndex({ sweepIntervalMs: 0 });
  const hasher = new RequestKeyHasher({ blockSize: requestBlock });
  const applier = new EventApplier(index, { hasher });
  const score = async (prompt: number[], model = MODEL, salt?: string): Promise<PodScore | undefined> => {
    const extras = salt ? requestBlockExtras({ tokenCount: prompt.length, blockSize: requestBlock, cacheSalt: salt }) : null;
    const keys = hasher.keys(prompt, model, { extras });
    const result = await index.lookup(keys);
    return scoreLookup(result, keys.length).find((s) => s.pod === POD);
  };
  return { index, applier, score, source: { pod: POD, model: MODEL } };
}

describe('event applier', () => {
  it('indexes a prefill so a prompt with the same tokens finds every block', async () => {
    const { applier, score, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(64);
    const r = await applier.apply(batch(engine.stored(prompt, 0, 4)), source);
    expect(r).toMatchObject({ storedBlocks: 4, needsReplay: false, skippedStores: {} });
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 4, score: 4, normalized: 1 });
    expect(await score(tokens(64, 2))).toBeUndefined();
  });

  it('extends a chain through the parent of a decode-time event', async () => {
    const { applier, score, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(96);
    await applier.apply(batch(engine.stored(prompt, 0, 4)), source);
    await applier.apply(batch(engine.stored(prompt, 4, 5), engine.stored(prompt, 5, 6)), source);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 6 });
  });

  it('flags an event whose parent it never saw (an EPP that starts after vLLM) and indexes it after replay', async () => {
    const { applier, score, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(96);
    const late = await applier.apply(batch(engine.stored(prompt, 4, 6)), source);
    expect(late).toMatchObject({ needsReplay: true, skippedStores: { unknown_parent: 1 }, storedBlocks: 0 });
    // Replay from seq 0 brings the missing prefill, then the later event again.
    await applier.apply(batch(engine.stored(prompt, 0, 4)), source);
    const again = await applier.apply(batch(engine.stored(prompt, 4, 6)), source);
    expect(again.needsReplay).toBe(false);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 6 });
  });

  it('keeps a block scoring at the CPU weight after its GPU copy is evicted (offloading connector)', async () => {
    const { applier, score, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(64);
    await applier.apply(batch(engine.stored(prompt, 0, 4)), source);
    // The OffloadingConnector announces the CPU copy in the GPU hash space, without tokens.
    const cpu = await applier.apply(batch(engine.stored(prompt, 0, 4, { medium: 'CPU', tokens: false })), source);
    expect(cpu.tierUpdates).toBe(4);
    await applier.apply(batch(engine.removed(prompt, [2, 3], 'GPU')), source);
    const s = await score(prompt);
    expect(s).toMatchObject({ matchedBlocks: 4, tiers: { gpu: 2, cpu: 4 } });
    expect(s!.score).toBeCloseTo(2 * 1.0 + 2 * 0.8);
  });

  it('counts a CPU store of blocks it never saw with tokens', async () => {
    const { applier, source } = setup();
    const engine = new FakeEngine();
    const r = await applier.apply(batch(engine.stored(tokens(32), 0, 2, { medium: 'CPU', tokens: false })), source);
    expect(r.skippedStores).toEqual({ unknown_engine_key: 1 });
  });

  it('drops everything a pod held when its engine resets (AllBlocksCleared)', async () => {
    const { applier, score, source, index } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(64);
    await applier.apply(batch(engine.stored(prompt, 0, 4), engine.stored(prompt, 0, 4, { medium: 'CPU', tokens: false })), source);
    const r = await applier.apply(batch({ type: 'AllBlocksCleared' }), source);
    expect(r.cleared).toBe(true);
    expect(await score(prompt)).toBeUndefined();
    expect((await index.stats()).entries).toBe(0);
  });

  it('removes an offload chunk announced twice only on its second removal', async () => {
    const { applier, score, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(32);
    const chunk = engine.stored(prompt, 0, 2, { medium: 'cpu' });
    await applier.apply(batch(chunk, chunk), source);
    const first = await applier.apply(batch(engine.removed(prompt, [0, 1], 'cpu')), source);
    expect(first).toMatchObject({ removedHashes: 0, suppressedRemovals: 2 });
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 2, tiers: { cpu: 2 } });
    const second = await applier.apply(batch(engine.removed(prompt, [0, 1], 'cpu')), source);
    expect(second).toMatchObject({ removedHashes: 2, suppressedRemovals: 0 });
    expect(await score(prompt)).toBeUndefined();
  });

  it('roots a LoRA adapter\'s blocks at the adapter name, not the base model', async () => {
    const { applier, score, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(48);
    await applier.apply(batch(engine.stored(prompt, 0, 3, { loraName: 'sql-lora' })), source);
    expect(await score(prompt, 'sql-lora')).toMatchObject({ matchedBlocks: 3 });
    expect(await score(prompt, MODEL)).toBeUndefined();
  });

  it('reproduces a salted prompt\'s keys from the salt in extra_keys (LoRA name not counted twice)', async () => {
    const { applier, score, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(48);
    await applier.apply(batch(engine.stored(prompt, 0, 3, { loraName: 'sql-lora', cacheSalt: 'tenant-a' })), source);
    expect(await score(prompt, 'sql-lora', 'tenant-a')).toMatchObject({ matchedBlocks: 3 });
    expect(await score(prompt, 'sql-lora', 'tenant-b')).toBeUndefined();
    expect(await score(prompt, 'sql-lora')).toBeUndefined();
  });

  it('indexes only full-attention groups of a hybrid model, including their removals', async () => {
    const { applier, score, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(32);
    const sliding = await applier.apply(batch(engine.stored(prompt, 0, 2, { group: 1, kind: 'sliding_window' })), source);
    expect(sliding.skippedStores).toEqual({ unsupported_cache_kind: 1 });
    await applier.apply(batch(engine.stored(prompt, 0, 2, { group: 0, kind: 'full_attention' })), source);
    // The sliding-window group evicts its copy early; the full-attention copy stays.
    const removal = await applier.apply(batch(engine.removed(prompt, [0, 1], 'GPU', 1)), source);
    expect(removal.skippedRemovals).toEqual({ unsupported_cache_kind: 1 });
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 2 });
    await applier.apply(batch(engine.removed(prompt, [1], 'GPU', 0)), source);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 1 });
  });

  it('indexes a sink-full-attention group like full attention (vLLM kind sink_full_attention)', async () => {
    const { applier, score, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(32);
    const r = await applier.apply(batch(engine.stored(prompt, 0, 2, { group: 0, kind: 'sink_full_attention' })), source);
    expect(r.skippedStores).toEqual({});
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 2 });
  });

  it('skips a store whose tokens do not divide over its hashes', async () => {
    const { applier, source } = setup();
    const engine = new FakeEngine();
    const ev = engine.stored(tokens(32), 0, 2);
    const bad: BlockStored = { ...ev, tokenIds: ev.tokenIds.slice(0, 31) };
    expect((await applier.apply(batch(bad), source)).skippedStores).toEqual({ token_count_mismatch: 1 });
  });

  it('confirms a routing decision\'s speculative entries when the real blocks arrive', async () => {
    const { applier, index, source } = setup();
    const engine = new FakeEngine();
    const prompt = tokens(64);
    const keys = applier.hasher.keys(prompt, MODEL);
    await index.add(null, keys, [{ pod: POD, tier: 'gpu', speculative: true }]);
    await applier.apply(batch(engine.stored(prompt, 0, 4)), source);
    expect((await index.stats()).speculative).toMatchObject({ confirmed: 4, active: 0 });
  });
});

describe('engine block size different from the index block size', () => {
  it('many:1 — 16-token engine blocks build 64-token request keys, across events', async () => {
    const { applier, score, source } = setup(64);
    const engine = new FakeEngine(16);
    const prompt = tokens(192);
    // Prefill of 160 tokens: 2 complete request blocks and 32 pending tokens.
    await applier.apply(batch(engine.stored(prompt, 0, 10)), source);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 2 });
    // Decode fills the third request block over two more events.
    await applier.apply(batch(engine.stored(prompt, 10, 11)), source);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 2 });
    await applier.apply(batch(engine.stored(prompt, 11, 12)), source);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 3 });
  });

  it('many:1 — losing any engine block of a request block un-holds it', async () => {
    const { applier, score, source } = setup(64);
    const engine = new FakeEngine(16);
    const prompt = tokens(128);
    await applier.apply(batch(engine.stored(prompt, 0, 8)), source);
    await applier.apply(batch(engine.removed(prompt, [5])), source);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 1 });
  });

  it('many:1 — a request that branches inside a request block continues from the right tokens', async () => {
    const { applier, score, source } = setup(64);
    const engine = new FakeEngine(16);
    const a = tokens(128, 1);
    const b = [...a.slice(0, 32), ...tokens(96, 9)]; // shares the first two engine blocks only
    await applier.apply(batch(engine.stored(a, 0, 8)), source);
    // b hits a's first two engine blocks in vLLM's cache and stores the rest with parent = block 1.
    await applier.apply(batch(engine.stored(b, 2, 8)), source);
    expect(await score(b)).toMatchObject({ matchedBlocks: 2 });
    expect(await score(a)).toMatchObject({ matchedBlocks: 2 });
  });

  it('an engine block straddling two request blocks, completed by a later event, takes both along when it goes', async () => {
    const { applier, score, source } = setup(16);
    const engine = new FakeEngine(24);
    const prompt = tokens(48);
    // Block 0 (tokens 0–24) holds request block 0 and half of request block 1; block 1 completes it.
    await applier.apply(batch(engine.stored(prompt, 0, 1)), source);
    await applier.apply(batch(engine.stored(prompt, 1, 2)), source);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 3 });
    await applier.apply(batch(engine.removed(prompt, [0])), source);
    expect(await score(prompt)).toBeUndefined();
  });

  it('a request block straddling engine blocks stays held while any engine block completing it does', async () => {
    const { applier, score, source } = setup(16);
    const engine = new FakeEngine(24);
    // Request block 1 (tokens 16–32) spans engine block 0 and the first 8 tokens of engine block 1;
    // b shares a's first 32 tokens, so its own engine block 1 completes the same request block.
    const a = tokens(48, 1);
    const b = [...a.slice(0, 32), ...tokens(16, 2)];
    await applier.apply(batch(engine.stored(a, 0, 2), engine.stored(b, 1, 2)), source);
    expect(await score(b)).toMatchObject({ matchedBlocks: 3 });
    await applier.apply(batch(engine.removed(b, [1])), source);
    expect(await score(a)).toMatchObject({ matchedBlocks: 3 });
    await applier.apply(batch(engine.removed(a, [1])), source);
    expect(await score(a)).toMatchObject({ matchedBlocks: 1 });
  });

  it('1:many — one 64-token engine block yields four 16-token request keys', async () => {
    const { applier, score, source, index } = setup(16);
    const engine = new FakeEngine(64);
    const prompt = tokens(128);
    await applier.apply(batch(engine.stored(prompt, 0, 2)), source);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 8 });
    expect(await index.requestKeysFor(engine.hashes(prompt)[1]!)).toHaveLength(4);
    await applier.apply(batch(engine.removed(prompt, [1])), source);
    expect(await score(prompt)).toMatchObject({ matchedBlocks: 4 });
  });

  it('1:many — evicting one engine block keeps the request blocks another held engine block still covers', async () => {
    const { applier, score, source } = setup(16);
    const engine = new FakeEngine(32);
    // Two prompts share their first 16 tokens: one request block, but no engine block.
    const a = tokens(64, 1);
    const b = [...a.slice(0, 16), ...tokens(48, 2)];
    await applier.apply(batch(engine.stored(a, 0, 2), engine.stored(b, 0, 2)), source);
    expect(await score(b)).toMatchObject({ matchedBlocks: 4 });
    await applier.apply(batch(engine.removed(a, [0, 1])), source);
    expect(await score(a)).toMatchObject({ matchedBlocks: 1 });
    expect(await score(b)).toMatchObject({ matchedBlocks: 4 });
    // The last engine block covering the shared request block takes it along.
    await applier.apply(batch(engine.removed(b, [1]), engine.removed(b, [0])), source);
    expect(await score(a)).toBeUndefined();
    expect(await score(b)).toBeUndefined();
  });

  it('1:many — an engine block announced twice covers its request blocks until its second removal', async () => {
    const { applier, score, source } = setup(16);
    const engine = new FakeEngine(32);
    const a = tokens(64, 1);
    const b = [...a.slice(0, 16), ...tokens(48, 2)];
    // vLLM caches a block computed twice at once twice; b shares a's first request block.
    await applier.apply(batch(engine.stored(a, 0, 1), engine.stored(a, 0, 1), engine.stored(b, 0, 1)), source);
    await applier.apply(batch(engine.removed(b, [0]), engine.removed(a, [0])), source);
    expect(await score(a)).toMatchObject({ matchedBlocks: 2 });
    await applier.apply(batch(engine.removed(a, [0])), source);
    expect(await score(a)).toBeUndefined();
  });

  it('1:many — a salted prompt\'s 64-token engine blocks match at 16 tokens (the salt is on block 0 only)', async () => {
    const { applier, score, source } = setup(16);
    const engine = new FakeEngine(64);
    const prompt = tokens(256);
    await applier.apply(batch(engine.stored(prompt, 0, 2, { cacheSalt: 'tenant-a' }), engine.stored(prompt, 2, 4, { cacheSalt: 'tenant-a' })), source);
    expect(await score(prompt, MODEL, 'tenant-a')).toMatchObject({ matchedBlocks: 16 });
    expect(await score(prompt, MODEL, 'tenant-b')).toBeUndefined();
  });

  it('LMCache chunks (256 tokens, "cpu") index at 64 tokens, a partial last chunk included', async () => {
    const { applier, score, source } = setup(64);
    const prompt = tokens(640);
    // LMCache announces per chunk, in its own hash space, with the chunk's tokens.
    const chunk = (i: number, from: number, to: number, parent: bigint | null): BlockStored => ({
      type: 'BlockStored',
      blockHashes: BigUint64Array.of(BigInt(1000 + i)),
      parentBlockHash: parent,
      tokenIds: Uint32Array.from(prompt.slice(from, to)),
      blockSize: to - from,
      loraId: null,
      medium: 'cpu',
      loraName: null,
      extraKeys: null,
      groupIdx: null,
      kvCacheSpecKind: null,
      kvCacheSpecSlidingWindow: null,
    });
    await applier.apply(batch(chunk(0, 0, 256, null), chunk(1, 256, 512, 1000n), chunk(2, 512, 600, 1001n)), source);
    const s = await score(prompt);
    expect(s).toMatchObject({ matchedBlocks: 9, tiers: { cpu: 9 } });
    expect(s!.score).toBeCloseTo(9 * 0.8);
  });
});
