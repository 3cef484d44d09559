/**
 * The Jinja environment transformers gives chat templates, on @huggingface/jinja, made to print
 * values as Jinja2 does. The library's own `Template.render` declares the globals in the same
 * scope as the variables and refuses to let a variable shadow one, so the globals live in a
 * parent scope here; and it prints values the JavaScript way (`true`, JSON, nothing for None),
 * where Jinja2 prints Python's `str()` (`True`, `{'a': None}`, `None`), which templates that
 * print tool-call arguments without `tojson` (DeepSeek V3's, for one) put into the prompt.
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { FastTemplate } from './fast-template.js';
import { pyFloatRepr, pyStrip, type StripSide } from './py-strings.js';

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** Python's `datetime.now().strftime` in the C locale, which is what templates such as Llama 3's date line call. */
export function strftime(date: Date, format: string): string {
  return format.replace(/%([a-zA-Z%])/g, (token, code: string) => {
    const hours12 = date.getHours() % 12 === 0 ? 12 : date.getHours() % 12;
    const startOfYear = new Date(date.getFullYear(), 0, 1);
    const dayOfYear = Math.round((new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime() - startOfYear.getTime()) / 86_400_000) + 1;
    switch (code) {
      case 'Y': return String(date.getFullYear());
      case 'y': return pad(date.getFullYear() % 100);
      case 'm': return pad(date.getMonth() + 1);
      case 'd': return pad(date.getDate());
      case 'e': return String(date.getDate()).padStart(2, ' ');
      case 'j': return pad(dayOfYear, 3);
      case 'H': return pad(date.getHours());
      case 'I': return pad(hours12);
      case 'M': return pad(date.getMinutes());
      case 'S': return pad(date.getSeconds());
      case 'p': return date.getHours() < 12 ? 'AM' : 'PM';
      case 'B': return MONTHS[date.getMonth()]!;
      case 'b': case 'h': return MONTHS[date.getMonth()]!.slice(0, 3);
      case 'A': return DAYS[date.getDay()]!;
      case 'a': return DAYS[date.getDay()]!.slice(0, 3);
      case 'w': return String(date.getDay());
      case '%': return '%';
      default: return token;
    }
  });
}

/**
 * transformers renders in Jinja2's sandbox, whose `range` refuses more than 100,000 items
 * (MAX_RANGE); the same limit here keeps one `range(30000000)` from allocating gigabytes.
 */
export const MAX_RANGE = 100_000;

function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const length = Math.max(0, Math.ceil((stop - start) / step));
  if (!(length <= MAX_RANGE)) throw new Error(`Range too big. The sandbox blocks ranges larger than MAX_RANGE (${MAX_RANGE}).`);
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const BASE_GLOBALS: Readonly<Record<string, unknown>> = {
  true: true,
  false: false,
  none: null,
  True: true,
  False: false,
  None: null,
  range,
  strftime_now: (format: string) => strftime(new Date(), format),
};

export function compileTemplate(source: string): Template {
  return new Template(source);
}

/**
 * How long one render may run and how much text it may produce. A template is a program (a
 * request's own template, when the operator trusts them, or the model's over a huge conversation),
 * so the interpreter checks both between statements and stops with RenderBudgetExceeded.
 */
export interface RenderBudget {
  /** Epoch milliseconds; the render stops at the first statement that starts after it. */
  deadline: number;
  /** Characters of output; text accumulated across nested blocks counts toward it too. */
  maxChars: number;
}

export const UNLIMITED_RENDER: RenderBudget = { deadline: Infinity, maxChars: Infinity };

/**
 * Nested blocks count their text once per level (a loop's body, then the loop, then the
 * template), so the running total may reach a few times the output before it means runaway.
 */
const NESTED_OUTPUT_FACTOR = 4;

export class RenderBudgetExceeded extends Error {
  override readonly name = 'RenderBudgetExceeded';
  constructor(
    readonly limit: 'time' | 'size',
    message: string,
  ) {
    super(message);
  }
}

/** The globals as each evaluator reads them: the library's scope, and plain values for the fast one. */
interface GlobalScope {
  scope: Environment;
  values: ReadonlyMap<string, unknown>;
}

/**
 * Built once per globals object: a render only reads them (the template's own `set`s land in the
 * render's scope), and building the library's scope converted every global to its values on each
 * render.
 */
const globalScopes = new WeakMap<object, GlobalScope>();

function globalScopeOf(globals: Readonly<Record<string, unknown>>): GlobalScope {
  let built = globalScopes.get(globals);
  if (built === undefined) {
    const values = new Map(Object.entries({ ...BASE_GLOBALS, ...globals }));
    const scope = new Environment();
    for (const [name, value] of values) scope.set(name, value);
    built = { scope, values };
    globalScopes.set(globals, built);
  }
  return built;
}

/**
 * Whether renders try the fast evaluator first (fast-template.ts). On by default; `KVIX_JINJA_FAST=off`
 * turns it off for the process (an operator's escape hatch), and tests compare both paths.
 */
