import { isInteger, isSafeNumber, parse } from 'lossless-json';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The kvix repository root (the directory holding the root package.json with workspaces). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && readFileSync(pkg, 'utf8').includes('"workspaces"')) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('kvix test-support: could not find the repository root');
    dir = parent;
  }
}

/**
 * The shared spec and vectors live beside the repository (`../shared`), or wherever
 * KVIX_SHARED_DIR points. Missing vectors fail the suite loudly: a skipped vector test proves nothing.
 */
export function sharedDir(): string {
  const dir = process.env['KVIX_SHARED_DIR'] ?? resolve(repoRoot(), '..', 'shared');
  if (!existsSync(join(dir, 'vectors'))) {
    throw new Error(`kvix test-support: shared vectors not found at ${dir}/vectors (set KVIX_SHARED_DIR)`);
  }
  return dir;
}

/** Raw JSON text of a shared vector file: parse it with a reader that keeps 64-bit integers exact. */
export function readSharedVector(name: string): string {
  return readFileSync(join(sharedDir(), 'vectors', name), 'utf8');
}

/**
 * A shared vector file parsed so that integers beyond 2^53 arrive as exact bigints (plain
 * JSON.parse would round them, hiding exactly the bugs the vectors exist to catch).
 */
export function readSharedVectorJson(name: string): unknown {
  return parseJsonExact(readSharedVector(name));
}

export function parseJsonExact(text: string): unknown {
  return parse(text, null, (value: string) => {
    if (isInteger(value)) return isSafeNumber(value) ? Number(value) : BigInt(value);
    return Number.parseFloat(value);
  });
}
