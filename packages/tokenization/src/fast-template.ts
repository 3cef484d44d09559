/**
 * Chat templates rendered on plain JavaScript values, for the part of Jinja that chat templates
 * use: text, `if`, `for` over lists, `set` (namespaces too), member and index access, slices, the
 * comparisons, `and`/`or`/`not`, `+` and `~`, a few filters, tests and string methods.
 *
 * Why: the library's interpreter wraps every value it touches in a runtime object, gives every
 * loop iteration a scope with its own Map, and builds each string's method table when a method is
 * read. Measured on the decision benchmark's Qwen3 chats (~7 messages, ~20 k characters): 75–90 µs
 * a render in a tight loop, ~250 µs inside a routing decision; this evaluator: see bench/README.md
 * (`decision`).
 *
 * It reproduces the library's semantics as jinja.ts adjusts them (Python's printing of values and
 * `strip` family), not Jinja2's directly: the library stays the reference. A template using
 * anything else is never tried here (`compileFastTemplate` returns null), and whenever a render
 * meets a case this evaluator does not reproduce exactly (an operation the library would refuse,
 * a value of a kind it does not handle, a filter argument, a template's own `raise_exception`, a
 * render budget running out) it stops with `UNSUPPORTED` and the caller renders with the library,
 * which then also produces the error, if any, word for word.
 */
import type { Template } from '@huggingface/jinja';
import { pyFloatRepr, pyStrip, type StripSide } from './py-strings.js';

/** Thrown to hand the render to the library; one instance, so stopping captures no stack. */
export const UNSUPPORTED: Error = Object.freeze(new Error('outside the fast template subset')) as Error;

function unsupported(): never {
  throw UNSUPPORTED;
}

// ---- the AST, as far as this evaluator reads it -----------------------------------------------

interface Node {
  readonly type: string;
}
interface ValueNode<T> extends Node {
  readonly value: T;
}
interface ProgramNode extends Node {
  readonly body: readonly Node[];
}
interface IfNode extends Node {
  readonly test: Node;
  readonly body: readonly Node[];
  readonly alternate: readonly Node[];
}
interface ForNode extends Node {
  readonly loopvar: Node;
  readonly iterable: Node;
  readonly body: readonly Node[];
  readonly defaultBlock: readonly Node[];
}
interface SetNode extends Node {
  readonly assignee: Node;
  readonly value: Node | null;
  readonly body: readonly Node[];
}
interface MemberNode extends Node {
  readonly object: Node;
  readonly property: Node;
  readonly computed: boolean;
}
interface CallNode extends Node {
  readonly callee: Node;
  readonly args: readonly Node[];
}
interface BinaryNode extends Node {
  readonly operator: { readonly value: string };
  readonly left: Node;
  readonly right: Node;
}
interface UnaryNode extends Node {
  readonly operator: { readonly value: string };
  readonly argument: Node;
}
interface FilterNode extends Node {
  readonly operand: Node;
  readonly filter: Node;
}
interface TestNode extends Node {
  readonly operand: Node;
  readonly negate: boolean;
  readonly test: ValueNode<string>;
}
interface TernaryNode extends Node {
  readonly condition: Node;
  readonly trueExpr: Node;
  readonly falseExpr: Node | undefined;
}
interface SelectNode extends Node {
  readonly lhs: Node;
  readonly test: Node;
}
interface SliceNode extends Node {
  readonly start: Node | undefined;
  readonly stop: Node | undefined;
  readonly step: Node | undefined;
}
interface KeywordNode extends Node {
  readonly key: ValueNode<string>;
  readonly value: Node;
}

// ---- values ---------------------------------------------------------------------------------

/** `namespace(...)`: attributes a template sets across loop iterations. */
class Namespace {
  constructor(readonly attributes: Map<string, unknown>) {}
}

/** The `loop` variable of one iteration. */
class LoopInfo {
  constructor(
    readonly index0: number,
    readonly items: readonly unknown[],
  ) {}

