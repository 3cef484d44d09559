export { TokenizationError, type TokenizationErrorCode } from './errors.js';
export type { ChatMessage, ChatTemplateOptions, EncodeOptions, DecodeOptions, RenderLimits } from './types.js';
export { LocalTokenizer } from './local-tokenizer.js';
export { resolveTokenizer } from './resolve.js';
export type { PromptInput, MultimodalItem, TokenizedPrompt, TokenizeOptions, PromptTokenizer, TokenizerSource, TokenizationTimings, RequestKeySpec } from './prompt-tokenizer.js';
export { RenderClient, type RenderClientOptions } from './render/render-client.js';
export { LocalTokenizerPool, defaultWorkers, type LocalTokenizerPoolOptions, type LocalTokenizerPoolStats, type LocalTokenizerPoolHealth } from './pool/local-tokenizer-pool.js';
export { CachingTokenizer, type CacheAdmission, type CachingTokenizerOptions, type ResultCacheStats } from './cache/caching-tokenizer.js';
export {
  TokenizationConfigSchema,
  parseTokenizationConfig,
  type TokenizationConfig,
  type TokenizationConfigInput,
} from './models/tokenization-config.js';
export { ModelTokenizers, UNTRUSTED_TEMPLATE_MESSAGE, type ModelTokenizersOptions, type TokenizationObserver } from './models/model-tokenizers.js';
export { hasRequestChatTemplate } from './chat.js';
export { PrefixKeyCache, type PieceTrace } from './prefix-keys.js';
export { chatPromptFromBody, type ChatBodyPrompt } from './chat-body.js';
export { TOKENIZATION_ENV_BINDINGS, TOKENIZATION_FLAG_BINDINGS } from './service-options.js';
export { setFastTemplates, fastRenderTotals } from './jinja.js';
