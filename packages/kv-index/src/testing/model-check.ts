import { DEFAULT_TIER_WEIGHTS, scoreLookup, tierWeights, type TierWeights } from '../scorer.js';
import { entriesAt, type IndexObserver, type KvBlockIndex, type LookupResult, type PodEntry, type SnapshotCapable } from '../types.js';
import { entryId, ReferenceIndex } from './reference-index.js';

/**
 * A model check: seeded random sequences of index operations run against a backend and against
 * ReferenceIndex (the contract as plain maps), comparing every answer. Any backend can run it
 * (`runModelCheck(harness, { seed, ops })`); a failure names the seed, the operation and the
 * operations before it, so `KVIX_MODEL_SEED=<seed>` reproduces it.
 */

export interface ModelCheckSubject {
  index: KvBlockIndex;
  /** Lets `ms` pass on the index's clock (nothing to do for a backend on `config.now`). */
  advance(ms: number): Promise<void>;
}

export interface ModelCheckConfig {
  speculativeTtlMs: number;
  maxEntries?: number;
  maxBytes?: number;
  maxEngineMappings?: number;
  /** The runner's clock (backends on a clock of their own ignore it). */
  now: () => number;
  observer: IndexObserver;
}

export interface ModelCheckHarness {
  /**
   * `runner`: the backend reads `config.now`, so expiry is checked to the millisecond.
   * `server`: the backend keeps its own time; speculative TTLs are then either an hour or
   * SERVER_SHORT_TTL_MS, and a few rounds wait those short ones out for real.
   */
  clock: 'runner' | 'server';
  /** Whether the backend evicts least recently used keys past maxEntries itself. */
  enforcesCapacity: boolean;
  create(config: ModelCheckConfig): Promise<ModelCheckSubject>;
}

export interface ModelCheckOptions {
  seed: number;
  ops: number;
  /** A capacity in entries (least-recently-used eviction is then checked key by key). */
  maxEntries?: number;
  /** A capacity in bytes: entries go as for maxEntries; engine mappings of keys no longer held may go too. */
  maxBytes?: number;
  /** A bound on engine mappings: any mapping may be forgotten past it, but none may be wrong. */
  maxEngineMappings?: number;
  /** Server clock: rounds in which short-lived speculation is waited out (each waits ~1.5 s). */
  expiryRounds?: number;
}

export interface ModelCheckReport {
  ops: number;
  /** Operations run, by kind. */
  kinds: Record<string, number>;
  /** Discrepancies are thrown; these say how much state the run reached. */
  peakEntries: number;
  /** Engine mappings the backend forgot under maxBytes / maxEngineMappings. */
  forgottenMappings: number;
  confirmed: number;
  expired: number;
  capacityEvictions: number;
}

/** Short speculative TTL on a server clock, and how long a round waits for it (bucketed expiry included). */
export const SERVER_SHORT_TTL_MS = 1000;
const SERVER_WAIT_MS = SERVER_SHORT_TTL_MS + 500;
/** Longest real time a round may run before its short-lived entries could expire under it. */
const SERVER_ROUND_BUDGET_MS = SERVER_SHORT_TTL_MS - 250;
const HOUR_MS = 3_600_000;
const RUNNER_TTL_MS = 2000;
const START_MS = 1_000_000;

const PODS = ['10.0.0.1:8000', '10.0.0.2:8000', '10.0.0.3:8000', '10.0.0.4:8000', '[fd00::5]:8000', 'w"<é&>\\\u2028:9'];
const UNKNOWN_POD = 'never-seen:1';
const KEY_SPACE = 300;

/** sfc32: small, fast and good enough to drive a test; seeded through splitmix32. */
function prng(seed: number): { next(): number; int(n: number): number; chance(p: number): boolean; pick<T>(xs: readonly T[]): T } {
  let s = seed >>> 0;
  const mix = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = mix();
  let b = mix();
  let c = mix();
  let d = mix();
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  return {
    next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p,
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
  };
}

/** Request key i of the key space (0 and 2^64-1 included: keys are full unsigned 64-bit). */
export function requestKeyOf(i: number): bigint {
  if (i === 0) return 0n;
  if (i === 1) return 0xffffffffffffffffn;
  return BigInt.asUintN(64, 0x9e3779b97f4a7c15n * BigInt(i) + 0x632be59bd9b4e019n);
}

