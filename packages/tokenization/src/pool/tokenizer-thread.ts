import { Worker } from 'node:worker_threads';
import { TokenizationError, isTokenizationErrorCode, messageOf } from '../errors.js';
import type { PromptInput, RequestKeySpec } from '../prompt-tokenizer.js';
import type { FromWorker, ToWorker } from './protocol.js';
import type { PromptLimits } from './tokenize-locally.js';

/** A thread's answer to a tokenization: the ids and where its time went on the thread (ms). */
export interface ThreadTokenized {
  tokenIds: Uint32Array;
  requestKeys: BigUint64Array | null;
  templateMs: number;
  encodeMs: number;
  hashMs: number;
}

/** A request for a tokenizer thread, kept by the pool so that another thread can take it over. */
export interface ThreadTask {
  readonly spec: string;
  readonly input: PromptInput;
  readonly limits: PromptLimits;
  /** Compute the request keys too (with the request's cache salt on block 0). */
  readonly keys?: { spec: RequestKeySpec; cacheSalt: string | null };
  resolve(answer: ThreadTokenized): void;
  reject(err: TokenizationError): void;
  /** Threads that died with this task queued (not started); bounded so a task cannot bounce forever. */
  handoffs: number;
}

/** A request to load a tokenizer ahead of use (warm-up). */
export interface LoadRequest {
  readonly spec: string;
  resolve(): void;
  reject(err: TokenizationError): void;
}

type Entry = { kind: 'task'; task: ThreadTask } | ({ kind: 'load' } & LoadRequest);

export interface ThreadOptions {
  scriptUrl: URL;
  /** Heap of the thread, so a runaway request kills its thread, not the process. */
  maxHeapMb: number;
  /** Longest a request may run once started, whatever its deadline (a backstop). */
  taskTimeoutMs: number;
  /** Time past a request's deadline the thread gets to stop on its own before it is replaced. */
  overrunGraceMs: number;
}

export interface ThreadDeath {
  /** 'crashed' on its own (an uncaught error, its heap limit); 'stopped' by the watchdog, past a deadline. */
  reason: 'crashed' | 'stopped';
  /** Requests it had been sent and had not started: they were not at fault and can run elsewhere. */
  orphans: ThreadTask[];
  /** Loads it had not finished, for its replacement to do. */
  loads: LoadRequest[];
}

/**
 * One worker thread and the requests it has been sent but not answered. The thread runs them one
 * at a time in order and reports when it starts each; a request still running past its deadline
 * (plus a grace) or the task timeout gets the thread terminated — the only way to stop JavaScript
 * busy on another thread — and the requests queued behind it are handed back to be run elsewhere.
 */
