import { availableParallelism } from 'node:os';
import { raceAbort, throwIfAborted } from '../abort.js';
import { isBundledName } from '../bundled.js';
import { TokenizationError, messageOf } from '../errors.js';
import { checkCacheSalt, checkPromptInput, promptTextLength } from '../prompt-input.js';
import type { PromptInput, PromptTokenizer, RequestKeySpec, TokenizedPrompt, TokenizeOptions } from '../prompt-tokenizer.js';
import { hasRequestChatTemplate } from '../chat.js';
import { affinityHash } from './affinity.js';
import { TokenizerLoader } from './tokenizer-loader.js';
import { TokenizerThread, type ThreadDeath, type ThreadOptions, type ThreadTask, type ThreadTokenized } from './tokenizer-thread.js';
import { LocalKeyer, tokenizeLocally, type PromptLimits } from './tokenize-locally.js';

export interface LocalTokenizerPoolOptions {
  /** Served model name → tokenizer spec (a bundled tokenizer name or a directory; see resolveTokenizer). */
  models?: Readonly<Record<string, string>>;
  /**
   * Models not in `models`: 'reject' (UNKNOWN_MODEL, the default), 'bundled' (served when the
   * name is a bundled tokenizer), or one spec that serves them all.
   */
  unlisted?: 'reject' | 'bundled' | { spec: string };
  /**
   * Tokenizer threads; 0 tokenizes on the calling thread (but for requests that bring their own chat
   * template or a long prompt: see INLINE_MAX_CHARS). Default: one per core but one, and none on two
   * cores or fewer (see defaultWorkers).
   */
  workers?: number;
  /** Requests accepted and not yet answered, beyond which calls fail with OVERLOADED. Default 1024. */
  maxInFlight?: number;
  /** Tokens a prompt may have (with the model's context length, it bounds the text before any work). Default: the model's context. */
  maxPromptTokens?: number;
  /** Characters per allowed token accepted before tokenizing, and rendered by a chat template. Default 8. */
  maxCharsPerToken?: number;
  /**
   * Longest a request may run on a thread once started, deadline or not; the thread is then
   * replaced (a request's own `deadline` stops it sooner). Default 30000.
   */
  taskTimeoutMs?: number;
  /** Heap limit of each thread, so a runaway request ends its thread and not the process. Default 1024. */
  maxThreadHeapMb?: number;
}

export interface LocalTokenizerPoolStats {
  workers: number;
  inFlight: number;
  /** Requests each thread has answered since it (re)started; empty in inline mode. */
  answeredPerWorker: number[];
  /** Threads that died on their own (uncaught error, heap limit). */
  crashes: number;
  /** Threads stopped because a request ran past its deadline. */
  stopped: number;
  /** Requests queued on a thread that died, run on another instead of failing. */
  handedOff: number;
}

export interface LocalTokenizerPoolHealth {
  /** False once closed, or when every thread keeps dying before it answers anything. */
  ok: boolean;
  /** Threads running now (the lane for requests with their own chat template excluded). */
  live: number;
  workers: number;
  /** Why not ok. */
  reason?: string;
}

/** A thread holding this many more requests than the least busy one passes new work on. */
const SPILL_MARGIN = 4;
/** Respawning a thread that dies at once (e.g. an unbuilt package) must not spin. */
const MAX_RESPAWN_DELAY_MS = 5000;
/** A thread that died this many times in a row without answering anything makes the pool unhealthy. */
const UNHEALTHY_STREAK = 3;
/** A request queued on dying threads this many times is failed rather than passed on again. */
const MAX_HANDOFFS = 2;
/** Time a thread gets past a request's deadline to stop on its own (a template checks its clock) before it is replaced. */
const OVERRUN_GRACE_MS = 200;

/** Resolved from the package root, so it is found from dist and from the TypeScript sources alike. */
/**
 * Threads when none are configured: one per core but one — and none on two cores or fewer, where
 * handing a prompt to a thread and its answer back costs more than the work it moves once the
 * caches make a new turn of a conversation ~0.3 ms (measured by `npm run bench -- decision` on a
 * 2-core machine: 1.07 ms of CPU per decision inline against 1.49 ms with one thread, p50 1.19
 * against 1.79 ms at 40 req/s). Prompts of mostly new text (long documents) are the case for a
 * thread even there: their encode would otherwise hold up the event loop.
 */
export function defaultWorkers(cores: number): number {
  return cores <= 2 ? 0 : cores - 1;
}

