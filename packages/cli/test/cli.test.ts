import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readVectorJson } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';
import { computeEngineHashes, computeKeys, decodeToJson, payloadFromText } from '../src/index.js';

const BIN = fileURLToPath(new URL('../bin/kvix.js', import.meta.url));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

// Each run is a Node start-up (about a second on a loaded 2-core machine, more under a CPU hog):
// the vectors are checked in process, and the binary's contract once per behaviour. The timeout is
// only a guard against a hung child (spawnSync blocks the test's own timer).
function kvix(args: string[], stdin?: string): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], { input: stdin ?? '', encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function json(r: Run): unknown {
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]!) as unknown;
}

function badInput(r: Run, pattern: RegExp): void {
  expect(r.status).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
}

const requestKeys = readVectorJson('request-keys.json') as {
  cases: { model: string; seed: string; blockSize: number; tokens: number[]; extraKeys: unknown; keys: string[] }[];
};
const engineCases = (readVectorJson('vllm-engine-hashes.json') as {
  cases: { algo: string; seed: string; block_size: number; token_ids: number[]; lora_name?: string; lora_int_id?: number; cache_salt?: string; mm?: unknown; blocks: { digest_hex: string; wire_int_hex: string }[] }[];
}).cases;
const vllm034Hashes = (readVectorJson('vllm-0.34-engine-hashes.json') as {
  cases: {
    name: string;
    algorithm: string;
    pythonhashseed: string | null;
    reproducible: boolean;
    block_size: number;
    tokens: number[];
    lora: { name: string; path: string } | null;
    cache_salt: string | null;
    mm: unknown;
    num_hash_lookahead_tokens: number;
    prompt_embeds_rows_hex: string[] | null;
    expected: { digests: string[]; block_hashes: string[] };
  }[];
}).cases;
const frames = (readVectorJson('vllm-event-frames.json') as { frames: { payload_hex: string; decoded_generic_msgpack: unknown[] }[] }).frames;

describe('kvix keys (JSON contract)', () => {
  it('reproduces every shared request-key vector, and the first from stdin JSON through the binary', () => {
    for (const c of requestKeys.cases) {
      expect(computeKeys({ tokens: c.tokens, blockSize: c.blockSize, seed: c.seed, model: c.model, extraKeys: c.extraKeys as never, parent: null, algorithm: 'cbor-fnv' })).toEqual({ keys: c.keys });
    }
    const c = requestKeys.cases[0]!;
    expect(json(kvix(['keys'], JSON.stringify({ tokens: c.tokens, blockSize: c.blockSize, seed: c.seed, model: c.model, extraKeys: c.extraKeys, parent: null, algorithm: 'cbor-fnv' })))).toEqual({ keys: c.keys });
  });

  it('continues a chain from a decimal-string parent', () => {
    const tokens = Array.from({ length: 32 }, (_, i) => i + 1);
    const all = json(kvix(['keys'], JSON.stringify({ tokens, blockSize: 16, seed: '', model: 'm', extraKeys: null, parent: null, algorithm: 'cbor-fnv' }))) as { keys: string[] };
    const tail = json(kvix(['keys'], JSON.stringify({ tokens: tokens.slice(16), blockSize: 16, seed: '', model: 'm', extraKeys: null, parent: all.keys[0], algorithm: 'cbor-fnv' })));
    expect(tail).toEqual({ keys: [all.keys[1]] });
  });

  it('answers bad input with exit 2 and one line on stderr', () => {
    badInput(kvix(['keys'], '{"tokens":[1,2.5],"model":"m"}'), /tokens\.1/);
    badInput(kvix(['keys'], '{"tokens":[1],"model":"m","blockSize":0}'), /blockSize/);
    badInput(kvix(['keys'], '{"tokens":[1],"model":"m","algorithm":"md5"}'), /algorithm/);
    badInput(kvix(['keys'], '{"tokens":[1],"model":"m","parent":"-1"}'), /parent/);
    badInput(kvix(['keys'], '{"tokens":[1,2,3,4],"model":"m","blockSize":2,"extraKeys":[null]}'), /extraKeys has 1 entries/);
    badInput(kvix(['keys'], '{"tokens":[1]}'), /model/);
    badInput(kvix(['keys'], '[1,2'), /not valid JSON/);
    badInput(kvix(['keys'], ''), /empty/);
    // A mistake only the hashing library can see still names the command.
    badInput(kvix(['engine-hash'], '{"algorithm":"sha256","seed":"0","tokens":[1,2],"blockSize":2,"loraIntId":3}'), /^engine-hash: sha256 keys LoRA adapters by name/);
  });

  it('offers flags for humans, with --json for the same document', () => {
    const r = kvix(['keys', '--tokens', '1,2,3,4,5', '--block-size', '4', '--model', 'm']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/1 request key\(s\).*1 trailing token/);
    expect(json(kvix(['keys', '--tokens', '1,2,3,4', '--block-size', '4', '--model', 'm', '--json']))).toEqual(
      json(kvix(['keys'], '{"tokens":[1,2,3,4],"blockSize":4,"model":"m"}')),
    );
  });

  it('refuses a stray comma in --tokens instead of keying a token 0', () => {
    badInput(kvix(['keys', '--tokens', '1,2,3,', '--block-size', '2', '--model', 'm', '--json']), /tokens\.3/);
    badInput(kvix(['keys', '--tokens', '1,,2,3', '--block-size', '2', '--model', 'm']), /tokens\.1/);
    badInput(kvix(['engine-hash', '--tokens', '1,2,0x3,4', '--block-size', '2', '--seed', '0']), /tokens\.2/);
  });
});