export class TokenizerThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Entry>();
  private nextId = 1;
  private crashMessage: string | null = null;
  private terminating = false;
  private stoppedWhy: string | null = null;
  private running: { id: number; timer: NodeJS.Timeout } | null = null;
  /** The request the thread said it started last (it may have answered it since). */
  private lastStarted = 0;
  /** Requests answered (successfully or not) since the thread started. */
  answered = 0;

  constructor(
    private readonly options: ThreadOptions,
    readonly index: number,
    /** Called once if the thread dies without being asked to, after its started request failed. */
    private readonly onDeath: (thread: TokenizerThread, death: ThreadDeath) => void,
  ) {
    this.worker = new Worker(options.scriptUrl, { resourceLimits: { maxOldGenerationSizeMb: options.maxHeapMb } });
    // An idle pool must not keep the process alive; a busy one must.
    this.worker.unref();
    this.worker.on('message', (message: FromWorker) => this.onMessage(message));
    this.worker.on('error', (err) => {
      this.crashMessage = messageOf(err);
    });
    this.worker.on('exit', (exitCode) => this.onExit(exitCode));
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Whether the watchdog has stopped this thread (it is on its way out). */
  get stopping(): boolean {
    return this.stoppedWhy !== null || this.terminating;
  }

  run(task: ThreadTask): void {
    // A chat prompt read from a request body travels as the body's bytes, not as a clone of its messages.
    const input = task.input;
    const sent = input.kind === 'chat' && input.body !== undefined ? { kind: 'chat-body' as const, body: input.body } : input;
    this.send({ kind: 'task', task }, (id) => ({ type: 'tokenize', id, spec: task.spec, input: sent, limits: task.limits, ...(task.keys ? { keys: task.keys } : {}) }));
  }

  load(spec: string): Promise<void> {
    return new Promise<void>((resolve, reject) => this.loadFor({ spec, resolve, reject }));
  }

  loadFor(request: LoadRequest): void {
    this.send({ kind: 'load', ...request }, (id) => ({ type: 'load', id, spec: request.spec }));
  }

  /** Test-only: see ToWorker's 'crash'. */
  crash(): void {
    this.worker.postMessage({ type: 'crash' } satisfies ToWorker);
  }

  async terminate(reason: TokenizationError): Promise<void> {
    this.terminating = true;
    this.clearRunning();
    const entries = [...this.pending.values()];
    this.pending.clear();
    for (const entry of entries) (entry.kind === 'task' ? entry.task : entry).reject(reason);
    await this.worker.terminate();
  }

  private send(entry: Entry, build: (id: number) => ToWorker): void {
    const id = this.nextId++;
    try {
      this.worker.postMessage(build(id));
    } catch (err) {
      // Only data the structured clone cannot copy (functions, symbols) fails here.
      const error = new TokenizationError('INVALID_REQUEST', `the request cannot be passed to a tokenizer thread: ${messageOf(err)}`, { cause: err });
      (entry.kind === 'task' ? entry.task : entry).reject(error);
      return;
    }
    if (this.pending.size === 0) this.worker.ref();
    this.pending.set(id, entry);
  }

  private onMessage(message: FromWorker): void {
    const entry = this.pending.get(message.id);
    if (entry === undefined || this.stoppedWhy !== null) return;
    if ('started' in message) {
      this.lastStarted = message.id;
      if (entry.kind === 'task') this.watch(message.id, entry.task);
      return;
    }
    this.pending.delete(message.id);
    if (this.running?.id === message.id) this.clearRunning();
    if (this.pending.size === 0) this.worker.unref();
    this.answered++;
    if (entry.kind === 'load') {
      if (message.ok) entry.resolve();
      else entry.reject(errorOf(message));
      return;
    }
    if (message.ok) {
      entry.task.resolve({ tokenIds: message.tokenIds!, requestKeys: message.requestKeys ?? null, templateMs: message.templateMs ?? 0, encodeMs: message.encodeMs ?? 0, hashMs: message.hashMs ?? 0 });
    } else entry.task.reject(errorOf(message));
  }

  /** Arms the watchdog for the request the thread has just started. */
  private watch(id: number, task: ThreadTask): void {
    this.clearRunning();
    const now = Date.now();
    let stopAt = now + this.options.taskTimeoutMs;
    // (A deadline already past by the time the start is seen still gets its grace from now.)
    if (task.limits.deadline !== null) stopAt = Math.min(stopAt, Math.max(task.limits.deadline, now) + this.options.overrunGraceMs);
    const timer = setTimeout(() => this.stop(id, now), Math.max(0, stopAt - now));
    timer.unref();
    this.running = { id, timer };
  }

  private stop(id: number, startedAt: number): void {
    if (this.running?.id !== id || this.terminating) return;
    this.running = null;
    this.stoppedWhy = `a request ran ${Date.now() - startedAt} ms, past its deadline`;
    void this.worker.terminate();
  }

  private clearRunning(): void {
    if (this.running !== null) clearTimeout(this.running.timer);
    this.running = null;
  }

  private onExit(exitCode: number): void {
    this.clearRunning();
    if (this.terminating) return;
    const stopped = this.stoppedWhy !== null;
    const why = this.stoppedWhy ?? this.crashMessage ?? `exit code ${exitCode}`;
    const entries = [...this.pending.entries()];
    this.pending.clear();
    const orphans: ThreadTask[] = [];
    const loads: LoadRequest[] = [];
    for (const [id, entry] of entries) {
      if (entry.kind === 'load') {
        loads.push(entry);
        continue;
      }
      // The thread works through its requests one at a time: only the one it said it started can
      // have killed it. The others never began and run elsewhere (a crash too sudden to deliver
      // 'started' makes the culprit an orphan once, bounded by its handoffs).
      if (id === this.lastStarted) {
        entry.task.reject(
          stopped
            ? new TokenizationError('DEADLINE_EXCEEDED', `tokenization ran past its deadline; tokenizer thread ${this.index} was replaced (${why})`)
            : new TokenizationError('INTERNAL', `tokenizer thread ${this.index} crashed (${why}) while tokenizing this request`),
        );
      } else orphans.push(entry.task);
    }
    this.onDeath(this, { reason: stopped ? 'stopped' : 'crashed', orphans, loads });
  }
}

function errorOf(message: Extract<FromWorker, { ok: false }>): TokenizationError {
  return new TokenizationError(isTokenizationErrorCode(message.code) ? message.code : 'INTERNAL', message.message);
}
