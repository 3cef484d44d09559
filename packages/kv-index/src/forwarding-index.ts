import type { AddOptions, IndexStats, KeyKind, KvBlockIndex, LookupOptions, LookupResult, PodCounts, PodEntry, PrefixMatch, PrefixMatchOptions } from './types.js';

/**
 * The base of index decorators (metrics, replication, …): every call goes to `inner`, so a
 * decorator overrides only the operations it adds to and stays correct when the contract grows.
 */
export class ForwardingIndex implements KvBlockIndex {
  constructor(readonly inner: KvBlockIndex) {}

  get backend(): string {
    return this.inner.backend;
  }

  add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options?: AddOptions): Promise<void> {
    return this.inner.add(engineKeys, requestKeys, entries, options);
  }

  evict(key: bigint, kind: KeyKind, entries: readonly PodEntry[]): Promise<void> {
    return this.inner.evict(key, kind, entries);
  }

  requestKeyFor(engineKey: bigint): Promise<bigint | undefined> {
    return this.inner.requestKeyFor(engineKey);
  }

  requestKeysFor(engineKey: bigint): Promise<bigint[]> {
    return this.inner.requestKeysFor(engineKey);
  }

  lookup(requestKeys: BigUint64Array, options?: LookupOptions): Promise<LookupResult> {
    return this.inner.lookup(requestKeys, options);
  }

  matchPrefix(requestKeys: BigUint64Array, options?: PrefixMatchOptions): Promise<PrefixMatch> {
    return this.inner.matchPrefix(requestKeys, options);
  }

  clear(pod: string): Promise<number> {
    return this.inner.clear(pod);
  }

  stats(): Promise<IndexStats> {
    return this.inner.stats();
  }

  podCounts(): Promise<PodCounts[]> {
    return this.inner.podCounts();
  }

  dumpPod(pod: string, offset: number, limit: number): Promise<{ total: number; items: { key: bigint; entry: PodEntry }[] }> {
    return this.inner.dumpPod(pod, offset, limit);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
