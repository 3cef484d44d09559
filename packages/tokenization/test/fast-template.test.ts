/**
 * The fast template evaluator against the library's interpreter: on every input both must give the
 * same prompt, or the same error. The evaluator hands anything it does not reproduce to the
 * library, so these tests also check that it does not hand over the common case (a chat render).
 */
import { describe, expect, it } from 'vitest';
import { LocalTokenizer, type ChatMessage, type ChatTemplateOptions } from '../src/index.js';
import { compileTemplate, fastRenderTotals, fastTemplateStats, renderTemplate, setFastTemplates, type RenderBudget } from '../src/jinja.js';
import { fixture } from './fixtures.js';

const qwen = await LocalTokenizer.bundled('Qwen/Qwen3-0.6B');

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % n;
  };
}

type Outcome = { text: string } | { error: string };

function outcome(render: () => string): Outcome {
  try {
    return { text: render() };
  } catch (err) {
    const e = err as Error & { code?: string };
    return { error: `${e.constructor.name}${e.code ? `(${e.code})` : ''}: ${e.message}` };
  }
}

/** The render with the fast evaluator on, and with the library alone. */
function bothWays(render: () => string): { fast: Outcome; library: Outcome } {
  try {
    setFastTemplates(true);
    const fast = outcome(render);
    setFastTemplates(false);
    return { fast, library: outcome(render) };
  } finally {
    setFastTemplates(true);
  }
}

const GLOBALS = {
  raise_exception: (message: unknown): never => {
    throw new Error(`raised: ${String(message)}`);
  },
};

describe('the fast evaluator renders chat prompts exactly as the library', () => {
  const CONTENTS = [
    'plain question?',
    '',
    '  ',
    '<think>\nweighing it\n</think>\n\nthe answer',
    '<think>only thinking</think>',
    '</think>  leading spaces kept by lstrip("\\n")',
    '\n\n</think>\n \n tail',
    '<tool_response>\n{"ok": true}\n</tool_response>',
    '<tool_response>unterminated',
    '\u001c padded with Python whitespace \u001c',
    '\ufeffbyte order mark\ufeff',
    '東京タワー 🙂👍🏽 naïve',
    'a\n\nb\r\n',
    '<|im_start|>inside<|im_end|>',
  ];
  const TOOLS = [
    { type: 'function', function: { name: 'get_weather', description: 'Weather for a city — "quoted" \\ slash', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1 } }, required: ['city'] } } },
    { type: 'function', function: { name: 'noop', parameters: {} } },
  ];

  function conversation(r: (n: number) => number): { messages: ChatMessage[]; options: ChatTemplateOptions } {
    const messages: ChatMessage[] = [];
    if (r(3) > 0) messages.push({ role: 'system', content: CONTENTS[r(CONTENTS.length)]! });
    const turns = 1 + r(6);
    for (let t = 0; t < turns; t++) {
      const kind = r(10);
      const content = CONTENTS[r(CONTENTS.length)]!;
      if (kind < 4) messages.push({ role: 'user', content });
      else if (kind < 7) {
        const m: ChatMessage = { role: 'assistant', content };
        if (r(3) === 0) (m as Record<string, unknown>)['reasoning_content'] = r(2) === 0 ? 'kept reasoning\n' : null;
        if (r(3) === 0) {
          (m as Record<string, unknown>)['tool_calls'] = [
            { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: r(2) === 0 ? '{"city": "Paris"}' : { city: 'Oslo', days: 2 } } },
            ...(r(2) === 0 ? [{ id: 'c2', type: 'function', function: { name: 'noop', arguments: '{}' } }] : []),
          ];
        }
        messages.push(m);
      } else if (kind < 9) messages.push({ role: 'tool', content, tool_call_id: 'c1' } as ChatMessage);
      else messages.push({ role: 'system', content });
    }
    const options: ChatTemplateOptions = {};
    if (r(3) === 0) options.tools = TOOLS as ChatTemplateOptions['tools'];
    const generation = r(4);
    if (generation === 0) options.addGenerationPrompt = false;
    else if (generation === 1 && messages.at(-1)!.role === 'assistant') options.continueFinalMessage = true;
    const thinking = r(3);
    if (thinking < 2) options.chatTemplateKwargs = { enable_thinking: thinking === 0 };
    return { messages, options };
  }

  it('gives the same Qwen3 prompt (or error) for 1,500 random conversations, without handing them to the library', () => {
    const r = rng(20261206);
    const before = fastRenderTotals();
    let rendered = 0;
    for (let i = 0; i < 1500; i++) {
      const { messages, options } = conversation(r);
      const { fast, library } = bothWays(() => qwen.renderChat(messages, options));
      expect(fast, JSON.stringify({ messages, options })).toEqual(library);
      if ('text' in fast) rendered++;
    }
    expect(rendered).toBeGreaterThan(1000);
    const after = fastRenderTotals();
    // Every render tried the fast path first; none needed the library (errors here come from outside the template).
    expect(after.tried - before.tried).toBeGreaterThanOrEqual(1500);
    expect(after.handedOver - before.handedOver).toBe(0);
  });

  it("renders every Jinja2 fixture exactly as vLLM's transformers does, on the fast path", () => {
    for (const c of fixture.chat) {
      setFastTemplates(true);
      expect(qwen.renderChat(c.messages, c.options), c.id).toBe(c.rendered);
    }
  });
});

