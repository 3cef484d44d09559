import { Metadata, status as GrpcStatus, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import type { ExternalProcessorClient, ProcessingRequest, ProcessingResponse__Output } from '@kvix/proto';

export type ProcessorEvent =
  | { kind: 'message'; message: ProcessingResponse__Output }
  /** The processor ended the stream with OK: Envoy carries on without it. */
  | { kind: 'closed' }
  /** The stream failed (processor unreachable, or it answered with an error status). */
  | { kind: 'failed'; code: GrpcStatus; details: string }
  /** The processor held everything it needed and stayed silent for the message timeout. */
  | { kind: 'timeout' };

/**
 * One `Process` stream, as Envoy's ext_proc filter holds it for one HTTP request: messages go out
 * without waiting for answers; answers, the end of the stream and a watchdog timeout come back as
 * events, in order, through one callback. After the first terminal event nothing more is reported.
 */
export class ProcessorStream {
  private readonly call: ClientDuplexStream<ProcessingRequest, ProcessingResponse__Output>;
  private status: StatusObject | undefined;
  private over = false;
  private halfClosed = false;
  private watchdog: NodeJS.Timeout | undefined;
  private waiting = false;
  sent = 0;
  received = 0;

  constructor(
    client: ExternalProcessorClient,
    private readonly timeoutMs: number,
    private readonly onEvent: (event: ProcessorEvent) => void,
  ) {
    this.call = client.Process(new Metadata());
    this.call.on('data', (message: ProcessingResponse__Output) => {
      if (this.over) return;
      this.received++;
      if (this.waiting) this.armWatchdog();
      this.onEvent({ kind: 'message', message });
    });
    this.call.on('status', (status: StatusObject) => {
      this.status = status;
    });
    // grpc-js reports a failed status as an 'error' event too; 'end' follows every buffered
    // message, so the terminal event is taken from there to keep it after the last answer.
    this.call.on('error', () => {});
    this.call.on('end', () => this.terminate());
  }

  get open(): boolean {
    return !this.over;
  }

  send(message: ProcessingRequest): void {
    if (this.over || this.halfClosed) return;
    this.sent++;
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

  /** Resets the stream and reports nothing more. */
  cancel(): void {
    this.disarmWatchdog();
    if (this.over) return;
    this.over = true;
    this.call.cancel();
  }

  private terminate(): void {
    this.disarmWatchdog();
    if (this.over) return;
    this.over = true;
    const status = this.status;
    if (status === undefined || status.code === GrpcStatus.OK) this.onEvent({ kind: 'closed' });
    else this.onEvent({ kind: 'failed', code: status.code, details: status.details });
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
