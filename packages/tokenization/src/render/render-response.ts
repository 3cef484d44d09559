/** Reading the GenerateRequest a vLLM render endpoint answers with. */
import { isPlainObject } from '../config.js';
import { TokenizationError } from '../errors.js';
import type { MultimodalItem } from '../prompt-tokenizer.js';

export interface RenderedPrompt {
  tokenIds: Uint32Array;
  multimodal: MultimodalItem[];
  /** The salt vLLM echoed; undefined when the answer has none. */
  cacheSalt: string | null | undefined;
}

class MalformedAnswer extends Error {}

function malformed(message: string): never {
  throw new MalformedAnswer(message);
}

function tokenIdsOf(value: unknown): Uint32Array {
  if (!Array.isArray(value) || value.length === 0) malformed('token_ids must be a non-empty array');
  const ids = new Uint32Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const id: unknown = value[i];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffffff) malformed(`token_ids[${i}] is not a token id`);
    ids[i] = id;
  }
  return ids;
}

/** `mm_hashes` and `mm_placeholders` are parallel per-modality lists; kvix needs one list by position. */
function multimodalOf(features: unknown, promptLength: number): MultimodalItem[] {
  if (features === null || features === undefined) return [];
  if (!isPlainObject(features)) malformed('features must be an object');
  const hashes = features['mm_hashes'];
  const placeholders = features['mm_placeholders'];
  if (!isPlainObject(hashes) || !isPlainObject(placeholders)) malformed('features must hold mm_hashes and mm_placeholders objects');
  const modalities = Object.keys(hashes);
  if (Object.keys(placeholders).length !== modalities.length || !modalities.every((m) => m in placeholders)) {
    malformed('mm_hashes and mm_placeholders name different modalities');
  }
  const items: MultimodalItem[] = [];
  for (const modality of modalities) {
    const ids = hashes[modality];
    const ranges = placeholders[modality];
    if (!Array.isArray(ids) || !Array.isArray(ranges) || ids.length !== ranges.length) {
      malformed(`${modality}: mm_hashes and mm_placeholders must be lists of the same length`);
    }
    for (let i = 0; i < ids.length; i++) {
      const identifier: unknown = ids[i];
      const range: unknown = ranges[i];
      if (typeof identifier !== 'string') malformed(`${modality}: mm_hashes[${i}] must be a string`);
      if (!isPlainObject(range)) malformed(`${modality}: mm_placeholders[${i}] must be an object`);
      const { offset, length } = range;
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || (offset as number) < 0 || (length as number) <= 0) {
        malformed(`${modality}: mm_placeholders[${i}] needs an offset ≥ 0 and a length > 0`);
      }
      if ((offset as number) + (length as number) > promptLength) malformed(`${modality}: mm_placeholders[${i}] lies beyond the prompt`);
      items.push({ identifier, offset: offset as number, length: length as number });
    }
  }
  return items.sort((a, b) => a.offset - b.offset);
}

/**
 * Completions render answers a list (one entry per prompt), chat render one object; either is
 * accepted from either endpoint. The caller turns a MalformedAnswer into RENDER_UNAVAILABLE.
 */
export function readRenderAnswer(answer: unknown): RenderedPrompt {
  let request: unknown = answer;
  if (Array.isArray(answer)) {
    if (answer.length === 0) malformed('the answer is an empty list');
    if (answer.length > 1) {
      throw new TokenizationError('INVALID_REQUEST', `the prompt renders to ${answer.length} prompts; send one prompt per request`);
    }
    request = answer[0];
  }
  if (!isPlainObject(request)) malformed('the answer is not a GenerateRequest object');
  const tokenIds = tokenIdsOf(request['token_ids']);
  const salt = request['cache_salt'];
  if (salt !== undefined && salt !== null && typeof salt !== 'string') malformed('cache_salt must be a string or null');
  return { tokenIds, multimodal: multimodalOf(request['features'], tokenIds.length), cacheSalt: salt };
}

export function isMalformedAnswer(err: unknown): err is Error {
  return err instanceof MalformedAnswer;
}
