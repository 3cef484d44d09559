import type { BlockExtras, RequestKeyHasher } from '@kvix/block-keys';
import { tierOfEvent, type BlockRemoved, type BlockStored, type EventBatch, type KvEvent, type MsgpackValue } from '@kvix/kv-events';
import type { KvBlockIndex, PodEntry } from '../types.js';
import { ChainTails, type ChainTail, type PendingSegment } from './chain-tails.js';
import { Continuations } from './continuations.js';
import { rulesFor, type EngineProfile, type EventRules } from './engine-profile.js';
import { DEFAULT_INDEXED_KINDS, GroupCatalog } from './group-catalog.js';
import { LmcacheLedger } from './lmcache-ledger.js';
import { RefCounts } from './ref-counts.js';

/** Why a BlockStored event (or part of it) was not indexed. Stable: these are metric labels. */
export type StoreSkipReason =
  | 'unknown_parent'
  | 'unsupported_cache_kind'
  | 'unknown_engine_key'
  | 'token_count_mismatch'
  | 'no_block_hashes'
  /** A recurrent (Mamba) group's state checkpoint: one hash, no tokens, not a reusable prefix block. */
  | 'mamba_state_checkpoint'
  /** LMCache in-process: a chunk whose parent is 0 (unknown) and whose prefix no event revealed. */
  | 'lmcache_unknown_prefix'
  /** LMCache in-process: token ids rewritten for multimodal placeholders (not the prompt's). */
  | 'lmcache_multimodal'
  /** SGLang's EAGLE bigram radix keys: token_ids as [a, b] pairs, not a prompt's tokens. */
  | 'eagle_bigram';

/** Why a whole batch was refused (sanity limits): nothing of it is applied. */
export type BatchRejectReason = 'too_many_hashes' | 'block_too_long';

/** Why a BlockRemoved event was not applied. */
export type RemoveSkipReason = 'unsupported_cache_kind';

export interface EventSource {
  /** Pod identity: the serving endpoint `address:port` (one per data-parallel rank). */
  pod: string;
  /** The model the pod serves; a LoRA adapter's name replaces it at the root of the key chain. */
  model: string;
  /** What the pod runs, from configuration; absent: inferred from the wire (and reported). */
  engine?: EngineProfile;
}

export interface ApplyResult {
  /** Request keys indexed (new or re-announced) for stores with tokens. */
  storedBlocks: number;
  /** Request keys that gained a tier from a token-less (offload) store. */
  tierUpdates: number;
  /** Engine hashes whose removal reached the index. */
  removedHashes: number;
  /** Engine hashes whose removal was suppressed: another announcement still holds them. */
  suppressedRemovals: number;
  cleared: boolean;
  /** Events not (fully) indexed, by reason. */
  skippedStores: Partial<Record<StoreSkipReason, number>>;
  skippedRemovals: Partial<Record<RemoveSkipReason, number>>;
  /**
   * The batch referenced state kvix does not have (a parent block it never saw): replaying the
   * pod's event history would repair it. Transports replay when this is set.
   */
  needsReplay: boolean;
  /** Set when a sanity limit refused the whole batch (nothing of it was applied). */
  rejected?: BatchRejectReason;
  /** Rules this batch had inferred from the wire for the first time for its pod (no configuration said). */
  inferredRules?: EventRules[];
}

export interface ApplierObserver {
  storeSkipped?(reason: StoreSkipReason, pod: string): void;
  batchRejected?(reason: BatchRejectReason, pod: string): void;
  /** A pod without configured engine rules had them inferred from its events (reported once per pod and rules). */
  rulesInferred?(pod: string, rules: EventRules): void;
  /** LMCache in-process entries dropped by TTL or capacity (LMCache announces no removals). */
  lmcacheExpired?(pod: string, chunks: number): void;
  removalSkipped?(reason: RemoveSkipReason, pod: string): void;
  removalsDeduplicated?(forwarded: number, suppressed: number): void;
}

