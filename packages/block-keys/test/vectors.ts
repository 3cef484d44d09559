import { readFileSync } from 'node:fs';
import { parseJsonExact, readVectorJson } from '@kvix/test-support';

export interface SharedRequestKeyCase {
  id: string;
  model: string;
  seed: string;
  blockSize: number;
  tokens: number[];
  extraKeys: (string[] | null)[] | null;
  keys: string[];
}

export interface SharedRequestKeys {
  cases: SharedRequestKeyCase[];
  root_example: { seed: string; model: string; cbor_hex: string; root: string };
}

export interface SharedEngineBlock {
  index: number;
  extra_keys: unknown[] | null;
  digest_hex: string;
  wire_int_hex: string;
  serialized_input_hex?: string;
}

export interface SharedEngineCase {
  id: string;
  algo: string;
  seed: string;
  block_size: number;
  token_ids: number[];
  lora_name?: string;
  lora_int_id?: number;
  cache_salt?: string;
  mm?: { identifier: string; offset: number; length: number }[];
  none_hash_hex: string;
  none_hash_input_hex: string;
  blocks: SharedEngineBlock[];
}

export interface GeneratedEngineCase {
  id: string;
  algorithm: string;
  seed: string;
  blockSize: number;
  tokens: number[];
  loraName: string | null;
  loraIntId: number | null;
  cacheSalt: string | null;
  mm: { identifier: string; offset: number; length: number }[] | null;
  noneHashHex: string;
  digests: string[];
  blockHashes: string[];
}

export interface GeneratedRequestCase {
  id: string;
  algorithm: 'cbor-fnv' | 'xxh64';
  seed: string;
  blockSize: number;
  model: string;
  tokens: number[];
  extraKeys: (string[] | null)[] | null;
  parent: string | null;
  root: string;
  keys: string[];
}

export const sharedRequestKeys = readVectorJson('request-keys.json') as SharedRequestKeys;
export const sharedEngineCases = (readVectorJson('vllm-engine-hashes.json') as { cases: SharedEngineCase[] }).cases;

/** Produced by tools/vectors/generate_block_key_fixtures.py with CPython's pickle, cbor2 and xxhash. */
export const generated = parseJsonExact(readFileSync(new URL('./fixtures/generated.json', import.meta.url), 'utf8')) as {
  engineHashes: GeneratedEngineCase[];
  requestKeys: GeneratedRequestCase[];
};

export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
export const decimals = (keys: BigUint64Array): string[] => Array.from(keys, String);
