import type { PeersWorkload } from './workload-file.js';

/**
 * A seeded fleet workload for comparing block indexes (issue 22's shape): 512-block prompts made of
 * a shared system prompt and a unique tail; each prompt is held by 1–4 of 32 pods, which store it as
 * vLLM announces a prefill — only the blocks the pod did not hold yet, in BlockStored events of ≤ 16
 * blocks chained by parent. Generation stops once the stores reach `entries` (key, pod) pairs.
 *
 * Lookups are whole 512-block prompts: a prompt some pods hold, a held prompt continued past a
 * point with new blocks (a later turn), a new tail on a known system prompt, or nothing known.
 */
export interface PeersWorkloadOptions {
  seed: number;
  pods: number;
  entries: number;
  lookups: number;
  promptBlocks: number;
  systemPrompts: number;
  /** System prompt lengths, in blocks, drawn uniformly from [min, max]. */
  systemBlocks: [number, number];
  maxEventBlocks: number;
}

export const ISSUE_22_WORKLOAD: PeersWorkloadOptions = {
  seed: 22,
  pods: 32,
  entries: 1_000_000,
  lookups: 3000,
  promptBlocks: 512,
  systemPrompts: 48,
  systemBlocks: [96, 352],
  maxEventBlocks: 16,
};

/** splitmix32-seeded sfc32: deterministic 32-bit words. */
class Words {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    let s = seed >>> 0;
    const mix = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.next();
  }
  next(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }
  below(n: number): number {
    return Math.floor((this.next() / 2 ** 32) * n);
  }
}

/**
 * Blocks of the prompt tree: each gets three random 64-bit values (engine key, local hash, request
 * key), stored as word pairs; a block is identified by its number.
 */
class BlockTable {
  words: Uint32Array;
  count = 0;
  constructor(
    private readonly rng: Words,
    capacity: number,
  ) {
    this.words = new Uint32Array(6 * capacity);
  }
  create(): number {
    if (6 * (this.count + 1) > this.words.length) {
      const next = new Uint32Array(this.words.length * 2);
      next.set(this.words);
      this.words = next;
    }
    // Never 0: Dynamo's parent hash and kvix's keys may be anything, but 0 marks "no parent" in the file.
    for (let k = 0; k < 6; k++) this.words[6 * this.count + k] = this.rng.next() | (k % 2 === 0 ? 1 : 0);
    return this.count++;
  }
  copyTo(id: number, which: 0 | 1 | 2, out: Uint32Array, at: number): void {
    out[2 * at] = this.words[6 * id + 2 * which]!;
    out[2 * at + 1] = this.words[6 * id + 2 * which + 1]!;
  }
}

