interface Submission<Row, Result> {
  rows: readonly Row[];
  resolve: (results: Result[]) => void;
  reject: (err: unknown) => void;
}

export interface CoalescerOptions {
  /** How long the first caller waits for others to join its batch; 0 sends every call on its own. */
  windowMs: number;
  /** A batch reaching this many rows goes at once, before its window ends. */
  maxRows: number;
  /** Batches in flight at once; later ones wait for a slot. */
  maxConcurrent: number;
}

/**
 * Merges concurrent bulk calls into one: while a call is in flight, the next caller opens a
 * window, callers arriving in it join, and when it ends (or the rows reach `maxRows`) one dispatch
 * carries them all; each caller gets back its own slice. A caller finding the client idle is sent
 * at once, so coalescing costs nothing at low load. At 200 routing decisions a second with 32 candidates each, this turns
 * bursts of decisions into one HTTP round trip instead of many.
 */
export class Coalescer<Row, Result> {
  private pending: Submission<Row, Result>[] = [];
  private pendingRows = 0;
  private timer: NodeJS.Timeout | null = null;
  private inFlight = 0;
  private readonly queue: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly options: CoalescerOptions,
    private readonly dispatch: (rows: Row[], callers: number) => Promise<Result[]>,
  ) {}

  submit(rows: readonly Row[]): Promise<Result[]> {
    if (this.closed) return Promise.reject(new Error('closed'));
    return new Promise((resolve, reject) => {
      this.pending.push({ rows, resolve, reject });
      this.pendingRows += rows.length;
      // A caller finding nothing in flight goes at once: waiting only pays when there is a call to share.
      if (this.options.windowMs <= 0 || this.pendingRows >= this.options.maxRows || (this.inFlight === 0 && this.pending.length === 1)) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.options.windowMs);
    });
  }

  /** Fails every waiting caller with `err`; later submissions are refused. */
  close(err: Error): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const s of this.pending) s.reject(err);
    this.pending = [];
    for (const start of this.queue.splice(0)) start();
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    this.pendingRows = 0;
    const start = (): void => void this.run(batch);
    if (this.inFlight < this.options.maxConcurrent) start();
    else this.queue.push(start);
  }

  private async run(batch: Submission<Row, Result>[]): Promise<void> {
    if (this.closed) {
      for (const s of batch) s.reject(new Error('closed'));
      return;
    }
    this.inFlight++;
    try {
      const rows = batch.length === 1 ? [...batch[0]!.rows] : batch.flatMap((s) => s.rows);
      const results = await this.dispatch(rows, batch.length);
      let at = 0;
      for (const s of batch) {
        s.resolve(results.slice(at, at + s.rows.length));
        at += s.rows.length;
      }
    } catch (err) {
      for (const s of batch) s.reject(err);
    } finally {
      this.inFlight--;
      this.queue.shift()?.();
    }
  }
}
