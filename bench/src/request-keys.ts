import { RequestKeyHasher } from '@kvix/block-keys';
import { encode as cborEncode } from 'cbor2';
import { measure, printTable, rng, si, writeResult } from './harness.js';

const PROMPT_TOKENS = 8192;
const GOAL_TOKENS_PER_SEC = 40e6;

/** The obvious implementation: a generic CBOR library and BigInt FNV-1a. */
function baselineKeys(tokens: number[], blockSize: number, root: bigint): bigint[] {
  const prime = 0x100000001b3n;
  const mask = (1n << 64n) - 1n;
  const keys: bigint[] = [];
  let parent = root;
  for (let b = 0; b + blockSize <= tokens.length; b += blockSize) {
    const bytes = cborEncode([parent, tokens.slice(b, b + blockSize), null], { cde: true });
    let h = 0xcbf29ce484222325n;
    for (const byte of bytes) h = ((h ^ BigInt(byte)) * prime) & mask;
    keys.push(h);
    parent = h;
  }
  return keys;
}

export function run(): void {
  const next = rng(7);
  // Realistic ids: most of a 150k vocabulary needs 3–5 CBOR bytes.
  const tokens = Array.from({ length: PROMPT_TOKENS }, () => Math.floor(next() * 151_000));
  const tokenArray = Uint32Array.from(tokens);
  const rows: (string | number)[][] = [];
  const metrics: Record<string, number> = {};

  for (const blockSize of [16, 64]) {
    const cbor = new RequestKeyHasher({ blockSize, algorithm: 'cbor-fnv' });
    const xxh = new RequestKeyHasher({ blockSize, algorithm: 'xxh64' });
    const root = cbor.rootKey('Qwen/Qwen3-32B');
    const expected = baselineKeys(tokens, blockSize, root);
    const got = cbor.keys(tokenArray, 'Qwen/Qwen3-32B');
    if (expected.some((k, i) => k !== got[i])) throw new Error('cbor-fnv keys disagree with the baseline');

    const fast = measure(() => cbor.keys(tokenArray, 'Qwen/Qwen3-32B'), PROMPT_TOKENS);
    const fastXxh = measure(() => xxh.keys(tokenArray, 'Qwen/Qwen3-32B'), PROMPT_TOKENS);
    const base = measure(() => baselineKeys(tokens, blockSize, root), PROMPT_TOKENS, { repetitions: 3, roundMs: 300 });
    const ratio = fast.median / base.median;
    rows.push([`cbor-fnv  block ${blockSize}`, si(fast.median), `${si(fast.min)}–${si(fast.max)}`, si(base.median), `${ratio.toFixed(0)}×`]);
    rows.push([`xxh64     block ${blockSize}`, si(fastXxh.median), `${si(fastXxh.min)}–${si(fastXxh.max)}`, '', '']);
    metrics[`cborFnvTokensPerSec_bs${blockSize}`] = fast.median;
    metrics[`xxh64TokensPerSec_bs${blockSize}`] = fastXxh.median;
    metrics[`baselineTokensPerSec_bs${blockSize}`] = base.median;
    metrics[`cborFnvVsBaseline_bs${blockSize}`] = ratio;
  }

  printTable(
    `request keys: ${PROMPT_TOKENS}-token prompt, one core (tokens/s; goal cbor-fnv block 64 ≥ ${si(GOAL_TOKENS_PER_SEC)})`,
    ['algorithm', 'median', 'spread', 'baseline (cbor2 + BigInt FNV)', 'ratio'],
    rows,
  );
  const goalMet = (metrics['cborFnvTokensPerSec_bs64'] ?? 0) >= GOAL_TOKENS_PER_SEC;
  console.log(`goal ≥ ${si(GOAL_TOKENS_PER_SEC)} tokens/s (cbor-fnv, block 64): ${goalMet ? 'met' : 'NOT met'}`);
  writeResult('request-keys', { unit: 'tokens/s', promptTokens: PROMPT_TOKENS, goal: { cborFnvTokensPerSec_bs64: GOAL_TOKENS_PER_SEC }, goalMet, metrics });
}
