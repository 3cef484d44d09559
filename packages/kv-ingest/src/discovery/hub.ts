import type { DiscoverySource, PodTarget } from './types.js';

export type TargetsListener = (targets: readonly PodTarget[]) => void;

/**
 * Several consumers of the same discovery (the ingestor subscribing to events, a router choosing
 * endpoints) without watching the same file twice: the hub runs the sources once, merges their
 * snapshots (first source wins on a duplicate id) and hands each consumer the merged list.
 */
export class DiscoveryHub {
  private readonly snapshots = new Map<string, readonly PodTarget[]>();
  private readonly listeners = new Set<TargetsListener>();
  private started: Promise<void> | null = null;
  private current: readonly PodTarget[] = [];

  constructor(private readonly sources: readonly DiscoverySource[]) {}

  /** The merged pods, as of the last snapshot. */
  get targets(): readonly PodTarget[] {
    return this.current;
  }

  /** Starts the sources once (later calls wait for the first); resolves when each delivered its first snapshot. */
  start(): Promise<void> {
    this.started ??= (async () => {
      for (const [i, source] of this.sources.entries()) {
        const key = `${i}:${source.name}`;
        await source.start((targets) => {
          this.snapshots.set(key, targets);
          this.publish();
        });
      }
    })();
    return this.started;
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.sources.map((s) => s.stop()));
    this.listeners.clear();
  }

  /** Calls `listener` with the merged list now (if started) and on every change; returns an unsubscribe. */
  subscribe(listener: TargetsListener): () => void {
    this.listeners.add(listener);
    if (this.started) listener(this.current);
    return () => this.listeners.delete(listener);
  }

  /** The hub as one discovery source (what the ingestor takes). */
  asSource(): DiscoverySource {
    let unsubscribe: (() => void) | null = null;
    return {
      name: 'hub',
      start: async (onSnapshot) => {
        await this.start();
        unsubscribe = this.subscribe(onSnapshot);
      },
      stop: async () => {
        unsubscribe?.();
      },
    };
  }

  private publish(): void {
    const merged = new Map<string, PodTarget>();
    for (const targets of this.snapshots.values()) for (const t of targets) if (!merged.has(t.id)) merged.set(t.id, t);
    this.current = [...merged.values()];
    for (const listener of this.listeners) listener(this.current);
  }
}
