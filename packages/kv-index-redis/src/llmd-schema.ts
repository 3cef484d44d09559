import { IndexError, type PodEntry } from '@kvix/kv-index';

/**
 * llm-d's Redis key schema (llm-d-router `pkg/kvcache/kvblock/redis.go`), reproduced byte for byte
 * so a Go llm-d EPP and kvix can read and write one index:
 *
 * - a request key is a HASH named by the key's unsigned decimal value; each field is a PodEntry
 *   marshalled by Go's encoding/json (fields in struct order), and every value is "";
 * - an engine key is a ZSET `engine:<decimal>` whose members are the decimal request keys it maps
 *   to, scored by position (0, 1, …); the last request key is the highest score.
 *
 * Neither carries a model prefix: the model is folded into the request key's hash chain.
 */

/** What a lookup reads back from a field, whoever wrote it. */
export interface DecodedField {
  pod: string;
  tier: string;
  speculative: boolean;
  /** -1 when the entry has no group. */
  group: number;
}

/** Largest group a lookup result can carry (its group column is 16-bit). */
export const MAX_GROUP = 0xffff;

export function requestKeyName(prefix: string, key: bigint): string {
  return prefix + key.toString();
}

export function engineKeyName(prefix: string, key: bigint): string {
  return `${prefix}engine:${key.toString()}`;
}

/**
 * A string as Go's encoding/json writes it: JSON.stringify differs only in that Go also escapes
 * <, >, & (HTML safety), U+2028 and U+2029, and replaces invalid UTF-16 (lone surrogates) with
 * U+FFFD, written as an escape.
 */
export function goJsonString(s: string): string {
  // An escaped backslash is matched as a unit, so `\\ud800` (text, not a surrogate) stays as it is.
  return JSON.stringify(s).replace(/\\\\|\\ud[89a-f][0-9a-f]{2}|[<>&\u2028\u2029]/g, (m) => {
    if (m === '\\\\') return m;
    if (m.length > 1) return '\\ufffd';
    return `\\u${m.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/**
 * The HASH field of an entry: `{"PodIdentifier":…,"DeviceTier":…,"Speculative":…,"HasGroup":…,"GroupIdx":…}`.
 * Validates the entry on the way (the in-memory backend's rules).
 */
export function fieldOf(entry: PodEntry): string {
  if (typeof entry.pod !== 'string' || entry.pod.length === 0) throw new IndexError('INVALID_ENTRY', 'entry.pod must be a non-empty string');
  if (typeof entry.tier !== 'string' || entry.tier.length === 0) throw new IndexError('INVALID_ENTRY', `entry.tier must be a non-empty string (pod ${entry.pod})`);
  const group = entry.group;
  if (group !== undefined && (!Number.isInteger(group) || group < 0 || group > MAX_GROUP)) {
    throw new IndexError('INVALID_ENTRY', `group must be an integer in [0, ${MAX_GROUP}], got ${String(group)}`);
  }
  return `{"PodIdentifier":${goJsonString(entry.pod)},"DeviceTier":${goJsonString(entry.tier)},"Speculative":${entry.speculative === true},${ownerSuffix(group)}`;
}

/**
 * What identifies an entry's tier inside its field (the pod before it is the same for every field
 * of a pod): a real entry and a speculative one interact only when they share it.
 */
export function tierMarker(tier: string): string {
  return `,"DeviceTier":${goJsonString(tier)},"Speculative":`;
}

/**
 * The tail of a field after `"Speculative":…,`: with the pod (implied by kvix's per-pod index),
 * with the tier (`tierMarker`), the identity a real entry shares with the speculative entry it confirms.
 */
export function ownerSuffix(group: number | undefined): string {
  return group === undefined ? '"HasGroup":false,"GroupIdx":0}' : `"HasGroup":true,"GroupIdx":${group}}`;
}

/**
 * Reads a field written by kvix or by llm-d. llm-d writes speculative entries with an empty
 * DeviceTier; a nil medium is `gpu` (spec), so an empty tier reads as gpu. Null for a field that
 * is not a PodEntry (another writer's data): lookups skip it.
 */
export function decodeField(field: string): DecodedField | null {
  let v: unknown;
  try {
    v = JSON.parse(field);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const pod = o['PodIdentifier'];
  if (typeof pod !== 'string' || pod === '') return null;
  const tier = typeof o['DeviceTier'] === 'string' && o['DeviceTier'] !== '' ? o['DeviceTier'] : 'gpu';
  const g = o['GroupIdx'];
  const group = o['HasGroup'] === true && typeof g === 'number' && Number.isInteger(g) && g >= 0 && g <= MAX_GROUP ? g : -1;
  return { pod, tier, speculative: o['Speculative'] === true, group };
}