export interface EventApplierConfig {
  /** The index's request-key hasher: its block size is the index's, whatever the engines use. */
  hasher: RequestKeyHasher;
  /** KV-cache kinds whose groups are indexed (hybrid models). Default full_attention, mla_attention. */
  indexedKinds?: readonly string[];
  /** Chain tails kept for continuations of partial request blocks. Default 65,536. */
  maxChainTails?: number;
  /**
   * Sanity limits: a batch with an event of more engine blocks, or an engine block of more tokens,
   * is refused whole and counted (one BlockStored of 1 hash and 16 M tokens would otherwise add a
   * million entries). Defaults 65,536 and 65,536.
   */
  maxBlocksPerEvent?: number;
  maxTokensPerBlock?: number;
  /**
   * LMCache in-process announces no removals: its entries expire this long after their last
   * announcement (default 1 h; 0 = never), and a pod keeps at most `lmcacheMaxChunksPerPod`
   * chunks (default 1,000,000; the oldest announced go first).
   */
  lmcacheTtlMs?: number;
  lmcacheMaxChunksPerPod?: number;
  now?: () => number;
  observer?: ApplierObserver;
}

export const DEFAULT_MAX_BLOCKS_PER_EVENT = 65_536;
export const DEFAULT_MAX_TOKENS_PER_BLOCK = 65_536;
/** A run this long of one token id in an LMCache chunk is a multimodal placeholder LMCache rewrote. */
const LMCACHE_PLACEHOLDER_RUN = 64;

const ROOT: ChainTail = { requestKey: null, pendingTokens: new Uint32Array(0), pendingSegments: [] };

interface ExtraSplit {
  /** Multimodal identifiers (from [identifier, offset] pairs). */
  mm: string[];
  /** Bare strings: the cache salt (and, on some engines, identifiers). Listed after mm. */
  bare: string[];
}

/**
 * Turns decoded event batches of one pod into index operations, transport-free.
 *
 * Request keys are recomputed from each event's token ids at the index's own block size, chained
 * from the parent's request key (found through the engine → request map). Engine blocks map to
 * the complete request blocks they overlap, which is the spec's ratio rule whenever the block
 * sizes align; when they do not, the tokens of a request block still being filled are kept as a
 * chain tail so the next event completes it exactly.
 */
export class EventApplier {
  readonly hasher: RequestKeyHasher;
  private readonly indexedKinds: ReadonlySet<string>;
  private readonly tails: ChainTails;
  private readonly refs = new RefCounts();
  private readonly groups = new GroupCatalog();
  private readonly observer: ApplierObserver | undefined;
  private readonly maxBlocksPerEvent: number;
  private readonly maxTokensPerBlock: number;
  private readonly continuations: Continuations;
  private readonly lmcache: LmcacheLedger;
  /** Pods whose chains are remembered by block tokens (LMCache in-process resolves parent 0 from them). */
  private readonly recordsChains = new Set<string>();
  /** `<pod>/<rules>` already reported as inferred. */
  private readonly inferred = new Set<string>();

  constructor(
    private readonly index: KvBlockIndex,
    config: EventApplierConfig,
  ) {
    this.hasher = config.hasher;
    this.indexedKinds = new Set(config.indexedKinds ?? DEFAULT_INDEXED_KINDS);
    this.tails = new ChainTails(config.maxChainTails ?? 65_536);
    this.observer = config.observer;
    this.maxBlocksPerEvent = config.maxBlocksPerEvent ?? DEFAULT_MAX_BLOCKS_PER_EVENT;
    this.maxTokensPerBlock = config.maxTokensPerBlock ?? DEFAULT_MAX_TOKENS_PER_BLOCK;
    this.continuations = new Continuations(this.hasher, 262_144);
    this.lmcache = new LmcacheLedger(config.lmcacheTtlMs ?? 3_600_000, config.lmcacheMaxChunksPerPod ?? 1_000_000, config.now ?? Date.now);
  }

