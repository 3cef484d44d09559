import { ForwardingIndex, type AddOptions, type KeyKind, type KvBlockIndex, type PodEntry } from '@kvix/kv-index';
import type { IndexOp } from './ops-codec.js';

/** Where a publishing index sends the operations it applied. */
export interface OpSink {
  enqueue(pod: string, op: IndexOp): void;
}

/** Keys per operation when a pod's state is republished (keeps each message far below NATS's payload limit). */
const STATE_KEYS_PER_OP = 4096;

/**
 * The index the event applier writes to in a publishing process: every add, eviction and clear is
 * applied locally first and then handed to the publisher, in the same order, under the pod it
 * concerns. Speculative entries are not published here (they travel on the faster speculation
 * subject and are never confirmed by anyone but the engine's own events).
 */
export class PublishingIndex extends ForwardingIndex {
  constructor(
    inner: KvBlockIndex,
    private readonly sink: OpSink,
  ) {
    super(inner);
  }

  override async add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options?: AddOptions): Promise<void> {
    await this.inner.add(engineKeys, requestKeys, entries, options);
    for (const [pod, real] of byPod(entries)) this.sink.enqueue(pod, { kind: 'add', engineKeys: engineKeys && engineKeys.slice(), requestKeys: requestKeys.slice(), entries: real });
  }

  override async evict(key: bigint, kind: KeyKind, entries: readonly PodEntry[]): Promise<void> {
    await this.inner.evict(key, kind, entries);
    for (const [pod, real] of byPod(entries)) this.sink.enqueue(pod, { kind: 'evict', keys: [key], keyKind: kind, entries: real });
  }

  override async clear(pod: string): Promise<number> {
    const n = await this.inner.clear(pod);
    this.sink.enqueue(pod, { kind: 'clear', pod });
    return n;
  }

  /**
   * The pod's whole state as operations: a clear, then its entries grouped by (tier, group).
   * Engine mappings are not part of it; a replica keeps the ones it already had.
   */
  async podState(pod: string): Promise<IndexOp[]> {
    const ops: IndexOp[] = [{ kind: 'clear', pod }];
    const groups = new Map<string, { entry: PodEntry; keys: bigint[] }>();
    const page = 65_536;
    for (let offset = 0; ; offset += page) {
      const { total, items } = await this.inner.dumpPod(pod, offset, page);
      for (const { key, entry } of items) {
        if (entry.speculative) continue;
        const id = `${entry.tier}\u0000${entry.group ?? ''}`;
        let g = groups.get(id);
        if (!g) groups.set(id, (g = { entry, keys: [] }));
        g.keys.push(key);
      }
      if (offset + page >= total) break;
    }
    for (const { entry, keys } of groups.values()) {
      for (let i = 0; i < keys.length; i += STATE_KEYS_PER_OP) ops.push({ kind: 'add', engineKeys: null, requestKeys: BigUint64Array.from(keys.slice(i, i + STATE_KEYS_PER_OP)), entries: [entry] });
    }
    return ops;
  }
}

function byPod(entries: readonly PodEntry[]): Map<string, PodEntry[]> {
  const out = new Map<string, PodEntry[]>();
  for (const e of entries) {
    if (e.speculative) continue;
    let list = out.get(e.pod);
    if (!list) out.set(e.pod, (list = []));
    list.push(e);
  }
  return out;
}