describe('the fast evaluator, construct by construct', () => {
  const VALUES: readonly unknown[] = [0, 1, -1, 7, 2 ** 31, 1.5, -0.25, 1e-5, 1e16, '', 'a', 'abc', 'A', ' x ', '\n', 'héllo 🙂', null, undefined, true, false, [], [1, 2], ['a', 'b'], [null], {}, { a: 1, b: 'x' }, { '2': 'two', '1': 'one' }];

  /** Renders `source` both ways over `cases` variable sets; returns how many the fast path rendered itself. */
  function agree(source: string, cases: readonly Record<string, unknown>[], budget?: RenderBudget): number {
    const template = compileTemplate(source);
    const before = fastTemplateStats(template) ?? { tried: 0, handedOver: 0 };
    for (const variables of cases) {
      const { fast, library } = bothWays(() => renderTemplate(template, GLOBALS, variables, budget));
      expect(fast, `${source} with ${JSON.stringify(variables)}`).toEqual(library);
    }
    const after = fastTemplateStats(template) ?? { tried: 0, handedOver: 0 };
    return after.tried - before.tried - (after.handedOver - before.handedOver);
  }

  const pairs = (): Record<string, unknown>[] => {
    const out: Record<string, unknown>[] = [];
    for (const a of VALUES) for (const b of VALUES) out.push({ ...(a === undefined ? {} : { a }), ...(b === undefined ? {} : { b }) });
    return out;
  };
  const singles = (): Record<string, unknown>[] => VALUES.map((v) => (v === undefined ? {} : { v }));

  it.each(['==', '!=', 'in', 'not in', '+', '-', '*', '//', '%', '<', '>', '<=', '>=', 'and', 'or', '~'])('binary %s over every pair of value kinds', (op) => {
    expect(agree(`{{ a ${op} b }}`, pairs())).toBeGreaterThan(0);
  });

  it.each(['not', '-', '+'])('unary %s over every value kind', (op) => {
    agree(`{{ ${op} v }}`, singles());
  });

  it.each(['boolean', 'callable', 'odd', 'even', 'false', 'true', 'none', 'string', 'number', 'integer', 'iterable', 'mapping', 'sequence', 'lower', 'upper', 'defined', 'undefined'])('test %s (and its negation) over every value kind', (name) => {
    expect(agree(`{{ v is ${name} }}|{{ v is not ${name} }}`, singles())).toBeGreaterThan(0);
  });

  it.each(['string', 'trim', 'length', 'tojson', 'safe', 'upper', 'lower', 'first', 'last'])('filter %s over every value kind', (name) => {
    agree(`{{ v | ${name} }}`, singles());
  });

  it('prints values as Python does, floats included', () => {
    expect(agree('{{ v }}|{{ v | string }}|{{ v ~ "" }}', singles())).toBeGreaterThan(10);
  });

  it('loop variables, for-else, and scoping of sets inside loops', () => {
    const source =
      '{% set x = "outer" %}{% for m in v %}{% set x = m %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}|{{ loop.previtem }}|{{ loop.nextitem }}|{{ loop.nothing }};{% else %}empty{% endfor %}[{{ x }}][{{ m }}]';
    const lists = [[], [1], ['a', 'b', 'c'], [null, true, 0], [[1], { a: 1 }]].map((v) => ({ v }));
    expect(agree(source, [...lists, ...singles()])).toBeGreaterThan(4);
    // Nested loops: each has its own loop variable. (Printing a list or a mapping is the library's: one case of five.)
    expect(agree('{% for a in v %}{% for b in v %}{{ loop.index0 }}{{ b }}{% endfor %}:{{ loop.index0 }}{{ a }} {% endfor %}', lists)).toBe(lists.length - 1);
  });

  it('namespaces carry values across iterations', () => {
    const source = "{% set ns = namespace(n=0, s='', last=none) %}{% for i in v %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ i %}{% set ns.last = i %}{% endfor %}{{ ns.n }}|{{ ns.s }}|{{ ns.last }}|{{ ns.missing }}|{{ ns is mapping }}|{{ ns | tojson }}";
    expect(agree(source, [[], [1, 2, 3], ['a', null, true]].map((v) => ({ v })))).toBe(3);
    // Duplicate and positional arguments are the library's to refuse.
    agree('{% set ns = namespace(a=1, a=2) %}{{ ns.a }}', [{}]);
    agree('{% set ns = namespace(v) %}{{ ns.a }}', [{ v: { a: 1 } }]);
  });

  it('slices and indexes of lists and strings, negative and out of range', () => {
    const r = rng(5);
    const bounds = [undefined, 0, 1, 2, -1, -2, 5, -9];
    const steps = [undefined, 1, 2, -1, -2, 0];
    const cases: Record<string, unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      const pick = <T>(xs: readonly T[]): T => xs[r(xs.length)]!;
      const c: Record<string, unknown> = { items: pick([[], [1], [1, 2, 3, 4, 5], ['x', 'y']]), text: pick(['', 'abc', 'a🙂b東', 'hello']) };
      for (const [name, value] of [['a', pick(bounds)], ['b', pick(bounds)], ['c', pick(steps)]] as const) if (value !== undefined) c[name] = value;
      cases.push(c);
    }
    const source =
      '{{ items[a:b:c] | tojson }}|{{ text[a:b:c] }}|{{ items[::-1] | tojson }}|{{ items[1:] | tojson }}|{{ items[:-1] | tojson }}|{{ text[::-1] }}|{{ items[a] }}|{{ text[a] }}|{{ items.length }}|{{ text.length }}|{{ items.foo }}';
    expect(agree(source, cases)).toBeGreaterThan(100);
  });

  it('string methods with Python semantics, and the library refusing what Python would', () => {
    const strings = ['', '  x  ', '\n\n  x \n', 'xxhixx', '\u001cabc\ufeff', '\u0085hi\u3000', 'a,b,,c', 'Héllo', '🙂x🙂'];
    const args = [undefined, null, '', '\n', 'x', ',', '🙂', 1];
    const cases: Record<string, unknown>[] = [];
    for (const s of strings) for (const c of args) cases.push(c === undefined ? { s } : { s, c });
    const fastOnes = agree(
      '{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s | trim }}|{{ s.upper() }}|{{ s.lower() }}|{{ s[0] }}|{{ s[-1] }}',
      cases,
    );
    expect(fastOnes).toBe(cases.length);
    for (const source of ['{{ s.strip(c) }}', '{{ s.lstrip(c) }}', '{{ s.rstrip(c) }}', '{{ s.startswith(c) }}', '{{ s.endswith(c) }}', '{{ s.split(c) | tojson }}', "{{ s.startswith((c, 'x')) }}", '{{ s.startswith(c, 1) }}', '{{ s.title() }}', '{{ s.replace("x", "y") }}', '{{ s.split() | tojson }}', '{{ s.strip }}']) {
      agree(source, cases);
    }
  });

  it('strips as Python does on both paths (the library alone trims JavaScript whitespace and ignores the argument)', () => {
    const template = compileTemplate("{{ a.lstrip('\\n') }}|{{ a.rstrip('\\n') }}|{{ b.strip() }}|{{ b | trim }}|{{ c.strip('x') }}");
    for (const fast of [true, false]) {
      setFastTemplates(fast);
      expect(renderTemplate(template, GLOBALS, { a: '\n\n  x \n', b: '\u001c\u0085 y \ufeff', c: 'xxhixx' })).toBe('  x \n|\n\n  x |y \ufeff|y \ufeff|hi');
    }
    setFastTemplates(true);
  });

  it('member access on mappings, lists, None and undefined', () => {
    const cases = [{ obj: { a: 1, b: 'x', items: 'own key' }, lst: [1, 2], n: null }, { obj: {}, lst: [], n: 0 }, {}];
    agree("{{ obj.a }}|{{ obj['b'] }}|{{ obj.c }}|{{ obj.items }}|{{ lst[0] }}|{{ lst[-1] }}|{{ lst.length }}|{{ lst.foo }}|{{ n.x }}|{{ undef.x }}", cases);
    agree('{{ obj.get }}', cases);
    agree("{{ 'a' in obj }}|{{ 'z' not in obj }}|{% for i in [1] %}{{ 'index' in loop }}{{ 'x' in loop }}{{ loop is mapping }}{% endfor %}", cases);
    agree('{% for k in obj %}{{ k }};{% endfor %}', cases);
  });

  it('conditionals, ternaries, whitespace control, comments and block sets', () => {
    const source = "{#- a comment -#}  {%- if a -%}  A  {%- elif b %} B {% else -%} C {%- endif %}  {{ a if b else 'no' }}|{{ a if b }}|{{ (a if b) is defined }}{% set blk %}inner {{ a }}{% endset %}[{{ blk }}]";
    expect(agree(source, pairs())).toBeGreaterThan(100);
  });

  it('raises what the template raises, and shadows globals as the library does', () => {
    agree("{% if v %}{{ raise_exception('bad ' ~ v) }}{% endif %}ok", singles());
    agree('{{ true }}|{{ none }}|{{ range }}', [{}, { true: 'shadowed', none: 3 }]);
    agree('{{ namespace }}', [{}, { namespace: 1 }]);
    agree('{% for i in range(3) %}{{ i }}{% endfor %}', [{}]);
  });

  it('stops at the render budget with the same error', () => {
    const long = Array.from({ length: 500 }, (_, i) => `item ${i} `);
    agree('{% for i in v %}{{ i }}{{ i }}{% endfor %}', [{ v: long }], { deadline: Infinity, maxChars: 1000 });
    agree('{% for i in v %}{{ i }}{% endfor %}', [{ v: long }], { deadline: Date.now() - 1, maxChars: Infinity });
  });

  it('leaves templates outside its subset to the library entirely', () => {
    for (const source of ['{% macro m(x) %}{{ x }}{% endmacro %}{{ m(1) }}', '{{ 1.5 }}', '{% for i in v %}{% if i %}{% break %}{% endif %}{{ i }}{% endfor %}', '{{ {"a": 1} | tojson }}', '{% for k, x in v %}{{ k }}{% endfor %}']) {
      const template = compileTemplate(source);
      agree(source, [{ v: [1, 0, 2] }]);
      expect(fastTemplateStats(template)).toBeNull();
    }
  });
});