  /** The first sanity limit an event breaks, if any. */
  private breaksLimits(ev: KvEvent): BatchRejectReason | null {
    if (ev.type === 'AllBlocksCleared') return null;
    const e = ev.blockHashes.length;
    if (e > this.maxBlocksPerEvent) return 'too_many_hashes';
    if (ev.type === 'BlockStored') {
      if (ev.blockSize > this.maxTokensPerBlock) return 'block_too_long';
      if (e > 0 && ev.tokenIds.length > (this.maxTokensPerBlock + 1) * e) return 'block_too_long';
      if (e === 0 && ev.tokenIds.length > this.maxTokensPerBlock) return 'block_too_long';
    }
    return null;
  }

  /** Whether the pod has LMCache in-process entries that may expire. */
  holdsLmcache(pod: string): boolean {
    return this.lmcache.has(pod);
  }

  /**
   * Drops LMCache in-process entries past their TTL (every pod, or one): call it now and then
   * (apply does for the pod it applies to). Returns the chunks dropped.
   */
  async expireLmcache(pod?: string): Promise<number> {
    let dropped = 0;
    for (const [p, chunks] of this.lmcache.takeExpired(pod)) {
      for (const c of chunks) await this.removeEngineBlockFully(c.hash, { pod: p, tier: c.tier, speculative: false });
      dropped += chunks.length;
      this.observer?.lmcacheExpired?.(p, chunks.length);
    }
    return dropped;
  }

  /** Every announcement of the chunk goes (LMCache re-announces a chunk it stores again). */
  private async removeEngineBlockFully(hash: bigint, entry: PodEntry): Promise<void> {
    const scope = this.refs.scopeOf(entry.tier, null);
    const one = BigUint64Array.of(hash);
    // A count is at most 0xffff: release until the removal is forwarded.
    for (let i = 0; i <= 0xffff; i++) {
      if (this.refs.release(entry.pod, scope, one).length > 0) return this.removeEngineBlock(hash, entry, scope);
    }
  }

  /** Bytes held by the applier's own state (reference counts), for memory accounting. */
  get bytes(): number {
    return this.refs.bytes;
  }

  get chainTailCount(): number {
    return this.tails.size;
  }

  async apply(batch: EventBatch, source: EventSource): Promise<ApplyResult> {
    const result: ApplyResult = {
      storedBlocks: 0,
      tierUpdates: 0,
      removedHashes: 0,
      suppressedRemovals: 0,
      cleared: false,
      skippedStores: {},
      skippedRemovals: {},
      needsReplay: false,
    };
    for (const ev of batch.events) {
      const broken = this.breaksLimits(ev);
      if (broken !== null) {
        result.rejected = broken;
        this.observer?.batchRejected?.(broken, source.pod);
        return result;
      }
    }
    if (this.lmcache.has(source.pod)) await this.expireLmcache(source.pod);
    // Events of one pod must be applied in order: each may depend on the previous one's keys.
    for (const ev of batch.events) {
      switch (ev.type) {
        case 'BlockStored':
          await this.applyStoredBy(ev, source, result);
          break;
        case 'BlockRemoved':
          await this.applyRemoved(ev, source, result);
          break;
        case 'AllBlocksCleared':
          await this.clearPod(source.pod);
          result.cleared = true;
          break;
      }
    }
    return result;
  }

  /** Forget everything about a pod (engine reset, pod removed from discovery). */
  async clearPod(pod: string): Promise<number> {
    this.refs.clear(pod);
    this.lmcache.clear(pod);
    return this.index.clear(pod);
  }

  /** Forget a pod's group kinds too (it is gone for good, not merely reset). */
  async removePod(pod: string): Promise<number> {
    this.groups.forget(pod);
    this.recordsChains.delete(pod);
    for (const key of [...this.inferred]) if (key.startsWith(`${pod}/`)) this.inferred.delete(key);
    return this.clearPod(pod);
  }

