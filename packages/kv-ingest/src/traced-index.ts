import {
  EventApplier,
  ForwardingIndex,
  type AddOptions,
  type ApplyResult,
  type EventSource,
  type KeyKind,
  type KvBlockIndex,
  type LookupOptions,
  type LookupResult,
  type PodEntry,
  type PrefixMatch,
  type PrefixMatchOptions,
} from '@kvix/kv-index';
import type { EventBatch } from '@kvix/kv-events';
import { Sampled, spanIfTracing, withSpan } from '@kvix/telemetry';

/**
 * OpenTelemetry spans around any index backend (a decorator, like the metrics one): lookups,
 * adds, evictions and clears, each a child of the request or sampled batch under way. An
 * operation outside any trace (a debug route, a sweep) starts none.
 */
export class TracedIndex extends ForwardingIndex {
  constructor(inner: KvBlockIndex) {
    super(inner);
  }

  override lookup(requestKeys: BigUint64Array, options?: LookupOptions): Promise<LookupResult> {
    return spanIfTracing('kvix.index.lookup', { 'kvix.keys': requestKeys.length, 'kvix.index.backend': this.inner.backend }, () => this.inner.lookup(requestKeys, options));
  }

  /** The scorer's lookup (each pod's run in one walk): the same span as a lookup, told apart by an attribute. */
  override matchPrefix(requestKeys: BigUint64Array, options?: PrefixMatchOptions): Promise<PrefixMatch> {
    return spanIfTracing('kvix.index.lookup', { 'kvix.keys': requestKeys.length, 'kvix.index.backend': this.inner.backend, 'kvix.index.call': 'matchPrefix' }, () => this.inner.matchPrefix(requestKeys, options));
  }

  override add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options?: AddOptions): Promise<void> {
    return spanIfTracing('kvix.index.add', { 'kvix.keys': requestKeys.length, 'kvix.entries': entries.length, 'kvix.speculative': entries.some((e) => e.speculative === true) }, () => this.inner.add(engineKeys, requestKeys, entries, options));
  }

  override evict(key: bigint, kind: KeyKind, entries: readonly PodEntry[]): Promise<void> {
    return spanIfTracing('kvix.index.evict', { 'kvix.key_kind': kind, 'kvix.entries': entries.length }, () => this.inner.evict(key, kind, entries));
  }

  override clear(pod: string): Promise<number> {
    return spanIfTracing('kvix.index.clear', { 'kvix.pod': pod }, () => this.inner.clear(pod));
  }
}

/**
 * The event applier with a span for a sample of the batches it applies (`ratio` of them: every
 * batch would be thousands of traces a second); the index operations of a sampled batch are its
 * children.
 */
export class TracedEventApplier extends EventApplier {
  private sampled: Sampled | null = null;

  /** Sets the share of batches traced (0: none). */
  traceBatches(ratio: number): void {
    this.sampled = ratio > 0 ? new Sampled(ratio) : null;
  }

  override apply(batch: EventBatch, source: EventSource): Promise<ApplyResult> {
    if (this.sampled === null || !this.sampled.next()) return super.apply(batch, source);
    return withSpan('kvix.ingest.batch', { 'kvix.pod': source.pod, 'kvix.model': source.model ?? '', 'kvix.events': batch.events.length, 'kvix.batch.ts': batch.ts }, async (span) => {
      const result = await super.apply(batch, source);
      span.setAttributes({ 'kvix.stored_blocks': result.storedBlocks, 'kvix.removed_hashes': result.removedHashes, 'kvix.needs_replay': result.needsReplay });
      return result;
    });
  }
}
