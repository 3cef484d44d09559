import { RequestKeyHasher, REQUEST_KEY_ALGORITHMS, type BlockExtras } from '@kvix/block-keys';
import type { Command } from 'commander';
import { z } from 'zod';
import { UsageError, readJsonInput, validate, writeJson } from '../io.js';
import { blockSize, tokenFlag, tokenList, u64String } from '../schemas.js';

/** A block's extras: identifier strings (legacy [identifier, offset] pairs are accepted too). */
const blockExtras = z
  .array(z.union([z.string(), z.tuple([z.string(), z.number().int()]).transform(([id]) => id)]))
  .nullable();

const KeysInput = z.object({
  tokens: tokenList,
  blockSize: blockSize.default(16),
  seed: z.string().default(''),
  model: z.string({ error: 'expected the model (or LoRA adapter) name' }),
  extraKeys: z.array(blockExtras).nullable().default(null),
  parent: u64String.nullable().default(null),
  algorithm: z.enum(REQUEST_KEY_ALGORITHMS as [string, ...string[]]).default('cbor-fnv'),
});
type KeysInput = z.infer<typeof KeysInput>;

export function computeKeys(input: KeysInput): { keys: string[] } {
  const blocks = Math.floor(input.tokens.length / input.blockSize);
  const extras = input.extraKeys as BlockExtras[] | null;
  if (extras !== null) {
    // One entry per block; an entry for the trailing partial block is tolerated (and unused).
    const withPartial = Math.ceil(input.tokens.length / input.blockSize);
    if (extras.length < blocks || extras.length > withPartial) {
      throw new UsageError(
        `keys: extraKeys has ${extras.length} entries but the tokens make ${blocks} full block(s) of ${input.blockSize}; give one entry (list or null) per block`,
      );
    }
  }
  const hasher = new RequestKeyHasher({ blockSize: input.blockSize, seed: input.seed, algorithm: input.algorithm as 'cbor-fnv' | 'xxh64' });
  const keys = hasher.keys(input.tokens, input.model, {
    extras,
    parent: input.parent === null ? null : BigInt(input.parent),
  });
  return { keys: Array.from(keys, String) };
}

interface KeysFlags {
  tokens?: string;
  blockSize?: string;
  seed?: string;
  model?: string;
  algorithm?: string;
  parent?: string;
  extraKeys?: string;
  json?: boolean;
}

function parseFlagJson(flag: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new UsageError(`keys: --${flag} is not valid JSON`);
  }
}

export function registerKeys(program: Command): void {
  program
    .command('keys')
    .summary('compute request keys (llm-d-compatible block keys) for token ids')
    .description(
      [
        'Computes the request keys kvix (and llm-d) index for a token sequence: one key per full block,',
        'chained from the root of the model or LoRA adapter name.',
        '',
        'JSON mode (no flags): reads {"tokens":[…],"blockSize":16,"seed":"","model":"m",',
        '"extraKeys":[["id"],null,…]|null,"parent":"<u64>"|null,"algorithm":"cbor-fnv"|"xxh64"} on stdin',
        'and prints {"keys":["<u64>",…]}. Bad input exits 2 with one line on stderr.',
      ].join('\n'),
    )
    .option('--tokens <ids>', 'comma-separated token ids (switches to flag mode)')
    .option('--model <name>', 'model name, or the LoRA adapter name for LoRA requests')
    .option('--block-size <n>', 'tokens per block', '16')
    .option('--seed <seed>', "hash seed (llm-d's hashSeed; align with the engines' PYTHONHASHSEED)", '')
    .option('--algorithm <name>', `request-key algorithm: ${REQUEST_KEY_ALGORITHMS.join(' | ')}`, 'cbor-fnv')
    .option('--parent <u64>', 'continue the chain from this request key')
    .option('--extra-keys <json>', 'per-block extras as JSON, e.g. \'[["img-1"],null]\'')
    .option('--json', 'print the JSON document instead of a table (always on in JSON mode)')
    .action(async (flags: KeysFlags) => {
      if (flags.tokens === undefined) {
        writeJson(computeKeys(validate(KeysInput, await readJsonInput('keys'), 'keys')));
        return;
      }
      const tokens = tokenFlag(flags.tokens);
      const input = validate(
        KeysInput,
        {
          tokens,
          blockSize: Number(flags.blockSize),
          seed: flags.seed,
          model: flags.model,
          algorithm: flags.algorithm,
          parent: flags.parent ?? null,
          extraKeys: flags.extraKeys === undefined ? null : parseFlagJson('extra-keys', flags.extraKeys),
        },
        'keys',
      );
      const result = computeKeys(input);
      if (flags.json) {
        writeJson(result);
        return;
      }
      const lines = result.keys.map((k, i) => `${String(i).padStart(5)}  tokens ${String(i * input.blockSize).padStart(6)}..${String((i + 1) * input.blockSize - 1).padEnd(6)}  ${k}`);
      const dropped = input.tokens.length % input.blockSize;
      process.stdout.write(
        `${result.keys.length} request key(s), ${input.algorithm}, block size ${input.blockSize}, model ${JSON.stringify(input.model)}` +
          `${dropped ? ` (${dropped} trailing token(s) in a partial block are not keyed)` : ''}\n${lines.join('\n')}${lines.length ? '\n' : ''}`,
      );
    });
}
