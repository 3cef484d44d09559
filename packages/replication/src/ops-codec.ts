import { decode, encode } from '@msgpack/msgpack';
import type { KeyKind, PodEntry } from '@kvix/kv-index';
import { ReplicationError } from './errors.js';

/**
 * One index operation as the event applier performed it. Replicas apply these, not the raw KV
 * events: the applier's decisions (reference-counted removals, parent resolution, block-size
 * conversion) are made once, and a replica needs no applier state to follow.
 */
export type IndexOp =
  | { kind: 'add'; engineKeys: BigUint64Array | null; requestKeys: BigUint64Array; entries: PodEntry[] }
  /** Removals of the same entries under several keys, in order (an engine's BlockRemoved lists many). */
  | { kind: 'evict'; keys: bigint[]; keyKind: KeyKind; entries: PodEntry[] }
  | { kind: 'clear'; pod: string };

const VERSION = 1;
const ADD = 0;
const EVICT = 1;
const CLEAR = 2;

type WireEntry = [string, string, number];
type WireOp = [typeof ADD, Uint8Array | null, Uint8Array, WireEntry[]] | [typeof EVICT, Uint8Array, 0 | 1, WireEntry[]] | [typeof CLEAR, string];

// Keys travel as little-endian 64-bit words, the layout of BigUint64Array on every platform Node runs on.
const keyBytes = (keys: BigUint64Array): Uint8Array => new Uint8Array(keys.buffer, keys.byteOffset, keys.byteLength);
const wireEntry = (e: PodEntry): WireEntry => [e.pod, e.tier, e.group ?? -1];

/** One message: a pod's operations in the order they were applied. */
export function encodeOps(ops: readonly IndexOp[]): Uint8Array {
  const wire: WireOp[] = ops.map((op) => {
    switch (op.kind) {
      case 'add':
        return [ADD, op.engineKeys ? keyBytes(op.engineKeys) : null, keyBytes(op.requestKeys), op.entries.map(wireEntry)];
      case 'evict':
        return [EVICT, keyBytes(BigUint64Array.from(op.keys)), op.keyKind === 'engine' ? 0 : 1, op.entries.map(wireEntry)];
      case 'clear':
        return [CLEAR, op.pod];
    }
  });
  return encode([VERSION, wire]);
}

function keysFrom(bin: unknown, what: string): BigUint64Array {
  if (!(bin instanceof Uint8Array) || bin.byteLength % 8 !== 0) throw new ReplicationError('MALFORMED_MESSAGE', `${what} must be a multiple of 8 bytes`);
  // Copied: the decoder hands out unaligned views of the message (a pooled Buffer, for NATS payloads).
  return new BigUint64Array(new Uint8Array(bin).buffer);
}

function entriesFrom(list: unknown): PodEntry[] {
  if (!Array.isArray(list)) throw new ReplicationError('MALFORMED_MESSAGE', 'entries must be an array');
  return list.map((raw) => {
    if (!Array.isArray(raw) || typeof raw[0] !== 'string' || typeof raw[1] !== 'string' || typeof raw[2] !== 'number') {
      throw new ReplicationError('MALFORMED_MESSAGE', 'an entry must be [pod, tier, group]');
    }
    const [pod, tier, group] = raw as WireEntry;
    return group >= 0 ? { pod, tier, speculative: false, group } : { pod, tier, speculative: false };
  });
}

export function decodeOps(bytes: Uint8Array): IndexOp[] {
  let doc: unknown;
  try {
    doc = decode(bytes);
  } catch (err) {
    throw new ReplicationError('MALFORMED_MESSAGE', `not msgpack: ${(err as Error).message}`);
  }
  if (!Array.isArray(doc) || doc[0] !== VERSION || !Array.isArray(doc[1])) {
    throw new ReplicationError('MALFORMED_MESSAGE', `expected [${VERSION}, ops]`);
  }
  return (doc[1] as unknown[]).map((raw): IndexOp => {
    if (!Array.isArray(raw)) throw new ReplicationError('MALFORMED_MESSAGE', 'an operation must be an array');
    switch (raw[0]) {
      case ADD:
        return { kind: 'add', engineKeys: raw[1] === null ? null : keysFrom(raw[1], 'engine keys'), requestKeys: keysFrom(raw[2], 'request keys'), entries: entriesFrom(raw[3]) };
      case EVICT: {
        const keys = keysFrom(raw[1], 'keys');
        if (keys.length === 0) throw new ReplicationError('MALFORMED_MESSAGE', 'an eviction names at least one key');
        return { kind: 'evict', keys: [...keys], keyKind: raw[2] === 0 ? 'engine' : 'request', entries: entriesFrom(raw[3]) };
      }
      case CLEAR:
        if (typeof raw[1] !== 'string') throw new ReplicationError('MALFORMED_MESSAGE', 'clear names a pod');
        return { kind: 'clear', pod: raw[1] };
      default:
        throw new ReplicationError('MALFORMED_MESSAGE', `unknown operation ${String(raw[0])}`);
    }
  });
}
