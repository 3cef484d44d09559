import { Worker } from 'node:worker_threads';
import { TokenizationError, isTokenizationErrorCode, messageOf } from '../errors.js';
import type { PromptInput } from '../prompt-tokenizer.js';
import type { FromWorker, ToWorker } from './protocol.js';

/** Chat-template time a thread reported for the ids it answered (read once by the pool, for traces). */
export const TEMPLATE_MS = new WeakMap<Uint32Array, number>();

interface Pending {
  resolve(tokenIds: Uint32Array | null): void;
  reject(err: TokenizationError): void;
}

/** One worker thread and the requests it has been sent but not answered. */
export class TokenizerThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private crashMessage: string | null = null;
  private terminating = false;
  /** Requests answered (successfully or not) since the thread started. */
  answered = 0;

  constructor(
    scriptUrl: URL,
    readonly index: number,
    /** Called once if the thread dies without being asked to, after its requests have failed. */
    private readonly onCrash: (thread: TokenizerThread) => void,
  ) {
    this.worker = new Worker(scriptUrl);
    // An idle pool must not keep the process alive; a busy one must.
    this.worker.unref();
    this.worker.on('message', (message: FromWorker) => this.settle(message));
    this.worker.on('error', (err) => {
      this.crashMessage = messageOf(err);
    });
    this.worker.on('exit', (exitCode) => {
      if (this.terminating) return;
      const why = this.crashMessage ?? `exit code ${exitCode}`;
      this.failAll(new TokenizationError('INTERNAL', `tokenizer thread ${this.index} crashed (${why}); retry the request`));
      this.onCrash(this);
    });
  }

  get inFlight(): number {
    return this.pending.size;
  }

  tokenize(spec: string, input: PromptInput): Promise<Uint32Array> {
    return this.send((id) => ({ type: 'tokenize', id, spec, input })) as Promise<Uint32Array>;
  }

  async load(spec: string): Promise<void> {
    await this.send((id) => ({ type: 'load', id, spec }));
  }

  /** Test-only: see ToWorker's 'crash'. */
  crash(): void {
    this.worker.postMessage({ type: 'crash' } satisfies ToWorker);
  }

  async terminate(reason: TokenizationError): Promise<void> {
    this.terminating = true;
    this.failAll(reason);
    await this.worker.terminate();
  }

  private send(build: (id: number) => ToWorker): Promise<Uint32Array | null> {
    const id = this.nextId++;
    return new Promise<Uint32Array | null>((resolve, reject) => {
      try {
        this.worker.postMessage(build(id));
      } catch (err) {
        // Only data the structured clone cannot copy (functions, symbols) fails here.
        reject(new TokenizationError('INVALID_REQUEST', `the request cannot be passed to a tokenizer thread: ${messageOf(err)}`, { cause: err }));
        return;
      }
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
    });
  }

  private settle(message: FromWorker): void {
    const pending = this.pending.get(message.id);
    if (pending === undefined) return;
    this.pending.delete(message.id);
    if (this.pending.size === 0) this.worker.unref();
    this.answered++;
    if (message.ok) {
      if (message.tokenIds && message.templateMs !== undefined) TEMPLATE_MS.set(message.tokenIds, message.templateMs);
      pending.resolve(message.tokenIds);
    }
    else pending.reject(new TokenizationError(isTokenizationErrorCode(message.code) ? message.code : 'INTERNAL', message.message));
  }

  private failAll(err: TokenizationError): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
  }
}
