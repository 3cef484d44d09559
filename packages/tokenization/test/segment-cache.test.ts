import { describe, expect, it } from 'vitest';
import { LocalTokenizer } from '../src/index.js';
import { SegmentEncoder } from '../src/segment-cache.js';

const qwen = await LocalTokenizer.bundled('Qwen/Qwen3-0.6B');

const FRAGMENTS = [
  'You are a helpful assistant. ',
  '<|im_start|>',
  '<|im_end|>',
  '<think>',
  '</think>',
  '\n',
  '  ',
  '\t\t',
  'naïve café — 東京タワー ',
  '🙂👍🏽 ',
  'def f(x):\n    return x ** 2\n',
  "it's ",
  '12345 ',
  '<|im_start',
  '|>',
  'system\n',
  ' '.repeat(70),
  'lorem ipsum dolor sit amet '.repeat(4),
];

describe('exact segment cache', () => {
  it('is enabled for the bundled Qwen3 tokenizer', () => {
    expect(qwen.segmentCacheStats()).not.toBeNull();
  });

  it('gives exactly the uncached ids for 2,000 random texts mixing special tokens, unicode and whitespace', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let i = 0; i < 2000; i++) {
      let text = '';
      const parts = 1 + rand(12);
      for (let p = 0; p < parts; p++) text += FRAGMENTS[rand(FRAGMENTS.length)]!;
      // Encode twice: the second run is served from the cache where pieces are long enough.
      for (const addSpecialTokens of [true, false, true]) {
        expect(qwen.encode(text, { addSpecialTokens })).toEqual(qwen.encodeUncached(text, { addSpecialTokens }));
      }
    }
  });

  it('tokenizes a shared system message once across many chat prompts', () => {
    const system = 'You are the support assistant of ACME Corp. Answer briefly and politely. '.repeat(30);
    const before = qwen.segmentCacheStats()!;
    for (let i = 0; i < 20; i++) {
      const ids = qwen.encodeChat([
        { role: 'system', content: system },
        { role: 'user', content: `Question ${i}: where is my order?` },
      ]);
      expect(ids.length).toBeGreaterThan(400);
    }
    const after = qwen.segmentCacheStats()!;
    expect(after.hits - before.hits).toBeGreaterThanOrEqual(19);
  });
});

describe('segment cache keys', () => {
  it('keeps two long pieces that differ only between the characters its key samples apart, and exact', () => {
    // 200 characters: the key reads both 32-character ends and every third character from index 1; index 101 is not read.
    const base = 'lorem ipsum dolor sit amet, consectetur adipiscing elit sed do '.repeat(4).slice(0, 200);
    const a = `${base.slice(0, 101)}A${base.slice(102)}`;
    const b = `${base.slice(0, 101)}B${base.slice(102)}`;
    const before = qwen.segmentCacheStats()!;
    for (let i = 0; i < 6; i++) {
      for (const text of [a, b]) expect(qwen.encode(`<|im_start|>${text}<|im_end|>`)).toEqual(qwen.encodeUncached(`<|im_start|>${text}<|im_end|>`));
    }
    const after = qwen.segmentCacheStats()!;
    // They share a key, so each replaces the other: every lookup is a miss, and none is answered wrong.
    expect(after.misses - before.misses).toBe(12);
    // Other pieces of that length keep their keys: a repeat is a hit.
    const c = base.replace('lorem', 'LOREM');
    qwen.encode(c);
    const again = qwen.segmentCacheStats()!;
    qwen.encode(c);
    expect(qwen.segmentCacheStats()!.hits - again.hits).toBe(1);
  });
});

describe('exact per-word cache', () => {
  it('skips NFC only where it changes nothing: every pair of code units below U+0300 is already NFC', () => {
    let changed = 0;
    for (let a = 0; a < 0x300; a++) for (let b = 0; b < 0x300; b++) {
      const s = String.fromCharCode(a, b);
      if (s.normalize('NFC') !== s) changed++;
    }
    expect(changed).toBe(0);
  });

  it('is enabled for the bundled Qwen3 tokenizer and reproduces the library on new prose, code and unicode', () => {
    // With decomposed and singleton forms NFC changes (cafe + U+0301, the Ångström sign), beside text below U+0300 it leaves alone.
    const words = 'the of and shipment parcel naïve café cafe\u0301 \u212b 東京 🙂 12345 3.14 def return x**2 it\'s I\'M'.split(' ');
    let seed = 11;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const seps = [' ', '  ', '\n', '\n\n', '\t', ', ', '. ', '?\n', '\u00a0', ''];
    const before = qwen.wordCacheStats()!;
    expect(before).not.toBeNull();
    for (let i = 0; i < 1500; i++) {
      let text = '';
      for (let w = 1 + rand(40); w > 0; w--) text += words[rand(words.length)]! + seps[rand(seps.length)]!;
      expect(qwen.encode(text, { addSpecialTokens: false })).toEqual(qwen.encodeUncached(text, { addSpecialTokens: false }));
    }
    const after = qwen.wordCacheStats()!;
    expect(after.hits - before.hits).toBeGreaterThan(after.misses - before.misses);
  });
});

describe('added-token splitting', () => {
  // A stand-in piece encoder that shows where the pieces were cut: each piece becomes its char codes plus a 0 marker.
  const marked = (text: string): number[] => [...Array.from(text, (c) => c.charCodeAt(0)), 0];
  const added = ['<a>', '<a>b', '<ab>', 'xy', 'x'];
  /** Tokens starting with more characters than the indexOf scan takes (so the whole pattern finds them). */
  const manyFirsts = ['by', 'yz', 'z', ' z>'];
  const json = (extra: number, more: readonly string[] = []) => ({
    added_tokens: [...added, ...more, ...Array.from({ length: extra }, (_, i) => `<reserved_${i}>`)].map((content, id) => ({ id: 1_000_000 + id, content, normalized: false, lstrip: false, rstrip: false })),
    pre_tokenizer: { type: 'ByteLevel' },
    post_processor: null,
  });
  /** The tokenizer's own rule, written out: at each position the longest added token, else move on. */
  const reference = (text: string, more: readonly string[] = []): number[] => {
    const all = [...added, ...more];
    const out: number[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      const match = all.filter((w) => text.startsWith(w, i)).sort((a, b) => b.length - a.length)[0];
      if (match === undefined) {
        i++;
        continue;
      }
      if (i > start) out.push(...marked(text.slice(start, i)));
      out.push(1_000_000 + all.indexOf(match));
      i += match.length;
      start = i;
    }
    if (start < text.length) out.push(...marked(text.slice(start)));
    return out;
  };

  it('takes the longest added token at each position: found from their first characters, by one pattern, or (for thousands of tokens) by a trie', () => {
    const alphabet = ['<', 'a', '>', 'b', 'x', 'y', ' ', 'z'];
    let seed = 3;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (const [extra, more] of [[0, []], [0, manyFirsts], [5000, []]] as const) {
      const encoder = SegmentEncoder.forTokenizer(json(extra, more), marked)!;
      for (let i = 0; i < 3000; i++) {
        let text = '';
        for (let n = rand(30); n > 0; n--) text += alphabet[rand(alphabet.length)]!;
        expect(encoder.encode(text)).toEqual(reference(text, more));
      }
    }
  });
});
