import { describe, expect, it } from 'vitest';
import { LocalTokenizer, TokenizationError, type ChatMessage } from '../src/index.js';
import { fixture, qwen3, qwen3Files } from './fixtures.js';

const hi: ChatMessage[] = [{ role: 'user', content: 'hi' }];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof TokenizationError) return err.code;
    throw err;
  }
  return undefined;
}

describe('Qwen3 chat prompts', () => {
  it.each(fixture.chat.map((c) => [c.id, c] as const))('renders %s exactly as vLLM with transformers does', (_id, c) => {
    expect(qwen3.renderChat(c.messages, c.options)).toBe(c.rendered);
  });

  it.each(fixture.chat.map((c) => [c.id, c] as const))('encodes %s to the prompt ids vLLM sends to the engine', (_id, c) => {
    expect(qwen3.encodeChat(c.messages, c.options)).toEqual(c.ids);
  });

  it("a chat request renders Qwen3's generation prompt by default and leaves it off on request", () => {
    expect(qwen3.renderChat(hi)).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    expect(qwen3.renderChat(hi, { addGenerationPrompt: false })).toBe('<|im_start|>user\nhi<|im_end|>\n');
  });

  it('does not change the caller’s messages or tools while normalising them', () => {
    const c = fixture.chat.find((x) => x.id === 'tools-and-tool-calls')!;
    const before = JSON.stringify([c.messages, c.options]);
    qwen3.renderChat(c.messages, c.options);
    expect(JSON.stringify([c.messages, c.options])).toBe(before);
  });

  it('lets a template variable shadow a Jinja global, as Jinja2 does', () => {
    const template = '{{ range }}-{{ messages[0].content }}';
    expect(qwen3.renderChat(hi, { chatTemplate: template, chatTemplateKwargs: { range: 'mine' } })).toBe('mine-hi');
  });

  it('gives templates a strftime_now that formats the current date like Python', () => {
    const year = String(new Date().getFullYear());
    const rendered = qwen3.renderChat(hi, { chatTemplate: "{{ strftime_now('%Y|%d %b %Y|%%') }}" });
    const [y, dayMonthYear, percent] = rendered.split('|');
    expect(y).toBe(year);
    expect(dayMonthYear).toMatch(/^\d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}$/);
    expect(percent).toBe('%');
  });
});

describe('continuing the final message', () => {
  const partial: ChatMessage[] = [
    { role: 'user', content: 'Say hello' },
    { role: 'assistant', content: 'Hello' },
  ];

  it('ends the prompt right after the final message, with no end-of-turn', () => {
    const rendered = qwen3.renderChat(partial, { continueFinalMessage: true });
    expect(rendered.endsWith('</think>\n\nHello')).toBe(true);
    expect(rendered).not.toContain('CONTINUE_FINAL_MESSAGE_TAG');
  });

  it('is rejected together with an explicit generation prompt, as vLLM rejects it', () => {
    expect(codeOf(() => qwen3.renderChat(partial, { continueFinalMessage: true, addGenerationPrompt: true }))).toBe('INVALID_REQUEST');
  });

  it('drops whitespace the template trimmed from the final message', () => {
    const template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | trim }}</{{ m['role'] }}>{% endfor %}";
    const rendered = qwen3.renderChat([{ role: 'assistant', content: 'Partial answer  \n' }], { chatTemplate: template, continueFinalMessage: true });
    expect(rendered).toBe('<assistant>Partial answer');
  });

  it('fails when the template never prints message content', () => {
    expect(codeOf(() => qwen3.renderChat(partial, { chatTemplate: 'static text', continueFinalMessage: true }))).toBe('TEMPLATE_ERROR');
    expect(
      codeOf(() => qwen3.renderChat(partial, { chatTemplate: "{{ messages[0]['content'] }}", continueFinalMessage: true })),
    ).toBe('TEMPLATE_ERROR');
  });
});

describe('chat templates from the tokenizer config', () => {
  const files = qwen3Files();

  it('passes named and model-specific special tokens to the template, leaving unset ones undefined', () => {
    const { config, template, rendered } = fixture.specialTokenConfig;
    const tok = LocalTokenizer.fromJson(files.tokenizerJson, config);
    expect(tok.renderChat([{ role: 'user', content: 'x' }], { chatTemplate: template })).toBe(rendered);
  });

  it.each(fixture.namedTemplates.cases.map((c) => [c.id, c] as const))('picks the %s template from a config with several', (_id, c) => {
    const tok = LocalTokenizer.fromJson(files.tokenizerJson, { ...files.config, chat_template: fixture.namedTemplates.chatTemplate });
    const messages: ChatMessage[] = [{ role: 'user', content: 'q' }];
    expect(tok.renderChat(messages, c.options)).toBe(c.rendered);
    expect(tok.encodeChat(messages, c.options)).toEqual(c.ids);
  });

  it('asks for a template name when several exist and none is the default', () => {
    const tok = LocalTokenizer.fromJson(files.tokenizerJson, { ...files.config, chat_template: [{ name: 'a', template: 'A' }, { name: 'b', template: 'B' }] });
    expect(() => tok.renderChat(hi)).toThrow(expect.objectContaining({ code: 'NO_CHAT_TEMPLATE', message: expect.stringContaining('a, b') }));
    expect(tok.renderChat(hi, { chatTemplate: 'b' })).toBe('B');
  });

  it('fails with NO_CHAT_TEMPLATE when the tokenizer has none and the request gives none', () => {
    const { chat_template: _drop, ...config } = files.config;
    const tok = LocalTokenizer.fromJson(files.tokenizerJson, config);
    expect(codeOf(() => tok.renderChat(hi))).toBe('NO_CHAT_TEMPLATE');
    expect(codeOf(() => tok.encodeChat(hi))).toBe('NO_CHAT_TEMPLATE');
    expect(tok.renderChat(hi, { chatTemplate: '{{ messages[0].content }}!' })).toBe('hi!');
    expect(tok.renderChat(hi, { chatTemplateKwargs: { chat_template: '{{ messages[0].content }}?' } })).toBe('hi?');
  });
});

