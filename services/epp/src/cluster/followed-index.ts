import type { IndexSnapshot, InMemoryIndex } from '@kvix/kv-index';
import { PublishingIndex, type FollowedIndex, type OpSink } from '@kvix/replication';

/**
 * The primary's in-memory index as a replica following the index stream (`--replicate-index
 * follow` with routing workers): the stream's operations are applied here and handed to `sink`
 * (the workers) in the same order. The snapshot is loaded before any worker starts; each worker
 * then gets this index's own snapshot when it asks to be fed.
 */
export class RelayedFollowedIndex extends PublishingIndex implements FollowedIndex {
  constructor(
    private readonly memory: InMemoryIndex,
    sink: OpSink,
  ) {
    super(memory, sink);
  }

  exportSnapshot(): IndexSnapshot {
    return this.memory.exportSnapshot();
  }

  importSnapshot(snapshot: IndexSnapshot): number {
    return this.memory.importSnapshot(snapshot);
  }
}
