/**
 * Items gathered over one turn of the event loop and handed on together at its end. Each message on
 * the cluster channel is a write that wakes the process at the other end (on busy cores, a context
 * switch the sender waits out: bench/README.md, workers), so a burst becomes one message, sent a
 * fraction of a millisecond later rather than at once.
 */
export class TurnBatch<T> {
  private items: T[] = [];

  constructor(private readonly flush: (items: T[]) => void) {}

  push(item: T): void {
    if (this.items.length === 0) setImmediate(() => this.drain());
    this.items.push(item);
  }

  private drain(): void {
    const items = this.items;
    this.items = [];
    if (items.length > 0) this.flush(items);
  }
}
