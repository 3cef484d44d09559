import { describe, expect, it } from 'vitest';
import { SpaceSaving } from '../src/index.js';

describe('Space-Saving heavy hitters', () => {
  it('keeps every item more frequent than N/capacity, with counts that bracket the truth', () => {
    const sketch = new SpaceSaving<null>(50);
    const truth = new Map<bigint, number>();
    let seed = 7;
    const rand = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    for (let i = 0; i < 20_000; i++) {
      // 10 heavy keys take ~60% of the stream; the rest is a long tail of 5,000 keys.
      const key = rand() < 0.6 ? BigInt(Math.floor(rand() * 10)) : 1000n + BigInt(Math.floor(rand() * 5000));
      truth.set(key, (truth.get(key) ?? 0) + 1);
      sketch.add(key, () => null);
    }
    expect(sketch.observed).toBe(20_000);
    expect(sketch.size).toBe(50);
    for (const [key, count] of truth) {
      if (count <= 20_000 / 50) continue;
      const held = sketch.get(key);
      expect(held, `key ${key} (${count} times) must be held`).toBeDefined();
      expect(held!.count).toBeGreaterThanOrEqual(count);
      expect(held!.count - held!.error).toBeLessThanOrEqual(count);
    }
    const top = sketch.top().slice(0, 10).map((h) => h.key).sort((a, b) => Number(a - b));
    expect(top).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i)));
  });
});
