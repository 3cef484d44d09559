import { EngineHasher } from '@kvix/block-keys';
import type { BlockRemoved, BlockStored, KvEvent } from '@kvix/kv-events';
import { describe, expect, it } from 'vitest';
import { CpuTier, DEFAULT_LATENCY, Engine, type GenerationResult, type OffloadMode } from '../src/index.js';

const B = 16;

function setup(options: { gpuBlocks?: number; offload?: OffloadMode; cpuBlocks?: number; maxNumSeqs?: number; chunk?: number; lmcacheMode?: 'inproc' | 'mp'; selfDescribing?: boolean; reportMode?: 'default' | 'full' } = {}) {
  const hasher = new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: B });
  const batches: KvEvent[][] = [];
  const ttfts: number[] = [];
  const engine = new Engine(
    {
      blockSize: B,
      numGpuBlocks: options.gpuBlocks ?? 64,
      maxNumSeqs: options.maxNumSeqs ?? 16,
      maxNumBatchedTokens: 8192,
      hasher,
      cpu: new CpuTier(options.offload ?? 'none', options.cpuBlocks ?? 0, B, options.chunk ?? 64, options.lmcacheMode ?? 'inproc', options.selfDescribing ?? true),
      loraPaths: new Map([['sql-lora', '/adapters/sql-lora']]),
      reportMode: options.reportMode ?? 'default',
      latency: DEFAULT_LATENCY,
      timeScale: 1000,
      outputVocab: { from: 1000, to: 2000 },
    },
    (events) => batches.push(events),
    (s) => ttfts.push(s),
  );
  const run = (prompt: number[], maxTokens = 4, extras: { loraName?: string; cacheSalt?: string } = {}): Promise<GenerationResult & { tokens: number[]; finishReasons: (string | null)[] }> =>
    new Promise((resolve) => {
      const tokens: number[] = [];
      const finishReasons: (string | null)[] = [];
      engine.submit({
        id: `r${Math.random()}`,
        prompt: Uint32Array.from(prompt),
        maxTokens,
        loraName: extras.loraName ?? null,
        loraId: extras.loraName ? 1 : null,
        cacheSalt: extras.cacheSalt ?? null,
        onFirstToken: () => undefined,
        onToken: (t, reason) => {
          tokens.push(t);
          finishReasons.push(reason);
        },
        onFinish: (r) => resolve({ ...r, tokens, finishReasons }),
      });
    });
  const events = (): KvEvent[] => batches.flat();
  const stored = (): BlockStored[] => events().filter((e): e is BlockStored => e.type === 'BlockStored');
  const removed = (): BlockRemoved[] => events().filter((e): e is BlockRemoved => e.type === 'BlockRemoved');
  return { engine, hasher, batches, events, stored, removed, run, ttfts };
}

const prompt = (n: number, seed = 1): number[] => Array.from({ length: n }, (_, i) => 100 + ((i * 7919 + seed * 104729) % 50_000));

