import { groupOf, hasGroupCode, isSpeculativeCode, podOf, tierOf, type EntryCodec } from '../entry-codes.js';
import { IndexError, type IndexSnapshot } from '../types.js';
import type { EngineMap } from './engine-map.js';
import type { EntrySets } from './entry-sets.js';
import { NONE, type KeyTable } from './key-table.js';

/**
 * Every real entry (speculation stays behind: it lives seconds and travels separately) in
 * least-recently-used order, so a replica loading it keeps the same eviction order, and the engine
 * map.
 */
export function exportSnapshot(keys: KeyTable, sets: EntrySets, realEntries: number, codec: EntryCodec, engineMap: EngineMap): IndexSnapshot {
  const entryKeys = new Uint32Array(realEntries * 2);
  const entryPod = new Uint16Array(realEntries);
  const entryTier = new Uint8Array(realEntries);
  const entryGroup = new Int16Array(realEntries);
  let n = 0;
  for (let r = keys.lruHead; r !== NONE; r = keys.lruNext[r]!) {
    const codes = sets.codes[keys.set[r]!]!;
    for (let j = 0; j < codes.length; j++) {
      const code = codes[j]!;
      if (isSpeculativeCode(code)) continue;
      entryKeys[2 * n] = keys.kw[2 * r]!;
      entryKeys[2 * n + 1] = keys.kw[2 * r + 1]!;
      entryPod[n] = podOf(code);
      entryTier[n] = tierOf(code);
      entryGroup[n] = hasGroupCode(code) ? groupOf(code) : -1;
      n++;
    }
  }
  return {
    pods: codec.podNames.map((p) => p ?? ''),
    tiers: [...codec.tierNames],
    entryKeys,
    entryPod,
    entryTier,
    entryGroup,
    ...engineMap.export(),
  };
}

/**
 * Loads a snapshot: `addKey` indexes one key's entry codes (making it the most recently used) and
 * returns the entries admitted. Ids are re-registered here: a peer's pod and tier numbering means
 * nothing in this process.
 */
export function importSnapshot(
  snapshot: IndexSnapshot,
  codec: EntryCodec,
  engineMap: EngineMap,
  addKey: (lo: number, hi: number, codes: readonly number[]) => number,
): number {
  const count = snapshot.entryPod.length;
  if (snapshot.entryKeys.length !== 2 * count || snapshot.entryTier.length !== count || snapshot.entryGroup.length !== count) {
    throw new IndexError('INVALID_ENTRY', 'snapshot columns disagree in length');
  }
  const podIds = snapshot.pods.map((p) => (p === '' ? -1 : codec.podId(p, true)));
  const tierIds = snapshot.tiers.map((t) => codec.tierId(t, true));
  let admitted = 0;
  const codes: number[] = [];
  // Entries of one key are adjacent: each key is indexed once, with all its codes.
  for (let i = 0; i < count; ) {
    const lo = snapshot.entryKeys[2 * i]!;
    const hi = snapshot.entryKeys[2 * i + 1]!;
    codes.length = 0;
    for (; i < count && snapshot.entryKeys[2 * i] === lo && snapshot.entryKeys[2 * i + 1] === hi; i++) {
      const pod = podIds[snapshot.entryPod[i]!];
      const tier = tierIds[snapshot.entryTier[i]!];
      if (pod === undefined || pod < 0 || tier === undefined) throw new IndexError('INVALID_ENTRY', `snapshot entry ${i} names an unknown pod or tier`);
      const group = snapshot.entryGroup[i]!;
      codes.push(group >= 0 ? codec.encode({ pod: snapshot.pods[snapshot.entryPod[i]!]!, tier: snapshot.tiers[snapshot.entryTier[i]!]!, speculative: false, group }, true) : (pod | (tier << 16)) >>> 0);
    }
    admitted += addKey(lo, hi, codes);
  }
  engineMap.import(snapshot.engineKeys, snapshot.engineCounts, snapshot.engineTargets);
  return admitted;
}
