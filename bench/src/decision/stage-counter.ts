/**
 * The precise decision's stages one after another on one thread, for counting their instructions
 * under callgrind (instruction counts repeat on a loaded machine where times do not). Run by the
 * decision benchmark's --instructions mode: for each stage it prints `STAGE <name>`, waits for a
 * line on stdin (the driver has switched instrumentation on), runs the stage over every measured
 * request, prints `DONE <name>` and waits again (the driver dumps the counts).
 */
import { createInterface } from 'node:readline';
import { RequestKeyHasher } from '@kvix/block-keys';
import { InMemoryIndex, scoreLookup, tierWeights, type LookupResult } from '@kvix/kv-index';
import { parseOpenAiBody } from '@kvix/scheduler';
import { PrefixScorer } from '@kvix/scoring';
import { LocalTokenizer, PrefixKeyCache, type ChatMessage, type PieceTrace } from '@kvix/tokenization';
import { pino } from 'pino';
import { Workload } from '../routing/workload.js';
import { charsFor } from '../text.js';
import { decisionWorkloadSpec } from './workload-spec.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const PODS = Array.from({ length: 8 }, (_, i) => `127.0.0.1:${18_000 + i}`);
const warm = Number(process.argv[2] ?? 1500);
const measured = Number(process.argv[3] ?? 200);

const tok = await LocalTokenizer.bundled(MODEL);
const workload = new Workload(decisionWorkloadSpec(charsFor(tok, 4000) / 4000));
// Each stage first runs over `measured` requests uninstrumented (its code compiled and optimised),
// then over `measured` more, counted.
const requests = Array.from({ length: warm + 2 * measured }, () => workload.next());
const hasher = new RequestKeyHasher({ blockSize: 16 });
const prefixKeys = new PrefixKeyCache();
const index = new InMemoryIndex({ sweepIntervalMs: 0, maxEntries: 8 * 2048 * 4 });
const scorer = new PrefixScorer({ index, hasher, weights: tierWeights({}), tokenizer: null, maxPromptTokens: 100_000, logger: pino({ level: 'silent' }) });

// The state the EPP would be in: earlier turns tokenized and keyed on its tokenizer thread, and
// each conversation's prompts held by one pod (its group's), as their events would have said.
for (const r of requests.slice(0, warm)) {
  const trace: PieceTrace = { fingerprints: [], ends: [] };
  const ids = tok.encodeChatIds(r.messages as ChatMessage[], undefined, trace);
  const keys = prefixKeys.keys(hasher, MODEL, null, ids, trace);
  await index.add(null, keys, [{ pod: PODS[r.group % PODS.length]!, tier: 'gpu', speculative: false }]);
}

const batch = requests.slice(warm);
const bodies = batch.map((r) => Buffer.from(JSON.stringify({ model: MODEL, messages: r.messages, max_tokens: r.maxTokens, stream: true })));
const texts: string[] = [];
const ids: Uint32Array[] = [];
const traces: PieceTrace[] = batch.map(() => ({ fingerprints: [], ends: [] }));
const keys: BigUint64Array[] = [];
const lookups: LookupResult[] = [];
const held: ReturnType<typeof scoreLookup>[] = [];

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function stage(name: string, work: (i: number) => unknown): Promise<void> {
  for (let i = 0; i < measured; i++) {
    const r = work(i);
    if (r instanceof Promise) await r;
  }
  console.log(`STAGE ${name}`);
  await lines.next();
  for (let i = measured; i < batch.length; i++) {
    const r = work(i);
    if (r instanceof Promise) await r;
  }
  console.log(`DONE ${name}`);
  await lines.next();
}

await stage('parse', (i) => parseOpenAiBody('/v1/chat/completions', bodies[i]!));
await stage('copy to thread', (i) => structuredClone({ kind: 'chat', messages: batch[i]!.messages }));
await stage('template', (i) => (texts[i] = tok.renderChat(batch[i]!.messages as ChatMessage[])));
await stage('encode, library alone', (i) => tok.encodeUncached(texts[i]!, { addSpecialTokens: false }));
await stage('encode', (i) => (ids[i] = tok.encodeIds(texts[i]!, { addSpecialTokens: false }, traces[i])));
await stage('hash, from scratch', (i) => hasher.keys(ids[i]!, MODEL));
await stage('hash, incremental', (i) => (keys[i] = prefixKeys.keys(hasher, MODEL, null, ids[i]!, traces[i]!)));
await stage('lookup', (i) => (lookups[i] = index.lookupSync(keys[i]!, { pods: PODS })));
await stage('prefix score', (i) => (held[i] = scoreLookup(lookups[i]!, keys[i]!.length, tierWeights({}), PODS)));
await stage('record decision', (i) => scorer.recordDecision({ model: MODEL, prompt: { kind: 'tokens', tokenIds: ids[i]! }, pod: held[i]![0]?.pod ?? PODS[0]!, requestKeys: keys[i]!, held: held[i]! }));
console.log('END');
process.exit(0);