  private skipStore(result: ApplyResult, reason: StoreSkipReason, pod: string): void {
    result.skippedStores[reason] = (result.skippedStores[reason] ?? 0) + 1;
    this.observer?.storeSkipped?.(reason, pod);
  }

  /** Whether a group's blocks belong in the index; learns kinds from stores. */
  private indexable(pod: string, group: number | null, kind: string | null): boolean {
    if (group !== null && kind !== null) this.groups.learn(pod, group, kind);
    const effective = kind ?? (group === null ? undefined : this.groups.kindOf(pod, group));
    return effective === undefined || this.indexedKinds.has(effective);
  }

  /** Picks the event's rules (configured, or inferred and reported) and adapts it to the common path. */
  private async applyStoredBy(ev: BlockStored, source: EventSource, result: ApplyResult): Promise<void> {
    const pod = source.pod;
    // vLLM's own events for a pod with LMCache in-process reveal the prefixes its chunks continue.
    if (source.engine?.lmcache === 'inproc') this.recordsChains.add(pod);
    const { rules, inferred } = rulesFor(ev, source.engine);
    if (inferred && !this.inferred.has(`${pod}/${rules}`)) {
      this.inferred.add(`${pod}/${rules}`);
      (result.inferredRules ??= []).push(rules);
      this.observer?.rulesInferred?.(pod, rules);
    }
    if (ev.bigramTokens === true) return this.skipStore(result, 'eagle_bigram', pod);
    if (ev.kvCacheSpecKind === 'mamba' && ev.tokenIds.length === 0) return this.skipStore(result, 'mamba_state_checkpoint', pod);
    switch (rules) {
      case 'lmcache-inproc':
        return this.applyLmcacheInproc(ev, source, result);
      case 'sglang': {
        // SGLang puts the salt on every event of a salted chain; the chain's root block carries it (as vLLM's extra_keys do).
        if (ev.cacheSalt && ev.parentBlockHash === null && ev.blockHashes.length > 0) {
          const extraKeys: (MsgpackValue[] | null)[] = Array.from({ length: ev.blockHashes.length }, () => null);
          extraKeys[0] = [ev.cacheSalt];
          return this.applyStored({ ...ev, extraKeys }, source, result);
        }
        return this.applyStored(ev, source, result);
      }
      default:
        if (source.engine?.reportMode === 'full' && tierOfEvent(ev) === 'gpu') return this.applyStored(ev, source, result, { idempotent: true });
        return this.applyStored(ev, source, result);
    }
  }

  /**
   * LMCache's in-process engine (through vLLM's connector): one chunk per event, `block_size` the
   * chunk length, one token of the next chunk appended, parent 0 when the store skipped chunks
   * already saved (an unknown parent, never a root), no removals ever (entries expire instead).
   */
  private async applyLmcacheInproc(ev: BlockStored, source: EventSource, result: ApplyResult): Promise<void> {
    const pod = source.pod;
    this.recordsChains.add(pod);
    const e = ev.blockHashes.length;
    if (e === 0) return this.skipStore(result, 'no_block_hashes', pod);
    const block = ev.blockSize > 0 ? ev.blockSize : Math.floor(ev.tokenIds.length / e);
    const tokens = ev.tokenIds.length > block * e ? ev.tokenIds.subarray(0, block * e) : ev.tokenIds;
    if (hasPlaceholderRun(tokens)) return this.skipStore(result, 'lmcache_multimodal', pod);
    const trimmed: BlockStored = { ...ev, tokenIds: tokens };
    const tier = tierOfEvent(ev);
    const parent = ev.parentBlockHash;
    let resolvedParent: bigint | null | undefined;
    if (parent === 0n || (parent !== null && (await this.index.requestKeyFor(parent)) === undefined && this.tails.get(parent) === undefined)) {
      // Its own hash may be known already (the same chunk announced before, with its prefix).
      const own = await this.index.requestKeysFor(ev.blockHashes[0]!);
      if (own.length > 0 && e === 1) {
        await this.index.add(null, BigUint64Array.from(own), [{ pod, tier, speculative: false }]);
        this.refs.track(pod, this.refs.scopeOf(tier, null), ev.blockHashes);
        this.lmcache.announce(pod, ev.blockHashes, tier);
        result.tierUpdates += own.length;
        return;
      }
      // Otherwise the chain that continues with these tokens, when exactly one has been seen.
      resolvedParent = this.continuations.parentOf(tokens, source.model, ev.loraName);
      if (resolvedParent === undefined) return this.skipStore(result, 'lmcache_unknown_prefix', pod);
    }
    const before = result.storedBlocks;
    await this.applyStored(trimmed, source, result, resolvedParent === undefined ? { noReplay: true } : { parentKey: resolvedParent });
    if (result.storedBlocks > before) this.lmcache.announce(pod, ev.blockHashes, tier);
  }

