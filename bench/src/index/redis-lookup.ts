import { InMemoryIndex, scoreLookup, type KvBlockIndex, type PodEntry } from '@kvix/kv-index';
import { decodeField, RedisIndex } from '@kvix/kv-index-redis';
import { startRedis } from '@kvix/test-support';
import { Redis } from 'ioredis';
import { printTable, si, writeResult } from '../harness.js';
import { quantile } from '../routing/stats.js';
import { BLOCKS_PER_PROMPT, familyKeys, holdingsOf, podName, Rng } from './workload.js';

export interface RedisIndexBenchmarkOptions {
  /** A quarter of the keys and lookups. */
  quick?: boolean;
}

interface Side {
  name: string;
  lookupP50Us: number;
  lookupP99Us: number;
  /** Entries (key, pod) admitted per second while loading. */
  addEntriesPerSec: number;
}

const PODS = 32;
/** Lanes applying events at once (the ingestor's default workers). */
const ADD_CONCURRENCY = 4;

/**
 * The Redis backend against the in-memory index, same workload, same run: prompts of 128 request
 * keys over 32 pods (each prefix family held by 1–8 pods to various depths), loaded through `add`
 * (engine keys included, as ingestion does), then lookups of whole prompts with the 32 pods as
 * candidates. A third row is llm-d's Go lookup strategy replayed over the same keys (one pipelined
 * HKEYS per key, every field decoded client-side) to show what the server-side walk saves.
 */
export async function runRedisIndexBenchmark(options: RedisIndexBenchmarkOptions = {}): Promise<void> {
  const families = options.quick ? 250 : 1000;
  const lookups = options.quick ? 500 : 2000;
  console.log(`\nredis-index: ${families} prompt families × ${BLOCKS_PER_PROMPT} keys over ${PODS} pods; a private redis-server …`);
  const redis = await startRedis();
  const raw = new Redis({ host: '127.0.0.1', port: redis.port });
  try {
    const memory = new InMemoryIndex({ sweepIntervalMs: 0 });
    const remote = new RedisIndex({ url: redis.url, sweepIntervalMs: 0 });
    await remote.ready();
    const memoryBefore = usedMemory(String(await raw.info('memory')));

    const memoryAdd = await load(memory, families, 1);
    const redisAddSerial = await load(remote, Math.min(families, 50), 1, 100_000);
    const redisAdd = await load(remote, families, ADD_CONCURRENCY);
    const stats = await remote.stats();
    const bytesPerEntry = (usedMemory(String(await raw.info('memory'))) - memoryBefore) / stats.entries;
    // kvix's per-pod indexes (what clear(pod) and confirmations read): the rest is llm-d's schema.
    let podIndexBytes = 0;
    for (let p = 0; p < PODS; p++) podIndexBytes += Number((await raw.call('MEMORY', 'USAGE', `kvix:pod:${podName(p)}`, 'SAMPLES', '0')) ?? 0);
    const bookkeepingPerEntry = podIndexBytes / stats.entries;

    const prompts = Array.from({ length: lookups }, (_, i) => familyKeys(new Rng(i * 7919 + 1).below(families), 1));
    const candidates = Array.from({ length: PODS }, (_, p) => podName(p));
    const matched = { memory: 0, redis: 0 };
    const memoryLat = await timeLookups(prompts, async (keys) => (matched.memory += bestRun(await memory.lookup(keys, { pods: candidates }))));
    const redisLat = await timeLookups(prompts, async (keys) => (matched.redis += bestRun(await remote.lookup(keys, { pods: candidates }))));
    const llmdLat = await timeLookups(prompts, (keys) => llmdStyleLookup(raw, keys, new Set(candidates)));
    if (matched.memory !== matched.redis) throw new Error(`the backends disagree: ${matched.memory} vs ${matched.redis} matched blocks`);

    const sides: Side[] = [
      { name: 'in-memory', lookupP50Us: quantile(memoryLat, 0.5), lookupP99Us: quantile(memoryLat, 0.99), addEntriesPerSec: memoryAdd },
      { name: 'redis (one Lua call)', lookupP50Us: quantile(redisLat, 0.5), lookupP99Us: quantile(redisLat, 0.99), addEntriesPerSec: redisAdd },
      { name: 'llm-d style (pipelined HKEYS)', lookupP50Us: quantile(llmdLat, 0.5), lookupP99Us: quantile(llmdLat, 0.99), addEntriesPerSec: Number.NaN },
    ];
    const base = sides[0]!;
    printTable(
      `redis-index: lookup of a ${BLOCKS_PER_PROMPT}-key prompt (32 candidate pods), ${stats.entries} entries on ${stats.keys} keys`,
      ['backend', 'lookup p50 µs', 'lookup p99 µs', 'p99 × in-memory', 'add entries/s'],
      sides.map((s) => [s.name, s.lookupP50Us.toFixed(1), s.lookupP99Us.toFixed(1), (s.lookupP99Us / base.lookupP99Us).toFixed(1), Number.isNaN(s.addEntriesPerSec) ? '-' : si(s.addEntriesPerSec)]),
    );
    console.log(`redis add, one call at a time: ${si(redisAddSerial)} entries/s; with ${ADD_CONCURRENCY} lanes: ${si(redisAdd)} entries/s`);
    console.log(`redis memory: ${bytesPerEntry.toFixed(0)} bytes per entry (used_memory growth / entries), of which kvix's per-pod index ${bookkeepingPerEntry.toFixed(0)}`);
    writeResult('redis-index', {
      families,
      lookups,
      pods: PODS,
      entries: stats.entries,
      keys: stats.keys,
      engineMappings: stats.engineMappings,
      redisBytesPerEntry: bytesPerEntry,
      redisBookkeepingBytesPerEntry: bookkeepingPerEntry,
      redisAddSerialEntriesPerSec: redisAddSerial,
      redisLookupP99VsMemory: sides[1]!.lookupP99Us / base.lookupP99Us,
      redisLookupP50VsMemory: sides[1]!.lookupP50Us / base.lookupP50Us,
      llmdStyleLookupP99VsRedis: sides[2]!.lookupP99Us / sides[1]!.lookupP99Us,
      sides,
    });
    await remote.close();
    await memory.close();
  } finally {
    raw.disconnect();
    await redis.dispose();
  }
}

