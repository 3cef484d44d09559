import { Worker } from 'node:worker_threads';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { Indexer, IndexerConfigSchema } from '@kvix/indexer';
import { loadKvixIndexer, type KvixIndexerHandlers, type ScoreRequest } from '@kvix/proto';
import { LocalTokenizer, type ChatMessage } from '@kvix/tokenization';
import { pino } from 'pino';
import { printTable, si, writeResult } from '../harness.js';
import { charsFor, prose } from '../text.js';
import type { ClientWorkerData, FromClient, ToClient } from './client-worker.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const PODS = 32;
const SYSTEM_PROMPTS = 16;
const CONVERSATIONS = 64;
/** Distinct final user messages per conversation (none repeats, so no result-cache hits). */
const VARIANTS = 12;
const PROMPT_TOKENS = 8192;
const RATE = 200;

interface Workload {
  /** Per request: the chat messages and their token ids. */
  requests: { messages: ChatMessage[]; tokens: number[]; conversation: number }[];
  /** Untimed first turn of each conversation: what makes its history familiar. */
  warmups: ChatMessage[][];
}

/**
 * Multi-turn chat, as precise routing sees it: 16 system prompts (~600 tokens), 64 conversations
 * whose history has grown to ~8k tokens, and each scored request adds a new user message (~200
 * tokens) to a history the service has seen before.
 */
function buildWorkload(tok: LocalTokenizer): Workload {
  const systemChars = charsFor(tok, 600);
  const turnChars = { user: charsFor(tok, 150), assistant: charsFor(tok, 250), last: charsFor(tok, 200) };
  const requests: Workload['requests'] = [];
  const warmups: ChatMessage[][] = [];
  for (let c = 0; c < CONVERSATIONS; c++) {
    const history: ChatMessage[] = [{ role: 'system', content: prose(1_000 + (c % SYSTEM_PROMPTS), systemChars) }];
    let seed = 10_000 * (c + 1);
    // Grow the conversation to the target length, leaving room for the final user message.
    while (tok.encodeChat(history).length < PROMPT_TOKENS - 650) {
      history.push({ role: 'user', content: prose(seed++, turnChars.user) }, { role: 'assistant', content: prose(seed++, turnChars.assistant) });
    }
    warmups.push([...history, { role: 'user', content: prose(seed++, turnChars.last) }]);
    for (let v = 0; v < VARIANTS; v++) {
      const messages = [...history, { role: 'user', content: prose(seed++, turnChars.last) }];
      requests.push({ messages, tokens: tok.encodeChat(messages), conversation: c });
    }
  }
  // Interleave conversations, as concurrent users would arrive.
  requests.sort((a, b) => (a.tokens.length % 7) - (b.tokens.length % 7) || a.conversation - b.conversation);
  return { requests, warmups };
}