  private async applyStored(
    ev: BlockStored,
    source: EventSource,
    result: ApplyResult,
    options: { idempotent?: boolean; parentKey?: bigint | null; noReplay?: boolean } = {},
  ): Promise<void> {
    const pod = source.pod;
    const e = ev.blockHashes.length;
    if (e === 0) return this.skipStore(result, 'no_block_hashes', pod);
    if (!this.indexable(pod, ev.groupIdx, ev.kvCacheSpecKind)) return this.skipStore(result, 'unsupported_cache_kind', pod);
    const tier = tierOfEvent(ev);
    const entry: PodEntry = ev.groupIdx === null ? { pod, tier, speculative: false } : { pod, tier, speculative: false, group: ev.groupIdx };
    const scope = this.refs.scopeOf(tier, ev.groupIdx);

    if (ev.tokenIds.length === 0) return this.applyTokenless(ev, entry, scope, result);

    const total = ev.tokenIds.length;
    if (total % e !== 0) return this.skipStore(result, 'token_count_mismatch', pod);
    const engineBlock = total / e;

    let base: ChainTail = ROOT;
    const parent = ev.parentBlockHash;
    if (options.parentKey !== undefined) {
      base = { requestKey: options.parentKey, pendingTokens: ROOT.pendingTokens, pendingSegments: [] };
    } else if (parent !== null && parent !== 0n) {
      const tail = this.tails.get(parent);
      if (tail !== undefined) base = tail;
      else {
        const parentKey = await this.index.requestKeyFor(parent);
        if (parentKey === undefined) {
          // A copy of blocks already known by their own hashes (vLLM 0.34's self-describing offload
          // events name a parent whose GPU copy may be long gone): their request keys are known.
          if (await this.allMapped(ev.blockHashes)) return this.applyTokenless(ev, entry, scope, result);
          // The consumer missed the parent's store (started late, lost events): replay fixes it.
          if (options.noReplay !== true) result.needsReplay = true;
          return this.skipStore(result, 'unknown_parent', pod);
        }
        base = { requestKey: parentKey, pendingTokens: ROOT.pendingTokens, pendingSegments: [] };
      }
    }
    if (options.idempotent === true) {
      // A re-announcement (vLLM's report mode "full") of blocks already held is the same copy.
      const held = this.refs.heldMask(pod, scope, ev.blockHashes);
      if (held.every((h) => h === 1)) return;
    }

    const model = ev.loraName ? ev.loraName : source.model;
    const B = this.hasher.blockSize;
    const pending = base.pendingTokens.length;
    const aligned = pending === 0 && engineBlock % B === 0;
    const eventExtras = splitEventExtras(ev.extraKeys, ev.loraName);
    const chainStart = base === ROOT;

    if (aligned) {
      // The common case (engine block = or a multiple of kvix's): the ratio rule is exact.
      const extras = engineBlock === B ? simpleExtras(eventExtras) : regroupExtras(segmentsOf(ev, engineBlock, 0, eventExtras, chainStart), Math.floor(total / B), B);
      const keys = this.hasher.keys(ev.tokenIds, model, { parent: base.requestKey, extras });
      await this.index.add(ev.blockHashes, keys, [entry]);
      if (this.recordsChains.has(pod) && extras === null) this.continuations.record(ev.tokenIds, keys, base.requestKey, model);
      // Engine block j reaches past the end of each of its request blocks but the last.
      const ratio = engineBlock / B;
      if (ratio === 1) this.refs.track(pod, scope, ev.blockHashes);
      else {
        const fresh = this.refs.trackFresh(pod, scope, ev.blockHashes);
        for (let j = 0; j < e; j++) if (fresh[j] === 1) this.refs.cover(pod, scope, keys.subarray(j * ratio, (j + 1) * ratio - 1));
      }
      result.storedBlocks += keys.length;
      return;
    }

    // General case: positions over (pending tokens of the parent's request block) ++ (this event).
    const combined = new Uint32Array(pending + total);
    combined.set(base.pendingTokens, 0);
    combined.set(ev.tokenIds, pending);
    const own = segmentsOf(ev, engineBlock, pending, eventExtras, chainStart);
    const segments = [...base.pendingSegments, ...own];
    const complete = Math.floor(combined.length / B);
    const extras = regroupExtras(segments, complete, B);
    const keys = this.hasher.keys(combined, model, { parent: base.requestKey, extras });
    if (this.recordsChains.has(pod) && extras === null) this.continuations.record(combined, keys, base.requestKey, model);

    if (keys.length > 0) {
      await this.index.add(null, keys, [entry]);
      // Each engine block maps to the complete request blocks it overlaps.
      for (let s = 0; s < segments.length; s++) {
        const seg = segments[s]!;
        const first = Math.floor(seg.start / B);
        const last = Math.min(complete, Math.ceil(seg.end / B)) - 1;
        if (last < first) continue;
        let mapped = keys.subarray(first, last + 1);
        if (s < base.pendingSegments.length) {
          // An earlier event's engine block, already mapped to the request blocks it completed then:
          // a mapping is replaced, not extended, so it keeps those (its removal must take them too).
          const earlier = (await this.index.requestKeysFor(seg.engineKey)).filter((k) => !mapped.includes(k));
          if (earlier.length > 0) mapped = BigUint64Array.from([...earlier, ...mapped]);
        }
        await this.index.add(BigUint64Array.of(seg.engineKey), mapped, [entry]);
      }
    }
    const fresh = this.refs.trackFresh(pod, scope, ev.blockHashes);
    own.forEach((seg, j) => {
      // The request blocks this engine block overlaps and reaches past the end of.
      const first = Math.floor(seg.start / B);
      const last = Math.min(complete, Math.ceil(seg.end / B) - 1) - 1;
      if (fresh[j] === 1 && last >= first) this.refs.cover(pod, scope, keys.subarray(first, last + 1));
    });
    result.storedBlocks += keys.length;

    // Tails for this event's engine blocks that end inside a request block.
    for (let j = 0; j < e; j++) {
      const end = pending + (j + 1) * engineBlock;
      const hash = ev.blockHashes[j]!;
      if (end % B === 0) {
        this.tails.delete(hash);
        continue;
      }
      const full = Math.floor(end / B);
      const from = full * B;
      this.tails.set(hash, {
        requestKey: full > 0 ? keys[full - 1]! : base.requestKey,
        pendingTokens: combined.slice(from, end),
        pendingSegments: segments
          .filter((s) => s.end > from && s.start < end)
          // Rebased past the chain's first request block, the salt no longer belongs to block 0 here.
          .map((s) => ({ ...s, start: Math.max(0, s.start - from), end: Math.min(end, s.end) - from, chainStart: s.chainStart === true && from === 0 })),
      });
    }
  }