describe('kvix engine-hash (JSON contract)', () => {
  it('reproduces every shared vLLM engine-hash vector, and one with a LoRA adapter through the binary', () => {
    const inputOf = (c: (typeof engineCases)[number]) => ({ algorithm: c.algo, hashFormat: 'untagged', seed: c.seed, blockSize: c.block_size, tokens: c.token_ids, loraName: c.lora_name ?? null, loraIntId: c.lora_int_id ?? null, cacheSalt: c.cache_salt ?? null, mm: c.mm ?? null });
    for (const c of engineCases) {
      const out = computeEngineHashes(inputOf(c) as never);
      expect(out.digests).toEqual(c.blocks.map((b) => b.digest_hex));
      expect(out.blockHashes).toEqual(c.blocks.map((b) => BigInt(`0x${b.wire_int_hex}`).toString()));
    }
    const c = engineCases.find((e) => e.lora_name !== undefined) ?? engineCases[0]!;
    const out = json(kvix(['engine-hash'], JSON.stringify(inputOf(c)))) as { digests: string[]; blockHashes: string[] };
    expect(out.digests).toEqual(c.blocks.map((b) => b.digest_hex));
  });

  it('reproduces every reproducible vLLM 0.34 vector (tagged extras, LoRA path, lookahead, prompt embeds, unset seed)', () => {
    const cases = vllm034Hashes.filter((c) => c.reproducible);
    expect(cases.length).toBeGreaterThan(0);
    for (const c of cases) {
      const input = {
        algorithm: c.algorithm,
        seed: c.pythonhashseed,
        blockSize: c.block_size,
        tokens: c.tokens,
        loraName: c.lora?.name ?? null,
        loraPath: c.lora?.path ?? null,
        cacheSalt: c.cache_salt,
        mm: c.mm,
        numHashLookaheadTokens: c.num_hash_lookahead_tokens,
        promptEmbedsRowsHex: c.prompt_embeds_rows_hex,
      };
      const out = json(kvix(['engine-hash'], JSON.stringify(input))) as { digests: string[]; blockHashes: string[] };
      expect(out, c.name).toEqual({ digests: c.expected.digests, blockHashes: c.expected.block_hashes });
    }
  });

  it('takes --hash-format, --lora-path and --lookahead on the command line', () => {
    const c = vllm034Hashes.find((v) => v.name === 'sha256-seed0-lora')!;
    const tokens = c.tokens.join(',');
    const tagged = json(kvix(['engine-hash', '--tokens', tokens, '--seed', '0', '--lora-name', c.lora!.name, '--lora-path', c.lora!.path, '--json'])) as { blockHashes: string[] };
    expect(tagged.blockHashes).toEqual(c.expected.block_hashes);
    const untagged = json(kvix(['engine-hash', '--tokens', tokens, '--seed', '0', '--lora-name', c.lora!.name, '--hash-format', 'untagged', '--json'])) as { blockHashes: string[] };
    expect(untagged.blockHashes).not.toEqual(c.expected.block_hashes);
    const look = vllm034Hashes.find((v) => v.name === 'sha256-seed0-lookahead1')!;
    expect((json(kvix(['engine-hash', '--tokens', look.tokens.join(','), '--seed', '0', '--lookahead', '1', '--json'])) as { blockHashes: string[] }).blockHashes).toEqual(look.expected.block_hashes);
    badInput(kvix(['engine-hash', '--tokens', tokens, '--seed', '0', '--lora-name', 'x']), /loraPath/);
  });

  it('hashes an engine block whose pickle spans several frames like CPython', () => {
    // sha256(pickle.dumps((NONE_HASH, tuple(tokens), None), protocol=5)) under CPython 3.11, PYTHONHASHSEED=0
    const tokens = Array.from({ length: 9359 }, (_, i) => 2 ** 31 + i);
    const out = json(kvix(['engine-hash'], JSON.stringify({ algorithm: 'sha256', hashFormat: 'untagged', seed: '0', blockSize: tokens.length, tokens }))) as { digests: string[] };
    expect(out.digests).toEqual(['cff7e03507bd259b1e7e59afc26bd68e2e13c34fcb9d7e6c13451b90ecda3f94']);
  });

  it('rejects an unknown algorithm and a LoRA id where a name is needed', () => {
    badInput(kvix(['engine-hash'], '{"algorithm":"md5","seed":"0","blockSize":16,"tokens":[]}'), /algorithm/);
    badInput(kvix(['engine-hash'], '{"algorithm":"sha256","seed":"0","blockSize":4,"tokens":[1,2,3,4],"loraIntId":1}'), /loraName/);
  });
});