function engineKeyOf(space: number, a: number, b: number): bigint {
  let x = BigInt.asUintN(64, BigInt(space) * 0xbf58476d1ce4e5b9n + BigInt(a) * 0x94d049bb133111ebn + BigInt(b) * 0x2545f4914f6cdd1dn + 1n);
  x = BigInt.asUintN(64, (x ^ (x >> 31n)) * 0xd6e8feb86659fd93n);
  return x ^ (x >> 32n);
}

type EngineShape = { kind: '1:1' } | { kind: 'many:1'; factor: number } | { kind: '1:many'; factor: number } | { kind: 'any'; count: number };

type Op =
  | { t: 'add'; start: number; len: number; engine: EngineShape | null; entries: PodEntry[]; ttlMs?: number }
  | { t: 'evict-request'; key: number; entries: PodEntry[] }
  | { t: 'evict-engine'; engineKey: bigint; entries: PodEntry[] }
  | { t: 'advance'; ms: number }
  | { t: 'clear'; pod: string }
  | { t: 'lookup'; start: number; len: number; pods?: string[]; earlyStop?: boolean; scorePods?: string[]; customWeights: boolean }
  | { t: 'resolve'; engineKey: bigint }
  | { t: 'pod-counts' }
  | { t: 'stats' }
  | { t: 'dump'; pod: string; limit: number }
  | { t: 'snapshot' }
  | { t: 'invalid'; call: 'add' | 'evict'; start: number; len: number; entries: PodEntry[] }
  | { t: 'full-check' };

function engineKeysFor(shape: EngineShape, start: number, len: number): bigint[] {
  switch (shape.kind) {
    case '1:1':
      // Content-addressed: the engine key of request block i is the same in every event.
      return Array.from({ length: len }, (_, j) => engineKeyOf(1, start + j, 0));
    case 'many:1':
      return Array.from({ length: len * shape.factor }, (_, j) => engineKeyOf(shape.factor, start * shape.factor + j, 0));
    case '1:many':
      return Array.from({ length: Math.ceil(len / shape.factor) }, (_, j) => engineKeyOf(10 + shape.factor, start, j));
    case 'any':
      return Array.from({ length: shape.count }, (_, j) => engineKeyOf(20, start, j));
  }
}

const show = (e: PodEntry): string => `${e.pod}/${e.tier}${e.speculative ? '*' : ''}${e.group === undefined ? '' : `#${e.group}`}`;

function describe(op: Op): string {
  switch (op.t) {
    case 'add': {
      const engine = op.engine === null ? 'no engine keys' : op.engine.kind === 'any' ? `${op.engine.count} engine keys` : `engine ${op.engine.kind}${'factor' in op.engine ? ` ×${op.engine.factor}` : ''}`;
      return `add keys[${op.start}..${op.start + op.len}) ${engine} [${op.entries.map(show).join(', ')}]${op.ttlMs === undefined ? '' : ` ttl ${op.ttlMs}`}`;
    }
    case 'evict-request':
      return `evict request key[${op.key}] [${op.entries.map(show).join(', ')}]`;
    case 'evict-engine':
      return `evict engine ${op.engineKey} [${op.entries.map(show).join(', ')}]`;
    case 'advance':
      return `advance ${op.ms} ms`;
    case 'clear':
      return `clear ${op.pod}`;
    case 'lookup':
      return `lookup keys[${op.start}..${op.start + op.len})${op.pods ? ` pods [${op.pods.join(', ')}]` : ''} earlyStop ${String(op.earlyStop)}${op.scorePods ? ` score pods [${op.scorePods.join(', ')}]` : ''}${op.customWeights ? ' custom weights' : ''}`;
    case 'resolve':
      return `requestKeyFor ${op.engineKey}`;
    case 'dump':
      return `dumpPod ${op.pod} pages of ${op.limit}`;
    case 'invalid':
      return `${op.call} keys[${op.start}..${op.start + op.len}) with an invalid entry among [${op.entries.map((e) => JSON.stringify(e)).join(', ')}]`;
    default:
      return op.t;
  }
}

const CUSTOM_WEIGHTS = tierWeights({ tiers: { cpu: 0.3, disk: 0.6 }, speculative: 0.9, unknown: 0.1 });

class Mismatch extends Error {}

/** The machine stalled longer than a short TTL inside one round: expiry there cannot be judged. */
class Stalled extends Error {
  constructor(cause?: unknown) {
    super(`a round of short-lived speculation ran longer than ${SERVER_ROUND_BUDGET_MS} ms of real time (a stalled machine), so which entries expired under it cannot be judged`, cause === undefined ? {} : { cause });
  }
}

