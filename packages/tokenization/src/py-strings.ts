/**
 * Python's float repr and `str.strip` family, as chat templates see them under Jinja2 (vLLM renders
 * with Python). `strip` with no argument strips Python's whitespace, a different set from
 * JavaScript's `trim()` (\x1c-\x1f and \x85 are whitespace to Python, \ufeff is not); with an
 * argument it strips exactly those characters (`content.lstrip('\n')` keeps leading spaces; `trimStart()` does not).
 */

/** The characters `str.isspace()` is true for, as a character-class body. */
export const PY_WHITESPACE_CLASS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const LEADING_WS = new RegExp(`^[${PY_WHITESPACE_CLASS}]+`);
const TRAILING_WS = new RegExp(`[${PY_WHITESPACE_CLASS}]+$`);

export type StripSide = 'both' | 'start' | 'end';

/** `s.strip(chars)`, `s.lstrip(chars)` or `s.rstrip(chars)`; `chars` null strips whitespace. */
export function pyStrip(s: string, chars: string | null, side: StripSide): string {
  if (chars === null) {
    let out = s;
    if (side !== 'end') out = out.replace(LEADING_WS, '');
    if (side !== 'start') out = out.replace(TRAILING_WS, '');
    return out;
  }
  if (chars === '' || s === '') return s;
  // Code points, as Python strips characters (an astral character is one).
  const set = new Set(Array.from(chars));
  const points = Array.from(s);
  let start = 0;
  let end = points.length;
  if (side !== 'end') while (start < end && set.has(points[start]!)) start++;
  if (side !== 'start') while (end > start && set.has(points[end - 1]!)) end--;
  return start === 0 && end === points.length ? s : points.slice(start, end).join('');
}

/** Python's float repr: shortest round-trip digits, exponent form below 1e-4 and from 1e16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, exp] = x.toExponential().split('e') as [string, string];
  const exponent = Number(exp);
  if (exponent < -4 || exponent >= 16) {
    return `${mantissa}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
  }
  const text = String(x);
  return text.includes('.') ? text : `${text}.0`;
}
