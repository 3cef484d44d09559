/**
 * The exact key of a tokenization: every value that can change the answer, serialised so that two
 * inputs share a key only if the tokenizer cannot tell them apart. Object key order is kept
 * (templates print tool schemas in insertion order), undefined is kept apart from absent and
 * null, and NaN, ±Infinity and -0 keep their identity (JSON would fold them into null and 0).
 * Inputs holding anything else (class instances, functions, cycles, sparse arrays) get no key
 * and are never cached.
 */
import type { PromptInput } from '../prompt-tokenizer.js';

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
function today(): string {
  const d = new Date();
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** The full key (never a hash of it), or null when the input cannot be keyed exactly. */
export function cacheKey(model: string, input: PromptInput, cacheSalt: string | null): string | null {
  if (typeof model !== 'string' || (cacheSalt !== null && typeof cacheSalt !== 'string')) return null;
  const out: string[] = [JSON.stringify(model), cacheSalt === null ? 'N' : JSON.stringify(cacheSalt), today()];
  // A chat prompt read from a request body is what the body says: its bytes are the key (exact —
  // two bodies differing anywhere only miss each other), far cheaper than serialising every message.
  if (input.kind === 'chat' && input.body instanceof Uint8Array) return `${out.join('|')}|B${Buffer.from(input.body.buffer, input.body.byteOffset, input.body.byteLength).toString('latin1')}`;
  return serialise(input, out, 0) ? out.join('|') : null;
}
