import { CachingTokenizer, fastRenderTotals, LocalTokenizer, LocalTokenizerPool, setFastTemplates, type ChatMessage, type PromptInput } from '@kvix/tokenization';
import { printTable, si, writeResult } from './harness.js';
import { charsFor, prose } from './text.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const PROMPT_TOKENS = 8192;
const SYSTEM_TOKENS = 600;
const REQUESTS = 240;
const WARMUP_REQUESTS = 16;
const CACHE_HITS = 2000;
/** Requests kept in flight for the pool's throughput: enough that its thread never idles. */
const PIPELINE_DEPTH = 4;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

interface Figures {
  p50Ms: number;
  p99Ms: number;
  requestsPerSec: number;
  tokensPerSec: number;
  /** Share of wall time the benchmark's own event loop was busy (100% = one core). */
  mainThreadBusy: number;
}

function figures(latenciesMs: number[], requests: number, seconds: number, tokensPerRequest: number, busy: number): Figures {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  return {
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    requestsPerSec: requests / seconds,
    tokensPerSec: (requests * tokensPerRequest) / seconds,
    mainThreadBusy: busy,
  };
}

async function timeSequential(count: number, call: (i: number) => unknown): Promise<{ latencies: number[]; seconds: number; busy: number }> {
  const latencies: number[] = [];
  const elu = performance.eventLoopUtilization();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await call(i);
    latencies.push(performance.now() - start);
  }
  const seconds = (performance.now() - t0) / 1000;
  return { latencies, seconds, busy: performance.eventLoopUtilization(elu).utilization };
}

async function timePipelined(count: number, depth: number, call: (i: number) => Promise<unknown>): Promise<{ seconds: number; busy: number }> {
  const elu = performance.eventLoopUtilization();
  const t0 = performance.now();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) await call(next++);
  };
  await Promise.all(Array.from({ length: depth }, lane));
  return { seconds: (performance.now() - t0) / 1000, busy: performance.eventLoopUtilization(elu).utilization };
}

/**
 * 8,192-token chat prompts (a shared ~600-token system message, a distinct user message each):
 * LocalTokenizer on the event loop, the same on one pool thread, and an exact result-cache hit.
 */
