/**
 * Chat prompt rendering as vLLM does it with transformers' `apply_chat_template(tokenize=False)`:
 * request normalisation, template choice, the variables the template sees, and
 * `continue_final_message`.
 */
import type { Template } from '@huggingface/jinja';
import { isPlainObject, selectChatTemplate, type ChatTemplates, type JsonObject } from './config.js';
import { normaliseTools, toConversation, type ConversationMessage } from './conversation.js';
import { TokenizationError } from './errors.js';
import { compileTemplate, RenderBudgetExceeded, renderTemplate, UNLIMITED_RENDER, type RenderBudget } from './jinja.js';
import { pyStrip } from './py-strings.js';
import type { ChatMessage, ChatTemplateOptions } from './types.js';

export interface ChatTemplateSource {
  readonly templates: ChatTemplates;
  readonly specialTokens: Readonly<Record<string, string>>;
}

/**
 * `apply_chat_template` parameters: vLLM forwards every chat_template_kwargs key that names one,
 * and transformers consumes it instead of passing it to the template.
 */
const CONSUMED_KWARGS = new Set([
  'tools',
  'documents',
  'chat_template',
  'add_generation_prompt',
  'continue_final_message',
  'tokenize',
  'padding',
  'truncation',
  'max_length',
  'return_tensors',
  'return_dict',
  'tokenizer_kwargs',
  'sanitize_control_tokens',
  'return_assistant_tokens_mask',
]);
/** Passed twice to transformers (once by vLLM itself), which fails the request. */
const CONFLICTING_KWARGS = ['messages', 'conversation'];
/** Only valid when transformers tokenizes the prompt itself, which vLLM's HF path never asks for. */
const TOKENIZE_ONLY_KWARGS = ['sanitize_control_tokens', 'return_assistant_tokens_mask'];

const CONTINUE_TAG = 'CONTINUE_FINAL_MESSAGE_TAG ';

function invalid(message: string): TokenizationError {
  return new TokenizationError('INVALID_REQUEST', message);
}

function optionalBoolean(value: unknown, name: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw invalid(`${name} must be a boolean`);
  return value;
}

/** Parsing a long template costs more than rendering it, and requests repeat few templates. */
const COMPILED_LIMIT = 32;
const compiled = new Map<string, Template>();

function compile(source: string): Template {
  const hit = compiled.get(source);
  if (hit !== undefined) return hit;
  let template: Template;
  try {
    template = compileTemplate(source);
  } catch (err) {
    throw new TokenizationError('TEMPLATE_ERROR', `the chat template does not parse: ${messageOf(err)}`, { cause: err });
  }
  if (compiled.size >= COMPILED_LIMIT) compiled.delete(compiled.keys().next().value as string);
  compiled.set(source, template);
  return template;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** What the template's own `raise_exception(msg)` throws, so its text reaches the caller unchanged. */
class TemplateRaised extends Error {}

function raiseException(message: unknown): never {
  throw new TemplateRaised(String(message));
}

const TEMPLATE_GLOBALS = { raise_exception: raiseException };

function render(template: Template, variables: JsonObject, budget: RenderBudget): string {
  try {
    return renderTemplate(template, TEMPLATE_GLOBALS, variables, budget);
  } catch (err) {
    if (err instanceof TemplateRaised) throw new TokenizationError('TEMPLATE_ERROR', err.message);
    if (err instanceof RenderBudgetExceeded) {
      throw err.limit === 'time'
        ? new TokenizationError('DEADLINE_EXCEEDED', `${err.message}: rendering stopped at the request's deadline`)
        : new TokenizationError('PROMPT_TOO_LONG', `${err.message}, more than the prompt length limit allows`);
    }
    throw new TokenizationError('TEMPLATE_ERROR', `the chat template failed: ${messageOf(err)}`, { cause: err });
  }
}

function documentsOf(value: unknown): unknown[] | null {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value) || !value.every(isPlainObject)) throw invalid('documents must be an array of objects');
  return value;
}

function toolsOf(kwargTools: unknown, optionTools: unknown): unknown[] | null {
  // vLLM merges the request's tools under chat_template_kwargs, so a non-null kwarg wins, verbatim.
  if (kwargTools !== undefined && kwargTools !== null) {
    if (!Array.isArray(kwargTools) || !kwargTools.every(isPlainObject)) throw invalid('chatTemplateKwargs.tools must be an array of objects');
    return kwargTools;
  }
  if (optionTools === undefined || optionTools === null) return null;
  return normaliseTools(optionTools as unknown[]);
}

