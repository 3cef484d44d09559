import { Worker } from 'node:worker_threads';
import { TokenizationError, isTokenizationErrorCode, messageOf } from '../errors.js';
import type { PromptInput, RequestKeySpec } from '../prompt-tokenizer.js';
import type { FromWorker, ToWorker } from './protocol.js';

/** A thread's answer to a tokenization: the ids and where its time went on the thread (ms). */
export interface ThreadTokenized {
  tokenIds: Uint32Array;
  requestKeys: BigUint64Array | null;
  templateMs: number;
  encodeMs: number;
  hashMs: number;
}

interface Pending {
  resolve(answer: Extract<FromWorker, { ok: true }>): void;
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

  async tokenize(spec: string, input: PromptInput, keys?: { spec: RequestKeySpec; cacheSalt: string | null }): Promise<ThreadTokenized> {
    // A chat prompt read from a request body travels as the body's bytes, not as a clone of its messages.
    const sent = input.kind === 'chat' && input.body !== undefined ? { kind: 'chat-body' as const, body: input.body } : input;
    const answer = await this.send((id) => ({ type: 'tokenize', id, spec, input: sent, ...(keys ? { keys } : {}) }));
    return { tokenIds: answer.tokenIds!, requestKeys: answer.requestKeys ?? null, templateMs: answer.templateMs ?? 0, encodeMs: answer.encodeMs ?? 0, hashMs: answer.hashMs ?? 0 };
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

  private send(build: (id: number) => ToWorker): Promise<Extract<FromWorker, { ok: true }>> {
    const id = this.nextId++;
    return new Promise<Extract<FromWorker, { ok: true }>>((resolve, reject) => {
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
    if (message.ok) pending.resolve(message);
    else pending.reject(new TokenizationError(isTokenizationErrorCode(message.code) ? message.code : 'INTERNAL', message.message));
  }

  private failAll(err: TokenizationError): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
  }
}
