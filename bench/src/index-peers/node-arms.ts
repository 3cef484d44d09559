import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InMemoryIndex, matchFromLookup, matchPrefixByLookup, prefixScores, scoreLookup, type KvBlockIndex, type LookupResult, type PodEntry, type PrefixMatch } from '@kvix/kv-index';
import { NaiveIndex } from '../index/naive-index.js';
import { readWorkload, type PeersWorkload } from './workload-file.js';

/**
 * kvix, the naive Map/Set index, or `ref`: kvix's in-memory index from another checkout
 * (KVIX_PEERS_REF=<checkout>, built), to compare a change with the code before it in the same run.
 */
export type NodeArm = 'kvix' | 'naive' | 'ref';

/** What one arm measured; the Dynamo arm (Rust) prints the same fields. */
export interface ArmResult {
  arm: string;
  pods: number;
  entries: number;
  blocks: number;
  stores: number;
  insertSeconds: number;
  insertBlocksPerSec: number;
  /** On-CPU time of the insert (the process's, all threads): what the load of other processes does not inflate. */
  insertCpuSeconds: number;
  insertBlocksPerCpuSec: number;
  heapBytes: number;
  bytesPerEntry: number;
  lookups: number;
  lookupP50Us: number;
  lookupP90Us: number;
  lookupP99Us: number;
  lookupMeanUs: number;
  /** Over lookups: the sum over pods of each pod's matched depth, and the deepest match. */
  depthSum: number;
  maxDepthSum: number;
  expectedDepthSum: number;
  expectedMaxDepthSum: number;
  /** kvix only: the same lookups as PodScore objects (matchPrefix + prefixScores), and through lookup + scoreLookup. */
  scoresP50Us?: number;
  scoresP99Us?: number;
  perKeyLookupP50Us?: number;
  perKeyLookupP99Us?: number;
}

const PROMPT_BUFFER_KEYS = 4096;

export const podName = (p: number): string => `10.42.0.${p}:8000`;

/** Heap and array-buffer bytes once garbage is gone (freed buffers are released a moment after a collection). */
async function heapNow(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let k = 0; k < 3; k++) {
    gc?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function percentiles(times: Float64Array): { p50: number; p90: number; p99: number; mean: number } {
  const sorted = times.slice().sort();
  const at = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), mean: times.reduce((a, b) => a + b, 0) / times.length };
}

/** The reference checkout's InMemoryIndex: older ones have no prefix match (lookup, then scoring). */
interface RefIndex {
  addSync(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[]): void;
  lookupSync(requestKeys: BigUint64Array, options: { pods: string[] }): LookupResult;
  matchPrefixSync?(requestKeys: BigUint64Array, options: { pods: string[] }): PrefixMatch;
  stats(): Promise<{ entries: number }>;
  close(): Promise<void>;
}

async function refIndexClass(): Promise<new (config: object) => RefIndex> {
  const dir = process.env['KVIX_PEERS_REF'];
  if (!dir) throw new Error('the ref arm needs KVIX_PEERS_REF=<a built kvix checkout>');
  const mod = (await import(pathToFileURL(join(dir, 'packages', 'kv-index', 'dist', 'index.js')).href)) as { InMemoryIndex: new (config: object) => RefIndex };
  return mod.InMemoryIndex;
}

/** The lookup as each arm answers it: kvix's one walk, or the index's lookup then scoring. */
function matcher(arm: NodeArm, index: KvBlockIndex | RefIndex): (keys: BigUint64Array, pods: string[]) => PrefixMatch | Promise<PrefixMatch> {
  if (arm === 'kvix') {
    const kvix = index as InMemoryIndex;
    return (keys, pods) => kvix.matchPrefixSync(keys, { pods });
  }
  if (arm === 'ref') {
    const ref = index as RefIndex;
    if (ref.matchPrefixSync) return (keys, pods) => ref.matchPrefixSync!(keys, { pods });
    return (keys, pods) => matchFromLookup(ref.lookupSync(keys, { pods }));
  }
  return (keys, pods) => matchPrefixByLookup(index as KvBlockIndex, keys, { pods });
}

/**
 * One Node arm over the workload file: every store (timed as a whole, the structure's own call —
 * kvix's addSync; the naive index's add; median of three builds after a warm-up build), the heap
 * the index grew by, then each lookup timed on its own (all 32 pods as the candidates, as a router
 * asks) after one untimed pass over them all.
 */
