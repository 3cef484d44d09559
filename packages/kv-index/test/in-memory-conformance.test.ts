import { InMemoryIndex } from '../src/index.js';
import { runIndexConformance } from '../src/testing/conformance.js';

runIndexConformance('in-memory', {
  enforcesCapacity: true,
  async create({ speculativeTtlMs, maxEntries }) {
    let now = 1_000_000;
    const index = new InMemoryIndex({ speculativeTtlMs, ...(maxEntries ? { maxEntries } : {}), now: () => now, sweepIntervalMs: 0 });
    return {
      index,
      async advance(ms) {
        now += ms;
      },
    };
  },
});
