import { entriesAt, scoreLookup, type PodEntry } from '@kvix/kv-index';
import { ceiling, startRedis, waitFor, type PrivateServer } from '@kvix/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeField, fieldOf, goJsonString, RedisIndex } from '../src/index.js';

let redis: PrivateServer;
let raw: Redis;
const open: RedisIndex[] = [];
const DB = 3;

beforeAll(async () => {
  redis = await startRedis();
  raw = new Redis({ port: redis.port, host: '127.0.0.1', db: DB });
});
afterAll(async () => {
  raw?.disconnect();
  await redis?.dispose();
});
beforeEach(async () => {
  await raw.flushdb();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((i) => i.close()));
});

/** An index with llm-d's schema: no key prefix. */
async function index(options: { speculativeTtlMs?: number } = {}): Promise<RedisIndex> {
  const i = new RedisIndex({ url: `${redis.url}/${DB}`, sweepIntervalMs: 0, commandTimeoutMs: ceiling(5_000), ...options });
  open.push(i);
  await i.ready();
  return i;
}

const gpu = (pod: string, group?: number): PodEntry => (group === undefined ? { pod, tier: 'gpu', speculative: false } : { pod, tier: 'gpu', speculative: false, group });
const R = (...v: bigint[]): BigUint64Array => BigUint64Array.from(v);

/** What Go's json.Marshal(kvblock.PodEntry{…}) writes. */
const goField = (pod: string, tier: string, speculative: boolean, group?: number): string =>
  `{"PodIdentifier":"${pod}","DeviceTier":"${tier}","Speculative":${speculative},"HasGroup":${group !== undefined},"GroupIdx":${group ?? 0}}`;

