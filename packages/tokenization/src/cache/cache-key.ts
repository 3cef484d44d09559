/**
 * The exact key of a tokenization: every value that can change the answer, serialised so that two
 * inputs share a key only if the tokenizer cannot tell them apart. Object key order is kept
 * (templates print tool schemas in insertion order), undefined is kept apart from absent and
 * null, and NaN, ±Infinity and -0 keep their identity (JSON would fold them into null and 0).
 * Inputs holding anything else (class instances, functions, cycles, sparse arrays) get no key
 * and are never cached.
 */
import type { PromptInput } from '../prompt-tokenizer.js';
import { bodyDigest } from './body-digest.js';

/** Deeper than any real chat request; bounds recursion on hostile input. */
const MAX_DEPTH = 64;

function serialise(value: unknown, out: string[], depth: number): boolean {
  switch (typeof value) {
    case 'string':
      out.push(JSON.stringify(value));
      return true;
    case 'number':
      out.push(Object.is(value, -0) ? '#-0' : `#${String(value)}`);
      return true;
    case 'boolean':
      out.push(value ? 'T' : 'F');
      return true;
    case 'undefined':
      out.push('U');
      return true;
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) {
    out.push('N');
    return true;
  }
  if (depth >= MAX_DEPTH) return false;
  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype) return false;
    out.push('[');
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) return false;
      if (i > 0) out.push(',');
      if (!serialise(value[i], out, depth + 1)) return false;
    }
    out.push(']');
    return true;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  out.push('{');
  let first = true;
  for (const [key, item] of Object.entries(value)) {
    if (!first) out.push(',');
    first = false;
    out.push(JSON.stringify(key), ':');
    if (!serialise(item, out, depth + 1)) return false;
  }
  out.push('}');
  return true;
}

/** The calendar day templates can print (Llama 3's `strftime_now`), so no answer outlives its day. */
let day = '';
/** The local day `day` names (it is recomputed outside it, not built from a new Date per request). */
let dayStartsAt = 0;
let dayEndsAt = 0;

function today(): string {
  const now = Date.now();
  // Outside the day: past midnight, or a clock set back.
  if (now >= dayEndsAt || now < dayStartsAt) {
    const d = new Date(now);
    day = `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
    // Local midnights (a DST change moves them; the date arithmetic follows).
    dayStartsAt = new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
    dayEndsAt = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1).getTime();
  }
  return day;
}

/** What an exact cache entry is found by, and the bytes a hit must equal (a chat body's). */
export interface CacheKey {
  key: string;
  /** Set when the key holds a digest of these bytes rather than the bytes themselves. */
  body: Uint8Array | null;
}

/**
 * The key of a tokenization, or null when the input cannot be keyed exactly. Everything but a chat
 * body is serialised in full; a body is named by its length and a digest of sampled bytes
 * (body-digest.ts), and the caller compares the bytes themselves before trusting an entry, so the
 * key stays exact while the string it keeps is short. The whole body as a latin1 string (the key
 * before) put a copy of every request on the V8 heap, and V8 hashes strings longer than 16,383
 * characters by their length alone, so every body of one length landed in one Map bucket; the
 * bytes compared are an off-heap copy.
 */
export function cacheKey(model: string, input: PromptInput, cacheSalt: string | null): CacheKey | null {
  if (typeof model !== 'string' || (cacheSalt !== null && typeof cacheSalt !== 'string')) return null;
  const out: string[] = [JSON.stringify(model), cacheSalt === null ? 'N' : JSON.stringify(cacheSalt), today()];
  // A chat prompt read from a request body is what the body says: its bytes are the key (exact —
  // two bodies differing anywhere only miss each other), far cheaper than serialising every message.
  if (input.kind === 'chat' && input.body instanceof Uint8Array) {
    return { key: `${out.join('|')}|B${input.body.byteLength}:${bodyDigest(input.body)}`, body: input.body };
  }
  return serialise(input, out, 0) ? { key: out.join('|'), body: null } : null;
}

/** Whether an entry's bytes are the request's (always, for keys that hold their input in full). */
export function sameBody(stored: Uint8Array | null, asked: Uint8Array | null): boolean {
  if (stored === null || asked === null) return stored === asked;
  return Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength).equals(asked);
}
