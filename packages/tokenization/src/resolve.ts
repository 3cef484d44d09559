import { stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { bundledNames, isBundledName } from './bundled.js';
import { TokenizationError } from './errors.js';
import { LocalTokenizer } from './local-tokenizer.js';

/** Relative paths must be spelled as paths, since hub ids ("Qwen/Qwen3-8B") contain a slash too. */
function looksLikePath(spec: string): boolean {
  return isAbsolute(spec) || spec.startsWith('./') || spec.startsWith('../') || spec === '.' || spec === '..';
}

/**
 * A tokenizer from a configuration value: a bundled model name (case-insensitive) or a directory
 * holding tokenizer.json. A bundled name wins over a directory of the same name.
 */
export async function resolveTokenizer(spec: string): Promise<LocalTokenizer> {
  if (typeof spec !== 'string' || spec === '') {
    throw new TokenizationError('INVALID_REQUEST', 'a tokenizer spec must be a bundled model name or a directory path');
  }
  if (isBundledName(spec)) return LocalTokenizer.bundled(spec);
  const info = await stat(spec).catch(() => null);
  if (info?.isDirectory()) return LocalTokenizer.fromDirectory(spec);
  if (info !== null) throw new TokenizationError('INVALID_TOKENIZER', `${spec} is a file; pass the directory that holds tokenizer.json`);
  if (looksLikePath(spec)) throw new TokenizationError('FILE_NOT_FOUND', `tokenizer directory ${spec} does not exist`);
  throw new TokenizationError(
    'UNKNOWN_BUNDLED_TOKENIZER',
    `"${spec}" is neither a bundled tokenizer (${bundledNames().join(', ')}) nor an existing directory`,
  );
}