/**
 * With no tokenizer threads (workers: 0), prompts longer than this many characters, and requests
 * that bring their own chat template, still go to a thread (the lane, started on first use): on
 * the calling thread nothing can stop an encode midway, and one 900 k-character pseudo-random
 * "word" takes ~5.5 s of BPE on an idle 2-core machine — that long, nothing else would be routed.
 * At this length the worst such input costs ~0.2 s inline, ordinary text a few ms.
 */
const INLINE_MAX_CHARS = 64 * 1024;

const WORKER_SCRIPT = new URL('../../dist/pool/tokenize-worker.js', import.meta.url);

/** Test-only hook: kills a thread from inside, the way an uncaught exception would. Not exported by the package. */
export const CRASH_WORKER_FOR_TESTS = Symbol('crashWorkerForTests');

function configError(message: string): TokenizationError {
  return new TokenizationError('INVALID_CONFIG', message);
}

/**
 * LocalTokenizer on worker threads, so a service's event loop stays free while an 8k-token prompt
 * is encoded (~15 ms of CPU). Requests that open alike go to the same thread, whose segment cache
 * already holds that opening.
 */
export class LocalTokenizerPool implements PromptTokenizer {
  private readonly models: ReadonlyMap<string, string>;
  private readonly unlisted: 'reject' | 'bundled' | { spec: string };
  private readonly workerCount: number;
  private readonly maxInFlight: number;
  private readonly maxPromptTokens: number | null;
  private readonly maxCharsPerToken: number;
  private readonly threadOptions: ThreadOptions;
  /**
   * Slots 0..workers-1 serve every request; the last slot is a lane, started on first use, for
   * requests that bring their own chat template: however long such a template runs (up to its
   * deadline), requests using the model's templates never queue behind it.
   */
  private readonly threads: (TokenizerThread | null)[] = [];
  private readonly counters = { crashes: 0, stopped: 0, handedOff: 0 };
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  /** Consecutive deaths per slot of threads that never answered anything. */
  private readonly crashStreaks: number[] = [];
  /** Specs warmed so far, so a replacement thread is warmed too. */
  private readonly warmSpecs = new Set<string>();
  private readonly inlineLoader = new TokenizerLoader();
  /** Request keys computed inline (workers: 0). */
  private readonly inlineKeyer = new LocalKeyer();
  /** Rejecters of calls still running, so close() can fail them. */
  private readonly running = new Set<(err: TokenizationError) => void>();
  private started = false;
  private laneStarted = false;
  private closed = false;
  private inFlightCount = 0;

