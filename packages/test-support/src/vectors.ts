import { isInteger, isSafeNumber, parse } from 'lossless-json';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
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
 * The test vectors, copied into this repository (fixtures/vectors, with a README saying how each was
 * made) so that a fresh clone's tests read nothing outside it. A missing file fails the suite loudly.
 */
export function vectorsDir(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'vectors');
}

/** Raw JSON text of a vector file: parse it with a reader that keeps 64-bit integers exact. */
export function readVector(name: string): string {
  return readFileSync(join(vectorsDir(), name), 'utf8');
}

/**
 * A vector file parsed so that integers beyond 2^53 arrive as exact bigints (plain
 * JSON.parse would round them, hiding exactly the bugs the vectors exist to catch).
 */
export function readVectorJson(name: string): unknown {
  return parseJsonExact(readVector(name));
}

export function parseJsonExact(text: string): unknown {
  return parse(text, null, (value: string) => {
    if (isInteger(value)) return isSafeNumber(value) ? Number(value) : BigInt(value);
    return Number.parseFloat(value);
  });
}
