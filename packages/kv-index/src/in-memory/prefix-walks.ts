import { MAX_PODS, groupOf, hasGroupCode, isSpeculativeCode, podOf, tierOf, type EntryCodec } from '../entry-codes.js';
import { allocColumns, allocPrefixColumns } from '../result-slab.js';
import { DEFAULT_TIER_WEIGHTS, tierWeightsFor } from '../scorer.js';
import { FLAG_HAS_GROUP, FLAG_SPECULATIVE, type LookupOptions, type LookupResult, type PrefixMatch, type PrefixMatchOptions } from '../types.js';
import type { CandidatePods } from './candidate-pods.js';
import type { EntrySets } from './entry-sets.js';
import { grown, NONE, type KeyTable } from './key-table.js';

/**
 * The walks over a prompt's keys behind `lookup` and `matchPrefix`, with their scratch (walks are
 * synchronous, so one set of scratch serves every call).
 *
 * Key 0 is found by a probe; each later key is compared with the record after its predecessor's
 * (or the hinted one), not hashed; consecutive keys holding the same entry set form a run, whose
 * entries (lookup) or pods' depth, best tier weight and tiers (prefix match) are taken once. Both
 * stop where no (candidate) pod can extend its run from key 0, and touch the keys they examine
 * (the one they stop at included) as the contract's least-recently-used order has it.
 */
export class PrefixWalks {
  private readonly runLen = new Int32Array(MAX_PODS);
  /** Per pod: its slot in the current prefix match, or -1. */
  private readonly slotOf = new Int32Array(MAX_PODS).fill(-1);
  private slotPod = new Int32Array(64);
  private slotBest = new Float64Array(64);
  private slotMark = new Int32Array(64);
  private slotTierMark = new Int32Array(64 * 8);
  private advancing = new Int32Array(64);
  private tierBumps = new Int32Array(64 * 8);
  private runStamp = 0;
  private scratchPod = new Uint32Array(4096);
  private scratchTier = new Uint8Array(4096);
  private scratchFlags = new Uint8Array(4096);
  private scratchGroup = new Uint16Array(4096);
  private scratchOffsets = new Uint32Array(1024);

  constructor(
    private readonly keys: KeyTable,
    private readonly sets: EntrySets,
    private readonly codec: EntryCodec,
    private readonly candidates: CandidatePods,
  ) {}

  /** Entries per key, in columns; a run of keys holding one set is expanded from that set once. */
  lookup(words: Uint32Array, base: number, n: number, options: LookupOptions, podTable: readonly string[]): LookupResult {
    const earlyStop = options.earlyStop ?? true;
    const filter = options.pods === undefined ? null : this.candidates.mark(options.pods, this.codec);
    const keys = this.keys;
    const runLen = this.runLen;
    const offsets = this.scratchOffsets.length > n ? this.scratchOffsets : (this.scratchOffsets = new Uint32Array(2 * n + 2));
    const started: number[] = [];
    let count = 0;
    let keyCount = n;
    let i = 0;
    let r = n > 0 ? keys.find(words[base]!, words[base + 1]!) : NONE;
    while (i < n) {
      if (r === NONE) {
        offsets[i] = count;
        if (earlyStop) {
          // No pod holds keys 0..i: nothing from here on can lengthen any prefix run.
          keyCount = i;
          break;
        }
        i++;
        if (i < n) r = keys.find(words[base + 2 * i]!, words[base + 2 * i + 1]!);
        continue;
      }
      const s = keys.set[r]!;
      const codes = this.sets.codes[s]!;
      // The set's (candidate) entries once for the whole run, and whether any pod's run goes on.
      const runStart = i;
      let width = 0;
      let advances = false;
      for (let j = 0; j < codes.length; j++) {
        const code = codes[j]!;
        const pod = podOf(code);
        if (filter !== null && filter[pod] === 0) continue;
        if (runLen[pod] === runStart) advances = true;
        if (count + width === this.scratchPod.length) this.growScratch();
        const at = count + width++;
        this.scratchPod[at] = pod;
        this.scratchTier[at] = tierOf(code);
        this.scratchFlags[at] = (isSpeculativeCode(code) ? FLAG_SPECULATIVE : 0) | (hasGroupCode(code) ? FLAG_HAS_GROUP : 0);
        this.scratchGroup[at] = groupOf(code);
      }
      keys.touch(r);
      if (earlyStop && !advances) {
        offsets[i] = count;
        keyCount = i;
        break;
      }
      r = this.extendRun(words, base, i, n, r, s);
      i = this.walkEnd;
      // Keys runStart+1 .. i-1 repeat the first key's entries.
      offsets[runStart] = count;
      count += width;
      for (let k = runStart + 1; k < i; k++) {
        offsets[k] = count;
        if (count + width > this.scratchPod.length) this.growScratch(count + width);
        this.scratchPod.copyWithin(count, count - width, count);
        this.scratchTier.copyWithin(count, count - width, count);
        this.scratchFlags.copyWithin(count, count - width, count);
        this.scratchGroup.copyWithin(count, count - width, count);
        count += width;
      }
      for (let j = count - width; j < count; j++) {
        const pod = this.scratchPod[j]!;
        if (runLen[pod] === runStart) {
          if (runStart === 0) started.push(pod);
          runLen[pod] = i;
        }
      }
    }
    offsets[keyCount] = count;
    for (const pod of started) runLen[pod] = 0;
    if (filter !== null) this.candidates.unmark();
    keys.flushTouches();
    const columns = allocColumns(keyCount, count);
    columns.offsets.set(offsets.subarray(0, keyCount + 1));
    columns.podIndex.set(this.scratchPod.subarray(0, count));
    columns.tierIndex.set(this.scratchTier.subarray(0, count));
    columns.flags.set(this.scratchFlags.subarray(0, count));
    columns.group.set(this.scratchGroup.subarray(0, count));
    return { keyCount, ...columns, pods: podTable, tiers: this.codec.tierNames };
  }