/**
 * Adds every family's holdings (engine keys too) with `concurrency` adds in flight; returns
 * entries admitted per second. `limit` caps the entries (a serial pass over a sample).
 */
async function load(index: KvBlockIndex, families: number, concurrency: number, limit = Number.POSITIVE_INFINITY): Promise<number> {
  const work: { engine: BigUint64Array; keys: BigUint64Array; entry: PodEntry }[] = [];
  for (let f = 0; f < families; f++) {
    const keys = familyKeys(f, 1);
    const engine = familyKeys(f, 2);
    for (const h of holdingsOf(f, PODS)) work.push({ engine: engine.subarray(0, h.depth), keys: keys.subarray(0, h.depth), entry: { pod: podName(h.pod), tier: 'gpu', speculative: false } });
  }
  let entries = 0;
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < work.length && entries < limit) {
        const w = work[next++]!;
        await index.add(w.engine, w.keys, [w.entry]);
        entries += w.keys.length;
      }
    }),
  );
  return entries / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** Per-lookup latencies in µs, after a warm-up of a tenth of them. */
async function timeLookups(prompts: BigUint64Array[], lookup: (keys: BigUint64Array) => Promise<unknown>): Promise<number[]> {
  for (const keys of prompts.slice(0, Math.ceil(prompts.length / 10))) await lookup(keys);
  const out: number[] = [];
  for (const keys of prompts) {
    const start = process.hrtime.bigint();
    await lookup(keys);
    out.push(Number(process.hrtime.bigint() - start) / 1e3);
  }
  return out;
}

function bestRun(result: Parameters<typeof scoreLookup>[0]): number {
  return scoreLookup(result, BLOCKS_PER_PROMPT)[0]?.matchedBlocks ?? 0;
}

/** llm-d's RedisIndex.Lookup: HKEYS of every key in one pipeline, fields decoded and filtered client-side, cut at the first empty key. */
async function llmdStyleLookup(raw: Redis, keys: BigUint64Array, candidates: Set<string>): Promise<number> {
  const pipeline = raw.pipeline();
  for (const k of keys) pipeline.hkeys(k.toString());
  const replies = (await pipeline.exec()) ?? [];
  let found = 0;
  for (const [err, fields] of replies) {
    if (err) break;
    const pods = (fields as string[]).map(decodeField).filter((d) => d !== null && candidates.has(d.pod));
    if (pods.length === 0) break;
    found++;
  }
  return found;
}

function usedMemory(info: string): number {
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
}
