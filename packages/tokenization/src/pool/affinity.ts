/**
 * Which thread a request prefers. LocalTokenizer caches the ids of each piece of text between
 * special tokens, per thread; requests that open the same way (a shared system message, a fixed
 * completion preamble) therefore run fastest on the thread that has seen that opening before.
 */
import { isPlainObject } from '../config.js';
import type { PromptInput } from '../prompt-tokenizer.js';

/** Enough to tell system prompts apart; hashing more would only cost time. */
const OPENING_CHARS = 256;

function openingOf(input: PromptInput): string {
  if (input.kind === 'completion') return input.prompt.slice(0, OPENING_CHARS);
  const first: unknown = input.messages[0];
  if (!isPlainObject(first)) return '';
  const content = first['content'];
  let text = '';
  if (typeof content === 'string') text = content;
  else if (Array.isArray(content)) {
    const part: unknown = content.find((p) => isPlainObject(p) && typeof p['text'] === 'string');
    text = isPlainObject(part) ? (part['text'] as string) : '';
  }
  return `${String(first['role'])}\u0000${text.slice(0, OPENING_CHARS)}`;
}

/** FNV-1a over UTF-16 code units: stable across threads and runs, and cheap. */
export function affinityHash(model: string, input: PromptInput): number {
  let h = 0x811c9dc5;
  const mix = (s: string): void => {
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  };
  mix(model);
  mix(`\u0000${input.kind}\u0000`);
  mix(openingOf(input));
  return h >>> 0;
}
