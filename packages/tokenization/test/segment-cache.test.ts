import { describe, expect, it } from 'vitest';
import { LocalTokenizer } from '../src/index.js';

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
