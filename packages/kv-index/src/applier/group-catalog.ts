/**
 * What each pod's KV-cache groups are (hybrid models mix full attention with sliding window or
 * mamba groups). BlockStored events name a group's kind; BlockRemoved events carry only the group
 * index, so kinds are remembered per pod.
 */
export class GroupCatalog {
  private readonly kinds = new Map<string, Map<number, string>>();

  learn(pod: string, group: number, kind: string): void {
    let groups = this.kinds.get(pod);
    if (groups === undefined) this.kinds.set(pod, (groups = new Map()));
    groups.set(group, kind);
  }

  kindOf(pod: string, group: number): string | undefined {
    return this.kinds.get(pod)?.get(group);
  }

  forget(pod: string): void {
    this.kinds.delete(pod);
  }
}

/**
 * Cache kinds whose blocks are reusable prefixes (attention over the whole prefix). vLLM's
 * `sink_full_attention` is full attention with attention-sink blocks, cached and hit like it.
 */
export const DEFAULT_INDEXED_KINDS: readonly string[] = ['full_attention', 'mla_attention', 'sink_full_attention'];
