import { runPrefixMatchConformance } from '@kvix/kv-index/prefix-conformance';
import { startRedis, type PrivateServer } from '@kvix/test-support';
import { afterAll, beforeAll } from 'vitest';
import { RedisIndex } from '../src/index.js';

let redis: PrivateServer;
let n = 0;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.dispose();
});

runPrefixMatchConformance('redis', {
  async create({ speculativeTtlMs }) {
    const index = new RedisIndex({ url: redis.url, keyPrefix: `prefix${++n}:`, speculativeTtlMs, sweepIntervalMs: 50 });
    await index.ready();
    return { index, advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms)) };
  },
});
