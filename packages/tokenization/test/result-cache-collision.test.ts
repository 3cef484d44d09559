/**
 * The result cache names a chat body by a digest and compares the bytes before trusting an entry.
 * Here every digest collides (the digest is replaced for this file), so only that comparison keeps
 * two different bodies apart.
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { CachingTokenizer, chatPromptFromBody, LocalTokenizerPool, type PromptInput } from '../src/index.js';

// Hoisted above the imports by vitest, so the cache module sees the colliding digest.
vi.mock('../src/cache/body-digest.js', () => ({ bodyDigest: () => 'always-the-same' }));

const pool = new LocalTokenizerPool({ unlisted: 'bundled', workers: 0 });
afterAll(() => pool.close());

/** Two bodies of the same length whose only difference is the question: their keys are equal. */
function input(question: 'Where is parcel 7?' | 'Where is parcel 9?'): PromptInput {
  const bytes = Buffer.from(JSON.stringify({ model: 'Qwen/Qwen3-0.6B', messages: [{ role: 'user', content: question }] }));
  return { kind: 'chat', ...chatPromptFromBody(JSON.parse(bytes.toString('utf8')) as Record<string, unknown>)!, body: bytes };
}

describe('a result cache whose body digests collide', () => {
  it('answers each body with its own tokens, never the other body’s entry', async () => {
    const cache = new CachingTokenizer(pool);
    const seven = await pool.tokenize('Qwen/Qwen3-0.6B', input('Where is parcel 7?'));
    const nine = await pool.tokenize('Qwen/Qwen3-0.6B', input('Where is parcel 9?'));
    expect(Array.from(seven.tokenIds)).not.toEqual(Array.from(nine.tokenIds));

    expect((await cache.tokenize('Qwen/Qwen3-0.6B', input('Where is parcel 7?'))).cached).toBe(false);
    const second = await cache.tokenize('Qwen/Qwen3-0.6B', input('Where is parcel 9?'));
    expect(second.cached).toBe(false);
    expect(Array.from(second.tokenIds)).toEqual(Array.from(nine.tokenIds));
    // The same bytes again: a hit on the entry the last answer left.
    const again = await cache.tokenize('Qwen/Qwen3-0.6B', input('Where is parcel 9?'));
    expect(again.cached).toBe(true);
    expect(Array.from(again.tokenIds)).toEqual(Array.from(nine.tokenIds));
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it('does not let concurrent calls for different bodies share one tokenization', async () => {
    const cache = new CachingTokenizer(pool);
    const [seven, nine] = await Promise.all([cache.tokenize('Qwen/Qwen3-0.6B', input('Where is parcel 7?')), cache.tokenize('Qwen/Qwen3-0.6B', input('Where is parcel 9?'))]);
    expect(Array.from(seven.tokenIds)).not.toEqual(Array.from(nine.tokenIds));
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 2 });
  });

  it('keeps its own copy of a body, so a caller reusing its buffer cannot make a stale entry match', async () => {
    const cache = new CachingTokenizer(pool);
    const first = input('Where is parcel 7?') as Extract<PromptInput, { kind: 'chat' }>;
    await cache.tokenize('Qwen/Qwen3-0.6B', first);
    // The caller overwrites its buffer with the other question (same length) and asks with the other messages.
    const bytes = first.body!;
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).write(JSON.stringify({ model: 'Qwen/Qwen3-0.6B', messages: [{ role: 'user', content: 'Where is parcel 9?' }] }));
    const reused: PromptInput = { ...input('Where is parcel 9?'), body: bytes } as PromptInput;
    const answer = await cache.tokenize('Qwen/Qwen3-0.6B', reused);
    expect(answer.cached).toBe(false);
  });
});
