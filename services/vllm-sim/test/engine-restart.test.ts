import { EngineHasher } from '@kvix/block-keys';
import type { KvEvent } from '@kvix/kv-events';
import { describe, expect, it } from 'vitest';
import { CpuTier, DEFAULT_LATENCY, Engine } from '../src/index.js';

const B = 16;
const prompt = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 100 + ((i * 7919 + seed * 104729) % 50_000));

describe('simulated engine restart', () => {
  it('publishes nothing of a step that was under way when the engine restarted', async () => {
    const batches: KvEvent[][] = [];
    const engine = new Engine(
      {
        blockSize: B,
        numGpuBlocks: 40,
        maxNumSeqs: 4,
        maxNumBatchedTokens: 8192,
        hasher: new EngineHasher({ algorithm: 'sha256', pythonHashSeed: '0', blockSize: B }),
        cpu: new CpuTier('offloading-connector', 80, B, 64),
        latency: DEFAULT_LATENCY,
        // Real time: a 512-token prefill step takes ~30 ms, long enough to restart in the middle of it.
        timeScale: 1,
        outputVocab: { from: 1000, to: 2000 },
      },
      (events) => batches.push(events),
    );
    const run = (tokens: number[]): Promise<void> =>
      new Promise((resolve) =>
        engine.submit({ id: `r${tokens[0]}`, prompt: Uint32Array.from(tokens), maxTokens: 1, loraName: null, loraId: null, cacheSalt: null, onFirstToken: () => undefined, onToken: () => undefined, onFinish: () => resolve() }),
      );
    await run(prompt(512, 1));
    // The next prompt's admission evicts the first one's blocks (offloading them to CPU) in its step.
    const aborted = run(prompt(512, 2));
    while (engine.pool.free === 40) await new Promise((r) => setImmediate(r));
    engine.forgetEverything();
    await aborted;
    const before = batches.length;
    // The restarted engine serves a new request; whatever the old step would have announced is gone with it.
    await run(prompt(64, 3));
    const after = batches.slice(before).flat();
    expect(after.filter((e) => e.type !== 'BlockStored' || e.medium !== 'GPU')).toEqual([]);
    expect(after).toHaveLength(1);
    engine.stop();
  });
});
