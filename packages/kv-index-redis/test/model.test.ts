import { modelCheckPlan, runModelCheck, type ModelCheckHarness } from '@kvix/kv-index/model-check';
import { ceiling, startRedis, type PrivateServer } from '@kvix/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisIndex } from '../src/index.js';

let redis: PrivateServer;
let n = 0;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.dispose();
});

// Expiry is on the server's clock: the model check waits short-lived speculation out for real,
// then sweeps, so what expired is settled before the next comparison.
const harness: ModelCheckHarness = {
  clock: 'server',
  enforcesCapacity: false,
  async create({ speculativeTtlMs, observer }) {
    const index = new RedisIndex({ url: redis.url, keyPrefix: `model${++n}:`, speculativeTtlMs, sweepIntervalMs: 50, observer, commandTimeoutMs: ceiling(5_000) });
    await index.ready();
    return {
      index,
      async advance(ms) {
        await new Promise((resolve) => setTimeout(resolve, ms));
        await index.sweepNow();
      },
    };
  },
};

// KVIX_MODEL_SEEDS / KVIX_MODEL_OPS / KVIX_MODEL_SEED as for the in-memory model check.
const plan = modelCheckPlan({ seeds: 1, ops: 1500, firstSeed: 7 });

describe('redis index against the reference model, under random operations', () => {
  // CPU-bound and waiting speculation out for real: minutes on a loaded 2-core machine.
  it.each(plan.seeds)(`answers every operation as the model (and the in-memory index) does (${plan.ops} operations, seed %i)`, { timeout: ceiling(120_000) }, async (seed) => {
    const report = await runModelCheck(harness, { seed, ops: plan.ops, expiryRounds: 2 });
    expect(report.confirmed).toBeGreaterThan(0);
    expect(report.expired).toBeGreaterThan(0);
  });
});