  private async allMapped(hashes: BigUint64Array): Promise<boolean> {
    for (const h of hashes) if ((await this.index.requestKeysFor(h)).length === 0) return false;
    return true;
  }

  /**
   * Offload-tier stores without tokens (vLLM's OffloadingConnector): the blocks were first stored
   * with tokens on the GPU, so their request keys resolve through the engine map.
   */
  private async applyTokenless(ev: BlockStored, entry: PodEntry, scope: number, result: ApplyResult): Promise<void> {
    const resolved: bigint[] = [];
    const seen = new Set<bigint>();
    const known: bigint[] = [];
    const keysOf: bigint[][] = [];
    for (const hash of ev.blockHashes) {
      const keys = await this.index.requestKeysFor(hash);
      if (keys.length === 0) continue;
      known.push(hash);
      keysOf.push(keys);
      for (const k of keys) {
        if (!seen.has(k)) {
          seen.add(k);
          resolved.push(k);
        }
      }
    }
    if (known.length < ev.blockHashes.length) this.skipStore(result, 'unknown_engine_key', entry.pod);
    if (resolved.length === 0) return;
    await this.index.add(null, BigUint64Array.from(resolved), [entry]);
    const fresh = this.refs.trackFresh(entry.pod, scope, BigUint64Array.from(known));
    // An engine block reaches past the end of every request block it maps to but the last (whether
    // it reaches past the last one's too cannot be told without its tokens: not counted).
    for (let j = 0; j < known.length; j++) if (fresh[j] === 1 && keysOf[j]!.length > 1) this.refs.cover(entry.pod, scope, BigUint64Array.from(keysOf[j]!.slice(0, -1)));
    result.tierUpdates += resolved.length;
  }