/** True when the request brings its own template (vLLM refuses these unless --trust-request-chat-template). */
export function hasRequestChatTemplate(options: ChatTemplateOptions | undefined): boolean {
  if (!isPlainObject(options)) return false;
  const kwargs = options.chatTemplateKwargs;
  return (options.chatTemplate !== undefined && options.chatTemplate !== null) || (isPlainObject(kwargs) && kwargs['chat_template'] !== undefined && kwargs['chat_template'] !== null);
}

export function renderChat(source: ChatTemplateSource, messages: readonly ChatMessage[], options: ChatTemplateOptions = {}, budget: RenderBudget = UNLIMITED_RENDER): string {
  if (!isPlainObject(options)) throw invalid('options must be an object');
  const kwargs = options.chatTemplateKwargs ?? {};
  if (!isPlainObject(kwargs)) throw invalid('chatTemplateKwargs must be an object');
  for (const key of CONFLICTING_KWARGS) if (key in kwargs) throw invalid(`chatTemplateKwargs may not set '${key}'`);
  for (const key of TOKENIZE_ONLY_KWARGS) {
    if (kwargs[key]) throw invalid(`chatTemplateKwargs.${key} needs a tokenizing chat template call, which vLLM does not make`);
  }

  const continueFinalMessage = optionalBoolean(options.continueFinalMessage, 'continueFinalMessage') ?? false;
  const explicitGenerationPrompt = optionalBoolean(options.addGenerationPrompt, 'addGenerationPrompt');
  if (continueFinalMessage && explicitGenerationPrompt === true) {
    throw invalid('Cannot set both `continue_final_message` and `add_generation_prompt` to True.');
  }
  const addGenerationPrompt = explicitGenerationPrompt ?? !continueFinalMessage;

  const tools = toolsOf(kwargs['tools'], options.tools);
  const documents = documentsOf(kwargs['documents']);
  const requested = options.chatTemplate ?? kwargs['chat_template'] ?? null;
  if (requested !== null && typeof requested !== 'string') throw invalid('chatTemplate must be a string');

  const selected = selectChatTemplate(source.templates, requested, tools !== null);
  if ('missing' in selected) throw new TokenizationError('NO_CHAT_TEMPLATE', selected.missing);
  const templateSource = selected.template;
  const template = compile(templateSource);
  const conversation = toConversation(messages, templateSource);

  const passThrough: JsonObject = {};
  for (const [key, value] of Object.entries(kwargs)) if (!CONSUMED_KWARGS.has(key)) passThrough[key] = value;
  const variables = (messagesForTemplate: ConversationMessage[]): JsonObject => ({
    ...source.specialTokens,
    ...passThrough,
    messages: messagesForTemplate,
    tools,
    documents,
    add_generation_prompt: addGenerationPrompt,
  });

  if (!continueFinalMessage) return render(template, variables(conversation), budget);
  return renderContinuingFinalMessage(template, templateSource, conversation, variables, budget);
}

/**
 * transformers' method: tag the final message, render, and cut at the tag, so whatever the
 * template closes a turn with (`<|im_end|>\n`, an EOS, ...) is dropped however it is spelled.
 */
function renderContinuingFinalMessage(
  template: Template,
  templateSource: string,
  conversation: ConversationMessage[],
  variables: (messages: ConversationMessage[]) => JsonObject,
  budget: RenderBudget,
): string {
  if (!templateSource.includes('content')) {
    throw new TokenizationError('TEMPLATE_ERROR', 'continueFinalMessage is set but the chat template never reads message content');
  }
  const last = conversation[conversation.length - 1]!;
  const finalContent = last.content;
  const tagged = [...conversation.slice(0, -1), { ...last, content: finalContent + CONTINUE_TAG }];
  const rendered = render(template, variables(tagged), budget);
  const tag = CONTINUE_TAG.trim();
  if (!rendered.includes(pyStrip(finalContent, null, 'both')) || !rendered.includes(tag)) {
    throw new TokenizationError(
      'TEMPLATE_ERROR',
      'continueFinalMessage is set but the final message does not appear in the rendered chat; the template drops part of it',
    );
  }
  const at = rendered.lastIndexOf(tag);
  if (rendered.slice(at, at + CONTINUE_TAG.length) === CONTINUE_TAG) return rendered.slice(0, at);
  // The template trimmed the message, so its trailing whitespace is gone from the prompt too.
  return pyStrip(rendered.slice(0, at), null, 'end');
}
