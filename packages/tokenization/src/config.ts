/** Reading the parts of `tokenizer_config.json` that change rendering or tokenization. */

export type JsonObject = Record<string, unknown>;

export function isPlainObject(value: unknown): value is JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** transformers' named special-token attributes; every other `*_token` key is model-specific. */
const NAMED_SPECIAL_TOKENS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

/** transformers' VERY_LARGE_INTEGER (1e30) and friends mean "no limit recorded", not a real context. */
const MAX_CREDIBLE_MODEL_LENGTH = 2 ** 32;
export const DEFAULT_MAX_MODEL_LEN = 131072;

function tokenContent(value: unknown, requireAddedTokenTag: boolean): string | null {
  if (typeof value === 'string') return value;
  if (!isPlainObject(value) || typeof value['content'] !== 'string') return null;
  // transformers 5 only turns a serialised AddedToken into a token when it carries its type tag,
  // except for the named attributes, which it always reads.
  if (requireAddedTokenTag && value['__type'] !== 'AddedToken') return null;
  return value['content'];
}

/**
 * The variables transformers' `special_tokens_map` hands every chat template: the named tokens
 * that are set, model-specific `*_token` entries (e.g. `image_token`) and a dict of
 * `extra_special_tokens`. Unset tokens are absent, so `bos_token is defined` is false for Qwen3.
 */
export function specialTokensMap(config: JsonObject): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of NAMED_SPECIAL_TOKENS) {
    const content = tokenContent(config[key], false);
    if (content !== null) out[key] = content;
  }
  for (const [key, value] of Object.entries(config)) {
    if (!key.endsWith('_token') || NAMED_SPECIAL_TOKENS.includes(key)) continue;
    const content = tokenContent(value, true);
    if (content !== null) out[key] = content;
  }
  const extra = config['extra_special_tokens'];
  if (isPlainObject(extra)) {
    for (const [key, value] of Object.entries(extra)) {
      const content = tokenContent(value, true);
      if (content !== null) out[key] = content;
    }
  }
  return out;
}

export function modelMaxLength(config: JsonObject): number {
  const value = config['model_max_length'];
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0 && value <= MAX_CREDIBLE_MODEL_LENGTH) {
    return value;
  }
  return DEFAULT_MAX_MODEL_LEN;
}

/** One template, or several by name (a `[{name, template}]` list in the config, or template files). */
export type ChatTemplates = string | ReadonlyMap<string, string> | null;

export function chatTemplatesOf(config: JsonObject): ChatTemplates {
  const value = config['chat_template'];
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = new Map<string, string>();
    for (const entry of value) {
      if (isPlainObject(entry) && typeof entry['name'] === 'string' && typeof entry['template'] === 'string') {
        named.set(entry['name'], entry['template']);
      }
    }
    return named.size > 0 ? named : null;
  }
  if (isPlainObject(value)) {
    const named = new Map<string, string>();
    for (const [name, template] of Object.entries(value)) if (typeof template === 'string') named.set(name, template);
    return named.size > 0 ? named : null;
  }
  return null;
}

/**
 * transformers' `get_chat_template`: a request's template may name one of the model's templates;
 * otherwise a multi-template model uses `tool_use` when tools are given, then `default`.
 */
export function selectChatTemplate(
  templates: ChatTemplates,
  requested: string | null,
  hasTools: boolean,
): { template: string } | { missing: string } {
  if (requested !== null) {
    return { template: templates !== null && typeof templates !== 'string' ? (templates.get(requested) ?? requested) : requested };
  }
  if (typeof templates === 'string') return { template: templates };
  if (templates === null) return { missing: 'the tokenizer has no chat template; pass chatTemplate' };
  const chosen = (hasTools ? templates.get('tool_use') : undefined) ?? templates.get('default');
  if (chosen !== undefined) return { template: chosen };
  return {
    missing: `the tokenizer has several chat templates and none is named "default"; pass chatTemplate with one of: ${[...templates.keys()].sort().join(', ')}`,
  };
}
