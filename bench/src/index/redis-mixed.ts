import { RedisIndex } from '@kvix/kv-index-redis';
import { startRedis } from '@kvix/test-support';
import { Redis } from 'ioredis';
import { printTable, writeResult } from '../harness.js';

/**
 * What sharing Redis with a Go llm-d EPP costs kvix (issue 18): clear(pod) with the foreign-entry
 * walk (a bounded SCAN of the whole keyspace, as llm-d's own Clear) against the proportional clear
 * of kvix's per-pod index alone (the baseline), on the same database; and one full reconciliation
 * pass of the pods' counters (one HEXISTS per entry). 32 pods, each clear removing one pod's entries.
 */
export async function runRedisMixedBenchmark(options: { quick?: boolean } = {}): Promise<void> {
  const keys = options.quick ? 25_000 : 100_000;
  const pods = 32;
  console.log(`\nredis-mixed: ${keys} request keys, 2 of ${pods} pods per key, a private redis-server`);
  const redis = await startRedis();
  const raw = new Redis({ host: '127.0.0.1', port: redis.port });
  try {
    const rows: (string | number)[][] = [];
    const result: Record<string, number> = {};
    for (const shared of [false, true]) {
      await raw.flushall();
      const idx = new RedisIndex({ url: redis.url, sweepIntervalMs: 0, reconcileIntervalMs: 0, sharedWithForeignWriters: shared });
      await idx.ready();
      const batch = 1000;
      for (let k = 0; k < keys; k += batch) {
        const requestKeys = BigUint64Array.from({ length: batch }, (_, i) => BigInt(k + i + 1));
        const p = (k / batch) % pods;
        await idx.add(null, requestKeys, [{ pod: `pod-${p}`, tier: 'gpu', speculative: false }, { pod: `pod-${(p + 1) % pods}`, tier: 'gpu', speculative: false }]);
      }
      const t0 = process.hrtime.bigint();
      const removed = await idx.clear('pod-0');
      const clearMs = Number(process.hrtime.bigint() - t0) / 1e6;
      const t1 = process.hrtime.bigint();
      await idx.reconcile();
      const reconcileMs = Number(process.hrtime.bigint() - t1) / 1e6;
      const entries = (await idx.stats()).entries;
      rows.push([shared ? 'shared (SCAN for foreign entries)' : 'kvix-only (baseline)', removed, clearMs.toFixed(1), entries, reconcileMs.toFixed(1), ((reconcileMs * 1000) / entries).toFixed(2)]);
      result[shared ? 'sharedClearMs' : 'ownClearMs'] = clearMs;
      result[shared ? 'sharedReconcileUsPerEntry' : 'ownReconcileUsPerEntry'] = (reconcileMs * 1000) / entries;
      await idx.close();
    }
    printTable('clear(pod) and a full reconciliation', ['mode', 'entries cleared', 'clear ms', 'entries left', 'reconcile ms', 'µs/entry'], rows);
    console.log(`clear with the foreign walk / proportional clear: ${(result['sharedClearMs']! / result['ownClearMs']!).toFixed(1)}×`);
    writeResult('redis-mixed', { keys, pods, ...result });
  } finally {
    raw.disconnect();
    await redis.dispose();
  }
}
