/**
 * vLLM's step from an OpenAI chat request to the conversation and tools a chat template sees
 * (vllm/renderers/chat_utils/chat_message.py, vllm/renderers/hf.py and the chat protocol, v0.33),
 * for text-only models, whose templates take `content` as one string.
 */
import { isPlainObject, type JsonObject } from './config.js';
import { TokenizationError } from './errors.js';
import type { ChatMessage } from './types.js';

export interface ConversationMessage {
  role: string;
  content: string;
  [k: string]: unknown;
}

/** Which field of a content part carries its text. */
const TEXT_PART_FIELDS: Readonly<Record<string, string>> = {
  text: 'text',
  input_text: 'text',
  output_text: 'text',
  refusal: 'refusal',
  thinking: 'thinking',
  tool_reference: 'name',
};

const MEDIA_PART_KEYS = [
  'image_url',
  'input_image',
  'image_pil',
  'image_embeds',
  'audio_url',
  'input_audio',
  'audio_embeds',
  'video_url',
  'video_embeds',
  'prompt_embeds',
];

/** Claude Code's per-request attribution line; vLLM drops it so system prompts stay cacheable. */
const BILLING_HEADER = 'x-anthropic-billing-header';

function invalid(message: string): TokenizationError {
  return new TokenizationError('INVALID_REQUEST', message);
}

function stripBillingHeader(parts: readonly unknown[]): unknown[] {
  const out: unknown[] = [];
  for (const part of parts) {
    const text = typeof part === 'string' ? part : isPlainObject(part) && part['type'] === 'text' ? part['text'] : undefined;
    if (typeof text !== 'string' || !text.startsWith(BILLING_HEADER)) {
      out.push(part);
      continue;
    }
    const newline = text.indexOf('\n');
    const rest = newline < 0 ? '' : text.slice(newline + 1);
    if (rest !== '') out.push(typeof part === 'string' ? rest : { ...(part as JsonObject), text: rest });
  }
  return out;
}

function partText(part: unknown, where: string): string | null {
  if (typeof part === 'string') return part;
  if (!isPlainObject(part)) throw invalid(`${where} must be a string or an object`);
  const type = part['type'];
  if (type === undefined || type === null) {
    if (MEDIA_PART_KEYS.some((key) => key in part)) throw invalid(`${where} is media; only text-only models are supported`);
    throw invalid(`${where} has no 'type' field`);
  }
  if (typeof type !== 'string') throw invalid(`${where} has an invalid 'type' field`);
  const field = TEXT_PART_FIELDS[type];
  if (field === undefined) {
    if (MEDIA_PART_KEYS.includes(type)) throw invalid(`${where} is of type '${type}'; only text-only models are supported`);
    throw invalid(`${where} has unsupported type '${type}'`);
  }
  const value = part[field];
  // vLLM skips empty text parts with a warning rather than failing the request.
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw invalid(`${where}.${field} must be a string`);
  return value;
}

/** Text parts are joined with newlines (vLLM's "string" content format); null content is ''. */
function flattenContent(role: string, content: unknown, where: string): string {
  let parts: readonly unknown[];
  if (content === null || content === undefined) parts = [];
  else if (typeof content === 'string') parts = [content];
  else if (Array.isArray(content)) parts = content;
  else throw invalid(`${where}.content must be a string, an array of content parts or null`);
  if (role === 'system') parts = stripBillingHeader(parts);
  const texts: string[] = [];
  parts.forEach((part, i) => {
    const text = partText(part, `${where}.content[${i}]`);
    if (text !== null) texts.push(text);
  });
  return texts.join('\n');
}

/**
 * Templates are written for arguments as objects, so vLLM parses the OpenAI JSON string; what is
 * not a JSON object becomes `{}` rather than failing every later turn of the conversation.
 */
