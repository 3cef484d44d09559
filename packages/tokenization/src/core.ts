/** The tokenizer files, parsed once and shared by every LocalTokenizer made from them. */
import { Tokenizer } from '@huggingface/tokenizers';
import type { ChatTemplateSource } from './chat.js';
import { chatTemplatesOf, isPlainObject, modelMaxLength, specialTokensMap, type ChatTemplates, type JsonObject } from './config.js';
import { TokenizationError } from './errors.js';
import { SegmentEncoder } from './segment-cache.js';
import { WordEncoder, type HfInternals } from './word-encoder.js';

/** The slice of @huggingface/tokenizers this package relies on, typed here rather than trusted. */
interface HfTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  id_to_token(id: number): string | undefined;
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
}

export interface TokenizerCore extends ChatTemplateSource {
  readonly hf: HfTokenizer;
  readonly maxModelLen: number;
  readonly eosTokenId: number | null;
  readonly vocabSize: number;
  readonly cleanUpTokenizationSpaces: boolean;
  /** The exact per-segment cache, when this tokenizer's rules allow one (see segment-cache.ts). */
  readonly segments: SegmentEncoder | null;
  /** The exact per-word cache pieces go through, when the pipeline allows one (see word-encoder.ts). */
  readonly words: WordEncoder | null;
}

/**
 * transformers 5 skips `clean_up_tokenization_spaces` for BPE models unless forced: the cleanup
 * is for WordPiece and deletes real spaces before punctuation.
 */
function cleansUpSpaces(tokenizerJson: JsonObject, config: JsonObject): boolean {
  if (config['clean_up_tokenization_spaces'] !== true) return false;
  const model = tokenizerJson['model'];
  const isBpe = isPlainObject(model) && model['type'] === 'BPE';
  return !isBpe || config['clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output'] === true;
}

export function buildCore(tokenizerJson: object, tokenizerConfig: object, templates?: ChatTemplates): TokenizerCore {
  if (!isPlainObject(tokenizerJson) || !isPlainObject(tokenizerJson['model'])) {
    throw new TokenizationError('INVALID_TOKENIZER', 'tokenizer.json must be an object with a "model" section');
  }
  if (!isPlainObject(tokenizerConfig)) throw new TokenizationError('INVALID_TOKENIZER', 'tokenizer_config.json must be an object');
  let hf: HfTokenizer;
  try {
    hf = new Tokenizer(tokenizerJson, tokenizerConfig) as unknown as HfTokenizer;
  } catch (err) {
    throw new TokenizationError('INVALID_TOKENIZER', `the tokenizer cannot be built: ${messageOf(err)}`, { cause: err });
  }
  const specialTokens = specialTokensMap(tokenizerConfig);
  const eos = specialTokens['eos_token'];
  const whole = (text: string): number[] => hf.encode(text, { add_special_tokens: false }).ids;
  const words = WordEncoder.forTokenizer(hf as unknown as HfInternals, tokenizerJson, whole);
  return {
    hf,
    templates: templates === undefined ? chatTemplatesOf(tokenizerConfig) : templates,
    specialTokens,
    maxModelLen: modelMaxLength(tokenizerConfig),
    eosTokenId: eos === undefined ? null : (hf.token_to_id(eos) ?? null),
    vocabSize: new Set(hf.get_vocab(true).values()).size,
    cleanUpTokenizationSpaces: cleansUpSpaces(tokenizerJson, tokenizerConfig),
    segments: SegmentEncoder.forTokenizer(tokenizerJson, words === null ? whole : (text) => words.encode(text)),
    words,
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
