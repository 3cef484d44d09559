import { Metadata, status as GrpcStatus, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import type { ProcessingRequest, ProcessingResponse__Output } from '@kvix/proto';
import { classifyFailure, type ExtProcRetryOn, type ProcessorFailure } from './processor-failure.js';
import type { ProcessorHost, ProcessorPool } from './processor-pool.js';

export type ProcessorEvent =
  | { kind: 'message'; message: ProcessingResponse__Output }
  /** The processor ended the stream with OK: Envoy carries on without it. */
  | { kind: 'closed' }
  /** The stream failed (processor unreachable, or it answered with an error status) and was not retried. */
  | { kind: 'failed'; code: GrpcStatus; details: string }
  /** The processor held everything it needed and stayed silent for the message timeout. */
  | { kind: 'timeout' };

/** One `Process` stream opened on one ext_proc host. */
export interface ProcessorAttempt {
  host: string;
  /** How this stream failed; absent while it is open and when it ended cleanly or was reset by the simulator. */
  failure?: ProcessorFailure;
  /** The gRPC status of that failure, e.g. `14 UNAVAILABLE: No connection established…`. */
  error?: string;
}

/** The grpc_service `retry_policy` of the ext_proc filter, reduced to what the simulator uses. */
export interface ProcessorRetryPolicy {
  retryOn: ReadonlySet<ExtProcRetryOn>;
  numRetries: number;
}

type Call = ClientDuplexStream<ProcessingRequest, ProcessingResponse__Output>;

/**
 * One `Process` stream, as Envoy's ext_proc filter holds it for one HTTP request: messages go out
 * without waiting for answers; answers, the end of the stream and a watchdog timeout come back as
 * events, in order, through one callback. After the first terminal event nothing more is reported.
 *
 * The stream runs on a host of the ext_proc cluster picked by the pool. Until the processor sends
 * anything back (response headers or a message), every message sent is kept; if the stream fails
 * in a way the retry policy covers, it is opened again on another host and everything sent so far
 * is replayed there, which is what Envoy's router does for an ext_proc stream when the
 * grpc_service has a `retry_policy` (the filter then asks for `buffer_body_for_retry`). The
 * exchange sees one uninterrupted stream.
 */
export class ProcessorStream {
  private call!: Call;
  private host!: ProcessorHost;
  private readonly tried = new Set<ProcessorHost>();
  /** Everything sent, while a retry is still possible; null once the processor has answered. */
  private replay: ProcessingRequest[] | null = [];
  private over = false;
  private halfClosed = false;
  private watchdog: NodeJS.Timeout | undefined;
  private waiting = false;
  readonly attempts: ProcessorAttempt[] = [];
  sent = 0;
  received = 0;

  constructor(
    private readonly pool: ProcessorPool,
    private readonly retryPolicy: ProcessorRetryPolicy,
    private readonly timeoutMs: number,
    private readonly onEvent: (event: ProcessorEvent) => void,
  ) {
    // The first pick never comes back empty: with no usable host the pool panics and uses any.
    this.openOn(pool.pick() as ProcessorHost);
  }

  get open(): boolean {
    return !this.over;
  }

  /** The ext_proc host of the current (last) attempt. */
  get hostTarget(): string {
    return this.host.target;
  }

  /** Streams re-opened on another host for this exchange. */
  get retries(): number {
    return this.attempts.length - 1;
  }

  send(message: ProcessingRequest): void {
    if (this.over || this.halfClosed) return;
    this.sent++;
    this.replay?.push(message);
    this.call.write(message);
  }

  /**
   * Whether the exchange is waiting on an answer the processor has everything for. While it is,
   * silence longer than the message timeout ends the stream with a `timeout` event.
   */
  setWaiting(waiting: boolean): void {
    if (waiting === this.waiting) return;
    this.waiting = waiting;
    if (waiting) this.armWatchdog();
    else this.disarmWatchdog();
  }

  /** Half-closes: Envoy does this once the HTTP exchange is complete. */
  halfClose(): void {
    this.disarmWatchdog();
    if (this.halfClosed || this.over) return;
    this.halfClosed = true;
    this.call.end();
  }

  /**
   * The end of the exchange as Envoy ends it by default (`ExternalProcessorStreamImpl::close`):
   * half-close, then reset at once, without waiting for the processor's status. Reports nothing more.
   */
  closeAndReset(): void {
    this.disarmWatchdog();
    if (this.over) return;
    this.over = true;
    if (!this.halfClosed) this.call.end();
    this.halfClosed = true;
    this.call.cancel();
  }

  /** Resets the stream and reports nothing more. */
  cancel(): void {
    this.disarmWatchdog();
    if (this.over) return;
    this.over = true;
    this.call.cancel();
  }

  private openOn(host: ProcessorHost): void {
    this.host = host;
    this.tried.add(host);
    const attempt: ProcessorAttempt = { host: host.target };
    this.attempts.push(attempt);
    const call: Call = host.client.Process(new Metadata());
    this.call = call;
    let status: StatusObject | undefined;
    let answered = false;
    const current = () => call === this.call && !this.over;
    call.on('metadata', () => {
      answered = true;
      if (current()) this.replay = null;
    });
    call.on('data', (message: ProcessingResponse__Output) => {
      answered = true;
      if (!current()) return;
      this.replay = null;
      this.received++;
      if (this.waiting) this.armWatchdog();
      this.onEvent({ kind: 'message', message });
    });
    call.on('status', (s: StatusObject) => {
      status = s;
    });
    // grpc-js reports a failed status as an 'error' event too; 'end' follows every buffered
    // message, so the terminal event is taken from there to keep it after the last answer.
    call.on('error', () => {});
    call.on('end', () => {
      if (!current()) return;
      if (status === undefined || status.code === GrpcStatus.OK) {
        this.terminate({ kind: 'closed' });
        return;
      }
      const failure = classifyFailure(status.code, status.details, call.getPeer() !== host.channelTarget);
      attempt.failure = failure;
      attempt.error = `${status.code} ${GrpcStatus[status.code] ?? ''}: ${status.details}`;
      this.pool.onFailure(host, failure);
      if (!answered && this.retry(failure)) return;
      this.terminate({ kind: 'failed', code: status.code, details: status.details });
    });
  }

  /** Opens the stream again on an untried host and replays what was sent; false if the policy says no. */
  private retry(failure: ProcessorFailure): boolean {
    if (this.replay === null || failure === 'error' || !this.retryPolicy.retryOn.has(failure)) return false;
    if (this.retries >= this.retryPolicy.numRetries) return false;
    const next = this.pool.pick(this.tried);
    if (!next) return false;
    this.pool.retries++;
    const replay = this.replay;
    this.openOn(next);
    for (const message of replay) this.call.write(message);
    if (this.halfClosed) this.call.end();
    return true;
  }

  private terminate(event: ProcessorEvent): void {
    this.disarmWatchdog();
    if (this.over) return;
    this.over = true;
    this.onEvent(event);
  }

  private armWatchdog(): void {
    this.disarmWatchdog();
    this.watchdog = setTimeout(() => {
      if (this.over) return;
      this.over = true;
      this.call.cancel();
      this.onEvent({ kind: 'timeout' });
    }, this.timeoutMs);
  }

  private disarmWatchdog(): void {
    if (this.watchdog !== undefined) clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }
}