  get(name: string): unknown {
    const i = this.index0;
    const n = this.items.length;
    switch (name) {
      case 'index': return i + 1;
      case 'index0': return i;
      case 'revindex': return n - i;
      case 'revindex0': return n - i - 1;
      case 'first': return i === 0;
      case 'last': return i === n - 1;
      case 'length': return n;
      case 'previtem': return i > 0 ? this.items[i - 1] : undefined;
      case 'nextitem': return i < n - 1 ? this.items[i + 1] : undefined;
      default:
        // The library's loop is a mapping: its method names (get, items, ...) are functions.
        if (OBJECT_METHODS.has(name)) unsupported();
        return undefined;
    }
  }

  has(name: string): boolean {
    return LOOP_KEYS.has(name);
  }
}

const LOOP_KEYS = new Set(['index', 'index0', 'revindex', 'revindex0', 'first', 'last', 'length', 'previtem', 'nextitem']);
/** What a mapping answers for a key it does not hold: the library's methods of a mapping. */
const OBJECT_METHODS = new Set(['get', 'items', 'keys', 'values', 'dictsort']);
/** The `namespace` function every scope of the library declares. */
const NAMESPACE_FUNCTION = Symbol('namespace');
/** Tuples are lists to every operation here except the `iterable` test, which the library answers false for them. */
const tuples = new WeakSet<readonly unknown[]>();

