import { ZodError, type ZodType } from 'zod';

/**
 * A mistake in what the user gave the CLI. The contract: exit code 2 and one line on stderr, so
 * scripts can tell bad input (2) from a kvix failure (1).
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const EXIT_BAD_INPUT = 2;
export const EXIT_FAILURE = 1;

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses stdin as one JSON document; empty or invalid input is a UsageError. */
export async function readJsonInput(command: string): Promise<unknown> {
  if (process.stdin.isTTY) {
    throw new UsageError(`${command}: no input; pipe a JSON document on stdin or pass flags (see kvix ${command} --help)`);
  }
  const text = (await readStdin()).trim();
  if (text === '') throw new UsageError(`${command}: stdin is empty; expected a JSON document`);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`${command}: stdin is not valid JSON: ${(err as Error).message}`);
  }
}

/** Validates input against a schema, turning every issue into one readable line. */
export function validate<T>(schema: ZodType<T>, input: unknown, command: string): T {
  try {
    return schema.parse(input);
  } catch (err) {
    if (err instanceof ZodError) {
      const issues = err.issues.slice(0, 3).map((i) => `${i.path.length ? i.path.join('.') : 'input'}: ${i.message}`);
      const more = err.issues.length > 3 ? ` (+${err.issues.length - 3} more)` : '';
      throw new UsageError(`${command}: invalid input: ${issues.join('; ')}${more}`);
    }
    throw err;
  }
}

/** One JSON document on stdout; bigints become decimal strings. */
export function writeJson(doc: unknown): void {
  process.stdout.write(`${JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}
