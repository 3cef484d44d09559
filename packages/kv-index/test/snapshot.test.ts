import { describe, expect, it } from 'vitest';
import { entriesAt, InMemoryIndex, type LookupResult } from '../src/index.js';

const keys = (...v: number[]): BigUint64Array => BigUint64Array.from(v.map((x) => BigInt.asUintN(64, BigInt(x) * 0x9e3779b97f4a7c15n)));

function view(result: LookupResult): string[][] {
  return Array.from({ length: result.keyCount }, (_, i) =>
    entriesAt(result, i)
      .map((e) => `${e.pod}/${e.tier}${e.speculative ? '*' : ''}${e.group === undefined ? '' : `#${e.group}`}`)
      .sort(),
  );
}

describe('index snapshots', () => {
  it('a replica loaded from a snapshot answers lookups, evictions and clears like its source', async () => {
    const source = new InMemoryIndex({ sweepIntervalMs: 0 });
    const req = keys(1, 2, 3, 4);
    await source.add(BigUint64Array.from([11n, 12n]), req, [{ pod: 'a:1', tier: 'gpu', speculative: false }]);
    await source.add(null, req.subarray(0, 2), [{ pod: 'a:1', tier: 'cpu', speculative: false }, { pod: 'b:1', tier: 'gpu', speculative: false, group: 3 }]);
    await source.add(BigUint64Array.from([21n]), keys(7, 8), [{ pod: 'c:1', tier: 'disk', speculative: false }]);
    await source.add(null, keys(1, 2, 3, 4, 5), [{ pod: 'd:1', tier: 'gpu', speculative: true }]);
    await source.clear('zz:1'); // a pod that never held anything leaves no trace
    const snapshot = source.exportSnapshot();
    expect(snapshot.entryPod.length).toBe(4 + 2 * 2 + 2); // speculative entries stay behind

    const replica = new InMemoryIndex({ sweepIntervalMs: 0 });
    expect(replica.importSnapshot(snapshot)).toBe(10);
    const all = keys(1, 2, 3, 4, 5, 7, 8);
    const withoutSpeculation = (rows: string[][]): string[][] => rows.map((r) => r.filter((e) => !e.endsWith('*')));
    expect(view(await replica.lookup(all, { earlyStop: false }))).toEqual(withoutSpeculation(view(await source.lookup(all, { earlyStop: false }))));
    expect(await replica.requestKeysFor(11n)).toEqual(await source.requestKeysFor(11n));
    expect(await replica.requestKeysFor(21n)).toEqual([...keys(7, 8)]);

    // The engine map came along: an eviction by engine key resolves on the replica.
    await replica.evict(21n, 'engine', [{ pod: 'c:1', tier: 'disk', speculative: false }]);
    expect(view(await replica.lookup(keys(7, 8), { earlyStop: false }))).toEqual([[], []]);
    expect(await replica.clear('b:1')).toBe(2);
    expect((await replica.stats()).entries).toBe(6);
  });
});
