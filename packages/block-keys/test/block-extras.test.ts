import { describe, expect, it } from 'vitest';
import { RequestKeyHasher, blockExtrasFromEventKeys, requestBlockExtras } from '../src/index.js';
import { decimals, sharedRequestKeys } from './vectors.js';

describe('per-block extras from a prompt', () => {
  it('lists every multimodal item overlapping a block, by start offset, and reproduces the shared vector', () => {
    const c = sharedRequestKeys.cases.find((x) => x.id === 'fnv-4')!;
    // Two images: img-1 spans blocks 1-2, img-2 starts inside block 2 (given out of order on purpose).
    const extras = requestBlockExtras({
      tokenCount: c.tokens.length,
      blockSize: c.blockSize,
      multimodal: [
        { identifier: 'img-2', offset: 40, length: 8 },
        { identifier: 'img-1', offset: 20, length: 16 },
      ],
    });
    expect(extras).toEqual(c.extraKeys);
    const hasher = new RequestKeyHasher({ blockSize: c.blockSize, seed: c.seed });
    expect(decimals(hasher.keys(c.tokens, c.model, { extras }))).toEqual(c.keys);
  });

  it('appends the cache salt to block 0 after the multimodal identifiers', () => {
    const extras = requestBlockExtras({
      tokenCount: 32,
      blockSize: 16,
      multimodal: [{ identifier: 'img', offset: 2, length: 4 }],
      cacheSalt: 'tenant',
    });
    expect(extras).toEqual([['img', 'tenant'], null]);
  });

  it('returns null for a text-only prompt without salt, and ignores an empty salt as vLLM does', () => {
    expect(requestBlockExtras({ tokenCount: 64, blockSize: 16 })).toBeNull();
    expect(requestBlockExtras({ tokenCount: 64, blockSize: 16, cacheSalt: '' })).toBeNull();
  });

  it('rejects a placeholder with a negative offset', () => {
    expect(() =>
      requestBlockExtras({ tokenCount: 64, blockSize: 16, multimodal: [{ identifier: 'x', offset: -1, length: 3 }] }),
    ).toThrow(/offset/);
  });
});

describe('per-block extras from a BlockStored event', () => {
  it('keeps identifiers and salts, takes the hash of legacy [hash, offset] pairs', () => {
    expect(blockExtrasFromEventKeys([['img-1', ['img-2', -11], 'salt'], null], null)).toEqual([['img-1', 'img-2', 'salt'], null]);
  });

  it('does not count the LoRA name twice: it is already the root of the chain', () => {
    const fromEvent = blockExtrasFromEventKeys([['sql-lora', 'tenant'], ['sql-lora']], 'sql-lora');
    expect(fromEvent).toEqual([['tenant'], null]);
  });

  it('leaves out what a prompt cannot reproduce (legacy int LoRA ids, prompt-embeds digests)', () => {
    expect(blockExtrasFromEventKeys([[1, new Uint8Array(32)], null], null)).toBeNull();
  });

  it('maps the event-side extras of a salted LoRA request to the same keys as the prompt side', () => {
    const hasher = new RequestKeyHasher({ blockSize: 4 });
    const tokens = [5, 6, 7, 8, 9, 10, 11, 12];
    const promptSide = hasher.keys(tokens, 'sql-lora', { extras: requestBlockExtras({ tokenCount: 8, blockSize: 4, cacheSalt: 's' }) });
    const eventSide = hasher.keys(tokens, 'sql-lora', { extras: blockExtrasFromEventKeys([['sql-lora', 's'], ['sql-lora']], 'sql-lora') });
    expect(eventSide).toEqual(promptSide);
  });
});
