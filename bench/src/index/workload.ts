/**
 * A deterministic fleet workload for the index benchmarks: prompt families of 128 blocks (an
 * 8,192-token prompt at 64 tokens per block), each held by a few of 32 pods to various depths,
 * as prefix-aware routing leaves them (most prefixes on one or two pods, popular ones on more).
 */
export const BLOCKS_PER_PROMPT = 128;
export const BLOCK_TOKENS = 64;

export function podName(i: number): string {
  return `10.42.${i >> 8}.${i & 255}:8000`;
}

/** xorshift32: fast, deterministic, good enough to spread keys. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  below(n: number): number {
    return this.next() % n;
  }
}

export interface FamilyHolding {
  pod: number;
  depth: number;
}

/** Which pods hold family f, and how many leading blocks each holds. */
export function holdingsOf(f: number, pods: number): FamilyHolding[] {
  const rng = new Rng(f * 2654435761 + 17);
  let count = 1;
  while (count < 8 && rng.below(2) === 0) count++;
  const out: FamilyHolding[] = [];
  const used = new Set<number>();
  for (let i = 0; i < count; i++) {
    let pod = rng.below(pods);
    while (used.has(pod)) pod = (pod + 1) % pods;
    used.add(pod);
    const depth = i === 0 ? 64 + rng.below(BLOCKS_PER_PROMPT - 63) : 16 + rng.below(BLOCKS_PER_PROMPT - 15);
    out.push({ pod, depth });
  }
  return out;
}

/** The family's request keys (or engine keys, with another salt): random but reproducible u64s. */
export function familyKeys(f: number, salt: number): BigUint64Array {
  const keys = new BigUint64Array(BLOCKS_PER_PROMPT);
  const words = new Uint32Array(keys.buffer);
  const rng = new Rng((f + 1) * 0x85ebca6b + salt);
  for (let i = 0; i < words.length; i++) words[i] = rng.next();
  return keys;
}

/** The family's prompt tokens (for benchmarks that hash). */
export function familyTokens(f: number): Uint32Array {
  const rng = new Rng((f + 7) * 0xc2b2ae35);
  const t = new Uint32Array(BLOCKS_PER_PROMPT * BLOCK_TOKENS);
  for (let i = 0; i < t.length; i++) t[i] = rng.below(151_000);
  return t;
}