  /**
   * Each pod's tier-weighted run from key 0 in one walk over the keys. Per key: one compare with
   * the hinted successor record, one set-id compare and one LRU-adjacency compare. Per run of keys
   * holding the same set: the set's pods that are still running advance by the run's length, with
   * their best tier weight and their tiers. It stops where no (candidate) pod goes on, exactly
   * where `lookup` stops early, and touches the same keys.
   */
  match(words: Uint32Array, base: number, n: number, options: PrefixMatchOptions, podTable: readonly string[]): PrefixMatch {
    const weights = options.weights ?? DEFAULT_TIER_WEIGHTS;
    const tierNames = this.codec.tierNames;
    const tierWeight = tierWeightsFor(weights, tierNames);
    const specWeight = weights.speculative;
    const stride = tierNames.length + 1;
    const filter = options.pods === undefined ? null : this.candidates.mark(options.pods, this.codec);
    // Room for every pod the index knows, so the loops below never grow (and reload) an array.
    this.ensureSlots(this.codec.podNames.length, stride);
    const keys = this.keys;
    const slotOf = this.slotOf;
    const slotPod = this.slotPod;
    const slotBest = this.slotBest;
    const slotMark = this.slotMark;
    const slotTierMark = this.slotTierMark;
    const advancing = this.advancing;
    const tierBumps = this.tierBumps;
    let r = n > 0 ? keys.find(words[base]!, words[base + 1]!) : NONE;
    // Only pods holding key 0 have a run: they get the result's slots, and the figures accumulate
    // in the result's own (zeroed) columns.
    let slots = 0;
    if (r !== NONE) {
      const codes = this.sets.codes[keys.set[r]!]!;
      for (let j = 0; j < codes.length; j++) {
        const pod = podOf(codes[j]!);
        if ((filter === null || filter[pod] === 1) && slotOf[pod]! < 0) {
          slotOf[pod] = slots;
          slotPod[slots++] = pod;
        }
      }
    }
    const { podIndex, matchedBlocks, score, tierBlocks } = allocPrefixColumns(slots, stride);
    let i = 0;
    while (r !== NONE) {
      const s = keys.set[r]!;
      const codes = this.sets.codes[s]!;
      const stamp = this.nextStamp();
      let moving = 0;
      let bumps = 0;
      for (let j = 0; j < codes.length; j++) {
        const code = codes[j]!;
        const slot = slotOf[podOf(code)]!;
        // Pods without a slot (no key 0, or not a candidate) and pods whose run broke are done.
        if (slot < 0 || matchedBlocks[slot] !== i) continue;
        if (slotMark[slot] !== stamp) {
          slotMark[slot] = stamp;
          slotBest[slot] = -1;
          advancing[moving++] = slot;
        }
        const speculative = isSpeculativeCode(code);
        const w = speculative ? specWeight : tierWeight[tierOf(code)]!;
        if (w > slotBest[slot]!) slotBest[slot] = w;
        // Blocks per tier, not entries: one pod may hold a block in several groups of a tier.
        const cell = slot * stride + (speculative ? stride - 1 : tierOf(code));
        if (slotTierMark[cell] !== stamp) {
          slotTierMark[cell] = stamp;
          tierBumps[bumps++] = cell;
        }
      }
      // The key where no pod goes on is examined (and used) but ends the walk.
      keys.touch(r);
      if (moving === 0) break;
      const runStart = i;
      r = this.extendRun(words, base, i, n, r, s);
      i = this.walkEnd;
      const m = i - runStart;
      for (let a = 0; a < moving; a++) {
        const slot = advancing[a]!;
        matchedBlocks[slot] = i;
        score[slot]! += m * slotBest[slot]!;
      }
      for (let b = 0; b < bumps; b++) tierBlocks[tierBumps[b]!]! += m;
    }
    const keyCount = i;
    for (let slot = 0; slot < slots; slot++) {
      const pod = slotPod[slot]!;
      podIndex[slot] = pod;
      slotOf[pod] = -1;
    }
    if (filter !== null) this.candidates.unmark();
    keys.flushTouches();
    return { keyCount, podCount: slots, podIndex, matchedBlocks, score, tierBlocks, pods: podTable, tiers: tierNames };
  }


