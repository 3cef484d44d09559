import { availableParallelism } from 'node:os';
import { raceAbort, throwIfAborted } from '../abort.js';
import { isBundledName } from '../bundled.js';
import { TokenizationError, messageOf } from '../errors.js';
import { checkCacheSalt, checkPromptInput } from '../prompt-input.js';
import type { PromptInput, PromptTokenizer, RequestKeySpec, TokenizedPrompt, TokenizeOptions } from '../prompt-tokenizer.js';
import { affinityHash } from './affinity.js';
import { TokenizerLoader } from './tokenizer-loader.js';
import { TokenizerThread, type ThreadTokenized } from './tokenizer-thread.js';
import { LocalKeyer, tokenizeLocally } from './tokenize-locally.js';

export interface LocalTokenizerPoolOptions {
  /** Served model name → tokenizer spec (a bundled tokenizer name or a directory; see resolveTokenizer). */
  models?: Readonly<Record<string, string>>;
  /**
   * Models not in `models`: 'reject' (UNKNOWN_MODEL, the default), 'bundled' (served when the
   * name is a bundled tokenizer), or one spec that serves them all.
   */
  unlisted?: 'reject' | 'bundled' | { spec: string };
  /**
   * Tokenizer threads; 0 tokenizes on the calling thread. Default: one per core but one, and none
   * on two cores or fewer (see DEFAULT_WORKERS).
   */
  workers?: number;
  /** Requests accepted and not yet answered, beyond which calls fail with OVERLOADED. Default 1024. */
  maxInFlight?: number;
}

export interface LocalTokenizerPoolStats {
  workers: number;
  inFlight: number;
  /** Requests each thread has answered since it (re)started; empty in inline mode. */
  answeredPerWorker: number[];
}

/** A thread holding this many more requests than the least busy one passes new work on. */
const SPILL_MARGIN = 4;
/** Respawning a thread that dies at once (e.g. an unbuilt package) must not spin. */
const MAX_RESPAWN_DELAY_MS = 5000;

/** Resolved from the package root, so it is found from dist and from the TypeScript sources alike. */
const WORKER_SCRIPT = new URL('../../dist/pool/tokenize-worker.js', import.meta.url);

/** Test-only hook: kills a thread from inside, the way an uncaught exception would. Not exported by the package. */
export const CRASH_WORKER_FOR_TESTS = Symbol('crashWorkerForTests');

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
  private readonly threads: (TokenizerThread | null)[] = [];
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
  private closed = false;
  private inFlightCount = 0;

  constructor(options: LocalTokenizerPoolOptions = {}) {
    const workers = options.workers ?? defaultWorkers(availableParallelism());
    if (!Number.isSafeInteger(workers) || workers < 0) throw configError(`workers must be an integer ≥ 0, not ${String(workers)}`);
    const maxInFlight = options.maxInFlight ?? 1024;
    if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1) throw configError(`maxInFlight must be an integer ≥ 1, not ${String(maxInFlight)}`);
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
  }

  async tokenize(model: string, input: PromptInput, options: TokenizeOptions = {}): Promise<TokenizedPrompt> {
    if (this.closed) throw new TokenizationError('CLOSED', 'the tokenizer pool is closed');
    checkPromptInput(input);
    const cacheSalt = checkCacheSalt(options.cacheSalt);
    const spec = this.specFor(model);
    throwIfAborted(options.signal);
    if (this.inFlightCount >= this.maxInFlight) {
      throw new TokenizationError('OVERLOADED', `the local tokenizer pool already holds ${this.maxInFlight} requests`);
    }
    const started = performance.now();
    const keys = options.requestKeys ? { spec: checkKeySpec(options.requestKeys), cacheSalt } : undefined;
    const { tokenIds, requestKeys, templateMs, encodeMs, hashMs } = await raceAbort(this.track(() => this.run(spec, model, input, keys)), options.signal);
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
   */
  async warmUp(models?: readonly string[]): Promise<void> {
    if (this.closed) throw new TokenizationError('CLOSED', 'the tokenizer pool is closed');
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
      answeredPerWorker: this.threads.map((t) => t?.answered ?? 0),
    };
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

  private async run(spec: string, model: string, input: PromptInput, keys?: { spec: RequestKeySpec; cacheSalt: string | null }): Promise<ThreadTokenized> {
    if (this.workerCount === 0) {
      const tokenizer = await this.inlineLoader.load(spec);
      try {
        const timings = { templateMs: 0, encodeMs: 0, hashMs: 0 };
        const { ids, requestKeys } = tokenizeLocally(tokenizer, input, timings, keys ? { ...keys, keyer: this.inlineKeyer } : undefined);
        return { tokenIds: ids, requestKeys, ...timings };
      } catch (err) {
        // The same answer a thread would give for an error that is not the tokenizer's own.
        if (err instanceof TokenizationError) throw err;
        throw new TokenizationError('INTERNAL', `tokenization failed: ${messageOf(err)}`, { cause: err });
      }
    }
    this.start();
    return this.pickThread(model, input).tokenize(spec, input, keys);
  }

  private pickThread(model: string, input: PromptInput): TokenizerThread {
    let least: TokenizerThread | null = null;
    for (const t of this.threads) if (t !== null && (least === null || t.inFlight < least.inFlight)) least = t;
    if (least === null) throw new TokenizationError('INTERNAL', 'no tokenizer thread is running (they keep crashing); retry later');
    const preferred = this.threads[affinityHash(model, input) % this.threads.length] ?? null;
    if (preferred === null || preferred.inFlight - least.inFlight > SPILL_MARGIN) return least;
    return preferred;
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.workerCount; i++) {
      this.crashStreaks.push(0);
      this.threads.push(this.spawn(i));
    }
  }

  private spawn(index: number): TokenizerThread {
    return new TokenizerThread(WORKER_SCRIPT, index, (dead) => this.replace(dead));
  }

  private replace(dead: TokenizerThread): void {
    if (this.closed || this.threads[dead.index] !== dead) return;
    this.threads[dead.index] = null;
    const streak = dead.answered > 0 ? 1 : (this.crashStreaks[dead.index] ?? 0) + 1;
    this.crashStreaks[dead.index] = streak;
    // The first replacement is immediate, so a one-thread pool has no gap in which requests fail.
    if (streak <= 1) {
      this.respawn(dead.index);
      return;
    }
    const timer = setTimeout(() => {
      this.respawnTimers.delete(timer);
      if (!this.closed) this.respawn(dead.index);
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