function toolCallArguments(value: unknown): JsonObject {
  if (isPlainObject(value)) return value;
  if (typeof value !== 'string' || value === '') return {};
  try {
    const parsed: unknown = JSON.parse(value);
    return isPlainObject(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

function normaliseToolCalls(toolCalls: unknown, where: string): JsonObject[] {
  if (!Array.isArray(toolCalls)) throw invalid(`${where}.tool_calls must be an array`);
  return toolCalls.map((item: unknown, i) => {
    if (!isPlainObject(item)) throw invalid(`${where}.tool_calls[${i}] must be an object`);
    const fn = item['function'];
    if ((item['type'] ?? 'function') !== 'function' || !isPlainObject(fn)) {
      throw invalid(`${where}.tool_calls[${i}]: only tool calls of type 'function' are supported`);
    }
    // Copies, so the caller's request is never rewritten.
    return { ...item, function: { ...fn, arguments: toolCallArguments(fn['arguments']) } };
  });
}

function supportsDeveloperRole(template: string): boolean {
  return template.includes('"developer"') || template.includes("'developer'");
}

/** Templates that predate the developer role get one system message, developer text appended. */
function developerToSystem(conversation: ConversationMessage[]): ConversationMessage[] {
  const converted = conversation.map((message) => {
    if (message.role !== 'developer') return message;
    const { tools: _tools, ...rest } = message;
    return { ...rest, role: 'system' };
  });
  const systemContents: string[] = [];
  const others: ConversationMessage[] = [];
  let consolidate = false;
  converted.forEach((message, i) => {
    if (message.role !== 'system') {
      others.push(message);
      return;
    }
    if (i > 0 || systemContents.length > 0) consolidate = true;
    if (message.content !== '') systemContents.push(message.content);
  });
  return consolidate ? [{ role: 'system', content: systemContents.join('\n\n') }, ...others] : converted;
}

export function toConversation(messages: readonly ChatMessage[], template: string): ConversationMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw invalid('messages must be a non-empty array');
  const conversation = messages.map((raw: unknown, i): ConversationMessage => {
    const where = `messages[${i}]`;
    if (!isPlainObject(raw)) throw invalid(`${where} must be an object`);
    const role = raw['role'];
    if (typeof role !== 'string') throw invalid(`${where} has no role`);
    // The chat protocol renames the deprecated field before anything else reads the message.
    const reasoningContent = raw['reasoning_content'];
    const reasoning = raw['reasoning'] ?? reasoningContent ?? null;
    const message: ConversationMessage = { role, content: flattenContent(role, raw['content'], where) };
    if (role === 'assistant') {
      const toolCalls = raw['tool_calls'];
      if (toolCalls !== undefined && toolCalls !== null) {
        const calls = normaliseToolCalls(toolCalls, where);
        // An empty list would send templates down their tool-call branch with nothing in it.
        if (calls.length > 0) message['tool_calls'] = calls;
      }
      if (reasoning !== null) {
        message['reasoning'] = reasoning;
        message['reasoning_content'] = reasoning;
      }
    } else if (role === 'tool' && 'tool_call_id' in raw) {
      message['tool_call_id'] = raw['tool_call_id'];
    }
    if (typeof raw['name'] === 'string') message['name'] = raw['name'];
    if (typeof raw['task'] === 'string') message['task'] = raw['task'];
    if (role === 'developer') message['tools'] = raw['tools'] ?? null;
    return message;
  });
  if (conversation.some((m) => m.role === 'developer') && !supportsDeveloperRole(template)) {
    return developerToSystem(conversation);
  }
  return conversation;
}

/**
 * The tools as vLLM serialises its parsed request (`ChatCompletionToolsParam.model_dump()`): only
 * known fields, `description` and `parameters` always present (null when absent), `strict` and
 * `defer_loading` only when set. Templates print this with `tojson`, so the shape is the prompt.
 */
export function normaliseTools(tools: readonly unknown[]): JsonObject[] {
  if (!Array.isArray(tools)) throw invalid('tools must be an array');
  return tools.map((tool: unknown, i) => {
    const where = `tools[${i}]`;
    if (!isPlainObject(tool)) throw invalid(`${where} must be an object`);
    if ((tool['type'] ?? 'function') !== 'function') throw invalid(`${where}.type must be 'function'`);
    const fn = tool['function'];
    if (!isPlainObject(fn) || typeof fn['name'] !== 'string') throw invalid(`${where}.function.name must be a string`);
    const description = fn['description'] ?? null;
    if (description !== null && typeof description !== 'string') throw invalid(`${where}.function.description must be a string`);
    const parameters = fn['parameters'] ?? null;
    if (parameters !== null && !isPlainObject(parameters)) throw invalid(`${where}.function.parameters must be an object`);
    const toolDefer = tool['defer_loading'] ?? null;
    const defer = fn['defer_loading'] ?? toolDefer;
    const strict = fn['strict'] ?? null;
    for (const [name, value] of [['strict', strict], ['defer_loading', defer]] as const) {
      if (value !== null && typeof value !== 'boolean') throw invalid(`${where}.function.${name} must be a boolean`);
    }
    const out: JsonObject = { name: fn['name'], description, parameters };
    if (strict !== null) out['strict'] = strict;
    if (defer !== null) out['defer_loading'] = defer;
    return toolDefer === null ? { type: 'function', function: out } : { type: 'function', function: out, defer_loading: toolDefer };
  });
}