function pct(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

interface RunFigures {
  requests: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  perSec: number;
}

function summarize(r: Extract<FromClient, { type: 'done' }>): RunFigures {
  if (r.firstError !== null) throw new Error(`scoring requests failed (${r.errors}): ${r.firstError}`);
  const sorted = [...r.latenciesMs].sort((a, b) => a - b);
  return { requests: sorted.length, errors: r.errors, p50Ms: pct(sorted, 0.5), p99Ms: pct(sorted, 0.99), maxMs: sorted.at(-1) ?? Number.NaN, perSec: sorted.length / r.seconds };
}

export async function runScoringBenchmark({ quick = false } = {}): Promise<void> {
  const seconds = quick ? 2 : 5;
  const tok = await LocalTokenizer.bundled(MODEL);
  const workload = buildWorkload(tok);
  const meanTokens = workload.requests.reduce((a, r) => a + r.tokens.length, 0) / workload.requests.length;

  const config = IndexerConfigSchema.parse({
    logLevel: 'warn',
    http: { host: '127.0.0.1', port: 0 },
    grpc: { host: '127.0.0.1', port: 0 },
    // Every scored prompt is new: measure tokenization, not the result cache.
    tokenization: { workers: 1, cacheBytes: 0 },
  });
  const indexer = await Indexer.start(config, pino({ level: 'warn' }));
  const pods = Array.from({ length: PODS }, (_, i) => `10.0.${i >> 4}.${i & 15}:8000`);
  // Each conversation's history lives on one pod; its system prompt on that pod and 7 others.
  const { hasher } = indexer.stack;
  for (const r of workload.requests.filter((_, i) => i % VARIANTS === 0)) {
    const keys = hasher.keys(r.tokens, MODEL);
    const home = r.conversation % PODS;
    await indexer.stack.index.add(null, keys.subarray(0, keys.length - 13), [{ pod: pods[home]!, tier: 'gpu', speculative: false }]);
    for (let k = 1; k < 8; k++) await indexer.stack.index.add(null, keys.subarray(0, 36), [{ pod: pods[(home + k * 4) % PODS]!, tier: k % 2 ? 'gpu' : 'cpu', speculative: false }]);
  }

  // In-process: the same scoring without gRPC (what the service itself costs).
  const timeInProcess = async (count: number, score: (i: number) => Promise<unknown>): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < count + 50; i++) {
      const t0 = performance.now();
      await score(i);
      if (i >= 50) out.push(performance.now() - t0);
    }
    return out.sort((a, b) => a - b);
  };
  const reqAt = (i: number) => workload.requests[i % workload.requests.length]!;
  const inProcessTokens = await timeInProcess(600, (i) => indexer.scorer.score({ model: MODEL, prompt: { kind: 'tokens', tokenIds: reqAt(i).tokens } }));

  // The baseline every gRPC figure is read against: a server that answers Score without doing
  // anything, sent the same messages by the same client (transport, protobuf and thread wake-ups).
  const echo = new Server();
  const kvix = loadKvixIndexer().kvix.indexer.v1;
  const echoHandlers: KvixIndexerHandlers = {
    Score: (_call, cb) => cb(null, { scores: [{ pod: pods[0]!, score: 1, normalized: 1, matchedBlocks: 1, tiers: { gpu: 1 }, known: true }], totalBlocks: 1 }),
    GetStats: (_call, cb) => cb(null, {}),
    RecordRoutingDecision: (_call, cb) => cb(null, {}),
    DumpPod: (_call, cb) => cb(null, {}),
  };
  echo.addService(kvix.KvixIndexer.service, echoHandlers);
  const echoPort = await new Promise<number>((resolve, reject) => echo.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));

  const run = async (target: string, requests: ScoreRequest[], plan: Exclude<ToClient, { type: 'stop' }>[]): Promise<RunFigures[]> => {
    const worker = new Worker(new URL('./client-worker.js', import.meta.url), { workerData: { target, requests } satisfies ClientWorkerData });
    const replies: ((m: FromClient) => void)[] = [];
    worker.on('message', (m: FromClient) => replies.shift()?.(m));
    const next = (): Promise<FromClient> => new Promise((resolve) => replies.push(resolve));
    const ready = await next();
    if (ready.type !== 'ready') throw new Error(`client could not connect: ${ready.firstError}`);
    const out: RunFigures[] = [];
    for (const step of plan) {
      const reply = next();
      worker.postMessage(step);
      out.push(summarize((await reply) as Extract<FromClient, { type: 'done' }>));
    }
    worker.postMessage({ type: 'stop' } satisfies ToClient);
    await worker.terminate();
    return out;
  };
  const plan: Exclude<ToClient, { type: 'stop' }>[] = [
    { type: 'open-loop', ratePerSec: 20, seconds: 1 }, // warm-up
    { type: 'open-loop', ratePerSec: RATE, seconds },
    { type: 'closed-loop', concurrency: 16, seconds: quick ? 2 : 3 },
  ];
  const kvixTarget = `127.0.0.1:${indexer.grpcPort}`;
  const echoTarget = `127.0.0.1:${echoPort}`;
  const byTokens: ScoreRequest[] = workload.requests.map((r) => ({ prompt: { model: MODEL, tokenIds: { ids: r.tokens } } }));
  const [, tokensAtRate, tokensSaturated] = await run(kvixTarget, byTokens, plan);
  const [, tokensEcho] = await run(echoTarget, byTokens, plan.slice(0, 2));

  // Conversations seen before: their first turn is scored once, untimed.
  const chat = (messages: ChatMessage[]): ScoreRequest => ({ prompt: { model: MODEL, chat: { messagesJson: JSON.stringify(messages) } } });
  await run(kvixTarget, workload.warmups.map(chat), [{ type: 'closed-loop', concurrency: 2, seconds: quick ? 2 : 4 }]);
  const byChat = workload.requests.map((r) => chat(r.messages));
  const [, chatAtRate, chatSaturated] = await run(kvixTarget, byChat, plan);
  const [, chatEcho] = await run(echoTarget, byChat, plan.slice(0, 2));
  const inProcessChat = await timeInProcess(Math.min(400, workload.requests.length), (i) => indexer.scorer.score({ model: MODEL, prompt: { kind: 'chat', messages: reqAt(i + 7).messages } }));
  echo.forceShutdown();
  await indexer.stop();

  const ms = (v: number): string => v.toFixed(2);
  const row = (name: string, inProc: number[], at: RunFigures, base: RunFigures, sat: RunFigures, goal: string): (string | number)[] => [
    name,
    `${ms(pct(inProc, 0.5))} / ${ms(pct(inProc, 0.99))}`,
    `${ms(at.p50Ms)} / ${ms(at.p99Ms)}`,
    `${ms(base.p50Ms)} / ${ms(base.p99Ms)}`,
    `${ms(at.p50Ms - base.p50Ms)} / ${ms(at.p99Ms - base.p99Ms)}`,
    si(sat.perSec),
    goal,
  ];
  printTable(
    `scoring — kvix.indexer.v1 Score: ${si(meanTokens)}-token chat prompts (multi-turn: ${CONVERSATIONS} conversations, ${SYSTEM_PROMPTS} system prompts), ${PODS} pods; gRPC on loopback from a client thread at ${RATE} req/s (open loop, ${seconds} s); saturation with 16 in flight. Latencies p50 / p99 in ms`,
    ['input', 'in-process', 'gRPC', 'gRPC echo baseline', 'gRPC − echo', 'saturation req/s', 'goal p99'],
    [row('token ids', inProcessTokens, tokensAtRate!, tokensEcho!, tokensSaturated!, '≤ 1 ms'), row('chat, tokenized locally (1 thread)', inProcessChat, chatAtRate!, chatEcho!, chatSaturated!, '≤ 5 ms')],
  );
  console.log('echo baseline: a gRPC server answering Score without work, sent the same messages by the same client; "gRPC − echo" is what kvix adds on the wire path');
  writeResult('scoring', {
    quick,
    pods: PODS,
    conversations: CONVERSATIONS,
    meanPromptTokens: meanTokens,
    ratePerSec: RATE,
    seconds,
    tokenIds: { inProcess: { p50Ms: pct(inProcessTokens, 0.5), p99Ms: pct(inProcessTokens, 0.99) }, atRate: tokensAtRate, echoAtRate: tokensEcho, saturated: tokensSaturated },
    chatLocal: { inProcess: { p50Ms: pct(inProcessChat, 0.5), p99Ms: pct(inProcessChat, 0.99) }, atRate: chatAtRate, echoAtRate: chatEcho, saturated: chatSaturated },
  });
}
