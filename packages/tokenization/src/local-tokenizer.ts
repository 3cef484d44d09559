import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundledNames, loadBundled } from './bundled.js';
import { renderChat } from './chat.js';
import { UNLIMITED_RENDER, type RenderBudget } from './jinja.js';
import { isPlainObject, type ChatTemplates, type JsonObject } from './config.js';
import { buildCore, type TokenizerCore } from './core.js';
import { TokenizationError } from './errors.js';
import type { PieceTrace } from './prefix-keys.js';
import type { ChatMessage, ChatTemplateOptions, DecodeOptions, EncodeOptions, RenderLimits } from './types.js';

function nodeErrorCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function readJson(path: string, optional: boolean): Promise<JsonObject | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = nodeErrorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      if (optional) return null;
      throw new TokenizationError('FILE_NOT_FOUND', `${path} does not exist`, { cause: err });
    }
    throw new TokenizationError('INVALID_TOKENIZER', `cannot read ${path}: ${messageOf(err)}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new TokenizationError('INVALID_TOKENIZER', `${path} is not valid JSON: ${messageOf(err)}`, { cause: err });
  }
  if (!isPlainObject(parsed)) throw new TokenizationError('INVALID_TOKENIZER', `${path} must hold a JSON object`);
  return parsed;
}

async function readOptionalText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = nodeErrorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new TokenizationError('INVALID_TOKENIZER', `cannot read ${path}: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * transformers 5 lets template files beside the config win over its `chat_template`:
 * `chat_template.jinja` is the default and `additional_chat_templates/<name>.jinja` add named ones.
 */
async function templatesFromFiles(dir: string): Promise<ChatTemplates | undefined> {
  const named = new Map<string, string>();
  const main = await readOptionalText(join(dir, 'chat_template.jinja'));
  if (main !== null) named.set('default', main);
  const extraDir = join(dir, 'additional_chat_templates');
  let entries: string[] = [];
  try {
    entries = await readdir(extraDir);
  } catch (err) {
    const code = nodeErrorCode(err);
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new TokenizationError('INVALID_TOKENIZER', `cannot list ${extraDir}: ${messageOf(err)}`, { cause: err });
  }
  for (const entry of entries.sort()) {
    if (!entry.endsWith('.jinja')) continue;
    const text = await readOptionalText(join(extraDir, entry));
    if (text !== null) named.set(entry.slice(0, -'.jinja'.length), text);
  }
  if (named.size === 0) return undefined;
  if (named.size === 1 && main !== null) return main;
  return named;
}

/**
 * A Hugging Face tokenizer plus chat template, run locally, producing the token ids vLLM would
 * produce for the same request.
 */
export class LocalTokenizer {
  private constructor(
    private readonly core: TokenizerCore,
    readonly modelName: string,
  ) {}

  /** Build from parsed `tokenizer.json` and `tokenizer_config.json` contents. */
  static fromJson(tokenizerJson: object, tokenizerConfig: object, options: { modelName?: string } = {}): LocalTokenizer {
    const core = buildCore(tokenizerJson, tokenizerConfig);
    const configName = (tokenizerConfig as JsonObject)['name_or_path'];
    return new LocalTokenizer(core, options.modelName ?? (typeof configName === 'string' ? configName : 'local'));
  }

  /** Read `tokenizer.json`, `tokenizer_config.json` (optional) and chat template files from a directory. */
  static async fromDirectory(dir: string, options: { modelName?: string } = {}): Promise<LocalTokenizer> {
    const tokenizerJson = await readJson(join(dir, 'tokenizer.json'), false);
    const config = (await readJson(join(dir, 'tokenizer_config.json'), true)) ?? {};
    const templates = await templatesFromFiles(dir);
    return new LocalTokenizer(buildCore(tokenizerJson!, config, templates), options.modelName ?? dir);
  }

  /** A tokenizer shipped with this package; see `bundledNames()`. */
  static async bundled(name: string): Promise<LocalTokenizer> {
    const { canonicalName, core } = await loadBundled(name);
    return new LocalTokenizer(core, canonicalName);
  }

  static bundledNames(): string[] {
    return bundledNames();
  }

  /** The tokenizer's `model_max_length`, or 131072 when it records none (vLLM reads the real limit from the model). */
  get maxModelLen(): number {
    return this.core.maxModelLen;
  }

  get eosTokenId(): number | null {
    return this.core.eosTokenId;
  }

  /** Ids the tokenizer knows, added tokens included (`len(tokenizer)`; the model may pad beyond it). */
  get vocabSize(): number {
    return this.core.vocabSize;
  }

  /** Hits and misses of the exact segment cache (null when this tokenizer cannot use one). */
  segmentCacheStats(): { hits: number; misses: number; cachedTokens: number } | null {
    return this.core.segments === null ? null : { ...this.core.segments.stats };
  }

  /** Hits and misses of the exact per-word cache (null when this tokenizer cannot use one). */
  wordCacheStats(): { hits: number; misses: number } | null {
    return this.core.words === null ? null : { hits: this.core.words.hits, misses: this.core.words.misses };
  }

  /** The library's own encoding, bypassing the segment cache (for checking it). */
  encodeUncached(text: string, options: EncodeOptions = {}): number[] {
    return this.core.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** Token ids for a completion prompt; special tokens (BOS, ...) are added unless told otherwise. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    return Array.from(this.encodeIds(text, options));
  }

  /**
   * `encode`, as a typed array the caller owns (what the hot paths pass on). With `trace`, the
   * pieces' boundaries are recorded in it when the segment cache encoded the text.
   */
  encodeIds(text: string, options: EncodeOptions = {}, trace?: PieceTrace): Uint32Array<ArrayBuffer> {
    if (typeof text !== 'string') throw new TokenizationError('INVALID_REQUEST', 'text must be a string');
    const addSpecialTokens = options.addSpecialTokens ?? true;
    const segments = this.core.segments;
    if (segments !== null && (!addSpecialTokens || segments.specialsAddNothing)) return segments.encodeIds(text, trace);
    return Uint32Array.from(this.core.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids);
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    this.checkIds(ids);
    if (ids.length === 0) return '';
    return this.core.hf.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? true,
      clean_up_tokenization_spaces: this.core.cleanUpTokenizationSpaces,
    });
  }

  /** The vocabulary strings of `ids` (byte-level BPE shows a leading space as `Ġ`). */
  tokenStrings(ids: readonly number[]): string[] {
    this.checkIds(ids);
    return ids.map((id) => this.core.hf.id_to_token(id)!);
  }

  /**
   * The prompt text vLLM renders for a chat request. `limits` stops a template that runs past a
   * deadline (DEADLINE_EXCEEDED) or renders more text than allowed (PROMPT_TOO_LONG).
   */
  renderChat(messages: readonly ChatMessage[], options?: ChatTemplateOptions, limits?: RenderLimits): string {
    return renderChat(this.core, messages, options, budgetOf(limits));
  }

  /** The prompt token ids vLLM sends to the engine for a chat request (`limits` as for renderChat). */
  encodeChat(messages: readonly ChatMessage[], options?: ChatTemplateOptions, limits?: RenderLimits): number[] {
    return Array.from(this.encodeChatIds(messages, options, undefined, limits));
  }

  /** `encodeChat`, as a typed array the caller owns. */
  encodeChatIds(messages: readonly ChatMessage[], options?: ChatTemplateOptions, trace?: PieceTrace, limits?: RenderLimits): Uint32Array<ArrayBuffer> {
    const prompt = renderChat(this.core, messages, options, budgetOf(limits));
    return this.encodeIds(prompt, { addSpecialTokens: options?.addSpecialTokens ?? false }, trace);
  }

  /** Unknown ids would decode to nothing (Rust) or crash (JS); neither is a useful answer. */
  private checkIds(ids: readonly number[]): void {
    if (!Array.isArray(ids)) throw new TokenizationError('INVALID_REQUEST', 'ids must be an array of token ids');
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || this.core.hf.id_to_token(id) === undefined) {
        throw new TokenizationError('INVALID_REQUEST', `token id ${String(id)} is not in the vocabulary`);
      }
    }
  }
}

function budgetOf(limits: RenderLimits | undefined): RenderBudget {
  if (limits === undefined) return UNLIMITED_RENDER;
  return { deadline: limits.deadline ?? Infinity, maxChars: limits.maxChars ?? Infinity };
}