  constructor(options: LocalTokenizerPoolOptions = {}) {
    const workers = options.workers ?? defaultWorkers(availableParallelism());
    if (!Number.isSafeInteger(workers) || workers < 0) throw configError(`workers must be an integer ≥ 0, not ${String(workers)}`);
    const maxInFlight = options.maxInFlight ?? 1024;
    if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1) throw configError(`maxInFlight must be an integer ≥ 1, not ${String(maxInFlight)}`);
    const maxPromptTokens = options.maxPromptTokens ?? null;
    if (maxPromptTokens !== null && (!Number.isSafeInteger(maxPromptTokens) || maxPromptTokens < 1)) throw configError(`maxPromptTokens must be an integer ≥ 1, not ${String(maxPromptTokens)}`);
    const maxCharsPerToken = options.maxCharsPerToken ?? 8;
    if (!(typeof maxCharsPerToken === 'number' && maxCharsPerToken >= 1)) throw configError(`maxCharsPerToken must be a number ≥ 1, not ${String(maxCharsPerToken)}`);
    const taskTimeoutMs = options.taskTimeoutMs ?? 30_000;
    if (!Number.isSafeInteger(taskTimeoutMs) || taskTimeoutMs < 1) throw configError(`taskTimeoutMs must be an integer ≥ 1, not ${String(taskTimeoutMs)}`);
    const maxThreadHeapMb = options.maxThreadHeapMb ?? 1024;
    if (!Number.isSafeInteger(maxThreadHeapMb) || maxThreadHeapMb < 64) throw configError(`maxThreadHeapMb must be an integer ≥ 64, not ${String(maxThreadHeapMb)}`);
    const models = new Map<string, string>();
    for (const [name, spec] of Object.entries(options.models ?? {})) {
      if (typeof spec !== 'string' || spec === '') throw configError(`models["${name}"] must name a bundled tokenizer or a directory`);
      models.set(name, spec);
    }
    const unlisted = options.unlisted ?? 'reject';
    if (unlisted !== 'reject' && unlisted !== 'bundled' && !(typeof unlisted === 'object' && typeof unlisted.spec === 'string' && unlisted.spec !== '')) {
      throw configError(`unlisted must be 'reject', 'bundled' or { spec }`);
    }
    this.models = models;
    this.unlisted = unlisted;
    this.workerCount = workers;
    this.maxInFlight = maxInFlight;
    this.maxPromptTokens = maxPromptTokens;
    this.maxCharsPerToken = maxCharsPerToken;
    this.threadOptions = { scriptUrl: WORKER_SCRIPT, maxHeapMb: maxThreadHeapMb, taskTimeoutMs, overrunGraceMs: OVERRUN_GRACE_MS };
  }

  async tokenize(model: string, input: PromptInput, options: TokenizeOptions = {}): Promise<TokenizedPrompt> {
    if (this.closed) throw new TokenizationError('CLOSED', 'the tokenizer pool is closed');
    checkPromptInput(input);
    const cacheSalt = checkCacheSalt(options.cacheSalt);
    const spec = this.specFor(model);
    throwIfAborted(options.signal);
    const deadline = options.deadline ?? null;
    if (deadline !== null && Date.now() >= deadline) throw new TokenizationError('DEADLINE_EXCEEDED', 'the tokenization deadline passed before the request could start');
    if (this.inFlightCount >= this.maxInFlight) {
      throw new TokenizationError('OVERLOADED', `the local tokenizer pool already holds ${this.maxInFlight} requests`);
    }
    const limits: PromptLimits = { deadline, maxPromptTokens: this.maxPromptTokens, maxCharsPerToken: this.maxCharsPerToken };
    const started = performance.now();
    const keys = options.requestKeys ? { spec: checkKeySpec(options.requestKeys), cacheSalt } : undefined;
    const { tokenIds, requestKeys, templateMs, encodeMs, hashMs } = await raceAbort(this.track(() => this.run(spec, model, input, limits, keys)), options.signal);
    return {
      tokenIds,
      multimodal: [],
      cacheSalt,
      source: 'local',
      cached: false,
      timings: { totalMs: performance.now() - started, templateMs, encodeMs, hashMs },
      ...(requestKeys ? { requestKeys } : {}),
    };
  }

  /**
   * Loads the tokenizers of `models` (default: every listed model and the unlisted spec) on every
   * thread, so the first requests do not pay for it; services call this before reporting ready.
   * `requestTemplates` starts the thread for requests with their own chat template too.
   */
  async warmUp(models?: readonly string[], options: { requestTemplates?: boolean } = {}): Promise<void> {
    if (this.closed) throw new TokenizationError('CLOSED', 'the tokenizer pool is closed');
    // The thread for requests with their own template otherwise starts (and loads) on first use.
    if (options.requestTemplates === true) {
      this.start();
      this.lane();
    }
    const specs = new Set(models === undefined ? this.models.values() : models.map((m) => this.specFor(m)));
    if (models === undefined && typeof this.unlisted === 'object') specs.add(this.unlisted.spec);
    for (const spec of specs) this.warmSpecs.add(spec);
    if (this.workerCount === 0) {
      await Promise.all([...specs].map((spec) => this.inlineLoader.load(spec)));
      return;
    }
    this.start();
    const live = this.threads.filter((t): t is TokenizerThread => t !== null);
    await Promise.all(live.flatMap((thread) => [...specs].map((spec) => thread.load(spec))));
  }

  stats(): LocalTokenizerPoolStats {
    return {
      workers: this.workerCount,
      inFlight: this.inFlightCount,
      answeredPerWorker: this.threads.slice(0, this.workerCount).map((t) => t?.answered ?? 0),
      ...this.counters,
    };
  }

  /**
   * Whether the pool can answer: a replaced thread is normal (a request ran past its deadline), a
   * slot whose threads keep dying before answering anything is not (a broken install, a tokenizer
   * that crashes on load). Services report it in readiness and liveness.
   */
  health(): LocalTokenizerPoolHealth {
    const live = this.threads.slice(0, this.workerCount).filter((t) => t !== null && !t.stopping).length;
    if (this.closed) return { ok: false, live: 0, workers: this.workerCount, reason: 'the tokenizer pool is closed' };
    if (this.workerCount === 0 || !this.started) return { ok: true, live, workers: this.workerCount };
    // A slot is failing while its last threads died before answering anything and none has since.
    const failing = this.crashStreaks.slice(0, this.workerCount).filter((n, i) => n >= UNHEALTHY_STREAK && (this.threads[i]?.answered ?? 0) === 0).length;
    if (failing === this.workerCount) {
      return { ok: false, live, workers: this.workerCount, reason: `every tokenizer thread died ${UNHEALTHY_STREAK} times in a row before answering anything` };
    }
    return { ok: true, live, workers: this.workerCount };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.respawnTimers) clearTimeout(timer);
    this.respawnTimers.clear();
    const reason = new TokenizationError('CLOSED', 'the tokenizer pool was closed');
    for (const reject of this.running) reject(reason);
    this.running.clear();
    const threads = this.threads.filter((t): t is TokenizerThread => t !== null);
    this.threads.fill(null);
    await Promise.all(threads.map((t) => t.terminate(reason)));
  }

  [CRASH_WORKER_FOR_TESTS](index: number): void {
    this.start();
    const thread = this.threads[index];
    if (thread === null || thread === undefined) throw new Error(`no running thread ${index}`);
    thread.crash();
  }

  private specFor(model: string): string {
    if (typeof model !== 'string' || model === '') throw new TokenizationError('INVALID_REQUEST', 'the model name must be a non-empty string');
    const listed = this.models.get(model);
    if (listed !== undefined) return listed;
    if (this.unlisted === 'bundled' && isBundledName(model)) return model;
    if (typeof this.unlisted === 'object') return this.unlisted.spec;
    const known = [...this.models.keys()];
    throw new TokenizationError(
      'UNKNOWN_MODEL',
      `no local tokenizer for model "${model}"${known.length > 0 ? `; configured: ${known.join(', ')}` : ''}`,
    );
  }

  /** Counts the call in flight until it settles, and lets close() reject it. */
  private track(work: () => Promise<ThreadTokenized>): Promise<ThreadTokenized> {
    this.inFlightCount++;
    return new Promise<ThreadTokenized>((resolve, reject) => {
      this.running.add(reject);
      work()
        .then(resolve, reject)
        .finally(() => {
          this.running.delete(reject);
          this.inFlightCount--;
        });
    });
  }

  private async run(spec: string, model: string, input: PromptInput, limits: PromptLimits, keys?: { spec: RequestKeySpec; cacheSalt: string | null }): Promise<ThreadTokenized> {
    if (this.workerCount === 0 && !needsThread(input)) {
      const tokenizer = this.inlineLoader.loadedNow(spec) ?? (await this.inlineLoader.load(spec));
      try {
        // On the calling thread nothing can stop encoding midway (hence INLINE_MAX_CHARS).
        const timings = { templateMs: 0, encodeMs: 0, hashMs: 0 };
        const { ids, requestKeys } = tokenizeLocally(tokenizer, input, timings, keys ? { ...keys, keyer: this.inlineKeyer } : undefined, limits);
        return { tokenIds: ids, requestKeys, ...timings };
      } catch (err) {
        // The same answer a thread would give for an error that is not the tokenizer's own.
        if (err instanceof TokenizationError) throw err;
        throw new TokenizationError('INTERNAL', `tokenization failed: ${messageOf(err)}`, { cause: err });
      }
    }
    this.start();
    return new Promise<ThreadTokenized>((resolve, reject) => {
      const task: ThreadTask = { spec, input, limits, ...(keys ? { keys } : {}), resolve, reject, handoffs: 0 };
      this.dispatch(task, this.pickThread(model, input));
    });
  }

  private dispatch(task: ThreadTask, thread: TokenizerThread): void {
    thread.run(task);
  }

  private pickThread(model: string, input: PromptInput): TokenizerThread {
    if (this.workerCount === 0 || (input.kind === 'chat' && hasRequestChatTemplate(input.options))) return this.lane();
    let least: TokenizerThread | null = null;
    for (const t of this.threads.slice(0, this.workerCount)) if (t !== null && !t.stopping && (least === null || t.inFlight < least.inFlight)) least = t;
    if (least === null) throw new TokenizationError('INTERNAL', 'no tokenizer thread is running (they keep crashing); retry later');
    const preferred = this.threads[affinityHash(model, input) % this.workerCount] ?? null;
    if (preferred === null || preferred.stopping || preferred.inFlight - least.inFlight > SPILL_MARGIN) return least;
    return preferred;
  }

  /** The thread for requests with their own chat template, started on first use. */
  private lane(): TokenizerThread {
    const index = this.workerCount;
    const current = this.threads[index];
    if (current !== null && current !== undefined && !current.stopping) return current;
    if (current === null && this.laneStarted) {
      throw new TokenizationError('INTERNAL', 'the tokenizer thread for request chat templates keeps crashing; retry later');
    }
    this.laneStarted = true;
    this.respawn(index);
    return this.threads[index]!;
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.workerCount; i++) {
      this.crashStreaks.push(0);
      this.threads.push(this.spawn(i));
    }
    this.crashStreaks.push(0);
    this.threads.push(null);
  }

  private spawn(index: number): TokenizerThread {
    return new TokenizerThread(this.threadOptions, index, (dead, death) => this.replace(dead, death));
  }

  private replace(dead: TokenizerThread, death: ThreadDeath): void {
    if (this.closed || this.threads[dead.index] !== dead) {
      const closed = new TokenizationError('CLOSED', 'the tokenizer pool was closed');
      for (const waiting of [...death.orphans, ...death.loads]) waiting.reject(closed);
      return;
    }
    this.threads[dead.index] = null;
    if (death.reason === 'stopped') this.counters.stopped++;
    else this.counters.crashes++;
    // A thread stopped for a request that overran its deadline did nothing wrong: no backoff.
    const streak = death.reason === 'stopped' || dead.answered > 0 ? 1 : (this.crashStreaks[dead.index] ?? 0) + 1;
    this.crashStreaks[dead.index] = streak;
    this.replaceNow(dead.index, streak);
    const replacement = this.threads[dead.index];
    for (const load of death.loads) {
      if (replacement !== null && replacement !== undefined) replacement.loadFor(load);
      else load.reject(new TokenizationError('INTERNAL', `tokenizer thread ${dead.index} keeps dying; retry later`));
    }
    this.handOff(death.orphans);
  }

  /** Requests queued on a dead thread run elsewhere: they were not what killed it. */
  private handOff(orphans: readonly ThreadTask[]): void {
    for (const task of orphans) {
      if (++task.handoffs > MAX_HANDOFFS) {
        task.reject(new TokenizationError('INTERNAL', `the tokenizer threads holding this request died ${MAX_HANDOFFS + 1} times; retry later`));
        continue;
      }
      this.counters.handedOff++;
      try {
        this.dispatch(task, this.workerCount === 0 || (task.input.kind === 'chat' && hasRequestChatTemplate(task.input.options)) ? this.lane() : this.pickThreadForHandoff());
      } catch (err) {
        task.reject(err instanceof TokenizationError ? err : new TokenizationError('INTERNAL', messageOf(err)));
      }
    }
  }

  private pickThreadForHandoff(): TokenizerThread {
    let least: TokenizerThread | null = null;
    for (const t of this.threads.slice(0, this.workerCount)) if (t !== null && !t.stopping && (least === null || t.inFlight < least.inFlight)) least = t;
    if (least === null) throw new TokenizationError('INTERNAL', 'no tokenizer thread is running (they keep crashing); retry later');
    return least;
  }

  private replaceNow(index: number, streak: number): void {
    // The first replacement is immediate, so a one-thread pool has no gap in which requests fail.
    if (streak <= 1) {
      this.respawn(index);
      return;
    }
    const timer = setTimeout(() => {
      this.respawnTimers.delete(timer);
      if (!this.closed) this.respawn(index);
    }, Math.min(MAX_RESPAWN_DELAY_MS, 50 * 2 ** (streak - 2)));
    timer.unref();
    this.respawnTimers.add(timer);
  }

  private respawn(index: number): void {
    const thread = this.spawn(index);
    this.threads[index] = thread;
    // Failures surface on the next request for that model, with their code.
    for (const spec of this.warmSpecs) thread.load(spec).catch(() => undefined);
  }
}

/** Whether a request goes to a thread even with none configured (see INLINE_MAX_CHARS). */
function needsThread(input: PromptInput): boolean {
  return (input.kind === 'chat' && hasRequestChatTemplate(input.options)) || promptTextLength(input) > INLINE_MAX_CHARS;
}

function checkKeySpec(spec: RequestKeySpec): RequestKeySpec {
  const ok =
    typeof spec === 'object' &&
    Number.isInteger(spec.blockSize) &&
    spec.blockSize > 0 &&
    typeof spec.seed === 'string' &&
    (spec.algorithm === 'cbor-fnv' || spec.algorithm === 'xxh64') &&
    typeof spec.root === 'string' &&
    spec.root !== '';
  if (!ok) throw new TokenizationError('INVALID_REQUEST', 'requestKeys needs a positive integer blockSize, a string seed, algorithm cbor-fnv or xxh64 and a non-empty root');
  return { blockSize: spec.blockSize, seed: spec.seed, algorithm: spec.algorithm, root: spec.root };
}
