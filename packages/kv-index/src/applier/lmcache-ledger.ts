/**
 * LMCache's in-process engine never announces removals, so its entries would stay forever. Per
 * pod, the chunks announced and when: each expires `ttlMs` after its last announcement, and a pod
 * holds at most `maxPerPod` (the oldest announced go first). An accepted staleness, bounded.
 */
export class LmcacheLedger {
  /** Per pod: hash → (tier, expiry), in announcement order (a Map's insertion order). */
  private readonly pods = new Map<string, Map<bigint, { tier: string; expires: number }>>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxPerPod: number,
    private readonly now: () => number,
  ) {}

  has(pod: string): boolean {
    return this.pods.has(pod);
  }

  announce(pod: string, hashes: BigUint64Array, tier: string): void {
    let chunks = this.pods.get(pod);
    if (chunks === undefined) this.pods.set(pod, (chunks = new Map()));
    const expires = this.ttlMs > 0 ? this.now() + this.ttlMs : Number.POSITIVE_INFINITY;
    for (const h of hashes) {
      chunks.delete(h);
      chunks.set(h, { tier, expires });
    }
  }

  /** Removed by an event after all (LMCache MP, a vLLM connector that does announce): nothing to expire. */
  forget(pod: string, hashes: readonly bigint[]): void {
    const chunks = this.pods.get(pod);
    if (chunks === undefined) return;
    for (const h of hashes) chunks.delete(h);
  }

  /** Chunks past their TTL or over the pod's bound, taken out of the ledger. */
  takeExpired(pod?: string): [string, { hash: bigint; tier: string }[]][] {
    const out: [string, { hash: bigint; tier: string }[]][] = [];
    const now = this.now();
    for (const [p, chunks] of pod === undefined ? this.pods : [[pod, this.pods.get(pod)] as const]) {
      if (chunks === undefined) continue;
      const gone: { hash: bigint; tier: string }[] = [];
      for (const [hash, c] of chunks) {
        if (c.expires > now && chunks.size - gone.length <= this.maxPerPod) break;
        gone.push({ hash, tier: c.tier });
      }
      for (const g of gone) chunks.delete(g.hash);
      if (gone.length > 0) out.push([p, gone]);
    }
    return out;
  }

  clear(pod: string): void {
    this.pods.delete(pod);
  }
}
