import { ENGINE_HASH_ALGORITHMS, ENGINE_HASH_FORMATS, EngineHasher, type EngineHashAlgorithm, type EngineHashFormat } from '@kvix/block-keys';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { readJsonInput, validate, writeJson } from '../io.js';
import { blockSize, placeholder, tokenFlag, tokenList } from '../schemas.js';

const HEX_ROW = /^(?:[0-9a-fA-F]{2})*$/;

const EngineHashInput = z.object({
  algorithm: z.enum(ENGINE_HASH_ALGORITHMS as [EngineHashAlgorithm, ...EngineHashAlgorithm[]]).default('sha256'),
  /** tagged: vLLM ≥ 0.33's extra keys; untagged: vLLM ≤ 0.32's. */
  hashFormat: z.enum(ENGINE_HASH_FORMATS as [EngineHashFormat, ...EngineHashFormat[]]).default('tagged'),
  seed: z.string({ error: "expected PYTHONHASHSEED as a string (null: unset, vLLM's rule for the algorithm)" }).nullable(),
  blockSize: blockSize.default(16),
  tokens: tokenList,
  loraName: z.string().nullable().default(null),
  loraPath: z.string().nullable().default(null),
  loraIntId: z.number().int().min(0).nullable().default(null),
  cacheSalt: z.string().nullable().default(null),
  mm: z.array(placeholder).nullable().default(null),
  numHashLookaheadTokens: z.number().int().min(0).max(1024).default(0),
  /** One hex string per token: the raw bytes of its prompt-embedding row. */
  promptEmbedsRowsHex: z.array(z.string().regex(HEX_ROW, 'expected an even-length hex string')).nullable().default(null),
});
type EngineHashInput = z.infer<typeof EngineHashInput>;

export function computeEngineHashes(input: EngineHashInput): { digests: string[]; blockHashes: string[] } {
  const hasher = new EngineHasher({
    algorithm: input.algorithm,
    pythonHashSeed: input.seed,
    blockSize: input.blockSize,
    hashFormat: input.hashFormat,
    numHashLookaheadTokens: input.numHashLookaheadTokens,
  });
  const result = hasher.hashBlocks(input.tokens, {
    loraName: input.loraName,
    loraPath: input.loraPath,
    loraIntId: input.loraIntId,
    cacheSalt: input.cacheSalt,
    multimodal: input.mm,
    promptEmbedsRows: input.promptEmbedsRowsHex?.map((h) => new Uint8Array(Buffer.from(h, 'hex'))) ?? null,
  });
  return {
    digests: result.digests.map((d) => Buffer.from(d).toString('hex')),
    blockHashes: Array.from(result.blockHashes, String),
  };
}

interface EngineHashFlags {
  tokens?: string;
  algorithm: string;
  hashFormat: string;
  seed?: string;
  blockSize: string;
  loraName?: string;
  loraPath?: string;
  lookahead?: string;
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
        '"hashFormat":"tagged"|"untagged","seed":"42"|null,"blockSize":16,"tokens":[…],"loraName":null,"loraPath":null,',
        '"loraIntId":null,"cacheSalt":null,"mm":[{"identifier":"…","offset":5,"length":20}]|null,',
        '"numHashLookaheadTokens":0,"promptEmbedsRowsHex":["<row bytes hex>",…]|null} on stdin and prints',
        '{"digests":["<hex>",…],"blockHashes":["<u64>",…]} (blockHashes: the 64-bit values events carry).',
        'hashFormat tagged (default) is vLLM >= 0.33 (("lora",name,path), ("mm",id,offset), ("cache_salt",s),',
        '("prompt_embeds",digest)); untagged is vLLM <= 0.32 (and the only format of sha256_cbor_64bit).',
        'seed null: PYTHONHASHSEED unset; tagged sha256/sha256_cbor then seed with "vllm-none-hash", the',
        'others with random bytes (nothing reproducible), as vLLM does.',
      ].join('\n'),
    )
    .option('--tokens <ids>', 'comma-separated token ids (switches to flag mode)')
    .option('--algorithm <name>', `--prefix-caching-hash-algo: ${ENGINE_HASH_ALGORITHMS.join(' | ')}`, 'sha256')
    .addOption(new Option('--hash-format <format>', 'extra keys as vLLM >= 0.33 (tagged) or <= 0.32 (untagged) hashes them').choices([...ENGINE_HASH_FORMATS]).default('tagged'))
    .option('--seed <PYTHONHASHSEED>', 'the engine PYTHONHASHSEED (omit: unset; tagged sha256* then use "vllm-none-hash", anything else a random NONE_HASH)')
    .option('--block-size <n>', 'engine block size', '16')
    .option('--lora-name <name>', 'LoRA adapter name')
    .option('--lora-path <path>', 'LoRA adapter path (hashed with the name in the tagged format)')
    .option('--lookahead <n>', "vLLM's num_hash_lookahead_tokens (EAGLE block-drop drafters)")
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
          hashFormat: flags.hashFormat,
          seed: flags.seed ?? null,
          blockSize: Number(flags.blockSize),
          tokens: tokenFlag(flags.tokens),
          loraName: flags.loraName ?? null,
          loraPath: flags.loraPath ?? null,
          numHashLookaheadTokens: flags.lookahead === undefined ? 0 : Number(flags.lookahead),
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
      const unset = input.seed === null ? (input.hashFormat === 'tagged' && input.algorithm.startsWith('sha256') ? ', PYTHONHASHSEED unset ("vllm-none-hash")' : ', PYTHONHASHSEED unset (random NONE_HASH)') : '';
      process.stdout.write(`${rows.length} block(s), ${input.algorithm} (${input.hashFormat}), block size ${input.blockSize}${unset}\n${rows.join('\n')}${rows.length ? '\n' : ''}`);
    });
}