export function generatePeersWorkload(o: PeersWorkloadOptions): PeersWorkload {
  const rng = new Words(o.seed);
  const table = new BlockTable(rng, o.entries);
  const systems: number[][] = [];
  for (let s = 0; s < o.systemPrompts; s++) {
    const len = o.systemBlocks[0] + rng.below(o.systemBlocks[1] - o.systemBlocks[0] + 1);
    systems.push(Array.from({ length: len }, () => table.create()));
  }
  // A system prompt's traffic goes to a few "home" pods (prefix-aware routing), spilling elsewhere.
  const homes = systems.map(() => Array.from({ length: 6 }, () => rng.below(o.pods)));
  const prompts: { system: number; blocks: number[] }[] = [];
  /** Per pod, the blocks it holds (a pod's holdings are always prefix-closed here). */
  const held = Array.from({ length: o.pods }, () => new Set<number>());

  const storePod: number[] = [];
  const storeOffset: number[] = [0];
  const storeParent: number[] = [];
  const storeBlocks: number[] = [];
  let entries = 0;
  while (entries < o.entries) {
    const system = rng.below(systems.length);
    const sys = systems[system]!;
    const blocks = [...sys];
    while (blocks.length < o.promptBlocks) blocks.push(table.create());
    prompts.push({ system, blocks });
    const holders = new Set<number>();
    const count = 1 + (rng.below(20) < 11 ? 0 : rng.below(10) < 6 ? 1 : rng.below(2) === 0 ? 2 : 3);
    while (holders.size < count) holders.add(rng.below(4) === 0 ? rng.below(o.pods) : homes[system]![rng.below(6)]!);
    for (const pod of holders) {
      const mine = held[pod]!;
      let first = 0;
      while (first < blocks.length && mine.has(blocks[first]!)) first++;
      for (let at = first; at < blocks.length; at += o.maxEventBlocks) {
        const end = Math.min(blocks.length, at + o.maxEventBlocks);
        storePod.push(pod);
        storeParent.push(at === 0 ? -1 : blocks[at - 1]!);
        for (let b = at; b < end; b++) {
          storeBlocks.push(blocks[b]!);
          mine.add(blocks[b]!);
        }
        storeOffset.push(storeBlocks.length);
        entries += end - at;
      }
    }
  }

  // Lookups: 40% a held prompt, 20% a held prompt continued with new blocks, 30% a new tail on a
  // known system prompt, 10% unknown.
  const lookupBlocks: number[][] = [];
  for (let q = 0; q < o.lookups; q++) {
    const kind = rng.below(10);
    let blocks: number[];
    if (kind < 4) {
      blocks = prompts[rng.below(prompts.length)]!.blocks;
    } else if (kind < 6) {
      const p = prompts[rng.below(prompts.length)]!;
      const keep = systems[p.system]!.length + rng.below(o.promptBlocks - systems[p.system]!.length);
      blocks = p.blocks.slice(0, keep);
    } else if (kind < 9) {
      blocks = [...systems[rng.below(systems.length)]!];
    } else {
      blocks = [];
    }
    while (blocks.length < o.promptBlocks) blocks.push(table.create());
    lookupBlocks.push(blocks);
  }

  // What every arm must find: per lookup, each pod's run of held blocks from block 0.
  let depthSum = 0;
  let maxSum = 0;
  for (const blocks of lookupBlocks) {
    let max = 0;
    for (const mine of held) {
      let d = 0;
      while (d < blocks.length && mine.has(blocks[d]!)) d++;
      depthSum += d;
      if (d > max) max = d;
    }
    maxSum += max;
  }

  const stores = storePod.length;
  const blocks = storeBlocks.length;
  const w: PeersWorkload = {
    pods: o.pods,
    storePod: Uint32Array.from(storePod),
    storeOffset: Uint32Array.from(storeOffset),
    storeHasParent: Uint32Array.from(storeParent, (p) => (p >= 0 ? 1 : 0)),
    storeParent: new BigUint64Array(stores),
    blockEngine: new BigUint64Array(blocks),
    blockLocal: new BigUint64Array(blocks),
    blockRequest: new BigUint64Array(blocks),
    lookupOffset: new Uint32Array(o.lookups + 1),
    lookupLocal: new BigUint64Array(o.lookups * o.promptBlocks),
    lookupRequest: new BigUint64Array(o.lookups * o.promptBlocks),
    expectedDepthSum: depthSum,
    expectedMaxDepthSum: maxSum,
  };
  const parentWords = new Uint32Array(w.storeParent.buffer);
  storeParent.forEach((p, s) => p >= 0 && table.copyTo(p, 0, parentWords, s));
  const engine = new Uint32Array(w.blockEngine.buffer);
  const local = new Uint32Array(w.blockLocal.buffer);
  const request = new Uint32Array(w.blockRequest.buffer);
  storeBlocks.forEach((b, i) => {
    table.copyTo(b, 0, engine, i);
    table.copyTo(b, 1, local, i);
    table.copyTo(b, 2, request, i);
  });
  const qLocal = new Uint32Array(w.lookupLocal.buffer);
  const qRequest = new Uint32Array(w.lookupRequest.buffer);
  let k = 0;
  lookupBlocks.forEach((blocksOfQuery, q) => {
    for (const b of blocksOfQuery) {
      table.copyTo(b, 1, qLocal, k);
      table.copyTo(b, 2, qRequest, k);
      k++;
    }
    w.lookupOffset[q + 1] = k;
  });
  return w;
}

/** Distinct request keys among the stored blocks (a figure for the report). */
export function distinctKeys(w: PeersWorkload): number {
  return new Set(w.blockRequest).size;
}
