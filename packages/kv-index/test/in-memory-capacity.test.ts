import { describe, expect, it } from 'vitest';
import { InMemoryIndex, type PodEntry } from '../src/index.js';

const gpu = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false });
const keys = (from: number, count: number): BigUint64Array => BigUint64Array.from({ length: count }, (_, i) => BigInt(from + i));

describe('in-memory index capacity', () => {
  it('keeps indexing under a byte limit however many evicted keys left engine mappings behind', async () => {
    const index = new InMemoryIndex({ maxBytes: 200_000, sweepIntervalMs: 0 });
    // Every add maps fresh engine keys; past the limit, evicted keys leave their mappings behind.
    for (let i = 0; i < 2000; i++) await index.add(keys(1e9 + i * 16, 16), keys(2e9 + i * 16, 16), [gpu('a:1')]);
    const stats = await index.stats();
    expect(stats.bytesInUse).toBeLessThanOrEqual(200_000);
    // The newest blocks are held: the byte budget goes to entries, not to mappings of nothing.
    expect(stats.entries).toBeGreaterThan(1000);
    expect((await index.lookup(keys(2e9 + 1999 * 16, 16))).keyCount).toBe(16);
    expect(await index.requestKeyFor(BigInt(1e9 + 1999 * 16))).toBe(BigInt(2e9 + 1999 * 16));
  });

  it('past its mapping limit, forgets the engine keys of blocks no longer held before those of held ones', async () => {
    const index = new InMemoryIndex({ maxEngineMappings: 64, sweepIntervalMs: 0 });
    await index.add(keys(100, 32), keys(1000, 32), [gpu('held:1')]);
    await index.add(keys(200, 32), keys(2000, 32), [gpu('gone:1')]);
    await index.clear('gone:1');
    // Every mapping was just used: a plain CLOCK sweep would take held and cleared ones alike.
    await index.add(keys(300, 16), keys(3000, 16), [gpu('new:1')]);
    for (let i = 0; i < 32; i++) expect(await index.requestKeyFor(BigInt(100 + i))).toBe(BigInt(1000 + i));
    for (let i = 0; i < 16; i++) expect(await index.requestKeyFor(BigInt(300 + i))).toBe(BigInt(3000 + i));
    expect((await index.stats()).engineMappings).toBeLessThanOrEqual(64);
  });
});
