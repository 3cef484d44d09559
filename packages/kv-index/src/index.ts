export {
  IndexError,
  FLAG_SPECULATIVE,
  FLAG_HAS_GROUP,
  entriesAt,
  type PodEntry,
  type KeyKind,
  type AddOptions,
  type LookupOptions,
  type LookupResult,
  type PrefixMatch,
  type PrefixMatchOptions,
  type IndexStats,
  type IndexObserver,
  type PodCounts,
  type KvBlockIndex,
  type IndexSnapshot,
  type SnapshotCapable,
} from './types.js';
export { ForwardingIndex } from './forwarding-index.js';
export { InMemoryIndex, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES, DEFAULT_SPECULATIVE_TTL_MS, type InMemoryIndexConfig } from './in-memory/in-memory-index.js';
export { scoreLookup, prefixScores, matchFromLookup, matchPrefixByLookup, tierWeights, DEFAULT_TIER_WEIGHTS, type TierWeights, type PodScore } from './scorer.js';
export {
  EventApplier,
  type EventApplierConfig,
  type EventSource,
  type ApplyResult,
  type ApplierObserver,
  type StoreSkipReason,
  type RemoveSkipReason,
  type BatchRejectReason,
  DEFAULT_MAX_BLOCKS_PER_EVENT,
  DEFAULT_MAX_TOKENS_PER_BLOCK,
} from './applier/event-applier.js';
export { rulesFor, type EngineProfile, type EngineKind, type LmcacheMode, type EventRules } from './applier/engine-profile.js';
export { DEFAULT_INDEXED_KINDS } from './applier/group-catalog.js';
