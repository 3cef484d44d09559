import { BlockKeysError } from './errors.js';
import type { BlockExtras } from './request-keys.js';

/** One multimodal item: its content identifier and the token range its placeholder occupies. */
export interface MultimodalPlaceholder {
  identifier: string;
  /** Absolute index of the placeholder's first token in the prompt. */
  offset: number;
  /** Number of placeholder tokens. */
  length: number;
}

export interface RequestExtrasInput {
  tokenCount: number;
  blockSize: number;
  multimodal?: readonly MultimodalPlaceholder[] | null;
  /** Tenant isolation salt; it taints block 0 and, through the chain, every later block. */
  cacheSalt?: string | null;
}

export function validatePlaceholders(items: readonly MultimodalPlaceholder[]): void {
  for (const [i, item] of items.entries()) {
    if (typeof item.identifier !== 'string' || item.identifier.length === 0) {
      throw new BlockKeysError('INVALID_EXTRAS', `multimodal item ${i}: identifier must be a non-empty string`);
    }
    if (!Number.isInteger(item.offset) || item.offset < 0 || !Number.isInteger(item.length) || item.length <= 0) {
      throw new BlockKeysError('INVALID_EXTRAS', `multimodal item ${i}: offset must be an integer >= 0 and length an integer > 0`);
    }
  }
}

/** Items ordered by placeholder start (stable), as vLLM expects its mm_features. */
export function sortPlaceholders(items: readonly MultimodalPlaceholder[]): MultimodalPlaceholder[] {
  return items
    .map((item, index) => ({ item, index }))
    .sort((a, b) => a.item.offset - b.item.offset || a.index - b.index)
    .map(({ item }) => item);
}

/**
 * Per-block extras for a prompt, as llm-d derives them: block i lists the identifier of every
 * multimodal item whose placeholder overlaps [i*B, (i+1)*B), by start offset, and block 0 gets
 * the cache salt last. Returns null when no block has extras (the common text-only case).
 */
export function requestBlockExtras(input: RequestExtrasInput): BlockExtras[] | null {
  const { tokenCount, blockSize } = input;
  const items = input.multimodal ? sortPlaceholders(input.multimodal) : [];
  if (items.length > 0) validatePlaceholders(items);
  const salt = input.cacheSalt ? input.cacheSalt : null;
  const blocks = Math.floor(tokenCount / blockSize);
  if (blocks === 0 || (items.length === 0 && salt === null)) return null;
  const extras: BlockExtras[] = new Array<BlockExtras>(blocks).fill(null);
  let any = false;
  for (let b = 0; b < blocks; b++) {
    const start = b * blockSize;
    const end = start + blockSize;
    const ids: string[] = [];
    for (const item of items) {
      if (item.offset >= end) break;
      if (item.offset + item.length > start) ids.push(item.identifier);
    }
    if (b === 0 && salt !== null) ids.push(salt);
    if (ids.length > 0) {
      extras[b] = ids;
      any = true;
    }
  }
  return any ? extras : null;
}

/**
 * Per-engine-block extras from a BlockStored event's `extra_keys`. Strings are identifiers or the
 * cache salt; `[hash, offset]` pairs are multimodal items (the hash is kept, the offset dropped);
 * ints (legacy LoRA ids) and bytes (prompt-embeds digests) cannot be reproduced from a prompt and
 * are left out. vLLM lists the LoRA name first on every block: it is already in the chain's root,
 * so that leading entry is dropped rather than counted twice.
 */
export function blockExtrasFromEventKeys(
  extraKeys: readonly (readonly unknown[] | null | undefined)[] | null | undefined,
  loraName: string | null | undefined,
): BlockExtras[] | null {
  if (!extraKeys || extraKeys.length === 0) return null;
  const out: BlockExtras[] = new Array<BlockExtras>(extraKeys.length).fill(null);
  let any = false;
  for (let b = 0; b < extraKeys.length; b++) {
    const entries = extraKeys[b];
    if (!Array.isArray(entries) || entries.length === 0) continue;
    const ids: string[] = [];
    for (let k = 0; k < entries.length; k++) {
      const entry: unknown = entries[k];
      if (typeof entry === 'string') {
        if (k === 0 && loraName && entry === loraName) continue;
        ids.push(entry);
      } else if (Array.isArray(entry) && typeof entry[0] === 'string') {
        ids.push(entry[0]);
      }
    }
    if (ids.length > 0) {
      out[b] = ids;
      any = true;
    }
  }
  return any ? out : null;
}