function expectEqual(what: string, actual: unknown, expected: unknown): void {
  const a = stable(actual);
  const e = stable(expected);
  if (a === e) return;
  if (Array.isArray(actual) && Array.isArray(expected) && (actual.length > 8 || expected.length > 8)) {
    // Long lists: only what differs.
    const got = actual.map((x) => stable(x));
    const want = expected.map((x) => stable(x));
    const extra = got.filter((x) => !want.includes(x));
    const missing = want.filter((x) => !got.includes(x));
    throw new Mismatch(`${what} (${got.length} vs the model's ${want.length}):\n  only in the backend: ${extra.join(' ') || '-'}\n  only in the model:   ${missing.join(' ') || '-'}`);
  }
  throw new Mismatch(`${what}:\n  backend: ${a}\n  model:   ${e}`);
}

function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === 'bigint') return `${x}n`;
    if (x !== null && typeof x === 'object' && !Array.isArray(x)) {
      return Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return x;
  });
}

interface Tallies {
  admitted: number;
  evicted: { event: number; clear: number; capacity: number; expiry: number };
  expiredByObserver: number;
  confirmations: { pod: string; latencyMs: number }[];
}

const freshTallies = (): Tallies => ({ admitted: 0, evicted: { event: 0, clear: 0, capacity: 0, expiry: 0 }, expiredByObserver: 0, confirmations: [] });

function observerOf(t: () => Tallies): IndexObserver {
  return {
    admitted: (n) => void (t().admitted += n),
    evicted: (n, cause) => void (t().evicted[cause] += n),
    speculationConfirmed: (pod, latencyMs) => void t().confirmations.push({ pod, latencyMs }),
    speculationExpired: (_pod, n) => void (t().expiredByObserver += n),
  };
}

