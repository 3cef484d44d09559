/**
 * Exact per-word caching inside a piece of text (the text between two added tokens).
 *
 * @huggingface/tokenizers encodes a piece as: normalizer → pre-tokenizer → model → ids. When the
 * pre-tokenizer is a Sequence, every stage after the first runs on each token of the stage
 * before it on its own (the library maps `pre_tokenize` over the array), and a BPE model encodes
 * each pre-token on its own too. So the ids of a piece are the concatenation, over the tokens the
 * first stage splits the normalized piece into, of what the rest of the pipeline makes of each
 * one — and those can be cached per token ("word"). The library's own stages compute every miss.
 *
 * Why hand-wire this: the library spends most of a fresh piece in its ByteLevel stage (a
 * TextEncoder call, an array and a join per word) ahead of its own BPE cache. Measured on the
 * decision benchmark's chat prose (Qwen3): 0.54 ms of CPU for a new 250-token message through
 * `encode`, 0.05 ms through this cache.
 */
import type { JsonObject } from './config.js';

/** The internals of @huggingface/tokenizers 0.2 this relies on, typed here rather than trusted. */
interface PreTokenizerStage {
  pre_tokenize_text(text: string): string[];
  pre_tokenize(texts: string[]): string[];
  /** A Split stage's compiled pattern (global). */
  pattern?: unknown;
}

export interface HfInternals {
  normalizer: ((text: string) => string) | null;
  pre_tokenizer: (PreTokenizerStage & { tokenizers?: (PreTokenizerStage | null)[] }) | null;
  model: ((tokens: string[]) => string[]) & { tokens_to_ids: Map<string, number>; unk_token_id?: number; fuse_unk?: boolean };
  added_tokens_map: Map<string, { id: number }>;
  remove_space?: boolean;
  do_lowercase_and_remove_accent?: boolean;
}

/** Words longer than this are encoded but not kept (long runs of digits or symbols rarely repeat). */
const MAX_WORD_LENGTH = 64;
const DEFAULT_MAX_WORDS = 200_000;

/**
 * A sample the cached path must reproduce exactly at construction (letters, digits, contractions,
 * whitespace runs, newlines, punctuation, accents, CJK, emoji), or it is not used.
 */
const SELF_CHECK =
  "Hello world! It's 2024-06-01, and naïve café costs $3.50.\n\n  def f(x):\n\treturn x**2  \r\n東京タワー 🙂👍🏽 — 'quoted' I'M   spaced\u00a0out...?!\n";

/**
 * Characters NFC may change start at U+0300 (the first with NFC_Quick_Check other than Yes is
 * U+0300, a combining mark), so text below it is already NFC: checking costs a scan, normalizing
 * (ICU, via String.prototype.normalize) a copy and ~25 µs of a routing decision's new text.
 */
const BEYOND_NFC_STABLE = /[\u0300-\uffff]/;

function isNfcOnly(normalizer: unknown): boolean {
  if (typeof normalizer !== 'object' || normalizer === null) return false;
  const n = normalizer as JsonObject;
  if (n['type'] === 'NFC') return true;
  const steps = n['normalizers'];
  return n['type'] === 'Sequence' && Array.isArray(steps) && steps.length === 1 && isNfcOnly(steps[0]);
}

/** The library's compiled pattern of a first stage that is a Split isolating its matches (not inverted). */
function isolatingSplitPattern(tokenizerJson: JsonObject, stage: PreTokenizerStage): RegExp | null {
  const config = ((tokenizerJson['pre_tokenizer'] as JsonObject)['pretokenizers'] as unknown[] | undefined)?.[0] as JsonObject | undefined;
  if (config?.['type'] !== 'Split' || config['invert'] === true) return null;
  if (typeof config['behavior'] !== 'string' || config['behavior'].toLowerCase() !== 'isolated') return null;
  const pattern = stage.pattern;
  return pattern instanceof RegExp && pattern.global ? new RegExp(pattern.source, pattern.flags) : null;
}

export type PieceEncoder = (piece: string) => Uint32Array;

export class WordEncoder {
  /** A word's ids; most words are one token, kept as the number itself (no array to read). */
  private readonly words = new Map<string, number | Uint32Array>();
  /** Output assembled here, then copied out once. */
  private scratch = new Uint32Array(4096);
  private readonly first: PreTokenizerStage;
  private readonly rest: PreTokenizerStage[];
  /**
   * The first stage's pattern when it is an isolating Split: `String.prototype.match` finds the
   * same words without the match objects the library's `matchAll` loop allocates (2,000 characters
   * of prose: 59 µs → 22 µs). Null: the library splits.
   */
  private readonly splitPattern: RegExp | null;
  /** Whether the normalizer is NFC alone, which leaves text below U+0300 as it is. */
  private readonly nfcOnly: boolean;
  hits = 0;
  misses = 0;

  private constructor(
    private readonly hf: HfInternals,
    first: PreTokenizerStage,
    rest: PreTokenizerStage[],
    private readonly maxWords: number,
    splitPattern: RegExp | null,
    nfcOnly: boolean,
  ) {
    this.nfcOnly = nfcOnly;
    this.first = first;
    this.rest = rest;
    this.splitPattern = splitPattern;
  }

