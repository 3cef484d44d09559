import type { RequestKeyHasher } from '@kvix/block-keys';

const AMBIGUOUS = -1n;
const ROOT = -2n;

/**
 * Which chain continues with a given request block of tokens: per block seen in a recorded pod's
 * events, the request key before it. LMCache's in-process engine announces a chunk whose store
 * skipped already-saved chunks with parent 0; vLLM's own events for the same request (GPU blocks,
 * with real parents) show which prefix those tokens follow. Only an unambiguous answer is given:
 * tokens seen after two different prefixes (or at a chain's root) resolve nothing. Bounded: the
 * least recently recorded go first.
 */
export class Continuations {
  private readonly parents = new Map<bigint, bigint>();

  constructor(
    private readonly hasher: RequestKeyHasher,
    private readonly max: number,
  ) {}

  get size(): number {
    return this.parents.size;
  }

  /** A block's tokens (and model root) as one key, independent of any chain. */
  private fingerprint(tokens: Uint32Array, model: string): bigint | undefined {
    const keys = this.hasher.keys(tokens.subarray(0, this.hasher.blockSize), model, { parent: 0n });
    return keys.length === 0 ? undefined : keys[0];
  }

  /** Records the request blocks of `tokens` (keys[i] is block i's key, `parent` the key before block 0; null = root). */
  record(tokens: Uint32Array, keys: BigUint64Array, parent: bigint | null, model: string): void {
    const B = this.hasher.blockSize;
    for (let i = 0; i < keys.length; i++) {
      const fp = this.fingerprint(tokens.subarray(i * B, (i + 1) * B), model);
      if (fp === undefined) continue;
      const before = i === 0 ? (parent ?? ROOT) : keys[i - 1]!;
      const known = this.parents.get(fp);
      if (known !== undefined) {
        if (known !== before && known !== AMBIGUOUS) this.parents.set(fp, AMBIGUOUS);
        continue;
      }
      this.parents.set(fp, before);
      if (this.parents.size > this.max) {
        const oldest = this.parents.keys().next().value;
        if (oldest !== undefined) this.parents.delete(oldest);
      }
    }
  }

  /** The one request key seen before these tokens' first request block (undefined: unknown, ambiguous or a root). */
  parentOf(tokens: Uint32Array, model: string, loraName: string | null): bigint | undefined {
    const fp = this.fingerprint(tokens, loraName ? loraName : model);
    if (fp === undefined) return undefined;
    const parent = this.parents.get(fp);
    return parent === undefined || parent === AMBIGUOUS || parent === ROOT ? undefined : parent;
  }
}