export async function runModelCheck(harness: ModelCheckHarness, options: ModelCheckOptions): Promise<ModelCheckReport> {
  const rng = prng(options.seed);
  const serverClock = harness.clock === 'server';
  const capacity = harness.enforcesCapacity ? options.maxEntries : undefined;
  const maxBytes = harness.enforcesCapacity ? options.maxBytes : undefined;
  const mappingBound = harness.enforcesCapacity ? options.maxEngineMappings : undefined;
  /** Whether engine mappings may be forgotten, and whether only those of keys no longer held. */
  const mappingsMayGo = maxBytes !== undefined || mappingBound !== undefined;
  const onlyStaleMayGo = mappingBound === undefined;
  let forgottenMappings = 0;
  let now = START_MS;
  let tallies = freshTallies();
  const ttlMs = serverClock ? HOUR_MS : RUNNER_TTL_MS;
  const config: ModelCheckConfig = {
    speculativeTtlMs: ttlMs,
    ...(capacity !== undefined ? { maxEntries: capacity } : {}),
    ...(maxBytes !== undefined ? { maxBytes } : {}),
    // Left to itself the mapping bound is maxEntries: only a profile about it sets one that bites.
    ...(capacity !== undefined || maxBytes !== undefined ? { maxEngineMappings: mappingBound ?? 1_000_000 } : mappingBound !== undefined ? { maxEngineMappings: mappingBound } : {}),
    now: () => now,
    observer: observerOf(() => tallies),
  };
  let subject = await harness.create(config);
  let model = new ReferenceIndex(ttlMs, now);
  const enginePool: bigint[] = [];
  const engineSeen = new Set<bigint>();
  const recentStarts: number[] = [];
  /** Routing decisions made lately, which the engine's own events often follow. */
  const recentDecisions: { start: number; len: number; entries: PodEntry[] }[] = [];
  const trace: string[] = [];
  const kinds: Record<string, number> = {};
  let peakEntries = 0;
  /** Counters of the indexes replaced by their replicas (a replica's counters start at 0). */
  const carried = { confirmed: 0, expired: 0, capacityEvictions: 0 };

  // Server clock: rounds in which short-lived speculation is added, then waited out.
  const rounds = serverClock ? (options.expiryRounds ?? 2) : 0;
  const roundStarts = new Set(Array.from({ length: rounds }, (_, k) => Math.floor(((k + 0.5) * options.ops) / Math.max(1, rounds))));
  let roundLeft = 0;
  let roundStartedAt: number | null = null;

  const randomEntry = (speculative: boolean): PodEntry => {
    const pod = rng.pick(PODS);
    const tier = speculative ? (rng.chance(0.85) ? 'gpu' : 'cpu') : rng.pick(['gpu', 'gpu', 'gpu', 'cpu', 'cpu', 'disk']);
    const grouped = rng.chance(speculative ? 0.15 : 0.3);
    return grouped ? { pod, tier, speculative, group: rng.int(3) } : { pod, tier, speculative };
  };
  const randomEntries = (speculative: boolean): PodEntry[] => {
    const n = rng.chance(0.8) ? 1 : rng.chance(0.75) ? 2 : 3;
    return Array.from({ length: n }, () => randomEntry(speculative));
  };
  /** Entries held under a key (so evictions hit), or random ones. */
  const entriesToEvict = (key: bigint | undefined): PodEntry[] => {
    const set = key === undefined ? undefined : model.held.get(key);
    if (set !== undefined && rng.chance(0.75)) {
      const held = [...set.values()].map((h) => h.entry).filter((e) => !e.speculative || rng.chance(0.3));
      if (held.length > 0) return Array.from({ length: 1 + rng.int(Math.min(2, held.length)) }, () => rng.pick(held));
    }
    return randomEntries(rng.chance(0.1));
  };
  const speculativeTtl = (): number | undefined => {
    if (serverClock) return roundLeft > 0 && rng.chance(0.5) ? SERVER_SHORT_TTL_MS : rng.chance(0.5) ? undefined : HOUR_MS;
    return rng.chance(0.4) ? undefined : 1 + rng.int(4000);
  };
  const range = (): { start: number; len: number } => {
    const len = 1 + rng.int(rng.chance(0.8) ? 12 : 40);
    const start = recentStarts.length > 0 && rng.chance(0.5) ? rng.pick(recentStarts) : rng.int(KEY_SPACE - len);
    return { start, len: Math.min(len, KEY_SPACE - start) };
  };
  const podSubset = (): string[] => {
    const out = PODS.filter(() => rng.chance(0.4));
    if (rng.chance(0.2)) out.push(UNKNOWN_POD);
    // A caller may name a pod twice; it is still one pod.
    if (out.length > 0 && rng.chance(0.1)) out.push(rng.pick(out));
    return out;
  };

  const generate = (i: number): Op => {
    if (serverClock) {
      if (roundStarts.has(i)) roundLeft = 30 + rng.int(30);
      if (roundLeft > 0 && --roundLeft === 0) return { t: 'advance', ms: SERVER_WAIT_MS };
    }
    if (i > 0 && i % 1000 === 0) return { t: 'full-check' };
    const r = rng.next() * 100;
    if (r < 30) {
      if (recentDecisions.length > 0 && rng.chance(0.3)) {
        // The pod's events for a decision: some of its blocks, in the decided tier, group 0 or none.
        const d = rng.pick(recentDecisions);
        const len = 1 + rng.int(d.len);
        const entries = d.entries.map((e): PodEntry => (rng.chance(0.5) ? { pod: e.pod, tier: e.tier, speculative: false } : { pod: e.pod, tier: e.tier, speculative: false, group: e.group ?? 0 }));
        return { t: 'add', start: d.start, len, engine: rng.chance(0.7) ? { kind: '1:1' } : null, entries };
      }
      const { start, len } = range();
      const shape = rng.next();
      const engine: EngineShape | null =
        shape < 0.25 ? null
        : shape < 0.6 ? { kind: '1:1' }
        : shape < 0.75 ? { kind: 'many:1', factor: rng.pick([2, 4]) }
        : shape < 0.9 ? { kind: '1:many', factor: rng.pick([2, 3]) }
        : { kind: 'any', count: 1 + rng.int(2 * len) };
      const entries = randomEntries(false);
      // Now and then a decision and an event in one call (order within the call matters).
      if (rng.chance(0.03)) entries.splice(rng.int(entries.length + 1), 0, randomEntry(true));
      const ttl = entries.some((e) => e.speculative) ? speculativeTtl() : undefined;
      return { t: 'add', start, len, engine, entries, ...(ttl === undefined ? {} : { ttlMs: ttl }) };
    }
    if (r < 42) {
      const { start, len } = range();
      const ttl = speculativeTtl();
      return { t: 'add', start, len, engine: null, entries: randomEntries(true), ...(ttl === undefined ? {} : { ttlMs: ttl }) };
    }
    if (r < 57) {
      const engineKey = enginePool.length > 0 && rng.chance(0.95) ? rng.pick(enginePool) : engineKeyOf(99, rng.int(1000), 0);
      return { t: 'evict-engine', engineKey, entries: entriesToEvict(model.engine.get(engineKey)?.[0]) };
    }
    if (r < 67) {
      const heldKeys = [...model.held.keys()];
      const key = heldKeys.length > 0 && rng.chance(0.85) ? indexOfKey(rng.pick(heldKeys)) : rng.int(KEY_SPACE);
      return { t: 'evict-request', key, entries: entriesToEvict(requestKeyOf(key)) };
    }
    if (r < 73) {
      if (serverClock) return { t: 'stats' };
      // Sometimes exactly to an expiry: an entry whose lifetime is over at `now` is gone.
      const expiries = [...model.held.values()].flatMap((s) => [...s.values()].map((h) => h.expiresAt)).filter((x) => x > now && x !== Infinity);
      return { t: 'advance', ms: expiries.length > 0 && rng.chance(0.3) ? rng.pick(expiries) - now : rng.int(1500) };
    }
    if (r < 74.5) return { t: 'clear', pod: rng.chance(0.9) ? rng.pick(PODS) : UNKNOWN_POD };
    if (r < 90) {
      const { start, len } = range();
      const pods = rng.chance(0.35) ? podSubset() : undefined;
      const earlyStop = rng.chance(0.15) ? undefined : rng.chance(0.75);
      const scorePods = pods ?? (rng.chance(0.25) ? podSubset() : undefined);
      return { t: 'lookup', start, len: Math.min(len, KEY_SPACE + 8 - start), ...(pods ? { pods } : {}), ...(earlyStop === undefined ? {} : { earlyStop }), ...(scorePods ? { scorePods } : {}), customWeights: rng.chance(0.5) };
    }
    if (r < 94) return { t: 'resolve', engineKey: enginePool.length > 0 && rng.chance(0.9) ? rng.pick(enginePool) : engineKeyOf(99, rng.int(1000), 0) };
    if (r < 95.5) return { t: 'pod-counts' };
    if (r < 97) return { t: 'stats' };
    if (r < 99.2) return { t: 'dump', pod: rng.chance(0.95) ? rng.pick(PODS) : UNKNOWN_POD, limit: 1 + rng.int(rng.chance(0.5) ? 8 : 200) };
    if (r < 99.7) {
      // A caller's mistake among good entries: the whole call is refused and changes nothing.
      const { start, len } = range();
      const bad = rng.pick<PodEntry>([
        { pod: '', tier: 'gpu', speculative: false },
        { pod: rng.pick(PODS), tier: '', speculative: false },
        { pod: rng.pick(PODS), tier: 'gpu', speculative: false, group: -1 },
        { pod: rng.pick(PODS), tier: 'gpu', speculative: rng.chance(0.5), group: 1.5 },
      ]);
      const entries = randomEntries(rng.chance(0.3));
      entries.splice(rng.int(entries.length + 1), 0, bad);
      return { t: 'invalid', call: rng.chance(0.7) ? 'add' : 'evict', start, len, entries };
    }
    return { t: 'snapshot' };
  };

  const keyIndex = new Map<bigint, number>();
  for (let k = 0; k < KEY_SPACE + 8; k++) keyIndex.set(requestKeyOf(k), k);
  function indexOfKey(key: bigint): number {
    return keyIndex.get(key)!;
  }
  const keysOf = (start: number, len: number): bigint[] => Array.from({ length: len }, (_, j) => requestKeyOf(start + j));

  const checkConfirmations = (): void => {
    const got = tallies.confirmations.splice(0);
    const want = model.confirmations.splice(0);
    const norm = (xs: { pod: string; latencyMs: number }[]): string[] => xs.map((c) => (serverClock ? c.pod : `${c.pod} after ${c.latencyMs} ms`)).sort();
    expectEqual('speculations confirmed by this add (observer)', norm(got), norm(want));
  };

  /** An engine mapping the backend no longer has: allowed under a bound, never for a held key under bytes alone. */
  const forget = (engineKey: bigint): void => {
    const want = model.engine.get(engineKey)!;
    if (onlyStaleMayGo && want.some((k) => model.held.has(k))) {
      throw new Mismatch(`forgot engine key ${engineKey} (→ ${want.join(', ')}) while a block it maps to is held: only mappings of blocks no longer held may go for space`);
    }
    model.engine.delete(engineKey);
    forgottenMappings++;
  };

  /** Brings the model's engine map in line with what the backend may have forgotten. */
  const syncMapping = async (engineKey: bigint): Promise<void> => {
    if (!mappingsMayGo || !model.engine.has(engineKey)) return;
    if ((await subject.index.requestKeysFor(engineKey)).length === 0) forget(engineKey);
  };

  const checkCapacity = async (): Promise<void> => {
    if (capacity === undefined && maxBytes === undefined) return;
    if (maxBytes === undefined && model.entries <= capacity!) return;
    const stats = await subject.index.stats();
    if (capacity !== undefined && stats.entries > capacity) throw new Mismatch(`holds ${stats.entries} entries past its capacity of ${capacity}`);
    if (maxBytes !== undefined && stats.bytesInUse > maxBytes) throw new Mismatch(`uses ${stats.bytesInUse} bytes past its capacity of ${maxBytes}`);
    if (!model.evictLeastRecentlyUsed(stats.entries)) {
      throw new Mismatch(`capacity eviction left ${stats.entries} entries: not whole least-recently-used keys (the model reaches ${model.entries} evicting them in order)`);
    }
    if (maxBytes !== undefined) {
      // Under a byte limit the mappings of blocks no longer held go first: find out which did.
      for (const [ek, keys] of [...model.engine]) if (!keys.some((k) => model.held.has(k))) await syncMapping(ek);
    }
  };

  const checkLookup = (op: Extract<Op, { t: 'lookup' }>, res: LookupResult): void => {
    const earlyStop = op.earlyStop ?? true;
    const want = model.lookup(keysOf(op.start, op.len), op.pods, earlyStop);
    expectEqual('keys reported (keyCount)', res.keyCount, want.keyCount);
    if (res.offsets.length < res.keyCount + 1) throw new Mismatch(`offsets has ${res.offsets.length} slots for ${res.keyCount} keys`);
    for (let i = 0; i < res.keyCount; i++) {
      const got = entriesAt(res, i).map(entryId).sort();
      if (new Set(got).size !== got.length) throw new Mismatch(`key ${op.start + i} reports an entry twice: ${got.join(' ')}`);
      expectEqual(`entries of key[${op.start + i}]`, got, want.perKey[i]!.map(entryId).sort());
    }
    const weights: TierWeights = op.customWeights ? CUSTOM_WEIGHTS : DEFAULT_TIER_WEIGHTS;
    const scores = scoreLookup(res, op.len, weights, op.scorePods);
    expectEqual('scores', scores, ReferenceIndex.score(want.perKey, op.len, weights, op.scorePods));
  };

  const checkPodCounts = async (): Promise<void> => {
    const got = await subject.index.podCounts();
    const byPod = new Map(got.map((c) => [c.pod, c]));
    if (byPod.size !== got.length) throw new Mismatch(`podCounts lists a pod twice: ${stable(got)}`);
    const want = [...model.podCounts()].map(([pod, c]) => ({ pod, ...c })).sort((a, b) => (a.pod < b.pod ? -1 : 1));
    expectEqual('podCounts (pods holding anything)', [...got].sort((a, b) => (a.pod < b.pod ? -1 : 1)), want);
  };

  const checkStats = async (synced = false): Promise<void> => {
    const s = await subject.index.stats();
    if (mappingBound !== undefined && s.engineMappings > mappingBound) throw new Mismatch(`holds ${s.engineMappings} engine mappings past its bound of ${mappingBound}`);
    const counts = model.podCounts();
    const want: Record<string, unknown> = {
      entries: model.entries,
      keys: model.held.size,
      pods: counts.size,
      engineMappings: model.engine.size,
      speculative: { active: model.speculativeActive, confirmed: model.confirmed, expired: model.expired },
    };
    const got: Record<string, unknown> = { entries: s.entries, keys: s.keys, pods: s.pods, engineMappings: s.engineMappings, speculative: s.speculative };
    if (mappingsMayGo && !synced) {
      delete got['engineMappings'];
      delete want['engineMappings'];
    }
    if (capacity !== undefined) {
      want['capacityEvictions'] = model.capacityEvictions;
      got['capacityEvictions'] = s.capacityEvictions;
    }
    expectEqual('stats', got, want);
    const observed: Record<string, unknown> = { admitted: tallies.admitted, evicted: { ...tallies.evicted }, expired: tallies.expiredByObserver };
    const expected: Record<string, unknown> = { admitted: model.admitted, evicted: { ...model.evicted }, expired: model.expired };
    if (capacity === undefined) {
      delete (observed['evicted'] as Record<string, number>)['capacity'];
      delete (expected['evicted'] as Record<string, number>)['capacity'];
    }
    expectEqual('observer notifications (totals)', observed, expected);
  };

  const checkDump = async (pod: string, limit: number): Promise<void> => {
    const seen: string[] = [];
    let total = -1;
    for (let offset = 0; ; offset += limit) {
      const page = await subject.index.dumpPod(pod, offset, limit);
      if (total >= 0 && page.total !== total) throw new Mismatch(`dumpPod ${pod}: total changed between pages (${total} → ${page.total})`);
      total = page.total;
      const expectLen = Math.max(0, Math.min(limit, total - offset));
      if (page.items.length !== expectLen) throw new Mismatch(`dumpPod ${pod} offset ${offset} limit ${limit}: ${page.items.length} items of ${total}`);
      for (const it of page.items) {
        if (it.entry.pod !== pod) throw new Mismatch(`dumpPod ${pod} lists an entry of ${it.entry.pod}`);
        seen.push(`${it.key}/${entryId(it.entry)}`);
      }
      if (offset + limit >= total) break;
    }
    if (new Set(seen).size !== seen.length) throw new Mismatch(`dumpPod ${pod}: pages overlap`);
    expectEqual(`dumpPod ${pod}`, seen.sort(), model.pairsOf(pod).sort());
  };

  const checkResolve = async (engineKey: bigint): Promise<void> => {
    await syncMapping(engineKey);
    expectEqual(`requestKeysFor ${engineKey}`, await subject.index.requestKeysFor(engineKey), model.requestKeysFor(engineKey));
    expectEqual(`requestKeyFor ${engineKey}`, await subject.index.requestKeyFor(engineKey), model.engine.get(engineKey)?.at(-1));
  };

  /** Everything, without using any key (a lookup would reorder least-recently-used keys). */
  const fullCheck = async (): Promise<void> => {
    if (mappingsMayGo) for (const ek of [...model.engine.keys()]) await syncMapping(ek);
    await checkStats(true);
    await checkPodCounts();
    for (const pod of new Set([...PODS, ...model.podCounts().keys()])) await checkDump(pod, 1000);
    // A sample of the engine keys ever announced (each is a call: Redis pays a round trip).
    for (const ek of enginePool.length <= 400 ? enginePool : [...enginePool.slice(0, 200), ...enginePool.slice(-200)]) await checkResolve(ek);
  };

  const apply = async (op: Op): Promise<void> => {
    switch (op.t) {
      case 'add': {
        const keys = keysOf(op.start, op.len);
        const engine = op.engine === null ? null : engineKeysFor(op.engine, op.start, op.len);
        if (engine) {
          for (const ek of engine) {
            if (!engineSeen.has(ek)) {
              engineSeen.add(ek);
              enginePool.push(ek);
            }
          }
        }
        recentStarts.push(op.start);
        if (recentStarts.length > 32) recentStarts.shift();
        if (serverClock && op.ttlMs === SERVER_SHORT_TTL_MS && roundStartedAt === null) roundStartedAt = performance.now();
        const decided = op.entries.filter((e) => e.speculative);
        if (decided.length > 0) {
          recentDecisions.push({ start: op.start, len: op.len, entries: decided });
          if (recentDecisions.length > 8) recentDecisions.shift();
        }
        await subject.index.add(engine ? BigUint64Array.from(engine) : null, BigUint64Array.from(keys), op.entries, op.ttlMs === undefined ? undefined : { ttlMs: op.ttlMs });
        model.add(engine, keys, op.entries, op.ttlMs);
        checkConfirmations();
        await checkCapacity();
        peakEntries = Math.max(peakEntries, model.entries);
        return;
      }
      case 'evict-request':
        await subject.index.evict(requestKeyOf(op.key), 'request', op.entries);
        model.evict(requestKeyOf(op.key), 'request', op.entries);
        return;
      case 'evict-engine':
        await syncMapping(op.engineKey);
        await subject.index.evict(op.engineKey, 'engine', op.entries);
        model.evict(op.engineKey, 'engine', op.entries);
        return;
      case 'advance':
        if (serverClock && roundStartedAt !== null && performance.now() - roundStartedAt > SERVER_ROUND_BUDGET_MS) throw new Stalled();
        now += op.ms;
        await subject.advance(op.ms);
        model.advance(op.ms);
        roundStartedAt = null;
        return;
      case 'clear': {
        const removed = await subject.index.clear(op.pod);
        const want = model.clear(op.pod);
        expectEqual(`entries clear(${op.pod}) removed`, removed, want);
        return;
      }
      case 'lookup': {
        const res = await subject.index.lookup(BigUint64Array.from(keysOf(op.start, op.len)), {
          ...(op.pods ? { pods: op.pods } : {}),
          ...(op.earlyStop === undefined ? {} : { earlyStop: op.earlyStop }),
        });
        checkLookup(op, res);
        return;
      }
      case 'resolve':
        return checkResolve(op.engineKey);
      case 'pod-counts':
        return checkPodCounts();
      case 'stats':
        return checkStats();
      case 'dump':
        return checkDump(op.pod, op.limit);
      case 'snapshot': {
        const source = subject.index as KvBlockIndex & Partial<SnapshotCapable>;
        if (typeof source.exportSnapshot !== 'function') return;
        const snapshot = source.exportSnapshot();
        tallies = freshTallies();
        const replica = await harness.create(config);
        const admitted = (replica.index as KvBlockIndex & SnapshotCapable).importSnapshot(snapshot);
        await subject.index.close();
        subject = replica;
        carried.confirmed += model.confirmed;
        carried.expired += model.expired;
        carried.capacityEvictions += model.capacityEvictions;
        model = model.replicaOf();
        expectEqual('entries a replica admitted from the snapshot', admitted, model.entries);
        await checkCapacity();
        return fullCheck();
      }
      case 'invalid': {
        const keys = BigUint64Array.from(keysOf(op.start, op.len));
        let code: unknown = 'nothing';
        try {
          if (op.call === 'add') await subject.index.add(BigUint64Array.from(engineKeysFor({ kind: '1:1' }, op.start, op.len)), keys, op.entries);
          else await subject.index.evict(keys[0]!, 'request', op.entries);
        } catch (err) {
          code = (err as { code?: unknown }).code;
        }
        expectEqual(`${op.call} with an invalid entry: the error code`, code, 'INVALID_ENTRY');
        return;
      }
      case 'full-check':
        return fullCheck();
    }
  };

  let i = 0;
  try {
    for (; i < options.ops; i++) {
      const op = generate(i);
      trace.push(describe(op));
      if (trace.length > 25) trace.shift();
      kinds[op.t] = (kinds[op.t] ?? 0) + 1;
      await apply(op);
    }
    trace.push('final full check');
    await fullCheck();
  } catch (err) {
    if (serverClock && roundStartedAt !== null && performance.now() - roundStartedAt > SERVER_ROUND_BUDGET_MS && !(err instanceof Stalled)) {
      throw new Stalled(err);
    }
    if (err instanceof Mismatch || err instanceof Stalled) {
      throw new Error(`model check, seed ${options.seed}, op ${i}: ${err.message}\nlast operations (oldest first):\n  ${trace.join('\n  ')}`, { cause: err });
    }
    throw err;
  } finally {
    await subject.index.close();
  }
  return {
    ops: options.ops,
    kinds,
    peakEntries,
    forgottenMappings,
    confirmed: carried.confirmed + model.confirmed,
    expired: carried.expired + model.expired,
    capacityEvictions: carried.capacityEvictions + model.capacityEvictions,
  };
}

/** Seeds and sizes from the environment: KVIX_MODEL_SEED (one seed), KVIX_MODEL_SEEDS (how many), KVIX_MODEL_OPS. */
export function modelCheckPlan(defaults: { seeds: number; ops: number; firstSeed?: number }): { seeds: number[]; ops: number } {
  const env = typeof process === 'undefined' ? {} : process.env;
  const ops = Number(env['KVIX_MODEL_OPS'] ?? defaults.ops);
  if (env['KVIX_MODEL_SEED'] !== undefined) return { seeds: [Number(env['KVIX_MODEL_SEED'])], ops };
  const count = Number(env['KVIX_MODEL_SEEDS'] ?? defaults.seeds);
  const first = defaults.firstSeed ?? 1;
  return { seeds: Array.from({ length: count }, (_, k) => first + k), ops };
}
