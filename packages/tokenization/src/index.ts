export { TokenizationError, type TokenizationErrorCode } from './errors.js';
export type { ChatMessage, ChatTemplateOptions, EncodeOptions, DecodeOptions } from './types.js';
export { LocalTokenizer } from './local-tokenizer.js';
export { resolveTokenizer } from './resolve.js';