  /** Where the last `extendRun` stopped: the index of the first key not in the run. */
  private walkEnd = 0;

  /**
   * Extends a run from key i (record r, set s, just touched: the pending LRU range ends at r) over
   * the following keys that hold the same set, touching each; sets `walkEnd` and returns the record
   * of the key that ended the run (NONE when it is not held or the keys ran out).
   *
   * The hot loop of every prompt walk, kept tight for the common case: records of a chain are
   * allocated in a row and used together, so the next key is usually in the next record, with the
   * same set, next in the LRU list too — four compares and no store per key (a looser loop with the
   * fallbacks inline measured 1.7× slower). Anything else (the hint, a probe, a set change, a
   * record elsewhere in the LRU list) goes through the slower path below it.
   */
  private extendRun(words: Uint32Array, base: number, i: number, n: number, r: number, s: number): number {
    const keys = this.keys;
    const kw = keys.kw;
    const set = keys.set;
    const lruNext = keys.lruNext;
    const end = base + 2 * n;
    let touchFirst = keys.touchFirst;
    let prev = r;
    let w = base + 2 * (i + 1);
    let next = NONE;
    for (;;) {
      while (w < end) {
        const c = prev + 1;
        if (kw[2 * c] !== words[w] || kw[2 * c + 1] !== words[w + 1] || set[c] !== s || lruNext[prev] !== c) break;
        prev = c;
        w += 2;
      }
      if (w >= end) break;
      const kLo = words[w]!;
      const kHi = words[w + 1]!;
      let c = prev + 1;
      if (kw[2 * c] !== kLo || kw[2 * c + 1] !== kHi || set[c]! < 0) {
        c = keys.child[prev]!;
        if (c < 0 || kw[2 * c] !== kLo || kw[2 * c + 1] !== kHi || set[c]! < 0) {
          c = keys.find(kLo, kHi);
          if (c === NONE) break;
          keys.child[prev] = c;
        }
      }
      if (set[c] !== s) {
        next = c;
        break;
      }
      // Not next in the LRU list: the pending range moves now, and a new one starts here.
      if (lruNext[prev] !== c) {
        keys.moveRangeToTail(touchFirst, prev);
        touchFirst = c;
      }
      prev = c;
      w += 2;
    }
    keys.touchFirst = touchFirst;
    keys.touchLast = prev;
    this.walkEnd = (w - base) >> 1;
    return next;
  }

  private nextStamp(): number {
    if (this.runStamp >= 0x3fffffff) {
      this.runStamp = 0;
      this.slotMark.fill(0);
      this.slotTierMark.fill(0);
    }
    return ++this.runStamp;
  }

  /** Prefix-match scratch for `pods` pods of `stride` tier counts each. */
  private ensureSlots(pods: number, stride: number): void {
    if (pods > this.slotPod.length) {
      const cap = Math.max(pods, 2 * this.slotPod.length);
      this.slotPod = grown(this.slotPod, cap);
      this.slotBest = grown(this.slotBest, cap);
      this.slotMark = grown(this.slotMark, cap);
      this.advancing = grown(this.advancing, cap);
    }
    // A run bumps at most one count per (pod, tier) cell.
    const cells = this.slotPod.length * stride;
    if (cells > this.slotTierMark.length) this.slotTierMark = grown(this.slotTierMark, cells);
    if (cells > this.tierBumps.length) this.tierBumps = grown(this.tierBumps, cells);
  }


  private growScratch(atLeast = 0): void {
    const cap = Math.max(this.scratchPod.length * 2, atLeast);
    this.scratchPod = grown(this.scratchPod, cap);
    this.scratchTier = grown(this.scratchTier, cap);
    this.scratchFlags = grown(this.scratchFlags, cap);
    this.scratchGroup = grown(this.scratchGroup, cap);
  }

}
