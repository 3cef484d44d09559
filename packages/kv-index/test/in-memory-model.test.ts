import { describe, expect, it } from 'vitest';
import { modelCheckPlan, runModelCheck, type ModelCheckHarness } from '../src/testing/model-check.js';
import { modelCheckedIndex } from './memory-harness.js';

const memory: ModelCheckHarness = {
  clock: 'runner',
  enforcesCapacity: true,
  async create(options) {
    const index = modelCheckedIndex(options);
    return { index, advance: async () => undefined };
  },
};

// KVIX_MODEL_SEEDS=200 KVIX_MODEL_OPS=20000 for a long run; KVIX_MODEL_SEED=<n> to replay one seed.
const plan = modelCheckPlan({ seeds: 3, ops: 3000 });
const capacityPlan = modelCheckPlan({ seeds: 1, ops: 3000, firstSeed: 1001 });

describe('in-memory index against the reference model, under random operations', () => {
  it.each(plan.seeds)(`answers every operation as the model does (${plan.ops} operations, seed %i)`, async (seed) => {
    const report = await runModelCheck(memory, { seed, ops: plan.ops });
    // The run reached the states worth checking: confirmations, expiries, evictions by engine key.
    expect(report.confirmed).toBeGreaterThan(0);
    expect(report.expired).toBeGreaterThan(0);
    expect(report.kinds['evict-engine']).toBeGreaterThan(0);
  });

  it.each(capacityPlan.seeds)(`past its capacity in entries keeps exactly the most recently used keys (${capacityPlan.ops} operations, seed %i)`, async (seed) => {
    const report = await runModelCheck(memory, { seed, ops: capacityPlan.ops, maxEntries: 150 + (seed % 5) * 50 });
    expect(report.capacityEvictions).toBeGreaterThan(0);
  });

  it.each(capacityPlan.seeds)(`past its capacity in bytes keeps the most recently used keys and the engine keys of held blocks (${capacityPlan.ops} operations, seed %i)`, async (seed) => {
    const report = await runModelCheck(memory, { seed: seed + 1000, ops: capacityPlan.ops, maxBytes: 30_000 });
    expect(report.capacityEvictions).toBeGreaterThan(0);
    expect(report.forgottenMappings).toBeGreaterThan(0);
  });

  it.each(capacityPlan.seeds)(`past its engine-mapping bound forgets mappings but never answers a wrong one (${capacityPlan.ops} operations, seed %i)`, async (seed) => {
    const report = await runModelCheck(memory, { seed: seed + 2000, ops: capacityPlan.ops, maxEngineMappings: 100 });
    expect(report.forgottenMappings).toBeGreaterThan(0);
  });
});