describe('llm-d key schema', () => {
  it('stores a request key as a HASH named by its decimal value, one Go-marshalled PodEntry field per entry', async () => {
    const idx = await index();
    await idx.add(null, R(7n, 0xffffffffffffffffn, 0n), [gpu('10.0.0.1:8000'), { pod: '10.0.0.2:8000', tier: 'cpu', speculative: false, group: 3 }]);
    expect(await raw.type('18446744073709551615')).toBe('hash');
    expect(await raw.hgetall('18446744073709551615')).toEqual({
      '{"PodIdentifier":"10.0.0.1:8000","DeviceTier":"gpu","Speculative":false,"HasGroup":false,"GroupIdx":0}': '',
      '{"PodIdentifier":"10.0.0.2:8000","DeviceTier":"cpu","Speculative":false,"HasGroup":true,"GroupIdx":3}': '',
    });
    expect(Object.keys(await raw.hgetall('0'))).toHaveLength(2);
    expect(Object.keys(await raw.hgetall('7'))).toHaveLength(2);
  });

  it('stores a speculative entry with Speculative true, in the same hash', async () => {
    const idx = await index();
    await idx.add(null, R(42n), [{ pod: '10.0.0.1:8000', tier: 'gpu', speculative: true }]);
    expect(await raw.hkeys('42')).toEqual([goField('10.0.0.1:8000', 'gpu', true)]);
  });

  it('maps an engine key to a ZSET engine:<decimal> of request keys scored by position', async () => {
    const idx = await index();
    // 1:1, then 1:many (one engine block over four request blocks), then many:1.
    await idx.add(R(100n, 101n), R(1n, 2n), [gpu('a:1')]);
    await idx.add(R(200n), R(11n, 12n, 13n, 14n), [gpu('a:1')]);
    await idx.add(R(300n, 301n, 302n, 303n), R(21n), [gpu('a:1')]);
    expect(await raw.type('engine:100')).toBe('zset');
    expect(await raw.zrange('engine:100', 0, -1, 'WITHSCORES')).toEqual(['1', '0']);
    expect(await raw.zrange('engine:101', 0, -1, 'WITHSCORES')).toEqual(['2', '0']);
    expect(await raw.zrange('engine:200', 0, -1, 'WITHSCORES')).toEqual(['11', '0', '12', '1', '13', '2', '14', '3']);
    for (const e of ['300', '301', '302', '303']) expect(await raw.zrange(`engine:${e}`, 0, -1, 'WITHSCORES')).toEqual(['21', '0']);
    // llm-d's GetRequestKey: the highest score.
    expect(await raw.zrevrange('engine:200', 0, 0)).toEqual(['14']);
    expect(await idx.requestKeyFor(200n)).toBe(14n);
  });

  it('escapes a pod identity the way Go does (<, >, & and U+2028 as \\u escapes)', () => {
    expect(goJsonString('a<b>&c\u2028"\\\n')).toBe('"a\\u003cb\\u003e\\u0026c\\u2028\\"\\\\\\n"');
    expect(goJsonString('\\ud800')).toBe('"\\\\ud800"');
    expect(goJsonString('x\ud800y')).toBe('"x\\ufffdy"');
    expect(fieldOf({ pod: 'p<1>', tier: 'gpu', speculative: false })).toBe('{"PodIdentifier":"p\\u003c1\\u003e","DeviceTier":"gpu","Speculative":false,"HasGroup":false,"GroupIdx":0}');
    expect(decodeField(fieldOf({ pod: 'p<1>&', tier: 'disk', speculative: true, group: 2 }))).toEqual({ pod: 'p<1>&', tier: 'disk', speculative: true, group: 2 });
  });

  it('reads what a Go llm-d EPP wrote: its entries score, its speculative entries (empty tier) count as gpu, foreign fields are skipped', async () => {
    const idx = await index();
    // A Go EPP's Add: HSET per key and entry, ZADD for the engine map.
    await raw.hset('1001', goField('10.0.0.9:8000', 'gpu', false), '');
    await raw.hset('1002', goField('10.0.0.9:8000', 'gpu', false), '', 'not json', '', '{"Other":1}', '');
    await raw.hset('1001', goField('10.0.0.8:8000', '', true), '');
    await raw.zadd('engine:9001', 0, '1002');
    const res = await idx.lookup(R(1001n, 1002n));
    expect(entriesAt(res, 0)).toEqual(expect.arrayContaining([
      { pod: '10.0.0.9:8000', tier: 'gpu', speculative: false },
      { pod: '10.0.0.8:8000', tier: 'gpu', speculative: true },
    ]));
    expect(entriesAt(res, 1)).toEqual([{ pod: '10.0.0.9:8000', tier: 'gpu', speculative: false }]);
    expect(scoreLookup(res, 2)[0]).toMatchObject({ pod: '10.0.0.9:8000', matchedBlocks: 2 });
    expect(await idx.requestKeyFor(9001n)).toBe(1002n);
    // kvix evicts a Go-written entry by its identity like its own.
    await idx.evict(9001n, 'engine', [gpu('10.0.0.9:8000')]);
    expect((await raw.hkeys('1002')).sort()).toEqual(['not json', '{"Other":1}'].sort());
  });

  it('lets llm-d\'s Clear (SCAN every key, HKEYS all but engine:, HDEL the pod\'s fields) run over kvix\'s bookkeeping', async () => {
    const idx = await index();
    await idx.add(R(1n, 2n), R(11n, 12n), [gpu('a:1'), gpu('b:1')]);
    await idx.add(null, R(11n, 12n, 13n), [{ pod: 'a:1', tier: 'gpu', speculative: true }]);
    // llm-d's algorithm, step for step: every key outside engine: must answer HKEYS.
    let cursor = '0';
    do {
      const [next, keys] = await raw.scan(cursor, 'COUNT', 100);
      for (const key of keys) {
        if (key.startsWith('engine:')) continue;
        const fields = await raw.hkeys(key); // WRONGTYPE here would fail llm-d's Clear
        const stale = fields.filter((f) => decodeGoPodEntry(f)?.PodIdentifier === 'a:1');
        if (stale.length > 0) await raw.hdel(key, ...stale);
      }
      cursor = next;
    } while (cursor !== '0');
    const res = await idx.lookup(R(11n, 12n, 13n), { earlyStop: false });
    expect([0, 1, 2].map((i) => entriesAt(res, i).map((e) => e.pod))).toEqual([['b:1'], ['b:1'], []]);
    // kvix's own clear stays correct after a foreign writer removed its entries.
    expect(await idx.clear('b:1')).toBe(2);
    expect(await raw.exists('11', '12')).toBe(0);
  });

  it('keeps every kvix-only key under kvix:, as a HASH', async () => {
    const idx = await index({ speculativeTtlMs: 60_000 });
    await idx.add(R(5n), R(50n), [gpu('a:1')]);
    await idx.add(null, R(50n, 51n), [{ pod: 'b:1', tier: 'gpu', speculative: true }]);
    const keys = (await raw.keys('*')).sort();
    expect(keys.filter((k) => !k.startsWith('kvix:'))).toEqual(['50', '51', 'engine:5']);
    for (const k of keys.filter((k) => k.startsWith('kvix:'))) expect(await raw.type(k)).toBe('hash');
    expect(keys).toEqual(expect.arrayContaining(['kvix:pod:a:1', 'kvix:pod:b:1', 'kvix:stats']));
  });
});