describe('simulated engine', () => {
  it('announces a prompt\'s full blocks with the hashes and tokens vLLM would publish', async () => {
    const { run, stored, hasher } = setup();
    const p = prompt(40); // 2 full blocks + 8 tokens
    await run(p, 2);
    const first = stored()[0]!;
    expect(Array.from(first.blockHashes)).toEqual(Array.from(hasher.hashBlocks(p).blockHashes));
    expect(Array.from(first.tokenIds)).toEqual(p.slice(0, 32));
    expect(first).toMatchObject({ parentBlockHash: null, blockSize: B, medium: 'GPU', groupIdx: 0, kvCacheSpecKind: 'full_attention', extraKeys: [null, null] });
  });

  it('announces a block filled by decoding, chained to the prompt\'s last block', async () => {
    const { run, stored, hasher } = setup();
    const p = prompt(40);
    const r = await run(p, 10); // 40 + 10 tokens: the third block fills during decode
    const all = [...p, ...r.tokens];
    const expected = hasher.hashBlocks(all).blockHashes;
    const decode = stored()[1]!;
    expect(Array.from(decode.blockHashes)).toEqual([expected[2]]);
    expect(decode.parentBlockHash).toBe(expected[1]);
    expect(Array.from(decode.tokenIds)).toEqual(all.slice(32, 48));
  });

  it('reports a repeated prompt\'s cached tokens and gives it a lower modeled TTFT', async () => {
    const { run, ttfts } = setup({ gpuBlocks: 256 });
    const p = prompt(1024);
    const cold = await run(p, 1);
    const warm = await run(p, 1);
    expect(cold.cachedTokens).toBe(0);
    // vLLM always recomputes the last token: 1024 tokens = 64 blocks, 63 of them hit.
    expect(warm.cachedTokens).toBe(1008);
    expect(ttfts[1]!).toBeLessThan(ttfts[0]! / 5);
  });

  it('evicts the least recently freed cached blocks when it runs out, announcing each removal', async () => {
    const { run, removed, stored } = setup({ gpuBlocks: 8 });
    const a = prompt(64, 1); // 4 blocks + 1 for the generated token
    await run(a, 1);
    const aHashes = stored()[0]!.blockHashes;
    await run(prompt(64, 2), 1); // needs 5 of 8 blocks: a's tail goes first
    const gone = removed().flatMap((e) => Array.from(e.blockHashes));
    expect(gone.length).toBeGreaterThan(0);
    for (const h of gone) expect(Array.from(aHashes)).toContain(h);
    expect(removed()[0]!.medium).toBe('GPU');
    // vLLM frees a request's blocks last-first: the last prompt block is evicted before the first.
    expect(gone).toContain(aHashes[3]);
    expect(gone).not.toContain(aHashes[0]);
  });

  it('moves evicted blocks to the CPU tier the offloading-connector way before dropping the GPU copy (placeholders before vLLM 0.34)', async () => {
    const { run, batches } = setup({ gpuBlocks: 8, offload: 'offloading-connector', cpuBlocks: 64, selfDescribing: false });
    await run(prompt(64, 1), 1);
    await run(prompt(64, 2), 1);
    const withEviction = batches.find((b) => b.some((e) => e.type === 'BlockRemoved'))!;
    const cpuStore = withEviction.findIndex((e) => e.type === 'BlockStored' && e.medium === 'CPU');
    const gpuRemove = withEviction.findIndex((e) => e.type === 'BlockRemoved' && e.medium === 'GPU');
    expect(cpuStore).toBeGreaterThanOrEqual(0);
    expect(cpuStore).toBeLessThan(gpuRemove);
    const ev = withEviction[cpuStore] as BlockStored;
    expect(ev.tokenIds).toHaveLength(0);
    expect(ev.blockSize).toBe(0);
    expect(ev.parentBlockHash).toBeNull();
  });

  it("describes offloaded blocks as vLLM 0.34 does: tokens, parent, locality LOCAL", async () => {
    const { run, batches } = setup({ gpuBlocks: 8, offload: 'offloading-connector', cpuBlocks: 64 });
    const first = prompt(64, 1);
    await run(first, 1);
    await run(prompt(64, 2), 1);
    const cpu = batches.flat().filter((e): e is BlockStored => e.type === 'BlockStored' && e.medium === 'CPU');
    expect(cpu.length).toBeGreaterThan(0);
    const ev = cpu[0]!;
    expect(ev).toMatchObject({ blockSize: B, locality: 'LOCAL', groupIdx: 0, kvCacheSpecKind: 'full_attention' });
    expect(ev.tokenIds).toHaveLength(B);
  });

  it('serves a prompt evicted to CPU faster than recomputing it, and slower than a GPU hit', async () => {
    const gpuOnly = setup({ gpuBlocks: 8 });
    const withCpu = setup({ gpuBlocks: 8, offload: 'offloading-connector', cpuBlocks: 64 });
    for (const s of [gpuOnly, withCpu]) {
      await s.run(prompt(96, 1), 1);
      await s.run(prompt(96, 2), 1); // evicts most of prompt 1
      await s.run(prompt(96, 1), 1);
    }
    const recompute = gpuOnly.ttfts[2]!;
    const fromCpu = withCpu.ttfts[2]!;
    const gpuHit = gpuOnly.ttfts.length > 0 ? (await gpuOnly.run(prompt(96, 1), 1), gpuOnly.ttfts[3]!) : 0;
    expect(fromCpu).toBeLessThan(recompute);
    expect(fromCpu).toBeGreaterThan(gpuHit);
  });

  it('writes full chunks through to LMCache in-process as its connector announces them (next chunk\'s token, parent 0 past saved chunks)', async () => {
    const { run, stored } = setup({ offload: 'lmcache', cpuBlocks: 64, chunk: 64 });
    const p = prompt(150);
    await run(p, 1);
    const chunks = stored().filter((e) => e.medium === 'cpu');
    // Full chunks only; every chunk but the prompt's last carries one token of the next.
    expect(chunks.map((c) => [c.blockSize, c.tokenIds.length])).toEqual([
      [64, 65],
      [64, 65],
    ]);
    expect(chunks[0]!.parentBlockHash).toBeNull();
    expect(chunks[1]!.parentBlockHash).toBe(chunks[0]!.blockHashes[0]);
    expect(chunks.every((c) => c.groupIdx === null && c.extraKeys === null)).toBe(true);
    const gpu = stored().find((e) => e.medium === 'GPU')!;
    expect(Array.from(gpu.blockHashes)).not.toContain(chunks[0]!.blockHashes[0]);
    // A longer prompt sharing the first two chunks: its store skips them, and its first new chunk's parent is 0.
    await run([...p.slice(0, 128), ...prompt(100, 9)], 1);
    const next = stored().filter((e) => e.medium === 'cpu').slice(2);
    expect(next.map((c) => c.parentBlockHash)).toEqual([0n]);
  });

  it('announces LMCache MP chunks with real parents, "CPU" removals and a resync removal of every chunk', async () => {
    const { run, stored, events, engine } = setup({ offload: 'lmcache', cpuBlocks: 8, chunk: 64, lmcacheMode: 'mp' });
    await run(prompt(128, 1), 1);
    const first = stored().filter((e) => e.medium === 'CPU');
    expect(first.map((c) => c.tokenIds.length)).toEqual([64, 64]);
    await run(prompt(128, 2), 1);
    const removals = events().filter((e): e is BlockRemoved => e.type === 'BlockRemoved' && e.medium === 'CPU');
    expect(removals.map((r) => r.blockHashes[0])).toEqual([first[0]!.blockHashes[0], first[1]!.blockHashes[0]]);
    const held = stored().filter((e) => e.medium === 'CPU').slice(2);
    expect(held[1]!.parentBlockHash).toBe(held[0]!.blockHashes[0]);
    await engine.restartLmcacheServer();
    const resync = events().at(-1) as BlockRemoved;
    expect(Array.from(resync.blockHashes)).toEqual(held.map((c) => c.blockHashes[0]));
  });

  it('re-announces prefix-cache hits from block 0 in report mode "full"', async () => {
    const { run, stored } = setup({ reportMode: 'full' });
    const p = prompt(64, 3);
    await run(p, 1);
    await run(p, 1);
    const again = stored().filter((e) => e.parentBlockHash === null);
    expect(again).toHaveLength(2);
    expect(Array.from(again[1]!.blockHashes)).toEqual(Array.from(again[0]!.blockHashes).slice(0, 3));
  });

  it('clears the prefix cache on reset and says so with AllBlocksCleared', async () => {
    const { run, engine, events } = setup();
    const p = prompt(64);
    await run(p, 1);
    expect(await engine.resetPrefixCache()).toBe(true);
    expect(events().at(-1)).toEqual({ type: 'AllBlocksCleared' });
    expect((await run(p, 1)).cachedTokens).toBe(0);
  });

  it('refuses a reset while a request holds blocks, unless asked to preempt running requests, which then finish normally', async () => {
    const { engine, events } = setup({ gpuBlocks: 64 });
    let firstToken!: () => void;
    const generating = new Promise<void>((r) => (firstToken = r));
    const long = new Promise<GenerationResult>((resolve) =>
      engine.submit({ id: 'long', prompt: Uint32Array.from(prompt(64)), maxTokens: 200, loraName: null, loraId: null, cacheSalt: null, onFirstToken: () => firstToken(), onToken: () => undefined, onFinish: resolve }),
    );
    await generating;
    expect(await engine.resetPrefixCache()).toBe(false);
    expect(events().some((e) => e.type === 'AllBlocksCleared')).toBe(false);
    expect(await engine.resetPrefixCache({ resetRunning: true })).toBe(true);
    expect(events().some((e) => e.type === 'AllBlocksCleared')).toBe(true);
    const done = await long;
    expect(done).toMatchObject({ completionTokens: 200, finishReason: 'length', cachedTokens: 0 });
    expect(engine.stats.preemptions).toBe(1);
  });

  it('keeps the CPU tier through a reset unless the external cache is reset too, which fails without one', async () => {
    const offload = setup({ gpuBlocks: 8, offload: 'offloading-connector', cpuBlocks: 64 });
    const a = prompt(64, 1);
    await offload.run(a, 1);
    await offload.run(prompt(112, 2), 1); // needs all 8 GPU blocks: a moves to the CPU tier
    const cpuBefore = offload.engine.cachedPrefix(Uint32Array.from(a), null, null, null).cpuBlocks;
    expect(cpuBefore).toBe(4);
    expect(await offload.engine.resetPrefixCache()).toBe(true);
    expect(offload.engine.cachedPrefix(Uint32Array.from(a), null, null, null)).toMatchObject({ gpuBlocks: 0, cpuBlocks: cpuBefore });
    expect(await offload.engine.resetPrefixCache({ resetExternal: true })).toBe(true);
    expect(offload.engine.cachedPrefix(Uint32Array.from(a), null, null, null)).toMatchObject({ gpuBlocks: 0, cpuBlocks: 0 });
    const plain = setup();
    expect(await plain.engine.resetPrefixCache({ resetExternal: true })).toBe(false);
  });

  it('marks only the last token with its finish reason', async () => {
    const { run } = setup();
    const r = await run(prompt(20), 3);
    expect(r.finishReasons).toEqual([null, null, 'length']);
  });

  it('puts the LoRA name and the cache salt into events and hashes, as vLLM does', async () => {
    const { run, stored, hasher } = setup();
    const p = prompt(32);
    await run(p, 1, { loraName: 'sql-lora', cacheSalt: 'tenant-a' });
    const ev = stored()[0]!;
    expect(ev.loraName).toBe('sql-lora');
    expect(ev.extraKeys).toEqual([['sql-lora', 'tenant-a'], ['sql-lora']]);
    expect(Array.from(ev.blockHashes)).toEqual(Array.from(hasher.hashBlocks(p, { loraName: 'sql-lora', loraPath: '/adapters/sql-lora', cacheSalt: 'tenant-a' }).blockHashes));
  });

  it('reports exactly what it holds, per tier, for a prompt', async () => {
    const { run, engine } = setup({ gpuBlocks: 8, offload: 'offloading-connector', cpuBlocks: 64 });
    const a = prompt(64, 1);
    await run(a, 1);
    expect(engine.cachedPrefix(Uint32Array.from(a), null, null, null)).toMatchObject({ gpuBlocks: 4, cpuBlocks: 0, anyTierBlocks: 4 });
    await run(prompt(64, 2), 1);
    const after = engine.cachedPrefix(Uint32Array.from(a), null, null, null);
    expect(after.anyTierBlocks).toBe(4);
    expect(after.gpuBlocks).toBeLessThan(4);
  });

  it('refuses a request that could never fit in its KV cache instead of blocking the queue', () => {
    const { engine } = setup({ gpuBlocks: 8 });
    expect(() =>
      engine.submit({ id: 'big', prompt: new Uint32Array(200), maxTokens: 1, loraName: null, loraId: null, cacheSalt: null, onFirstToken: () => undefined, onToken: () => undefined, onFinish: () => undefined }),
    ).toThrow(/needs 201 tokens/);
  });

  it('keeps going when more requests arrive than it can batch', async () => {
    const { run } = setup({ maxNumSeqs: 2, gpuBlocks: 32 });
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => run(prompt(48, i + 10), 3)));
    expect(results.every((r) => r.completionTokens === 3 && r.finishReason === 'length')).toBe(true);
  });
});
