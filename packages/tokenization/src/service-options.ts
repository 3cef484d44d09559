/**
 * The tokenization settings every service that tokenizes (the EPP, the indexer) takes from the
 * environment and the command line, under the `tokenization` section of its configuration. Shaped
 * as @kvix/service-kit's bindings, without depending on it; each service words its own flags' help.
 */
export const TOKENIZATION_ENV_BINDINGS = {
  KVIX_TOKENIZER_WORKERS: { path: 'tokenization.workers', as: 'number' },
  KVIX_MAX_PROMPT_TOKENS: { path: 'tokenization.maxPromptTokens', as: 'number' },
  KVIX_TOKENIZE_TIMEOUT_MS: { path: 'tokenization.timeoutMs', as: 'number' },
  KVIX_TRUST_REQUEST_CHAT_TEMPLATE: { path: 'tokenization.trustRequestChatTemplate', as: 'boolean' },
} as const satisfies Readonly<Record<string, { path: string; as: 'number' | 'boolean' }>>;

/** Commander's option names (`--tokenizer-workers` → tokenizerWorkers) → configuration paths. */
export const TOKENIZATION_FLAG_BINDINGS: Readonly<Record<string, string>> = {
  tokenizerWorkers: 'tokenization.workers',
  maxPromptTokens: 'tokenization.maxPromptTokens',
  tokenizeTimeoutMs: 'tokenization.timeoutMs',
  trustRequestChatTemplate: 'tokenization.trustRequestChatTemplate',
};