let fastEnabled = process.env['KVIX_JINJA_FAST'] !== 'off';

export function setFastTemplates(enabled: boolean): void {
  fastEnabled = enabled;
}

const fastTemplates = new WeakMap<Template, FastTemplate | null>();
const fastTotals = { tried: 0, handedOver: 0 };

/** Renders the fast evaluator tried and handed to the library, over every template of the process. */
export function fastRenderTotals(): { tried: number; handedOver: number } {
  return { ...fastTotals };
}

/** How often the fast evaluator rendered a template and how often it handed a render to the library. */
export function fastTemplateStats(template: Template): { tried: number; handedOver: number } | null {
  const fast = fastTemplates.get(template);
  return fast ? { tried: fast.tried, handedOver: fast.handedOver } : null;
}

/** Renders with `globals` visible but shadowable by `variables`, as Jinja2's globals are. */
export function renderTemplate(
  template: Template,
  globals: Readonly<Record<string, unknown>>,
  variables: Readonly<Record<string, unknown>>,
  budget: RenderBudget = UNLIMITED_RENDER,
): string {
  if (fastEnabled) {
    let fast = fastTemplates.get(template);
    if (fast === undefined) {
      fast = FastTemplate.compile(template);
      fastTemplates.set(template, fast);
    }
    if (fast !== null) {
      fast.tried++;
      fastTotals.tried++;
      try {
        return fast.render(globalScopeOf(globals).values, variables, budget);
      } catch {
        // Anything the fast evaluator does not reproduce exactly, errors included, is the library's to render.
        fast.handedOver++;
        fastTotals.handedOver++;
      }
    }
  }
  const scope = new Environment(globalScopeOf(globals).scope);
  for (const [name, value] of Object.entries(variables)) scope.set(name, value);
  const result = pythonicInterpreter(scope, budget).run(template.parsed).value;
  if (typeof result !== 'string') throw new Error('the template did not render to a string');
  return result;
}

// ---- Python's str() for template output ------------------------------------------------------

/** The library's runtime values, as far as printing them needs. */
interface Value {
  readonly type: string;
  readonly value: unknown;
  toString(): string;
}

interface Node {
  readonly type: string;
  readonly value?: unknown;
}

interface BinaryNode extends Node {
  readonly operator: { readonly value: string };
  readonly left: Node;
  readonly right: Node;
}

/**
 * The interpreter methods that decide how values become text. They are private in the library's
 * typings, so the dependency is pinned to an exact version and the Jinja2 fixtures catch any drift.
 */
interface InterpreterInternals {
  evaluate(node: Node, scope: Environment): Value;
  evaluateBlock(statements: readonly Node[], scope: Environment): Value;
  evaluateBinaryExpression(node: BinaryNode, scope: Environment): Value;
  applyFilter(operand: Value, filter: Node, scope: Environment): Value;
}

/** The library does not export its value classes; one string value yields the constructor. */
const StringValue = (new Environment().set('probe', '') as object).constructor as new (value: string) => Value;
const UndefinedValue = (new Environment().lookupVariable('\u0000probe') as object).constructor as new () => Value;
const FunctionValue = (new Environment().lookupVariable('namespace') as object).constructor as new (fn: (args: Value[]) => Value) => Value;

/** The characters argument of Python's `strip(chars=None)` family. */
function stripChars(args: readonly Value[]): string | null {
  if (args.length > 1) throw new Error(`strip() takes at most 1 argument (${args.length} given)`);
  const chars = args[0];
  if (chars === undefined || chars.type === 'NullValue') return null;
  if (chars.type !== 'StringValue') throw new Error(`strip arg must be None or str, not ${chars.type}`);
  return chars.value as string;
}

/**
 * The library's `strip`, `lstrip` and `rstrip` take no argument and trim JavaScript's whitespace;
 * Jinja2 runs Python's, which strip the characters given (Qwen3's template does
 * `content.split('</think>')[-1].lstrip('\n')`, which keeps leading spaces) or Python's whitespace.
 * Each string's method table is built by a getter on first use; this puts Python's three into it.
 */
const libraryStringBuiltins = Object.getOwnPropertyDescriptor(StringValue.prototype, 'builtins')?.get;
if (libraryStringBuiltins === undefined) throw new Error('@huggingface/jinja: string values have no builtins getter (version drift)');
const withPythonStrips = new WeakSet<object>();
const STRIPS: readonly (readonly [string, StripSide])[] = [['strip', 'both'], ['lstrip', 'start'], ['rstrip', 'end']];
Object.defineProperty(StringValue.prototype, 'builtins', {
  configurable: true,
  get(this: Value): Map<string, Value> {
    const table = libraryStringBuiltins.call(this) as Map<string, Value>;
    if (!withPythonStrips.has(table)) {
      const s = this.value as string;
      for (const [name, side] of STRIPS) table.set(name, new FunctionValue((args) => new StringValue(pyStrip(s, stripChars(args), side))));
      withPythonStrips.add(table);
    }
    return table;
  },
});