export async function runNodeArm(arm: NodeArm, path: string): Promise<ArmResult> {
  const w: PeersWorkload = readWorkload(path);
  const stores = w.storePod.length;
  const entryOf: PodEntry[][] = Array.from({ length: w.pods }, (_, p) => [{ pod: podName(p), tier: 'gpu', speculative: false }]);
  const engine: BigUint64Array[] = [];
  const request: BigUint64Array[] = [];
  for (let s = 0; s < stores; s++) {
    engine.push(w.blockEngine.subarray(w.storeOffset[s]!, w.storeOffset[s + 1]!));
    request.push(w.blockRequest.subarray(w.storeOffset[s]!, w.storeOffset[s + 1]!));
  }
  const lookups = w.lookupOffset.length - 1;
  const queries = Array.from({ length: lookups }, (_, q) => w.lookupRequest.subarray(w.lookupOffset[q]!, w.lookupOffset[q + 1]!));
  const pods = Array.from({ length: w.pods }, (_, p) => podName(p));

  // Sized as a deployment sizes it: capacity = the entries it is meant to hold.
  const Ref = arm === 'ref' ? await refIndexClass() : null;
  const config = { maxEntries: w.blockEngine.length, sweepIntervalMs: 0 };
  const make = (): KvBlockIndex | RefIndex => (arm === 'kvix' ? new InMemoryIndex(config) : Ref !== null ? new Ref(config) : new NaiveIndex());
  const build = (): KvBlockIndex | RefIndex => {
    const index = make();
    if (arm !== 'naive') {
      const kvix = index as InMemoryIndex | RefIndex;
      for (let s = 0; s < stores; s++) kvix.addSync(engine[s]!, request[s]!, entryOf[w.storePod[s]!]!);
    } else {
      // The naive add does its work before returning its (already settled) promise.
      for (let s = 0; s < stores; s++) void (index as KvBlockIndex).add(engine[s]!, request[s]!, entryOf[w.storePod[s]!]!);
    }
    return index;
  };
  /** One timed build into a fresh index, dropped on return: [wall seconds, on-CPU seconds]. */
  const timedBuild = (): [number, number] => {
    const cpu0 = process.cpuUsage();
    const start = process.hrtime.bigint();
    build();
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    return [seconds, (cpu.user + cpu.system) / 1e6];
  };
  // Warm-up (the JIT's, and the allocator's): one build dropped after, so the timed builds run the
  // code a long-lived index runs; then three timed builds, each into a fresh index (the median is
  // the figure: this machine is shared); then the heap one more build takes.
  build();
  const timed = [timedBuild(), timedBuild(), timedBuild()];
  const insertSeconds = median(timed.map((t) => t[0]));
  const insertCpuSeconds = median(timed.map((t) => t[1]));
  const before = await heapNow();
  const index = build();
  const heapBytes = (await heapNow()) - before;
  const stats = await index.stats();

  const match = matcher(arm, index);
  for (const q of queries) await match(q, pods);
  const times = new Float64Array(lookups);
  let depthSum = 0;
  let maxDepthSum = 0;
  // Each prompt's keys are copied in just before its lookup, as a router hashes them just before
  // (and as the Dynamo arm clones its query): the walk starts with the keys in cache.
  const prompt = new BigUint64Array(PROMPT_BUFFER_KEYS);
  for (let q = 0; q < lookups; q++) {
    const keys = prompt.subarray(0, queries[q]!.length);
    keys.set(queries[q]!);
    const t0 = process.hrtime.bigint();
    const m = await match(keys, pods);
    times[q] = Number(process.hrtime.bigint() - t0) / 1000;
    let max = 0;
    for (let k = 0; k < m.podCount; k++) {
      depthSum += m.matchedBlocks[k]!;
      if (m.matchedBlocks[k]! > max) max = m.matchedBlocks[k]!;
    }
    maxDepthSum += max;
  }
  const lookup = percentiles(times);
  const result: ArmResult = {
    arm,
    pods: w.pods,
    entries: stats.entries,
    blocks: w.blockEngine.length,
    stores,
    insertSeconds,
    insertBlocksPerSec: w.blockEngine.length / insertSeconds,
    insertCpuSeconds,
    insertBlocksPerCpuSec: w.blockEngine.length / insertCpuSeconds,
    heapBytes,
    bytesPerEntry: heapBytes / stats.entries,
    lookups,
    lookupP50Us: lookup.p50,
    lookupP90Us: lookup.p90,
    lookupP99Us: lookup.p99,
    lookupMeanUs: lookup.mean,
    depthSum,
    maxDepthSum,
    expectedDepthSum: w.expectedDepthSum,
    expectedMaxDepthSum: w.expectedMaxDepthSum,
  };
  if (arm === 'kvix') {
    const kvix = index as InMemoryIndex;
    // What the scorer hands a router (sorted PodScore objects), and the per-key lookup path.
    const scores = new Float64Array(lookups);
    const perKey = new Float64Array(lookups);
    for (let q = 0; q < lookups; q++) {
      const keys = prompt.subarray(0, queries[q]!.length);
      keys.set(queries[q]!);
      let t0 = process.hrtime.bigint();
      prefixScores(kvix.matchPrefixSync(keys, { pods }), keys.length, pods);
      scores[q] = Number(process.hrtime.bigint() - t0) / 1000;
      keys.set(queries[q]!);
      t0 = process.hrtime.bigint();
      scoreLookup(kvix.lookupSync(keys, { pods }), keys.length, undefined, pods);
      perKey[q] = Number(process.hrtime.bigint() - t0) / 1000;
    }
    const s = percentiles(scores);
    const p = percentiles(perKey);
    Object.assign(result, { scoresP50Us: s.p50, scoresP99Us: s.p99, perKeyLookupP50Us: p.p50, perKeyLookupP99Us: p.p99 });
  }
  await index.close();
  return result;
}
