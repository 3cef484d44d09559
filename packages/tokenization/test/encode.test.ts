import { describe, expect, it } from 'vitest';
import { LocalTokenizer, TokenizationError } from '../src/index.js';
import { fixture, qwen3, qwen3Files } from './fixtures.js';

describe('Qwen3 completions tokenization', () => {
  it.each(fixture.encode.map((c) => [c.id, c] as const))('encodes %s to the ids Hugging Face tokenizers produce', (_id, c) => {
    expect(qwen3.encode(c.text)).toEqual(c.ids);
    expect(qwen3.encode(c.text, { addSpecialTokens: false })).toEqual(c.idsNoSpecial);
    expect(qwen3.tokenStrings(c.ids)).toEqual(c.tokens);
  });

  it.each(fixture.encode.map((c) => [c.id, c] as const))('decodes the ids of %s back as transformers does', (_id, c) => {
    expect(qwen3.decode(c.ids, { skipSpecialTokens: false })).toBe(c.decoded);
    expect(qwen3.decode(c.ids)).toBe(c.decodedSkipSpecial);
  });

  it.each(fixture.decode.map((c) => [c.id, c] as const))('decodes %s with and without special tokens', (_id, c) => {
    expect(qwen3.decode(c.ids, { skipSpecialTokens: false })).toBe(c.text);
    expect(qwen3.decode(c.ids, { skipSpecialTokens: true })).toBe(c.textSkipSpecial);
  });

  it('drops special tokens when decoding unless asked to keep them, as vLLM does for generated text', () => {
    const ids = qwen3.encode('<|im_start|>assistant\nHi<|im_end|>');
    expect(qwen3.decode(ids)).toBe('assistant\nHi');
    expect(qwen3.decode(ids, { skipSpecialTokens: false })).toBe('<|im_start|>assistant\nHi<|im_end|>');
  });

  it('round-trips every fixture text through encode and decode', () => {
    for (const c of fixture.encode) {
      // Qwen3 normalises to NFC, so only the NFC form of a text can come back unchanged.
      expect(qwen3.decode(qwen3.encode(c.text), { skipSpecialTokens: false })).toBe(c.text.normalize('NFC'));
    }
  });

  it('decodes an empty id list to an empty string', () => {
    expect(qwen3.decode([])).toBe('');
    expect(qwen3.tokenStrings([])).toEqual([]);
  });

  it('rejects ids outside the vocabulary instead of decoding them to nothing', () => {
    for (const bad of [[fixture.tokenizer.vocabSize], [-1], [1.5], [Number.NaN]]) {
      expect(() => qwen3.decode(bad)).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
      expect(() => qwen3.tokenStrings(bad)).toThrow(TokenizationError);
    }
    expect(qwen3.decode([fixture.tokenizer.vocabSize - 1], { skipSpecialTokens: false })).toBe('</think>');
  });

  it('reports the vocabulary size, EOS id and context length transformers reports', () => {
    expect(qwen3.vocabSize).toBe(fixture.tokenizer.vocabSize);
    expect(qwen3.eosTokenId).toBe(fixture.tokenizer.eosTokenId);
    expect(qwen3.maxModelLen).toBe(fixture.tokenizer.modelMaxLength);
    expect(qwen3.modelName).toBe('Qwen/Qwen3-0.6B');
  });
});

describe('a tokenizer whose post-processor adds a BOS token', () => {
  const { postProcessor, cases, chat } = fixture.bosPostProcessor;
  const files = qwen3Files();
  const withBos = LocalTokenizer.fromJson({ ...files.tokenizerJson, post_processor: postProcessor }, files.config);

  it.each(cases.map((c) => [JSON.stringify(c.text), c] as const))('adds BOS to completion %s only when special tokens are on', (_t, c) => {
    expect(withBos.encode(c.text)).toEqual(c.ids);
    expect(withBos.encode(c.text, { addSpecialTokens: false })).toEqual(c.idsNoSpecial);
  });

  it('leaves BOS off chat prompts unless the request asks for special tokens', () => {
    expect(withBos.renderChat(chat.messages)).toBe(chat.rendered);
    expect(withBos.encodeChat(chat.messages)).toEqual(chat.ids);
    expect(withBos.encodeChat(chat.messages, { addSpecialTokens: true })).toEqual(chat.idsWithSpecial);
  });
});

describe('tokenizer_config values', () => {
  const files = qwen3Files();

  it('falls back to a 131072-token context when model_max_length is missing or a placeholder', () => {
    const { model_max_length: _drop, ...noLength } = files.config;
    expect(LocalTokenizer.fromJson(files.tokenizerJson, noLength).maxModelLen).toBe(131072);
    expect(LocalTokenizer.fromJson(files.tokenizerJson, { ...files.config, model_max_length: 1e30 }).maxModelLen).toBe(131072);
    expect(LocalTokenizer.fromJson(files.tokenizerJson, { ...files.config, model_max_length: 32768 }).maxModelLen).toBe(32768);
  });

  it('has no EOS id when the config names no EOS token', () => {
    expect(LocalTokenizer.fromJson(files.tokenizerJson, { ...files.config, eos_token: null }).eosTokenId).toBeNull();
    expect(LocalTokenizer.fromJson(files.tokenizerJson, { ...files.config, eos_token: { content: '<|endoftext|>' } }).eosTokenId).toBe(151643);
  });

  it('names a tokenizer built from JSON after the option, else the config, else "local"', () => {
    expect(LocalTokenizer.fromJson(files.tokenizerJson, files.config, { modelName: 'my-model' }).modelName).toBe('my-model');
    expect(LocalTokenizer.fromJson(files.tokenizerJson, { ...files.config, name_or_path: 'org/m' }).modelName).toBe('org/m');
    expect(LocalTokenizer.fromJson(files.tokenizerJson, files.config).modelName).toBe('local');
  });

  it('rejects tokenizer JSON that has no model as INVALID_TOKENIZER', () => {
    expect(() => LocalTokenizer.fromJson({}, {})).toThrow(expect.objectContaining({ code: 'INVALID_TOKENIZER' }));
    expect(() => LocalTokenizer.fromJson({ ...files.tokenizerJson, model: { type: 'NoSuchModel' } }, {})).toThrow(
      expect.objectContaining({ code: 'INVALID_TOKENIZER' }),
    );
    expect(() => LocalTokenizer.fromJson(files.tokenizerJson, null as unknown as object)).toThrow(
      expect.objectContaining({ code: 'INVALID_TOKENIZER' }),
    );
    expect(() => LocalTokenizer.fromJson(files.tokenizerJson, [] as unknown as object)).toThrow(
      expect.objectContaining({ code: 'INVALID_TOKENIZER' }),
    );
  });
});
