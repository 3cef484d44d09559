/**
 * A body kept whole while it streams through: readers that subscribe late get every chunk from
 * the start (a retry on the next endpoint resends the body; a bypassed processor's request is
 * forwarded from its first byte), then each new chunk as it arrives.
 */
export class BodyBuffer {
  private readonly chunks: Buffer[] = [];
  private ended = false;
  private bytes = 0;
  private readonly readers = new Set<{ onChunk: (chunk: Buffer) => void; onEnd: () => void }>();

  get length(): number {
    return this.bytes;
  }

  get complete(): boolean {
    return this.ended;
  }

  push(chunk: Buffer): void {
    if (this.ended || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    for (const r of this.readers) r.onChunk(chunk);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const r of this.readers) r.onEnd();
    this.readers.clear();
  }

  /** Replays what is buffered, then follows; returns the unsubscribe function. */
  subscribe(onChunk: (chunk: Buffer) => void, onEnd: () => void): () => void {
    for (const chunk of this.chunks) onChunk(chunk);
    if (this.ended) {
      onEnd();
      return () => {};
    }
    const reader = { onChunk, onEnd };
    this.readers.add(reader);
    return () => this.readers.delete(reader);
  }

  /** Copies everything `source` has and will have into this buffer. */
  follow(source: BodyBuffer): void {
    source.subscribe(
      (chunk) => this.push(chunk),
      () => this.end(),
    );
  }
}