export async function run(): Promise<void> {
  const tok = await LocalTokenizer.bundled(MODEL);
  const system = prose(1, charsFor(tok, SYSTEM_TOKENS));
  // The template adds a few tokens around each message; size the user message so the prompt is ~8,192.
  const overhead = tok.encodeChat([
    { role: 'system', content: system },
    { role: 'user', content: '' },
  ]).length;
  let userChars = charsFor(tok, PROMPT_TOKENS - overhead);
  let seed = 1000;
  const chat = (): PromptInput & { kind: 'chat' } => {
    const messages: ChatMessage[] = [
      { role: 'system', content: system },
      { role: 'user', content: prose(seed++, userChars) },
    ];
    return { kind: 'chat', messages };
  };
  const batch = (n: number): (PromptInput & { kind: 'chat' })[] => Array.from({ length: n }, chat);
  const meanTokens = (): number => Math.round(batch(8).reduce((sum, input) => sum + tok.encodeChat(input.messages).length, 0) / 8);
  // One correction of the sampled characters-per-token ratio; generated prompts still vary by a few tokens.
  userChars = Math.round(userChars * ((PROMPT_TOKENS - overhead) / (meanTokens() - overhead)));
  const promptTokens = meanTokens();

  // (a) inline: the service's own thread, every request a new user message.
  for (const input of batch(WARMUP_REQUESTS)) tok.encodeChat(input.messages);
  const inlineInputs = batch(REQUESTS);
  const inlineRun = await timeSequential(REQUESTS, (i) => tok.encodeChat(inlineInputs[i]!.messages));
  const inline = figures(inlineRun.latencies, REQUESTS, inlineRun.seconds, promptTokens, inlineRun.busy);

  // (b) the pool with one thread: latency one request at a time, throughput with a few in flight.
  const pool = new LocalTokenizerPool({ models: { [MODEL]: MODEL }, workers: 1 });
  await pool.warmUp();
  for (const input of batch(WARMUP_REQUESTS)) await pool.tokenize(MODEL, input);
  const poolInputs = batch(REQUESTS);
  const poolRun = await timeSequential(REQUESTS, (i) => pool.tokenize(MODEL, poolInputs[i]!));
  const pipelinedInputs = batch(REQUESTS);
  const pipelined = await timePipelined(REQUESTS, PIPELINE_DEPTH, (i) => pool.tokenize(MODEL, pipelinedInputs[i]!));
  const pooled = figures(poolRun.latencies, REQUESTS, pipelined.seconds, promptTokens, pipelined.busy);

  // (c) a result-cache hit: the same request again (the key is the whole request, built each time).
  const cache = new CachingTokenizer(pool);
  const repeated = batch(1)[0]!;
  const check = await cache.tokenize(MODEL, repeated);
  const expected = tok.encodeChat(repeated.messages);
  if (expected.length !== check.tokenIds.length || expected.some((id, i) => id !== check.tokenIds[i])) throw new Error('the pool disagrees with LocalTokenizer');
  for (let i = 0; i < 200; i++) await cache.tokenize(MODEL, repeated);
  const hitRun = await timeSequential(CACHE_HITS, () => cache.tokenize(MODEL, repeated));
  const hit = figures(hitRun.latencies, CACHE_HITS, hitRun.seconds, promptTokens, hitRun.busy);
  const stats = cache.stats();
  await cache.close();

  // (d) the chat template alone, without and with a render budget (the clock and size checks every
  // statement makes when a deadline is set, as every service call has one): rounds interleaved, the
  // best round of each kept, so the machine's noise does not pass for a difference.
  const conversation: ChatMessage[] = Array.from({ length: 40 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: prose(i, charsFor(tok, 120)) }));
  const templateOptions = { tools: [{ type: 'function', function: { name: 'lookup', description: 'find a parcel', parameters: { type: 'object', properties: { id: { type: 'string' } } } } }] };
  const renders = 200;
  const renderRound = (limits?: { deadline: number; maxChars: number }): number => {
    const t0 = performance.now();
    for (let i = 0; i < renders; i++) tok.renderChat(conversation, templateOptions, limits);
    return (performance.now() - t0) / renders;
  };
  const budget = (): { deadline: number; maxChars: number } => ({ deadline: Date.now() + 60_000, maxChars: 8 * 131_072 });
  // (f) the same renders by the Jinja library's interpreter alone, the baseline of the fast evaluator (d).
  const libraryRound = (): number => {
    setFastTemplates(false);
    try {
      return renderRound();
    } finally {
      setFastTemplates(true);
    }
  };
  const viaFast = tok.renderChat(conversation, templateOptions);
  setFastTemplates(false);
  const viaLibrary = tok.renderChat(conversation, templateOptions);
  setFastTemplates(true);
  if (viaFast !== viaLibrary) throw new Error('the fast template evaluator disagrees with the library');
  renderRound();
  renderRound(budget());
  libraryRound();
  let unbudgeted = Infinity;
  let budgeted = Infinity;
  let library = Infinity;
  const handedBefore = fastRenderTotals().handedOver;
  for (let round = 0; round < 7; round++) {
    unbudgeted = Math.min(unbudgeted, renderRound());
    budgeted = Math.min(budgeted, renderRound(budget()));
    library = Math.min(library, libraryRound());
  }
  if (fastRenderTotals().handedOver !== handedBefore) throw new Error('the fast template evaluator handed renders of this template to the library');

  const ms = (v: number): string => (v >= 1 ? v.toFixed(2) : v.toFixed(3));
  const pct = (v: number): string => `${(v * 100).toFixed(0)}%`;
  const row = (name: string, f: Figures, note: string): string[] => [
    name,
    ms(f.p50Ms),
    ms(f.p99Ms),
    si(f.requestsPerSec),
    si(f.tokensPerSec),
    pct(f.mainThreadBusy),
    note,
  ];
  printTable(
    `tokenize: ${promptTokens}-token chat prompts (~${SYSTEM_TOKENS}-token shared system message, distinct user message), ${MODEL} bundled`,
    ['mode', 'p50 ms', 'p99 ms', 'req/s', 'tokens/s', 'main thread busy', 'vs inline'],
    [
      row('(a) LocalTokenizer inline', inline, '1×'),
      row(`(b) pool, 1 thread (throughput at ${PIPELINE_DEPTH} in flight)`, pooled, `p50 ${(pooled.p50Ms / inline.p50Ms).toFixed(2)}×, throughput ${(pooled.requestsPerSec / inline.requestsPerSec).toFixed(2)}×`),
      row('(c) result-cache hit', hit, `p50 ${(inline.p50Ms / hit.p50Ms).toFixed(0)}× faster`),
    ],
  );
  printTable(
    'tokenize: the chat template alone (40 messages and a tool), best of 7 interleaved rounds; (d) and (e) on the fast evaluator',
    ['mode', 'ms per render', 'vs no budget'],
    [
      ['(d) no render budget', ms(unbudgeted), '1×'],
      ['(e) with a render budget (deadline + size)', ms(budgeted), `${(budgeted / unbudgeted).toFixed(3)}×`],
      ['(f) the Jinja library alone (KVIX_JINJA_FAST=off), no budget', ms(library), `${(library / unbudgeted).toFixed(2)}× (d)`],
    ],
  );
  writeResult('tokenize', {
    model: MODEL,
    promptTokens,
    systemTokens: SYSTEM_TOKENS,
    requests: REQUESTS,
    cacheHits: CACHE_HITS,
    pipelineDepth: PIPELINE_DEPTH,
    metrics: {
      inline,
      pool1Thread: pooled,
      cacheHit: hit,
      poolVsInlineP50: pooled.p50Ms / inline.p50Ms,
      poolVsInlineThroughput: pooled.requestsPerSec / inline.requestsPerSec,
      cacheHitSpeedupP50: inline.p50Ms / hit.p50Ms,
      cacheStats: stats,
      templateRenderMs: unbudgeted,
      templateRenderBudgetedMs: budgeted,
      renderBudgetOverhead: budgeted / unbudgeted,
      templateRenderLibraryMs: library,
      fastTemplateSpeedup: library / unbudgeted,
    },
  });
}