describe('template failures', () => {
  it.each(fixture.errors.map((c) => [c.id, c] as const))("surfaces the template's %s message as TEMPLATE_ERROR", (_id, c) => {
    expect(() => qwen3.renderChat(c.messages, c.options)).toThrow(expect.objectContaining({ code: 'TEMPLATE_ERROR', message: c.message }));
  });

  it('reports a template that does not parse as TEMPLATE_ERROR', () => {
    expect(codeOf(() => qwen3.renderChat(hi, { chatTemplate: '{% for m in messages %}unclosed' }))).toBe('TEMPLATE_ERROR');
  });

  it('reports a template that fails while rendering as TEMPLATE_ERROR', () => {
    expect(codeOf(() => qwen3.renderChat(hi, { chatTemplate: '{{ messages[0].content.no_such_method() }}' }))).toBe('TEMPLATE_ERROR');
  });
});

describe('requests vLLM rejects', () => {
  const cases: [string, () => unknown][] = [
    ['an empty conversation', () => qwen3.renderChat([])],
    ['a message without a role', () => qwen3.renderChat([{ content: 'x' } as unknown as ChatMessage])],
    ['a message that is not an object', () => qwen3.encodeChat(['hi'] as unknown as ChatMessage[])],
    ['content that is a number', () => qwen3.renderChat([{ role: 'user', content: 42 as unknown as string }])],
    ['an image part for a text-only model', () => qwen3.renderChat([{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }])],
    ['a content part without a type', () => qwen3.renderChat([{ role: 'user', content: [{ text: 'x' } as unknown as { type: string }] }])],
    ['a content part of an unknown type', () => qwen3.renderChat([{ role: 'user', content: [{ type: 'hologram' }] }])],
    ['a non-function tool call', () => qwen3.renderChat([{ role: 'assistant', content: null, tool_calls: [{ type: 'custom', custom: {} }] }])],
    ['tool_calls that is not a list', () => qwen3.renderChat([{ role: 'assistant', content: null, tool_calls: 'x' as unknown as unknown[] }])],
    ['a tool without a function name', () => qwen3.renderChat(hi, { tools: [{ type: 'function', function: {} }] })],
    ['a tool that is not a function', () => qwen3.renderChat(hi, { tools: [{ type: 'retrieval' }] })],
    ['documents that are not objects', () => qwen3.renderChat(hi, { chatTemplateKwargs: { documents: ['text'] } })],
    ['messages passed again in kwargs', () => qwen3.renderChat(hi, { chatTemplateKwargs: { messages: [] } })],
    ['kwargs that need transformers to tokenize', () => qwen3.renderChat(hi, { chatTemplateKwargs: { sanitize_control_tokens: true } })],
    ['a non-boolean generation prompt flag', () => qwen3.renderChat(hi, { addGenerationPrompt: 'yes' as unknown as boolean })],
    ['encoding something that is not a string', () => qwen3.encode(7 as unknown as string)],
  ];

  it.each(cases)('rejects %s with INVALID_REQUEST', (_what, fn) => {
    expect(codeOf(fn)).toBe('INVALID_REQUEST');
  });
});

describe('conversation normalisation', () => {
  const echo = '{% for m in messages %}[{{ m.role }}|{{ m.content }}|{{ m.tool_calls is defined }}|{{ m.reasoning_content }}|{{ m.name }}]{% endfor %}';

  it('treats an empty tool_calls list as no tool calls', () => {
    const rendered = qwen3.renderChat([{ role: 'assistant', content: 'ok', tool_calls: [] }], { chatTemplate: echo, addGenerationPrompt: false });
    expect(rendered).toBe('[assistant|ok|False||]');
  });

  it('keeps a string name and a reasoning field, and drops fields vLLM does not forward', () => {
    const rendered = qwen3.renderChat(
      [{ role: 'assistant', content: 'a', name: 'bot', reasoning: 'because', extra_field: 'dropped' }],
      { chatTemplate: `${echo}{{ messages[0].extra_field is defined }}` },
    );
    expect(rendered).toBe('[assistant|a|False|because|bot]False');
  });

  it('skips text parts whose text is null', () => {
    const rendered = qwen3.renderChat([{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text' }, { type: 'refusal', refusal: 'b' }] }], {
      chatTemplate: echo,
    });
    expect(rendered).toBe('[user|a\nb|False||]');
  });
});