function isMapping(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function isPrimitive(v: unknown): v is string | number | boolean | null | undefined {
  return v === null || v === undefined || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

/** Python truthiness, as the library decides it for each kind of value. */
function truthy(v: unknown): boolean {
  if (typeof v === 'string') return v.length > 0;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0 && !Number.isNaN(v);
  if (v === null || v === undefined) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Namespace || v instanceof LoopInfo) return true;
  if (isMapping(v)) {
    for (const key in v) if (Object.hasOwn(v, key)) return true;
    return false;
  }
  return true;
}

/** How the template prints a value (jinja.ts's `pyStr`): only the kinds printed without a repr. */
function printed(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : pyFloatRepr(v);
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (v === null) return 'None';
  if (v === undefined) return '';
  return unsupported();
}

/** The library's `tojson` with no arguments: `, ` and `: ` separators, non-ASCII kept. */
function toJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(toJson).join(', ')}]`;
  if (v instanceof Namespace) return `{${[...v.attributes].map(([k, x]) => `${JSON.stringify(k)}: ${toJson(x)}`).join(', ')}}`;
  if (isMapping(v)) {
    const parts: string[] = [];
    for (const key of Object.keys(v)) parts.push(`${JSON.stringify(key)}: ${toJson(v[key])}`);
    return `{${parts.join(', ')}}`;
  }
  return unsupported();
}

/** The library's slicing (its own rule, close to Python's), on a list or on a string's code points. */
function sliced<T>(items: readonly T[], start: number | undefined, stop: number | undefined, step: number | undefined): T[] {
  const by = step ?? 1;
  const n = items.length;
  let from: number;
  let to: number;
  if (by >= 0) {
    from = start === undefined ? 0 : start < 0 ? Math.max(n + start, 0) : Math.min(start, n);
    to = stop === undefined ? n : stop < 0 ? Math.max(n + stop, 0) : Math.min(stop, n);
  } else {
    from = start === undefined ? n - 1 : start < 0 ? Math.max(n + start, -1) : Math.min(start, n - 1);
    to = stop === undefined ? -1 : stop < -1 ? Math.max(n + stop, -1) : Math.min(stop, n - 1);
  }
  const out: T[] = [];
  const direction = Math.sign(by);
  for (let i = from; direction * i < direction * to; i += by) out.push(items[i]!);
  return out;
}

function sliceBound(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  return unsupported();
}

// ---- scopes ---------------------------------------------------------------------------------

class Scope {
  readonly vars = new Map<string, unknown>();
  constructor(readonly parent: Scope | null) {}

  lookup(name: string, globals: ReadonlyMap<string, unknown>): unknown {
    const v = this.vars.get(name);
    if (v !== undefined || this.vars.has(name)) return v;
    if (this.parent !== null) return this.parent.lookup(name, globals);
    return name === 'namespace' ? NAMESPACE_FUNCTION : globals.get(name);
  }
}

// ---- the subset, checked once per template --------------------------------------------------

const STATEMENTS = new Set(['Program', 'If', 'For', 'Set', 'Comment']);
const EXPRESSIONS = new Set([
  'StringLiteral',
  'IntegerLiteral',
  'ArrayLiteral',
  'TupleLiteral',
  'Identifier',
  'MemberExpression',
  'CallExpression',
  'BinaryExpression',
  'UnaryExpression',
  'FilterExpression',
  'TestExpression',
  'Ternary',
  'SelectExpression',
  'SliceExpression',
  'KeywordArgumentExpression',
]);
const FILTERS = new Set(['string', 'trim', 'length', 'tojson', 'safe', 'upper', 'lower', 'first', 'last']);
const TESTS = new Set(['boolean', 'callable', 'odd', 'even', 'false', 'true', 'none', 'string', 'number', 'integer', 'iterable', 'mapping', 'sequence', 'lower', 'upper', 'defined', 'undefined']);
const STRING_METHODS = new Set(['upper', 'lower', 'strip', 'lstrip', 'rstrip', 'startswith', 'endswith', 'split']);
/** Statements whose value the template does not print (jinja.ts's SILENT_NODES). */
const SILENT = new Set(['Set', 'Comment']);

/** Whether every node of the template is one this evaluator handles (values are checked as it runs). */
function inSubset(node: unknown): boolean {
  if (Array.isArray(node)) return node.every((n) => inSubset(n));
  if (typeof node !== 'object' || node === null) return true;
  const n = node as Node & Record<string, unknown>;
  if (typeof n.type !== 'string') return true;
  switch (n.type) {
    case 'For': {
      const f = n as unknown as ForNode;
      // `for x in xs if cond` filters the items: not reproduced here.
      if (f.loopvar.type !== 'Identifier' || f.iterable.type === 'SelectExpression') return false;
      if ((f.loopvar as ValueNode<string>).value === 'namespace') return false;
      break;
    }
    case 'Set': {
      const s = n as unknown as SetNode;
      if (s.assignee.type === 'Identifier') {
        // The library's every scope declares `namespace` itself, so a template's own shadows it only sometimes.
        if ((s.assignee as ValueNode<string>).value === 'namespace') return false;
      } else if (s.assignee.type !== 'MemberExpression') return false;
      break;
    }
    case 'FilterExpression': {
      const f = n as unknown as FilterNode;
      if (f.filter.type !== 'Identifier' || !FILTERS.has((f.filter as ValueNode<string>).value)) return false;
      break;
    }
    case 'TestExpression':
      if (!TESTS.has((n as unknown as TestNode).test.value)) return false;
      break;
    case 'BinaryExpression':
      if ((n as unknown as BinaryNode).operator.value === '**' || (n as unknown as BinaryNode).operator.value === '/') return false;
      break;
    default:
      if (!STATEMENTS.has(n.type) && !EXPRESSIONS.has(n.type)) return false;
  }
  for (const [key, child] of Object.entries(n)) {
    if (key === 'type' || key === 'operator') continue;
    if (!inSubset(child)) return false;
  }
  return true;
}

// ---- rendering ------------------------------------------------------------------------------

export interface FastRenderBudget {
  deadline: number;
  maxChars: number;
}

/** A template the evaluator can try; `render` throws UNSUPPORTED (or anything) to hand over. */
export class FastTemplate {
  /** Renders tried, and how many handed over to the library. */
  tried = 0;
  handedOver = 0;

  private constructor(private readonly program: ProgramNode) {}

  static compile(template: Template): FastTemplate | null {
    const program = template.parsed as unknown as ProgramNode;
    return inSubset(program) ? new FastTemplate(program) : null;
  }

  render(globals: ReadonlyMap<string, unknown>, variables: Readonly<Record<string, unknown>>, budget: FastRenderBudget): string {
    // The library refuses a variable named like its own `namespace` function.
    if (Object.hasOwn(variables, 'namespace')) unsupported();
    const root = new Scope(null);
    for (const key of Object.keys(variables)) root.vars.set(key, variables[key]);
    return new Render(globals, budget).block(this.program.body, root);
  }
}

/** Nested blocks count their text again at each level (jinja.ts's NESTED_OUTPUT_FACTOR). */
const NESTED_OUTPUT_FACTOR = 4;

class Render {
  private steps = 0;
  private produced = 0;
  private readonly checked: boolean;
  private readonly maxProduced: number;

  constructor(
    private readonly globals: ReadonlyMap<string, unknown>,
    private readonly budget: FastRenderBudget,
  ) {
    this.checked = budget.deadline !== Infinity || budget.maxChars !== Infinity;
    this.maxProduced = budget.maxChars * NESTED_OUTPUT_FACTOR;
  }

  /** Over budget: the library renders again and stops with the right error. */
  private check(out: string): void {
    if ((++this.steps & 63) === 0 && Date.now() > this.budget.deadline) unsupported();
    if (out.length > this.budget.maxChars || this.produced > this.maxProduced) unsupported();
  }

  block(statements: readonly Node[], scope: Scope): string {
    let out = '';
    if (this.checked) this.check(out);
    for (let i = 0; i < statements.length; i++) {
      const statement = statements[i]!;
      const value = this.statement(statement, scope);
      if (!SILENT.has(statement.type)) {
        const text = printed(value);
        out += text;
        this.produced += text.length;
      }
      if (this.checked) this.check(out);
    }
    return out;
  }

  private statement(node: Node, scope: Scope): unknown {
    switch (node.type) {
      case 'If': {
        const n = node as IfNode;
        return this.block(truthy(this.expr(n.test, scope)) ? n.body : n.alternate, scope);
      }
      case 'For':
        return this.forLoop(node as ForNode, scope);
      case 'Set':
        this.set(node as SetNode, scope);
        return null;
      case 'Comment':
        return null;
      default:
        return this.expr(node, scope);
    }
  }

  private forLoop(node: ForNode, outer: Scope): string {
    const scope = new Scope(outer);
    const items = this.expr(node.iterable, scope);
    if (!Array.isArray(items)) return unsupported();
    const name = (node.loopvar as ValueNode<string>).value;
    let out = '';
    for (let i = 0; i < items.length; i++) {
      scope.vars.set('loop', new LoopInfo(i, items));
      scope.vars.set(name, items[i]);
      out += this.block(node.body, scope);
    }
    if (items.length === 0) out += this.block(node.defaultBlock, scope);
    return out;
  }

  private set(node: SetNode, scope: Scope): void {
    const value = node.value !== null ? this.expr(node.value, scope) : this.block(node.body, scope);
    if (node.assignee.type === 'Identifier') {
      scope.vars.set((node.assignee as ValueNode<string>).value, value);
      return;
    }
    const member = node.assignee as MemberNode;
    const target = this.expr(member.object, scope);
    if (!(target instanceof Namespace) || member.property.type !== 'Identifier') unsupported();
    target.attributes.set((member.property as ValueNode<string>).value, value);
  }

  private expr(node: Node, scope: Scope): unknown {
    switch (node.type) {
      case 'StringLiteral':
      case 'IntegerLiteral':
        return (node as ValueNode<unknown>).value;
      case 'Identifier':
        return scope.lookup((node as ValueNode<string>).value, this.globals);
      case 'MemberExpression':
        return this.member(node as MemberNode, scope);
      case 'BinaryExpression':
        return this.binary(node as BinaryNode, scope);
      case 'UnaryExpression':
        return this.unary(node as UnaryNode, scope);
      case 'CallExpression':
        return this.call(node as CallNode, scope);
      case 'FilterExpression':
        return this.filter(node as FilterNode, scope);
      case 'TestExpression': {
        const n = node as TestNode;
        const result = test(n.test.value, this.expr(n.operand, scope));
        return n.negate ? !result : result;
      }
      case 'Ternary': {
        const n = node as TernaryNode;
        if (truthy(this.expr(n.condition, scope))) return this.expr(n.trueExpr, scope);
        return n.falseExpr === undefined ? undefined : this.expr(n.falseExpr, scope);
      }
      case 'SelectExpression': {
        const n = node as SelectNode;
        return truthy(this.expr(n.test, scope)) ? this.expr(n.lhs, scope) : undefined;
      }
      case 'ArrayLiteral':
        return (node as ValueNode<readonly Node[]>).value.map((x) => this.expr(x, scope));
      case 'TupleLiteral': {
        const tuple = (node as ValueNode<readonly Node[]>).value.map((x) => this.expr(x, scope));
        tuples.add(tuple);
        return tuple;
      }
      default:
        return unsupported();
    }
  }

  private member(node: MemberNode, scope: Scope): unknown {
    const object = this.expr(node.object, scope);
    let property: unknown;
    if (node.computed) {
      if (node.property.type === 'SliceExpression') return this.slice(object, node.property as SliceNode, scope);
      property = this.expr(node.property, scope);
    } else {
      property = (node.property as ValueNode<unknown>).value;
    }
    if (typeof property === 'number' && !Number.isInteger(property)) unsupported();
    if (object instanceof Namespace) {
      if (typeof property !== 'string') unsupported();
      return object.attributes.get(property);
    }
    if (object instanceof LoopInfo) {
      if (typeof property !== 'string') unsupported();
      return object.get(property);
    }
    if (isMapping(object)) {
      if (typeof property !== 'string') unsupported();
      if (Object.hasOwn(object, property)) return object[property];
      if (OBJECT_METHODS.has(property)) unsupported();
      return undefined;
    }
    if (typeof object === 'string') {
      if (typeof property === 'number') return object.at(property);
      if (property === 'length') return object.length;
      // A string method read without calling it (only calls are reproduced).
      if (typeof property === 'string' && (STRING_METHODS.has(property) || STRING_LIBRARY_METHODS.has(property))) unsupported();
      if (typeof property !== 'string') unsupported();
      return undefined;
    }
    if (Array.isArray(object)) {
      if (typeof property === 'number') return object.at(property);
      if (typeof property !== 'string') unsupported();
      return property === 'length' ? object.length : undefined;
    }
    // None, undefined, numbers, booleans: the library has no attributes for them.
    if (isPrimitive(object) && typeof property === 'string') return undefined;
    return unsupported();
  }

  private slice(object: unknown, node: SliceNode, scope: Scope): unknown {
    const start = sliceBound(node.start === undefined ? undefined : this.expr(node.start, scope));
    const stop = sliceBound(node.stop === undefined ? undefined : this.expr(node.stop, scope));
    const step = sliceBound(node.step === undefined ? undefined : this.expr(node.step, scope));
    if (Array.isArray(object)) return sliced(object, start, stop, step);
    if (typeof object === 'string') return sliced(Array.from(object), start, stop, step).join('');
    return unsupported();
  }

  private unary(node: UnaryNode, scope: Scope): unknown {
    const argument = this.expr(node.argument, scope);
    switch (node.operator.value) {
      case 'not':
        return !truthy(argument);
      case '-':
      case '+': {
        const value = typeof argument === 'boolean' ? (argument ? 1 : 0) : argument;
        if (typeof value !== 'number' || !Number.isInteger(value)) unsupported();
        return node.operator.value === '-' ? -value : value;
      }
      default:
        return unsupported();
    }
  }

  private binary(node: BinaryNode, scope: Scope): unknown {
    const op = node.operator.value;
    const left = this.expr(node.left, scope);
    if (op === 'and') return truthy(left) ? this.expr(node.right, scope) : left;
    if (op === 'or') return truthy(left) ? left : this.expr(node.right, scope);
    const right = this.expr(node.right, scope);
    if (op === '~') return printed(left) + printed(right);
    if (op === '==' || op === '!=') {
      // The library compares its values' JavaScript values loosely; lists and mappings by identity, which is not reproduced.
      if (!isPrimitive(left) || !isPrimitive(right)) unsupported();
      // eslint-disable-next-line eqeqeq -- the library's own comparison
      return op === '==' ? left == right : left != right;
    }
    if (left === undefined || right === undefined) {
      if (right === undefined && (op === 'in' || op === 'not in')) return op === 'not in';
      return unsupported();
    }
    if (left === null || right === null) return unsupported();
    if (typeof left === 'number' && typeof right === 'number') {
      if (!Number.isInteger(left) || !Number.isInteger(right)) unsupported();
      switch (op) {
        case '+': return left + right;
        case '-': return left - right;
        case '*': return left * right;
        case '//': return right === 0 ? unsupported() : Math.floor(left / right);
        case '%': return right === 0 ? unsupported() : left % right;
        case '<': return left < right;
        case '>': return left > right;
        case '<=': return left <= right;
        case '>=': return left >= right;
        default: return unsupported();
      }
    }
    if (Array.isArray(left) && Array.isArray(right)) return op === '+' ? left.concat(right) : unsupported();
    if (Array.isArray(right) && (op === 'in' || op === 'not in')) {
      if (!isPrimitive(left)) unsupported();
      const member = right.some((x) => x === left);
      return op === 'in' ? member : !member;
    }
    if (typeof left === 'string' || typeof right === 'string') {
      if (op === '+') {
        if (!isPrimitive(left) || !isPrimitive(right)) unsupported();
        // JavaScript's toString, as the library concatenates (true → "true").
        return String(left) + String(right);
      }
      if (typeof left === 'string' && typeof right === 'string' && (op === 'in' || op === 'not in')) return op === 'in' ? right.includes(left) : !right.includes(left);
      if (typeof left === 'string' && (op === 'in' || op === 'not in') && (isMapping(right) || right instanceof LoopInfo)) {
        const has = right instanceof LoopInfo ? right.has(left) : Object.hasOwn(right, left);
        return op === 'in' ? has : !has;
      }
    }
    return unsupported();
  }

  private call(node: CallNode, scope: Scope): unknown {
    const callee = node.callee;
    if (callee.type === 'Identifier' && scope.lookup((callee as ValueNode<string>).value, this.globals) === NAMESPACE_FUNCTION) {
      const attributes = new Map<string, unknown>();
      for (const arg of node.args) {
        if (arg.type !== 'KeywordArgumentExpression') unsupported();
        const kw = arg as KeywordNode;
        if (attributes.has(kw.key.value)) unsupported();
        attributes.set(kw.key.value, this.expr(kw.value, scope));
      }
      return new Namespace(attributes);
    }
    if (callee.type !== 'MemberExpression') return unsupported();
    const member = callee as MemberNode;
    const args = node.args.map((arg) => (arg.type === 'KeywordArgumentExpression' ? unsupported() : this.expr(arg, scope)));
    const object = this.expr(member.object, scope);
    const name = member.computed ? this.expr(member.property, scope) : (member.property as ValueNode<unknown>).value;
    if (typeof object !== 'string' || typeof name !== 'string') return unsupported();
    return stringMethod(object, name, args);
  }

  private filter(node: FilterNode, scope: Scope): unknown {
    const operand = this.expr(node.operand, scope);
    const name = (node.filter as ValueNode<string>).value;
    switch (name) {
      case 'string':
        return printed(operand);
      case 'safe':
        return operand;
      case 'tojson':
        return toJson(operand);
      case 'trim':
        return typeof operand === 'string' ? pyStrip(operand, null, 'both') : unsupported();
      case 'length':
        return typeof operand === 'string' || Array.isArray(operand) ? operand.length : unsupported();
      case 'upper':
        return typeof operand === 'string' ? operand.toUpperCase() : unsupported();
      case 'lower':
        return typeof operand === 'string' ? operand.toLowerCase() : unsupported();
      case 'first':
        return Array.isArray(operand) && operand.length > 0 ? operand[0] : unsupported();
      case 'last':
        return Array.isArray(operand) && operand.length > 0 ? operand[operand.length - 1] : unsupported();
      default:
        return unsupported();
    }
  }
}

/** The library's other string methods: read but not called, each is a function value (not reproduced). */
const STRING_LIBRARY_METHODS = new Set(['title', 'capitalize', 'replace']);

function stripChars(args: readonly unknown[]): string | null {
  if (args.length === 0 || args[0] === null) return null;
  if (args.length > 1 || typeof args[0] !== 'string') return unsupported();
  return args[0];
}

function affix(s: string, args: readonly unknown[], at: 'start' | 'end'): boolean {
  const pattern = args[0];
  const matches = (p: string): boolean => (at === 'start' ? s.startsWith(p) : s.endsWith(p));
  if (typeof pattern === 'string') return matches(pattern);
  if (Array.isArray(pattern)) {
    if (!pattern.every((p) => typeof p === 'string')) unsupported();
    return pattern.some((p: string) => matches(p));
  }
  return unsupported();
}

function stringMethod(s: string, name: string, args: readonly unknown[]): unknown {
  switch (name) {
    case 'upper':
      return s.toUpperCase();
    case 'lower':
      return s.toLowerCase();
    case 'strip':
    case 'lstrip':
    case 'rstrip': {
      const side: StripSide = name === 'strip' ? 'both' : name === 'lstrip' ? 'start' : 'end';
      return pyStrip(s, stripChars(args), side);
    }
    case 'startswith':
      return affix(s, args, 'start');
    case 'endswith':
      return affix(s, args, 'end');
    case 'split': {
      // A separator only; `split()` on whitespace and `maxsplit` are the library's to answer.
      if (args.length !== 1 || typeof args[0] !== 'string' || args[0] === '') return unsupported();
      return s.split(args[0]);
    }
    default:
      return unsupported();
  }
}

function test(name: string, v: unknown): boolean {
  switch (name) {
    case 'boolean': return typeof v === 'boolean';
    case 'callable': return typeof v === 'function' || v === NAMESPACE_FUNCTION;
    case 'odd':
    case 'even':
      if (typeof v !== 'number' || !Number.isInteger(v)) unsupported();
      return name === 'odd' ? v % 2 !== 0 : v % 2 === 0;
    case 'false': return v === false;
    case 'true': return v === true;
    case 'none': return v === null;
    case 'string': return typeof v === 'string';
    case 'number': return typeof v === 'number';
    case 'integer': return typeof v === 'number' && Number.isInteger(v);
    case 'iterable': return typeof v === 'string' || (Array.isArray(v) && !tuples.has(v));
    case 'mapping': return isMapping(v) || v instanceof LoopInfo;
    case 'sequence': return typeof v === 'string' || Array.isArray(v) || isMapping(v) || v instanceof LoopInfo;
    case 'lower': return typeof v === 'string' && v === v.toLowerCase();
    case 'upper': return typeof v === 'string' && v === v.toUpperCase();
    case 'defined': return v !== undefined;
    case 'undefined': return v === undefined;
    default: return unsupported();
  }
}