  private async applyRemoved(ev: BlockRemoved, source: EventSource, result: ApplyResult): Promise<void> {
    const pod = source.pod;
    if (ev.groupIdx !== null && !this.indexable(pod, ev.groupIdx, null)) {
      result.skippedRemovals['unsupported_cache_kind'] = (result.skippedRemovals['unsupported_cache_kind'] ?? 0) + 1;
      this.observer?.removalSkipped?.('unsupported_cache_kind', pod);
      return;
    }
    const tier = tierOfEvent(ev);
    const entry: PodEntry = ev.groupIdx === null ? { pod, tier, speculative: false } : { pod, tier, speculative: false, group: ev.groupIdx };
    const scope = this.refs.scopeOf(tier, ev.groupIdx);
    const forwarded = this.refs.release(pod, scope, ev.blockHashes);
    if (ev.groupIdx === null) this.lmcache.forget(pod, forwarded);
    for (const hash of forwarded) await this.removeEngineBlock(hash, entry, scope);
    const suppressed = ev.blockHashes.length - forwarded.length;
    result.removedHashes += forwarded.length;
    result.suppressedRemovals += suppressed;
    this.observer?.removalsDeduplicated?.(forwarded.length, suppressed);
  }

  /**
   * An engine block's last announcement went. Its request keys go with it, except those it reached
   * past the end of while another held engine block of the pod still does: prompts sharing a
   * request block's tokens but not the rest of the engine block (engine blocks larger than request
   * blocks, or straddling them). The blocks before it in its chain outlive it in an engine's cache
   * (vLLM frees a request's blocks last-first), so a request key it only ends inside has no other
   * holder left by then.
   */
  private async removeEngineBlock(hash: bigint, entry: PodEntry, scope: number): Promise<void> {
    // Engine blocks that divide request blocks (the common case) cost no lookup.
    if (!this.refs.hasCovers(entry.pod)) return this.index.evict(hash, 'engine', [entry]);
    const keys = [...new Set(await this.index.requestKeysFor(hash))];
    const gone = keys.filter((k) => this.refs.uncover(entry.pod, scope, k));
    if (gone.length === keys.length) return this.index.evict(hash, 'engine', [entry]);
    for (const k of gone) await this.index.evict(k, 'request', [entry]);
  }
}

