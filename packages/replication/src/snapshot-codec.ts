import { decode, encode } from '@msgpack/msgpack';
import type { IndexSnapshot } from '@kvix/kv-index';
import { ReplicationError } from './errors.js';

/** A snapshot of an index and the last stream sequence it is known to contain. */
export interface StoredSnapshot {
  snapshot: IndexSnapshot;
  /** Every stream message up to this sequence is reflected in the snapshot (later ones may be too). */
  streamSeq: number;
  createdAt: number;
  /** Who wrote it. */
  origin: string;
}

const VERSION = 1;
const bytes = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export function encodeSnapshot(s: StoredSnapshot): Uint8Array {
  const x = s.snapshot;
  return encode({
    v: VERSION,
    seq: s.streamSeq,
    at: s.createdAt,
    origin: s.origin,
    pods: x.pods,
    tiers: x.tiers,
    entryKeys: bytes(x.entryKeys),
    entryPod: bytes(x.entryPod),
    entryTier: x.entryTier,
    entryGroup: bytes(x.entryGroup),
    engineKeys: bytes(x.engineKeys),
    engineCounts: bytes(x.engineCounts),
    engineTargets: bytes(x.engineTargets),
  });
}

function column<T>(doc: Record<string, unknown>, name: string, width: number, make: (buf: ArrayBuffer) => T): T {
  const bin = doc[name];
  if (!(bin instanceof Uint8Array) || bin.byteLength % width !== 0) throw new ReplicationError('MALFORMED_SNAPSHOT', `column ${name} is missing or not a multiple of ${width} bytes`);
  // Copied into an aligned buffer: the decoder hands out slices of the whole object.
  return make(new Uint8Array(bin).buffer);
}

export function decodeSnapshot(data: Uint8Array): StoredSnapshot {
  let doc: unknown;
  try {
    doc = decode(data);
  } catch (err) {
    throw new ReplicationError('MALFORMED_SNAPSHOT', `not msgpack: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || (doc as { v?: unknown }).v !== VERSION) throw new ReplicationError('MALFORMED_SNAPSHOT', `unsupported snapshot version`);
  const d = doc as Record<string, unknown>;
  if (typeof d['seq'] !== 'number' || !Array.isArray(d['pods']) || !Array.isArray(d['tiers'])) throw new ReplicationError('MALFORMED_SNAPSHOT', 'seq, pods and tiers are required');
  const snapshot: IndexSnapshot = {
    pods: d['pods'] as string[],
    tiers: d['tiers'] as string[],
    entryKeys: column(d, 'entryKeys', 4, (b) => new Uint32Array(b)),
    entryPod: column(d, 'entryPod', 2, (b) => new Uint16Array(b)),
    entryTier: column(d, 'entryTier', 1, (b) => new Uint8Array(b)),
    entryGroup: column(d, 'entryGroup', 2, (b) => new Int16Array(b)),
    engineKeys: column(d, 'engineKeys', 4, (b) => new Uint32Array(b)),
    engineCounts: column(d, 'engineCounts', 4, (b) => new Uint32Array(b)),
    engineTargets: column(d, 'engineTargets', 4, (b) => new Uint32Array(b)),
  };
  return { snapshot, streamSeq: d['seq'], createdAt: typeof d['at'] === 'number' ? d['at'] : 0, origin: typeof d['origin'] === 'string' ? d['origin'] : '' };
}
