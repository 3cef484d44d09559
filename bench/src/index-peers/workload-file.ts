import { readFileSync, writeFileSync } from 'node:fs';

/**
 * The index-peers workload as one binary file, so every arm — kvix and the naive baseline in
 * Node, Dynamo's RadixTree in Rust (bench/dynamo-radix) — replays exactly the same stores and
 * lookups. Little-endian; every column starts on an 8-byte boundary:
 *
 *   "KVIXPEER", u32 version (1), pods, stores, blocks, lookups, lookupKeys,
 *   u64 expectedDepthSum, u64 expectedMaxDepthSum (as lo/hi u32 pairs),
 *   u32 storePod[stores], u32 storeOffset[stores+1] (into the block columns),
 *   u32 storeHasParent[stores], u64 storeParent[stores] (the parent block's engine key),
 *   u64 blockEngine[blocks], u64 blockLocal[blocks], u64 blockRequest[blocks],
 *   u32 lookupOffset[lookups+1], u64 lookupLocal[lookupKeys], u64 lookupRequest[lookupKeys].
 *
 * Per block: the engine's key (Dynamo's ExternalSequenceBlockHash; kvix's engine key), the hash of
 * the block's own tokens (Dynamo's LocalBlockHash, which its tree walks) and the chained request
 * key (what kvix indexes and walks). Expected sums: over lookups, the sum over pods of each pod's
 * matched depth, and the deepest match — every arm must reproduce both.
 */
export interface PeersWorkload {
  pods: number;
  storePod: Uint32Array;
  storeOffset: Uint32Array;
  storeHasParent: Uint32Array;
  storeParent: BigUint64Array;
  blockEngine: BigUint64Array;
  blockLocal: BigUint64Array;
  blockRequest: BigUint64Array;
  lookupOffset: Uint32Array;
  lookupLocal: BigUint64Array;
  lookupRequest: BigUint64Array;
  expectedDepthSum: number;
  expectedMaxDepthSum: number;
}

const MAGIC = 'KVIXPEER';
const VERSION = 1;

export function writeWorkload(path: string, w: PeersWorkload): void {
  const stores = w.storePod.length;
  const columns: ArrayBufferView[] = [w.storePod, w.storeOffset, w.storeHasParent, w.storeParent, w.blockEngine, w.blockLocal, w.blockRequest, w.lookupOffset, w.lookupLocal, w.lookupRequest];
  const header = new Uint32Array(2 + 6 + 4);
  header.set([0, 0, VERSION, w.pods, stores, w.blockEngine.length, w.lookupOffset.length - 1, w.lookupLocal.length]);
  header[8] = w.expectedDepthSum >>> 0;
  header[9] = Math.floor(w.expectedDepthSum / 2 ** 32);
  header[10] = w.expectedMaxDepthSum >>> 0;
  header[11] = Math.floor(w.expectedMaxDepthSum / 2 ** 32);
  new Uint8Array(header.buffer).set(Buffer.from(MAGIC, 'latin1'), 0);
  const align = (n: number): number => (n + 7) & ~7;
  let size = align(header.byteLength);
  for (const c of columns) size = align(size) + c.byteLength;
  const out = new Uint8Array(align(size));
  out.set(new Uint8Array(header.buffer), 0);
  let at = align(header.byteLength);
  for (const c of columns) {
    at = align(at);
    out.set(new Uint8Array(c.buffer, c.byteOffset, c.byteLength), at);
    at += c.byteLength;
  }
  writeFileSync(path, out);
}

export function readWorkload(path: string): PeersWorkload {
  const file = readFileSync(path);
  // A private, aligned copy: typed-array views need their element alignment.
  const bytes = new Uint8Array(new ArrayBuffer(file.byteLength));
  bytes.set(file);
  if (Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== MAGIC) throw new Error(`${path} is not an index-peers workload file`);
  const head = new Uint32Array(bytes.buffer, 8, 10);
  if (head[0] !== VERSION) throw new Error(`${path}: workload version ${head[0]}, expected ${VERSION}`);
  const [pods, stores, blocks, lookups, lookupKeys] = [head[1]!, head[2]!, head[3]!, head[4]!, head[5]!];
  let at = 8 + 40;
  const align = (): void => void (at = (at + 7) & ~7);
  const u32 = (n: number): Uint32Array => {
    align();
    const v = new Uint32Array(bytes.buffer, at, n);
    at += 4 * n;
    return v;
  };
  const u64 = (n: number): BigUint64Array => {
    align();
    const v = new BigUint64Array(bytes.buffer, at, n);
    at += 8 * n;
    return v;
  };
  return {
    pods,
    expectedDepthSum: head[6]! + head[7]! * 2 ** 32,
    expectedMaxDepthSum: head[8]! + head[9]! * 2 ** 32,
    storePod: u32(stores),
    storeOffset: u32(stores + 1),
    storeHasParent: u32(stores),
    storeParent: u64(stores),
    blockEngine: u64(blocks),
    blockLocal: u64(blocks),
    blockRequest: u64(blocks),
    lookupOffset: u32(lookups + 1),
    lookupLocal: u64(lookupKeys),
    lookupRequest: u64(lookupKeys),
  };
}