interface ScopeInternals {
  readonly parent?: ScopeInternals;
  readonly variables: Map<string, Value>;
}

/**
 * The library's `lookupVariable` finds the scope declaring a name with `resolve`, which throws for
 * a name no scope declares, and catches that to return undefined: an Error and its stack trace for
 * every undefined name a template reads (Qwen3's reads `enable_thinking` on each render; ~30 µs of
 * an in-place decision in a profile, where the async stack is deep). The same walk and the same
 * answer, without the exception. The library is pinned to an exact version, and the Jinja2
 * fixtures check templates' output through this.
 */
function findVariable(scope: ScopeInternals | undefined, name: string): Value {
  for (let s = scope; s !== undefined && s !== null; s = s.parent) {
    if (s.variables.has(name)) return s.variables.get(name) ?? new UndefinedValue();
  }
  return new UndefinedValue();
}

Environment.prototype.lookupVariable = function lookupVariable(this: ScopeInternals, name: string): Value {
  return findVariable(this, name);
} as unknown as Environment['lookupVariable'];

/** Statements that print nothing; every other node's value is printed, None as "None". */
const SILENT_NODES = new Set(['Set', 'Macro', 'Comment']);

const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

function pyStringRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch !== ' ' && NOT_PRINTABLE.test(ch)) {
      const cp = ch.codePointAt(0)!;
      out += cp < 0x100 ? `\\x${cp.toString(16).padStart(2, '0')}` : cp < 0x10000 ? `\\u${cp.toString(16).padStart(4, '0')}` : `\\U${cp.toString(16).padStart(8, '0')}`;
    } else out += ch;
  }
  return out + quote;
}

function pyRepr(v: Value): string {
  return v.type === 'StringValue' ? pyStringRepr(v.value as string) : pyStr(v);
}

export function pyStr(v: Value): string {
  switch (v.type) {
    case 'StringValue':
      return v.value as string;
    case 'BooleanValue':
      return v.value ? 'True' : 'False';
    case 'NullValue':
      return 'None';
    case 'UndefinedValue':
      return '';
    case 'FloatValue':
      return pyFloatRepr(v.value as number);
    case 'ArrayValue':
      return `[${(v.value as Value[]).map(pyRepr).join(', ')}]`;
    case 'TupleValue': {
      const items = (v.value as Value[]).map(pyRepr);
      return items.length === 1 ? `(${items[0]!},)` : `(${items.join(', ')})`;
    }
    case 'ObjectValue':
      return `{${[...(v.value as Map<string, Value>)].map(([k, item]) => `${pyStringRepr(k)}: ${pyRepr(item)}`).join(', ')}}`;
    default:
      return v.toString();
  }
}

function pythonicInterpreter(scope: Environment, budget: RenderBudget): Interpreter {
  const interpreter = new Interpreter(scope);
  const internals = interpreter as unknown as InterpreterInternals;
  const binary = internals.evaluateBinaryExpression.bind(interpreter);
  const filter = internals.applyFilter.bind(interpreter);
  const checked = budget.deadline !== Infinity || budget.maxChars !== Infinity;
  const maxProduced = budget.maxChars * NESTED_OUTPUT_FACTOR;
  let produced = 0;
  let steps = 0;
  // Every loop iteration, branch and macro call runs a block, so checking here bounds any
  // template: the only work between two checks is one statement's expressions. The clock is read
  // every 64th check (reading it each time cost a 40-message render ~38%; bench tokenize (e)).
  const check = (out: string): void => {
    if ((++steps & 63) === 0 && Date.now() > budget.deadline) throw new RenderBudgetExceeded('time', 'the chat template ran out of time');
    if (out.length > budget.maxChars || produced > maxProduced) {
      throw new RenderBudgetExceeded('size', `the chat template produced more than ${budget.maxChars} characters`);
    }
  };
  internals.evaluateBlock = (statements, blockScope) => {
    let out = '';
    if (checked) check(out);
    for (const statement of statements) {
      const value = internals.evaluate(statement, blockScope);
      if (!SILENT_NODES.has(statement.type)) {
        const text = pyStr(value);
        out += text;
        produced += text.length;
      }
      if (checked) check(out);
    }
    return new StringValue(out);
  };
  internals.evaluateBinaryExpression = (node, exprScope) => {
    if (node.operator.value !== '~') return binary(node, exprScope);
    return new StringValue(pyStr(internals.evaluate(node.left, exprScope)) + pyStr(internals.evaluate(node.right, exprScope)));
  };
  internals.applyFilter = (operand, filterNode, filterScope) => {
    if (filterNode.type === 'Identifier' && filterNode.value === 'string') return new StringValue(pyStr(operand));
    // Jinja2's trim is Python's strip() (the library's is JavaScript's trim()).
    if (filterNode.type === 'Identifier' && filterNode.value === 'trim' && operand.type === 'StringValue') return new StringValue(pyStrip(operand.value as string, null, 'both'));
    return filter(operand, filterNode, filterScope);
  };
  return interpreter;
}
