import { ENGINE_HASH_ALGORITHMS, EngineHasher, type EngineHashAlgorithm } from '@kvix/block-keys';
import type { Command } from 'commander';
import { z } from 'zod';
import { readJsonInput, validate, writeJson } from '../io.js';
import { blockSize, placeholder, tokenFlag, tokenList } from '../schemas.js';

const EngineHashInput = z.object({
  algorithm: z.enum(ENGINE_HASH_ALGORITHMS as [EngineHashAlgorithm, ...EngineHashAlgorithm[]]).default('sha256'),
  seed: z.string({ error: 'expected PYTHONHASHSEED as a string (null: unset, random)' }).nullable(),
  blockSize: blockSize.default(16),
  tokens: tokenList,
  loraName: z.string().nullable().default(null),
  loraIntId: z.number().int().min(0).nullable().default(null),
  cacheSalt: z.string().nullable().default(null),
  mm: z.array(placeholder).nullable().default(null),
});
type EngineHashInput = z.infer<typeof EngineHashInput>;

export function computeEngineHashes(input: EngineHashInput): { digests: string[]; blockHashes: string[] } {
  const hasher = new EngineHasher({ algorithm: input.algorithm, pythonHashSeed: input.seed, blockSize: input.blockSize });
  const result = hasher.hashBlocks(input.tokens, {
    loraName: input.loraName,
    loraIntId: input.loraIntId,
    cacheSalt: input.cacheSalt,
    multimodal: input.mm,
  });
  return {
    digests: result.digests.map((d) => Buffer.from(d).toString('hex')),
    blockHashes: Array.from(result.blockHashes, String),
  };
}

interface EngineHashFlags {
  tokens?: string;
  algorithm: string;
  seed?: string;
  blockSize: string;
  loraName?: string;
  loraIntId?: string;
  cacheSalt?: string;
  json?: boolean;
}

export function registerEngineHash(program: Command): void {
  program
    .command('engine-hash')
    .summary("compute vLLM's own block hashes (what engines put in KV events)")
    .description(
      [
        "Computes vLLM's prefix-cache block hashes for a prompt, to compare with an engine's events.",
        '',
        'JSON mode (no flags): reads {"algorithm":"sha256"|"sha256_cbor"|"xxhash"|"xxhash_cbor"|"sha256_cbor_64bit",',
        '"seed":"42","blockSize":16,"tokens":[…],"loraName":null,"loraIntId":null,"cacheSalt":null,',
        '"mm":[{"identifier":"…","offset":5,"length":20}]|null} on stdin and prints',
        '{"digests":["<hex>",…],"blockHashes":["<u64>",…]} (blockHashes: the 64-bit values events carry).',
      ].join('\n'),
    )
    .option('--tokens <ids>', 'comma-separated token ids (switches to flag mode)')
    .option('--algorithm <name>', `--prefix-caching-hash-algo: ${ENGINE_HASH_ALGORITHMS.join(' | ')}`, 'sha256')
    .option('--seed <PYTHONHASHSEED>', 'the engine PYTHONHASHSEED (omit: unset, so NONE_HASH is random; newer vLLM with it unset hashes as if it were "vllm-none-hash" for the sha256 algorithms)')
    .option('--block-size <n>', 'engine block size', '16')
    .option('--lora-name <name>', 'LoRA adapter name')
    .option('--lora-int-id <n>', 'LoRA integer id (sha256_cbor_64bit only)')
    .option('--cache-salt <salt>', 'cache_salt of the request')
    .option('--json', 'print the JSON document instead of a table')
    .action(async (flags: EngineHashFlags) => {
      if (flags.tokens === undefined) {
        writeJson(computeEngineHashes(validate(EngineHashInput, await readJsonInput('engine-hash'), 'engine-hash')));
        return;
      }
      const input = validate(
        EngineHashInput,
        {
          algorithm: flags.algorithm,
          seed: flags.seed ?? null,
          blockSize: Number(flags.blockSize),
          tokens: tokenFlag(flags.tokens),
          loraName: flags.loraName ?? null,
          loraIntId: flags.loraIntId === undefined ? null : Number(flags.loraIntId),
          cacheSalt: flags.cacheSalt ?? null,
        },
        'engine-hash',
      );
      const result = computeEngineHashes(input);
      if (flags.json) {
        writeJson(result);
        return;
      }
      const rows = result.blockHashes.map((h, i) => `${String(i).padStart(5)}  ${h.padStart(20)}  ${result.digests[i]!}`);
      process.stdout.write(`${rows.length} block(s), ${input.algorithm}, block size ${input.blockSize}${input.seed === null ? ', PYTHONHASHSEED unset (random NONE_HASH)' : ''}\n${rows.join('\n')}${rows.length ? '\n' : ''}`);
    });
}
