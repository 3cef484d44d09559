import { encodeEventBatch, type KvEvent } from '@kvix/kv-events';
import { gpuStored } from '../stored-event.js';

export const BENCH_MODEL = 'bench/model';
export const BLOCK_SIZE = 16;

export interface WorkloadShape {
  /** Stored chains per batch (requests whose prefill finished in the step). */
  eventsPerBatch: number;
  /** Blocks per stored chain (a 512-token prompt at 32). */
  blocksPerEvent: number;
  /** Batches per pod before the sequence of payloads repeats. */
  ring: number;
}

export const DEFAULT_SHAPE: WorkloadShape = { eventsPerBatch: 2, blocksPerEvent: 32, ring: 512 };

export function blocksPerBatch(shape: WorkloadShape): number {
  return shape.eventsPerBatch * shape.blocksPerEvent;
}

/**
 * Pre-encoded payloads of one pod, as an engine step would publish them: batch i stores fresh
 * chains and removes the chains batch i - ring/2 stored, so the index stays at a steady size
 * however long the ring is replayed (the first half-ring's removals name unknown blocks).
 */
export function podPayloads(pod: number, shape: WorkloadShape): Uint8Array[] {
  const { eventsPerBatch, blocksPerEvent, ring } = shape;
  const hashOf = (batch: number, ev: number, block: number): bigint =>
    (BigInt(pod + 1) << 48n) | (BigInt(batch) << 24n) | (BigInt(ev) << 12n) | BigInt(block + 1);
  const out: Uint8Array[] = [];
  for (let b = 0; b < ring; b++) {
    const events: KvEvent[] = [];
    for (let e = 0; e < eventsPerBatch; e++) {
      const hashes = BigUint64Array.from({ length: blocksPerEvent }, (_, k) => hashOf(b, e, k));
      const tokens = Uint32Array.from({ length: blocksPerEvent * BLOCK_SIZE }, (_, t) => (pod * 7_919 + b * 131 + e * 17 + t * 3) % 151_000);
      events.push(gpuStored(hashes, null, tokens, BLOCK_SIZE));
    }
    const old = (b + ring / 2) % ring;
    const removed: bigint[] = [];
    for (let e = 0; e < eventsPerBatch; e++) for (let k = 0; k < blocksPerEvent; k++) removed.push(hashOf(old, e, k));
    events.push({ type: 'BlockRemoved', blockHashes: BigUint64Array.from(removed), medium: 'GPU', groupIdx: 0 });
    out.push(encodeEventBatch({ ts: 0, events, dataParallelRank: 0 }, { layout: 'map' }).slice());
  }
  return out;
}

/** The batch timestamp is the float64 right after the 3-element array header and 0xcb. */
export function stampTs(payload: Uint8Array, seconds: number): Buffer {
  const copy = Buffer.from(payload);
  if (copy[0] !== 0x93 || copy[1] !== 0xcb) throw new Error('unexpected batch layout');
  copy.writeDoubleBE(seconds, 2);
  return copy;
}

/** Wall-clock seconds with sub-millisecond resolution, comparable across threads. */
export function nowSeconds(): number {
  return (performance.timeOrigin + performance.now()) / 1000;
}
