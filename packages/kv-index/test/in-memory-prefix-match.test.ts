import { describe, expect, it } from 'vitest';
import { InMemoryIndex } from '../src/index.js';
import { modelCheckPlan, runModelCheck, type ModelCheckHarness } from '../src/testing/model-check.js';
import { PrefixCheckingIndex, runPrefixMatchConformance } from '../src/testing/prefix-conformance.js';
import { modelCheckedIndex } from './memory-harness.js';

runPrefixMatchConformance('in-memory', {
  async create({ speculativeTtlMs }) {
    return { index: new InMemoryIndex({ speculativeTtlMs, sweepIntervalMs: 0 }), advance: async () => undefined };
  },
});

const checked: PrefixCheckingIndex[] = [];
const memory: ModelCheckHarness = {
  clock: 'runner',
  enforcesCapacity: true,
  async create(options) {
    const inner = modelCheckedIndex(options);
    const index = new PrefixCheckingIndex(inner);
    checked.push(index);
    // The replica check loads snapshots into the index it gets: hand it the backend's own calls.
    return { index: Object.assign(index, { exportSnapshot: () => inner.exportSnapshot(), importSnapshot: (s: Parameters<InMemoryIndex['importSnapshot']>[0]) => inner.importSnapshot(s) }), advance: async () => undefined };
  },
};

// KVIX_MODEL_SEEDS / KVIX_MODEL_OPS / KVIX_MODEL_SEED as for the model check itself.
const plan = modelCheckPlan({ seeds: 3, ops: 3000, firstSeed: 101 });

describe('in-memory prefix match against lookup + scoring, under the model check\'s random operations', () => {
  it.each(plan.seeds)(`agrees on every lookup the model check makes (${plan.ops} operations, seed %i)`, async (seed) => {
    checked.length = 0;
    await runModelCheck(memory, { seed, ops: plan.ops });
    expect(checked.reduce((n, c) => n + c.checked, 0)).toBeGreaterThan(plan.ops / 20);
  });

  it.each(plan.seeds)(`agrees past its capacity, as least-recently-used keys go (${plan.ops} operations, seed %i)`, async (seed) => {
    checked.length = 0;
    await runModelCheck(memory, { seed: seed + 1000, ops: plan.ops, maxEntries: 150 + (seed % 5) * 50 });
    expect(checked.reduce((n, c) => n + c.checked, 0)).toBeGreaterThan(plan.ops / 20);
  });
});
