import { runIndexConformance } from '@kvix/kv-index/conformance';
import { ceiling, startRedis, type PrivateServer } from '@kvix/test-support';
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

/**
 * Expiry runs on the server's clock, so time really passes; the suite's times are stretched by
 * this factor (TTLs and waits alike) so a stall of a loaded CI machine between two calls does not
 * outlast a TTL the suite expects to be running.
 */
const STRETCH = 2;

// One server for the file; each index gets a key prefix of its own, so tests share nothing.
runIndexConformance('redis', {
  // The server's maxmemory policy bounds a shared Redis, not the index (see the README).
  enforcesCapacity: false,
  async create({ speculativeTtlMs }) {
    const index = new RedisIndex({ url: redis.url, keyPrefix: `conformance${++n}:`, speculativeTtlMs: speculativeTtlMs * STRETCH, sweepIntervalMs: 50, commandTimeoutMs: ceiling(5_000) });
    await index.ready();
    return {
      index,
      advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms * STRETCH)),
    };
  },
});