describe('kvix decode (JSON contract)', () => {
  it("shows vLLM 0.34's and SGLang's new fields, the raw medium and its tier", () => {
    const v034 = (readVectorJson('vllm-0.34-event-frames.json') as { frames: { name: string; payload_hex: string }[] }).frames;
    const hexOf = (name: string): string => v034.find((f) => f.name === name)!.payload_hex;
    const look = json(kvix(['decode'], hexOf('gpu-store-lookahead-session'))) as { events: Record<string, unknown>[] };
    expect(look.events[0]).toMatchObject({ sessionId: 'sess-1', lookaheadTokenIds: [[46200], [134942], [3546]], locality: null, ownership: null, medium: 'GPU', tier: 'gpu' });
    const offload = json(kvix(['decode'], hexOf('offload-cpu-self-describing'))) as { events: Record<string, unknown>[] };
    expect(offload.events[0]).toMatchObject({ medium: 'CPU', locality: 'LOCAL', tier: 'cpu', groupIdx: 0 });
    const sgl = (readVectorJson('sglang-0.5-event-frames.json') as { frames: { name: string; payload_hex: string }[] }).frames;
    const media = json(kvix(['decode'], sgl.find((f) => f.name === 'sgl-host-disk-external')!.payload_hex)) as { events: Record<string, unknown>[] };
    expect(media.events.map((e) => [e['medium'], e['tier']])).toEqual([
      ['CPU_PINNED', 'cpu'],
      ['DISK', 'disk'],
      ['EXTERNAL', 'storage'],
    ]);
    expect(media.events[0]).toMatchObject({ cacheSalt: null, sessionId: null, dialect: 'sglang', signedHashes: true, blockHashes: ['12109861645476063305'] });
  });

  it('decodes every shared frame, hashes as decimal strings and medium as sent', () => {
    for (const f of frames) {
      const out = decodeToJson(payloadFromText(f.payload_hex)) as { ts: number; events: { type: string; medium?: string; blockHashes?: string[] }[]; skipped: unknown[] };
      expect(out.ts).toBe(f.decoded_generic_msgpack[0]);
      expect(out.skipped).toEqual([]);
      expect(out.events).toHaveLength((f.decoded_generic_msgpack[1] as unknown[]).length);
    }
    const gpu = json(kvix(['decode'], frames[0]!.payload_hex)) as { events: Record<string, unknown>[]; dataParallelRank: number };
    expect(gpu.dataParallelRank).toBe(0);
    expect(gpu.events[0]).toMatchObject({
      type: 'BlockStored',
      blockHashes: ['14537094852817982454', '9094986465986795369', '6015834529286362151'],
      parentBlockHash: null,
      blockSize: 16,
      loraId: null,
      medium: 'GPU',
      loraName: null,
      extraKeys: [null, null, null],
      groupIdx: 0,
      kvCacheSpecKind: 'full_attention',
      kvCacheSpecSlidingWindow: null,
    });
  });

  it('accepts the payload as --hex, a JSON string, or a raw file; JSON from stdin or with --json, a table from flags', async () => {
    const hex = frames[2]!.payload_hex;
    const expected = json(kvix(['decode'], hex));
    expect(json(kvix(['decode', '--hex', hex, '--json']))).toEqual(expected);
    expect(json(kvix(['decode'], JSON.stringify(hex)))).toEqual(expected);
    const table = kvix(['decode', '--hex', frames[0]!.payload_hex]);
    expect(table.status).toBe(0);
    expect(table.stdout).toMatch(/^\d+ event\(s\), ts [\d.]+ \(\d{4}-\d\d-\d\dT[^)]*\), data-parallel rank 0\n/);
    expect(table.stdout).toMatch(/\n {4}0 {2}BlockStored {5}GPU {3}3 block\(s\) of 16, 48 token\(s\), no parent, group 0\n {7}hashes 14537094852817982454 9094986465986795369 6015834529286362151\n/);
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'kvix-')), 'payload.bin');
    writeFileSync(file, Buffer.from(hex, 'hex'));
    expect(json(kvix(['decode', '--file', file, '--json']))).toEqual(expected);
  });

  it('reports a skipped event and still returns the others', () => {
    // [1.0, [["Bogus"], ["AllBlocksCleared"]], 0]
    const out = json(kvix(['decode'], '93cb3ff00000000000009291a5426f67757391b0416c6c426c6f636b73436c656172656400'));
    expect(out).toEqual({ ts: 1, dataParallelRank: 0, events: [{ type: 'AllBlocksCleared' }], skipped: [{ index: 0, reason: 'unknown event type "Bogus"' }] });
  });

  it('answers a malformed batch or non-hex input with exit 2 and one line', () => {
    badInput(kvix(['decode'], '93cb41'), /TRUNCATED/);
    badInput(kvix(['decode'], 'zz'), /hex/);
    badInput(kvix(['decode'], 'a5'), /not a|NOT_A_BATCH/);
    badInput(kvix(['decode', '--file', '/nonexistent/payload.bin']), /ENOENT/);
    // [1.0, [["BlockRemoved", <array32 claiming 2^32-1 hashes>]]]: truncated, not an internal error
    badInput(kvix(['decode'], '93cb3ff0000000000000 91 92 ac426c6f636b52656d6f766564 ddffffffff'.replace(/ /g, '')), /TRUNCATED/);
  });
});

describe('kvix help', () => {
  it.each([['--help'], ['keys', '--help'], ['engine-hash', '--help'], ['decode', '--help']])('prints usage for %s and exits 0', (...args) => {
    const r = kvix(args);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: kvix/);
  });

  it('treats an unknown option as bad input: exit 2, one line naming the command', () => {
    badInput(kvix(['keys', '--bogus']), /^kvix keys: unknown option '--bogus'/);
    badInput(kvix(['decode', '--jsn']), /^kvix decode: unknown option '--jsn' \(Did you mean --json\?\)/);
  });
});