/** LMCache rewrites a multimodal placeholder's span as one repeated id (16 bits of the item's hash). */
function hasPlaceholderRun(tokens: Uint32Array): boolean {
  let run = 1;
  for (let i = 1; i < tokens.length; i++) {
    run = tokens[i] === tokens[i - 1] ? run + 1 : 1;
    if (run >= LMCACHE_PLACEHOLDER_RUN) return true;
  }
  return false;
}

/**
 * Per engine block: multimodal identifiers and bare strings, from an event's extra_keys. vLLM
 * lists the LoRA name first on every block; it is the chain's root already, so it is dropped.
 * Ints (legacy LoRA ids) and bytes (prompt-embeds digests) cannot be reproduced from a prompt.
 */
function splitEventExtras(extraKeys: (MsgpackValue[] | null)[] | null, loraName: string | null): (ExtraSplit | null)[] | null {
  if (extraKeys === null || extraKeys.length === 0) return null;
  let any = false;
  const out = extraKeys.map((entries): ExtraSplit | null => {
    if (entries === null || entries.length === 0) return null;
    const split: ExtraSplit = { mm: [], bare: [] };
    entries.forEach((item, k) => {
      if (typeof item === 'string') {
        if (!(k === 0 && loraName && item === loraName)) split.bare.push(item);
      } else if (Array.isArray(item) && typeof item[0] === 'string') {
        split.mm.push(item[0]);
      }
    });
    if (split.mm.length === 0 && split.bare.length === 0) return null;
    any = true;
    return split;
  });
  return any ? out : null;
}

/** Extras when engine and request blocks coincide: each block's identifiers in the engine's order. */
function simpleExtras(split: (ExtraSplit | null)[] | null): BlockExtras[] | null {
  if (split === null) return null;
  return split.map((s) => (s === null ? null : [...s.mm, ...s.bare]));
}

function segmentsOf(ev: BlockStored, engineBlock: number, offset: number, extras: (ExtraSplit | null)[] | null, chainStart: boolean): PendingSegment[] {
  const out: PendingSegment[] = [];
  for (let j = 0; j < ev.blockHashes.length; j++) {
    const x = extras?.[j] ?? null;
    out.push({ engineKey: ev.blockHashes[j]!, start: offset + j * engineBlock, end: offset + (j + 1) * engineBlock, mm: x?.mm ?? [], bare: x?.bare ?? [], chainStart: chainStart && j === 0 });
  }
  return out;
}

/**
 * Request block k's extras: the multimodal identifiers of every engine block overlapping it (each
 * once, in order), then the bare strings (the cache salt goes last on block 0 only, as on the
 * prompt side, even when the chain's first engine block spans several request blocks). Null when
 * no block has any. An engine block larger than a request block cannot say which of its request
 * blocks an image covers (events give an item's start at most, never its end), so multimodal
 * identifiers go to every request block of the engine blocks that list them.
 */
function regroupExtras(segments: readonly PendingSegment[], blocks: number, B: number): BlockExtras[] | null {
  if (!segments.some((s) => s.mm.length > 0 || s.bare.length > 0)) return null;
  const out: BlockExtras[] = [];
  for (let k = 0; k < blocks; k++) {
    const from = k * B;
    const to = from + B;
    const mm: string[] = [];
    const bare: string[] = [];
    for (const s of segments) {
      if (s.end <= from || s.start >= to) continue;
      for (const id of s.mm) if (!mm.includes(id)) mm.push(id);
      const strings = s.chainStart === true && k > 0 ? s.bare.slice(0, -1) : s.bare;
      for (const id of strings) if (!bare.includes(id)) bare.push(id);
    }
    const ids = [...mm, ...bare];
    out.push(ids.length > 0 ? ids : null);
  }
  return out;
}