/** What llm-d-router's RedisIndex does, command for command (pkg/kvcache/kvblock/redis.go). */
const llmd = {
  async add(engineKeys: bigint[], requestKeys: bigint[], entries: { pod: string; tier: string; speculative: boolean }[]): Promise<void> {
    engineKeys.forEach((ek, i) => void raw.zadd(`engine:${ek}`, 0, String(requestKeys[i])));
    for (const rk of requestKeys) for (const e of entries) await raw.hset(String(rk), goField(e.pod, e.tier, e.speculative), '');
  },
  async evictEngine(engineKey: bigint, entries: { pod: string; tier: string; speculative: boolean }[]): Promise<void> {
    const rks = await raw.zrange(`engine:${engineKey}`, 0, -1);
    for (const rk of rks) {
      await raw.hdel(rk, ...entries.map((e) => goField(e.pod, e.tier, e.speculative)));
    }
    if ((await Promise.all(rks.map((rk) => raw.hlen(rk)))).every((n) => n === 0)) await raw.del(`engine:${engineKey}`);
  },
  async clear(pod: string): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await raw.scan(cursor, 'COUNT', 1024);
      for (const key of keys) {
        if (key.startsWith('engine:')) continue;
        const stale = (await raw.hkeys(key)).filter((f) => decodeGoPodEntry(f)?.PodIdentifier === pod);
        if (stale.length > 0) await raw.hdel(key, ...stale);
      }
      cursor = next;
    } while (cursor !== '0');
  },
};

describe('a mixed fleet: kvix and a Go llm-d EPP on one Redis', () => {
  it("clears what the llm-d EPP wrote for a pod when kvix handles the pod's reset, and nothing of other pods", async () => {
    const idx = await index();
    await idx.add(R(1n, 2n), R(11n, 12n), [gpu('a:1')]);
    await llmd.add([3n, 4n], [13n, 14n], [{ pod: 'a:1', tier: 'gpu', speculative: false }, { pod: 'b:1', tier: 'gpu', speculative: false }]);
    await llmd.add([5n], [11n], [{ pod: 'a:1', tier: 'cpu', speculative: false }]);
    expect(await idx.clear('a:1')).toBe(5);
    const res = await idx.lookup(R(11n, 12n, 13n, 14n), { earlyStop: false });
    expect([0, 1, 2, 3].map((i) => entriesAt(res, i).map((e) => e.pod))).toEqual([[], [], ['b:1'], ['b:1']]);
  });

  it("brings stats, podCounts and dumpPod back in line after llm-d's Evict and Clear", async () => {
    const idx = await index();
    await idx.add(R(1n, 2n, 3n), R(21n, 22n, 23n), [gpu('a:1')]);
    await idx.add(R(4n), R(24n), [gpu('b:1')]);
    // The Go EPP ingests the same pods: its Evict removes kvix's field (the same bytes), its Clear all of b:1.
    await llmd.evictEngine(3n, [{ pod: 'a:1', tier: 'gpu', speculative: false }]);
    await llmd.clear('b:1');
    expect(await idx.reconcile()).toBe(2);
    expect(await idx.podCounts()).toEqual([{ pod: 'a:1', entries: 2, speculative: 0 }]);
    expect((await idx.stats()).entries).toBe(2);
    await llmd.evictEngine(2n, [{ pod: 'a:1', tier: 'gpu', speculative: false }]);
    // dumpPod reconciles the pod it dumps.
    expect((await idx.dumpPod('a:1', 0, 10)).items.map((i) => i.key)).toEqual([21n]);
    expect(await idx.podCounts()).toEqual([{ pod: 'a:1', entries: 1, speculative: 0 }]);
  });

  it('reconciles in the background, a bounded step at a time', async () => {
    const idx = new RedisIndex({ url: `${redis.url}/${DB}`, sweepIntervalMs: 0, reconcileIntervalMs: 20, reconcileBatch: 2 });
    open.push(idx);
    await idx.ready();
    await idx.add(R(1n, 2n, 3n, 4n), R(31n, 32n, 33n, 34n), [gpu('a:1')]);
    await llmd.clear('a:1');
    await waitFor(async () => (await idx.podCounts()).length === 0, 5000, 'the background reconciliation');
    expect((await idx.stats()).entries).toBe(0);
  });

  it('keeps clear proportional to the pod when configured without foreign writers', async () => {
    const idx = new RedisIndex({ url: `${redis.url}/${DB}`, sweepIntervalMs: 0, sharedWithForeignWriters: false });
    open.push(idx);
    await idx.ready();
    await llmd.add([3n], [13n], [{ pod: 'a:1', tier: 'gpu', speculative: false }]);
    expect(await idx.clear('a:1')).toBe(0);
    expect(await raw.hlen('13')).toBe(1);
  });
});

/** Go's json.Unmarshal into PodEntry, as far as llm-d's decodeRedisPodField needs (null on error). */
function decodeGoPodEntry(field: string): { PodIdentifier?: unknown } | null {
  try {
    const v: unknown = JSON.parse(field);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as { PodIdentifier?: unknown }) : null;
  } catch {
    return null;
  }
}