  /**
   * A word encoder when the tokenizer's pipeline decomposes per word (a BPE model that does not
   * fuse unknown tokens, a Sequence pre-tokenizer with no Metaspace stage, none of the legacy
   * whole-text options) and the decomposition reproduces the library on a sample; else null.
   */
  static forTokenizer(hf: HfInternals, tokenizerJson: JsonObject, encodeWhole: (piece: string) => ArrayLike<number>, maxWords = DEFAULT_MAX_WORDS): WordEncoder | null {
    const model = tokenizerJson['model'] as JsonObject | undefined;
    if (model?.['type'] !== 'BPE' || hf.model.fuse_unk === true) return null;
    if (hf.remove_space === true || hf.do_lowercase_and_remove_accent === true) return null;
    const pre = hf.pre_tokenizer;
    const stages = pre?.tokenizers;
    if (pre === null || !Array.isArray(stages) || stages.length === 0 || stages.some((s) => s === null)) return null;
    if (typeof (tokenizerJson['pre_tokenizer'] as JsonObject | undefined)?.['type'] !== 'string') return null;
    if (JSON.stringify(tokenizerJson['pre_tokenizer']).includes('"Metaspace"')) return null;
    if (!(hf.model.tokens_to_ids instanceof Map) || !(hf.added_tokens_map instanceof Map)) return null;
    const encoder = new WordEncoder(hf, stages[0]!, stages.slice(1) as PreTokenizerStage[], maxWords, isolatingSplitPattern(tokenizerJson, stages[0]!), isNfcOnly(tokenizerJson['normalizer']));
    for (const sample of [SELF_CHECK, SELF_CHECK.repeat(3), ` ${SELF_CHECK.trim()}`]) {
      let expected: ArrayLike<number>;
      let got: Uint32Array;
      try {
        expected = encodeWhole(sample);
        got = encoder.encode(sample);
      } catch {
        return null;
      }
      if (got.length !== expected.length) return null;
      for (let i = 0; i < got.length; i++) if (got[i] !== expected[i]) return null;
    }
    encoder.words.clear();
    encoder.hits = encoder.misses = 0;
    return encoder;
  }

  /** The ids of a piece containing no added token. */
  encode(piece: string): Uint32Array {
    const normalized = this.hf.normalizer === null || (this.nfcOnly && !BEYOND_NFC_STABLE.test(piece)) ? piece : this.hf.normalizer(piece);
    if (normalized.length === 0) return new Uint32Array(0);
    const words = this.split(normalized);
    let out = this.scratch;
    let length = 0;
    for (let w = 0; w < words.length; w++) {
      const word = words[w]!;
      let ids = this.words.get(word);
      if (ids === undefined) {
        this.misses++;
        const encoded = this.encodeWord(word);
        ids = encoded.length === 1 ? encoded[0]! : encoded;
        if (word.length <= MAX_WORD_LENGTH) {
          // Cleared when full rather than kept in LRU order: refreshing recency costs every hit a
          // delete and a set, and a busy service refills the common words within a few requests.
          if (this.words.size >= this.maxWords) this.words.clear();
          this.words.set(word, ids);
        }
      } else {
        this.hits++;
      }
      const n = typeof ids === 'number' ? 1 : ids.length;
      if (length + n > out.length) {
        const grown = new Uint32Array(Math.max(length + n, out.length * 2));
        grown.set(out);
        out = this.scratch = grown;
      }
      if (typeof ids === 'number') out[length] = ids;
      else out.set(ids, length);
      length += n;
    }
    return out.slice(0, length);
  }

  /**
   * The first stage's words. When the pattern's matches cover the text end to end (no gaps, no
   * empty matches), the library's Isolated split returns exactly those matches; otherwise (a
   * pattern that skips characters) the library splits.
   */
  private split(text: string): string[] {
    if (this.splitPattern === null) return this.first.pre_tokenize_text(text);
    const matches = text.match(this.splitPattern);
    if (matches === null) return this.first.pre_tokenize_text(text);
    let covered = 0;
    for (let i = 0; i < matches.length; i++) {
      const n = matches[i]!.length;
      if (n === 0) return this.first.pre_tokenize_text(text);
      covered += n;
    }
    return covered === text.length ? matches : this.first.pre_tokenize_text(text);
  }

  /** The library's own remaining stages, model and id lookup, for one word. */
  private encodeWord(word: string): Uint32Array {
    let tokens = [word];
    for (const stage of this.rest) tokens = stage.pre_tokenize(tokens);
    const pieces = this.hf.model(tokens);
    const ids = new Uint32Array(pieces.length);
    const vocab = this.hf.model.tokens_to_ids;
    const added = this.hf.added_tokens_map;
    for (let i = 0; i < pieces.length; i++) {
      const t = pieces[i]!;
      // The library's order: an added token's id, then the vocabulary, then the unknown token (an
      // undefined id becomes 0 in a Uint32Array, as it does when the library's ids are copied into one).
      ids[i] = added.get(t)?.id ?? vocab.get(t) ?? this.hf.model.unk_token_id ?? 0;
    }
    return ids;
  }
}
