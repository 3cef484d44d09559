import { decodeEventBatch, EventDecodeError, type DecodedBatch } from '@kvix/kv-events';
import type { Logger } from 'pino';

/** One ZeroMQ message as it arrived (live or replayed). */
export interface IncomingBatch {
  seq: bigint;
  topic: string;
  payload: Uint8Array;
}

export class ReplayUnavailableError extends Error {
  override readonly name = 'ReplayUnavailableError';
}

/** Fetches every buffered batch with seq >= from, up to the end marker. */
export interface ReplayClient {
  fetch(from: bigint): Promise<IncomingBatch[]>;
}

/** Where a pod's batches go (the event applier) and how its state is dropped. */
export interface StreamSink {
  apply(batch: DecodedBatch, message: IncomingBatch): Promise<{ needsReplay: boolean }>;
  clear(reason: 'reset' | 'overflow' | 'rebuild'): Promise<void>;
}

export const REPLAY_REASONS = ['startup', 'gap', 'tail', 'reset', 'overflow', 'unknown_parent', 'reconnect', 'index_reset'] as const;
export const REPLAY_OUTCOMES = ['complete', 'partial', 'failed', 'skipped'] as const;
export type ReplayReason = (typeof REPLAY_REASONS)[number];
export type ReplayOutcome = (typeof REPLAY_OUTCOMES)[number];

export interface StreamObserver {
  applied?(pod: string, message: IncomingBatch, batch: DecodedBatch): void;
  gap?(pod: string, missing: bigint): void;
  duplicate?(pod: string): void;
  reset?(pod: string): void;
  overflow?(pod: string, dropped: number): void;
  replay?(pod: string, reason: ReplayReason, outcome: ReplayOutcome): void;
  decodeError?(pod: string, error: EventDecodeError): void;
  /** Batches lost for good (no replay, or a replay that could not cover them). */
  lost?(pod: string, batches: bigint): void;
}

export interface StreamOptions {
  /** Most batches queued for this pod; past it the backlog is dropped and recovered by replay. */
  maxQueue: number;
  replay: ReplayClient | null;
  /** Attempts per replay, with exponential backoff between them. */
  replayAttempts: number;
  replayBackoffMs: number;
  /** After a replay failed every attempt, gaps are accepted (and counted) for this long. */
  replayCooldownMs: number;
  /** An unknown parent triggers at most one rebuild per this interval. */
  unknownParentCooldownMs: number;
  /**
   * A seq more than this past the last one is not a gap but another sequence (a publisher that
   * restarted with a different numbering, or garbage): handled as a reset, never counted as that
   * many lost batches. Default 1,000,000 (vLLM buffers 10,000 batches and queues 100,000).
   */
  maxSeqJump?: number;
  now?: () => number;
}

export const DEFAULT_MAX_SEQ_JUMP = 1_000_000;

export type StreamPhase = 'idle' | 'applying' | 'replaying';

export interface StreamState {
  pod: string;
  phase: StreamPhase;
  /**
   * Work queued or under way (batches, a replay, a verification, a tail check, a rebuild): while
   * false, the index holds everything applied up to lastSeq and nothing is about to change it.
   * `phase` alone can read idle between the steps of a rebuild.
   */
  busy: boolean;
  lastSeq: string | null;
  /** The first seq applied in the current stream (what a rebuild must cover). */
  firstSeq: string | null;
  queued: number;
  applied: number;
  gaps: number;
  replays: number;
  resets: number;
  overflows: number;
  lost: number;
  lastAppliedAt: number | null;
  lastError: string | null;
}

const OVERFLOW_LOG_INTERVAL_MS = 10_000;

interface Queued {
  message: IncomingBatch;
  /** Arrival order: tells a batch superseded by a replay from an engine that restarted. */
  arrival: number;
}

/**
 * One pod's event stream, applied strictly in sequence order:
 * - a gap (seq > last + 1) replays from last + 1; a first message with seq > 0 replays from 0;
 * - once the pod goes quiet (requestTailCheck), its replay buffer is asked for anything after the
 *   last applied seq: a batch lost at the end of a burst has no later seq to reveal it;
 * - a lower seq means the engine restarted: the pod is cleared and replayed from 0;
 * - a repeated seq is dropped;
 * - while a replay runs, live batches wait in the queue and apply after it (older seqs dropped),
 *   so a replayed store never resurrects a block a later live removal deleted;
 * - the queue is bounded: on overflow the backlog is dropped and recovered by replay (or, without
 *   replay, the pod is cleared and starts over) rather than growing without bound;
 * - an unknown parent reported by the applier rebuilds the pod from a replay from 0 — clearing it
 *   first, since removals are reference-counted and must not be applied twice — but only when the
 *   replay covers everything already applied, and at most once per cooldown.
 * Transport-free: sockets push messages in and provide a ReplayClient.
 */
export class PodStream {
  private readonly queue: Queued[] = [];
  private arrivals = 0;
  /** Batches that arrived up to here were queued while a replay covered them. */
  private replayHorizon = 0;
  private lastSeq: bigint | null = null;
  private firstSeq: bigint | null = null;
  private overflowed = false;
  /** Batches dropped by overflows since the last recovery, and the newest of them. */
  private droppedCount = 0;
  private droppedUpTo: bigint | null = null;
  /** After a clear without replay: the seq the stream had reached (what is missing after it is lost). */
  private resumeAfter: bigint | null = null;
  /** A pod that keeps overflowing logs it at most once per OVERFLOW_LOG_INTERVAL_MS (metrics count every one). */
  private lastOverflowLogAt = Number.NEGATIVE_INFINITY;
  private overflowsSinceLog = 0;
  private phase: StreamPhase = 'idle';
  private draining = false;
  /** The sink's apply in progress, if any (see whenApplied). */
  private applying: Promise<unknown> | null = null;
  private cooldownUntil = 0;
  private nextRebuildAt = 0;
  private closed = false;
  private readonly now: () => number;
  private readonly counters = { applied: 0, gaps: 0, replays: 0, resets: 0, overflows: 0, lost: 0 };
  private lastAppliedAt: number | null = null;
  private lastError: string | null = null;
  private bootstrapPending = false;
  private verifyPending = false;
  /** Batches that arrived up to here came over the connection that dropped (see verify). */
  private verifyArrival = 0;
  private rebuildPending = false;
  private tailCheckPending = false;
  private readonly chores: (() => Promise<unknown>)[] = [];
  /** Seqs a tail check applied from the replay buffer, whose live copies may still be on the way. */
  private tailApplied: { from: bigint; to: bigint } | null = null;
  private bootstrapDone!: () => void;
  /**
   * Settles once the startup replay has been attempted (at once when there is no replay
   * endpoint): what readiness waits for.
   */
  readonly bootstrapped: Promise<void> = new Promise((resolve) => (this.bootstrapDone = resolve));

  private readonly maxSeqJump: bigint;
  private joinLogged = false;

  constructor(
    readonly pod: string,
    private readonly options: StreamOptions,
    private readonly sink: StreamSink,
    private readonly observer: StreamObserver,
    /** Already bound to the pod (`logger.child({ pod })`): the lines here do not repeat it. */
    private readonly logger: Logger,
  ) {
    this.now = options.now ?? Date.now;
    this.maxSeqJump = BigInt(options.maxSeqJump ?? DEFAULT_MAX_SEQ_JUMP);
  }

  get queued(): number {
    return this.queue.length;
  }

  get hasWork(): boolean {
    return !this.closed && (this.queue.length > 0 || this.overflowed || this.bootstrapPending || this.verifyPending || this.rebuildPending || this.tailCheckPending || this.chores.length > 0);
  }

  /**
   * Runs `chore` between this pod's batches (never during one), e.g. expiring entries its engine
   * never removes: index changes of a pod stay in its lane's order.
   */
  requestChore(chore: () => Promise<unknown>): void {
    if (!this.closed) this.chores.push(chore);
  }

  /**
   * The connection to the pod dropped and came back: the engine may have restarted, and a slow
   * joiner can miss its first batches, so its sequence numbers alone cannot tell. Compare its
   * replay buffer with what was applied instead (see verify).
   */
  requestVerification(): void {
    if (this.options.replay === null) return;
    this.verifyPending = true;
    this.verifyArrival = this.arrivals;
  }

  /**
   * Replays from 0 before any live message: an engine that already holds a cache and is idle
   * would otherwise stay unindexed until it next publishes.
   */
  requestBootstrap(): void {
    if (this.options.replay === null) {
      this.bootstrapDone();
      return;
    }
    this.bootstrapPending = true;
  }

  /**
   * The pod has published nothing for a while: a batch lost at the end of its last burst would
   * stay missing until it next publishes, since only a later seq reveals a gap. The next drain
   * asks the replay buffer for anything after the last applied seq.
   */
  requestTailCheck(): void {
    if (this.options.replay !== null) this.tailCheckPending = true;
  }

  /** Accepts a live message; returns false when it overflowed the queue. */
  push(message: IncomingBatch): boolean {
    if (this.closed) return false;
    if (this.queue.length >= this.options.maxQueue) {
      const dropped = this.queue.length + 1;
      this.queue.length = 0;
      this.overflowed = true;
      this.droppedCount += dropped;
      this.droppedUpTo = message.seq;
      this.counters.overflows++;
      this.observer.overflow?.(this.pod, dropped);
      this.overflowsSinceLog++;
      if (this.now() - this.lastOverflowLogAt >= OVERFLOW_LOG_INTERVAL_MS) {
        this.logger.warn({ dropped, overflows: this.overflowsSinceLog, lost: this.counters.lost }, 'event queue overflowed; backlog dropped, recovering by replay');
        this.lastOverflowLogAt = this.now();
        this.overflowsSinceLog = 0;
      }
      return false;
    }
    this.queue.push({ message, arrival: ++this.arrivals });
    return true;
  }

  /**
   * The index lost what this pod had applied (a shared backend restarted empty): start the pod
   * over from the engine's replay buffer. What the buffer no longer holds is counted as lost.
   */
  requestRebuild(): void {
    this.rebuildPending = true;
  }

  /**
   * Applying failed for a reason other than the batch (an index backend unreachable): resync the
   * way an overflow does, from the last applied seq, once the lane retries.
   */
  markFailed(): void {
    this.overflowed = true;
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.bootstrapDone();
  }

  /**
   * Resolves once the batch being applied, if any, is done. After close() no other batch is
   * applied, so a pod cleared after this stays cleared (a replay under way when the pod was
   * removed would otherwise go on applying its batches).
   */
  async whenApplied(): Promise<void> {
    while (this.applying !== null) await this.applying.catch(() => undefined);
  }

  state(): StreamState {
    return {
      pod: this.pod,
      phase: this.phase,
      busy: this.draining || this.hasWork,
      lastSeq: this.lastSeq === null ? null : this.lastSeq.toString(),
      firstSeq: this.firstSeq === null ? null : this.firstSeq.toString(),
      queued: this.queue.length,
      ...this.counters,
      lastAppliedAt: this.lastAppliedAt,
      lastError: this.lastError,
    };
  }

  /** Processes queued work until the queue is empty (or `budget` messages are done). */
  async drain(budget = Number.POSITIVE_INFINITY): Promise<void> {
    this.draining = true;
    try {
      await this.drainSome(budget);
    } finally {
      this.draining = false;
    }
  }

  private async drainSome(budget: number): Promise<void> {
    let done = 0;
    while (!this.closed && done < budget) {
      if (this.bootstrapPending) {
        this.bootstrapPending = false;
        try {
          if (this.lastSeq === null) await this.replay(0n, 'startup');
        } finally {
          this.bootstrapDone();
        }
        continue;
      }
      if (this.verifyPending) {
        this.verifyPending = false;
        await this.verify();
        continue;
      }
      if (this.rebuildPending) {
        // Supersedes a pending resync from the last applied seq: everything is applied again.
        // Still pending if it fails (the backend went away again), so the retry rebuilds too.
        this.overflowed = false;
        await this.rebuildAfterIndexReset();
        this.rebuildPending = false;
        continue;
      }
      if (this.overflowed) {
        this.overflowed = false;
        await this.recoverFromOverflow();
        continue;
      }
      const chore = this.chores.shift();
      if (chore !== undefined) {
        try {
          await chore();
        } catch (err) {
          this.logger.debug({ err: (err as Error).message }, 'pod chore failed');
        }
        continue;
      }
      if (this.tailCheckPending) {
        this.tailCheckPending = false;
        // Queued batches reveal a gap themselves.
        if (this.queue.length === 0) await this.checkTail();
        continue;
      }
      const item = this.queue.shift();
      if (item === undefined) break;
      await this.handle(item.message, item.arrival);
      done++;
    }
  }

  private async handle(message: IncomingBatch, arrival: number): Promise<void> {
    const seq = message.seq;
    const last = this.lastSeq;
    // Live batches arrive in order: one past the tail check's range means its copies have passed.
    if (this.tailApplied !== null && seq > this.tailApplied.to) this.tailApplied = null;
    if (last !== null && seq > last + this.maxSeqJump) {
      // Not a gap of that many batches: another sequence. Start the pod over from it.
      this.counters.resets++;
      this.observer.reset?.(this.pod);
      this.logger.warn({ seq: seq.toString(), last: last.toString(), maxSeqJump: this.maxSeqJump.toString() }, 'event sequence jumped beyond the window: handled as a restart, clearing the pod');
      await this.sink.clear('reset');
      this.lastSeq = null;
      this.tailApplied = null;
      this.firstSeq = null;
      this.resumeAfter = null;
      await this.startFrom(message, 'reset');
      return;
    }
    if (last === null) {
      const resume = this.resumeAfter;
      this.resumeAfter = null;
      if (resume !== null && seq > resume && seq <= resume + this.maxSeqJump) {
        // Starting over after an overflow: what came before was received (and counted) already.
        if (seq > resume + 1n) this.lose(seq - resume - 1n);
        await this.applyMessage(message);
        return;
      }
      await this.startFrom(message, 'startup');
      return;
    }
    if (seq === last + 1n) {
      await this.applyMessage(message);
      return;
    }
    if (seq === last || (seq < last && (arrival <= this.replayHorizon || this.appliedByTailCheck(seq)))) {
      // Repeated, or already applied by a replay that finished after it was queued (or by a tail
      // check that fetched it before its live copy arrived).
      this.observer.duplicate?.(this.pod);
      return;
    }
    if (seq < last) {
      this.counters.resets++;
      this.observer.reset?.(this.pod);
      this.logger.info({ seq: seq.toString(), last: last.toString() }, 'event sequence went back: engine restarted, clearing the pod');
      await this.sink.clear('reset');
      this.lastSeq = null;
      this.tailApplied = null;
      this.firstSeq = null;
      await this.startFrom(message, 'reset');
      return;
    }
    // A gap: seq > last + 1.
    this.counters.gaps++;
    this.observer.gap?.(this.pod, seq - last - 1n);
    if (this.options.replay !== null && this.now() >= this.cooldownUntil) {
      await this.replay(last + 1n, 'gap');
      if (this.lastSeq !== null && seq <= this.lastSeq) return;
    }
    if (this.lastSeq !== null && seq > this.lastSeq + 1n) this.lose(seq - this.lastSeq - 1n);
    await this.applyMessage(message);
  }

  /**
   * The first batch of a stream (or of a restarted engine's). With replay, the engine's history
   * comes first. Without, nothing before it is counted as lost: a publisher joined late (or whose
   * numbering starts at 1, as llm-d's simulator does) has no batches kvix ever followed before it.
   */
  private async startFrom(message: IncomingBatch, reason: 'startup' | 'reset'): Promise<void> {
    const seq = message.seq;
    if (seq > 0n && this.options.replay !== null) {
      await this.replay(0n, reason);
      if (this.lastSeq !== null && seq <= this.lastSeq) return;
      // What the replay did not reach between its end and this batch was published after it: lost.
      if (this.lastSeq !== null && seq > this.lastSeq + 1n) this.lose(seq - this.lastSeq - 1n);
    } else if (seq > 1n && !this.joinLogged) {
      this.joinLogged = true;
      this.logger.info({ seq: seq.toString() }, 'following a publisher from the middle of its sequence (no replay endpoint): earlier batches are unknown, not counted as lost');
    }
    await this.applyMessage(message);
  }

  private appliedByTailCheck(seq: bigint): boolean {
    return this.tailApplied !== null && seq >= this.tailApplied.from && seq <= this.tailApplied.to;
  }

  /** Applies what the replay buffer holds past the last applied seq (see requestTailCheck). */
  private async checkTail(): Promise<void> {
    const last = this.lastSeq;
    const client = this.options.replay;
    if (client === null || this.now() < this.cooldownUntil) return;
    // Nothing applied yet (a pod whose first batches were all lost): everything is after it.
    const from = last === null ? 0n : last + 1n;
    let batches: IncomingBatch[];
    try {
      batches = await client.fetch(from);
    } catch (err) {
      // Only a probe: the pod's next batch reveals a gap anyway, and its replay retries.
      this.logger.debug({ err: (err as Error).message }, 'tail check failed');
      return;
    }
    const newer = batches.filter((b) => b.seq >= from).sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    if (newer.length === 0) return;
    this.counters.gaps++;
    this.counters.replays++;
    this.observer.gap?.(this.pod, newer[newer.length - 1]!.seq - from + 1n);
    const complete = newer[0]!.seq === from;
    if (!complete) this.lose(newer[0]!.seq - from);
    for (const b of newer) if (this.lastSeq === null || b.seq > this.lastSeq) await this.applyMessage(b, true);
    this.tailApplied = { from: newer[0]!.seq, to: newer[newer.length - 1]!.seq };
    this.replayHorizon = this.arrivals;
    this.observer.replay?.(this.pod, 'tail', complete ? 'complete' : 'partial');
    this.logger.info({ after: last?.toString() ?? null, recovered: newer.length }, 'batches lost at the end of a burst recovered from the replay buffer');
  }

  private async recoverFromOverflow(): Promise<void> {
    const dropped = this.droppedCount;
    const resumeAfter = this.droppedUpTo ?? this.lastSeq;
    this.droppedCount = 0;
    this.droppedUpTo = null;
    if (this.options.replay !== null && this.now() >= this.cooldownUntil) {
      await this.replay(this.lastSeq === null ? 0n : this.lastSeq + 1n, 'overflow');
      return;
    }
    // No way to get the dropped batches back: start the pod over from what comes next.
    if (dropped > 0) this.lose(BigInt(dropped));
    this.resumeAfter = resumeAfter;
    await this.sink.clear('overflow');
    this.lastSeq = null;
    this.tailApplied = null;
    this.firstSeq = null;
  }

  private async rebuildAfterIndexReset(): Promise<void> {
    // Clearing drops the applier's reference counts too: the replay re-announces every block.
    await this.sink.clear('rebuild');
    this.lastSeq = null;
    this.tailApplied = null;
    this.firstSeq = null;
    if (this.options.replay === null) return;
    await this.replay(0n, 'index_reset');
  }

  private lose(batches: bigint): void {
    if (batches <= 0n) return;
    if (batches > this.maxSeqJump) {
      // Beyond any buffer or queue: not a loss that can be measured, another sequence.
      this.logger.warn({ batches: batches.toString() }, 'missing batch count beyond the sequence window not counted as lost');
      return;
    }
    this.counters.lost += Number(batches);
    this.observer.lost?.(this.pod, batches);
  }

  /** Decodes and applies one batch; an unknown parent may rebuild the pod. */
  private async applyMessage(message: IncomingBatch, duringRebuild = false): Promise<void> {
    if (this.closed) return;
    const needsReplay = await this.applyOne(message);
    if (needsReplay && !duringRebuild) await this.maybeRebuild();
  }

  private async applyOne(message: IncomingBatch): Promise<boolean> {
    this.phase = 'applying';
    let needsReplay = false;
    try {
      const batch = decodeEventBatch(message.payload);
      const applying = this.sink.apply(batch, message);
      this.applying = applying;
      const outcome = await applying.finally(() => (this.applying = null));
      needsReplay = outcome.needsReplay;
      this.counters.applied++;
      this.lastAppliedAt = this.now();
      this.observer.applied?.(this.pod, message, batch);
    } catch (err) {
      if (!(err instanceof EventDecodeError)) {
        this.lastError = (err as Error).message;
        throw err;
      }
      // A malformed payload is skipped (a replay would return the same bytes) and the stream goes on.
      this.lastError = `seq ${message.seq}: ${err.message}`;
      this.observer.decodeError?.(this.pod, err);
    } finally {
      this.phase = 'idle';
    }
    if (this.firstSeq === null) this.firstSeq = message.seq;
    this.lastSeq = message.seq;
    this.resumeAfter = null;
    return needsReplay;
  }

  /**
   * Replays from `from`, applying what is newer than the last applied seq. Returns whether the
   * replay reached `from` (a buffer that starts later than `from` leaves a hole, counted as lost).
   */
  private async replay(from: bigint, reason: ReplayReason): Promise<boolean> {
    const batches = await this.fetchReplay(from, reason);
    if (batches === null) return false;
    // A new publisher's history may start at 1 (llm-d's simulator numbers from 1, vLLM from 0).
    const origin = from === 0n && (reason === 'startup' || reason === 'reset') ? 1n : from;
    const complete = batches.length === 0 || batches[0]!.seq <= origin;
    // History from before kvix followed the pod is not lost on kvix's side: only later gaps count.
    if (!complete && reason !== 'startup') this.lose(batches[0]!.seq - from);
    for (const b of batches) {
      if (this.lastSeq !== null && b.seq <= this.lastSeq) continue;
      await this.applyMessage(b, true);
    }
    this.replayHorizon = this.arrivals;
    this.observer.replay?.(this.pod, reason, complete ? 'complete' : 'partial');
    return complete;
  }

  private async fetchReplay(from: bigint, reason: ReplayReason): Promise<IncomingBatch[] | null> {
    const client = this.options.replay;
    if (client === null) return null;
    this.phase = 'replaying';
    this.counters.replays++;
    let delay = this.options.replayBackoffMs;
    try {
      for (let attempt = 1; attempt <= this.options.replayAttempts; attempt++) {
        try {
          const batches = await client.fetch(from);
          return batches.filter((b) => b.seq >= from).sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
        } catch (err) {
          this.lastError = `replay from ${from}: ${(err as Error).message}`;
          if (attempt < this.options.replayAttempts) {
            await new Promise((r) => setTimeout(r, delay));
            delay *= 2;
          }
        }
      }
    } finally {
      this.phase = 'idle';
    }
    this.cooldownUntil = this.now() + this.options.replayCooldownMs;
    this.observer.replay?.(this.pod, reason, 'failed');
    this.logger.warn({ from: from.toString(), reason, error: this.lastError, cooldownMs: this.options.replayCooldownMs }, 'replay failed; gaps are accepted until the cooldown ends');
    return null;
  }

  /**
   * After a reconnection: the engine's whole replay buffer decides. Empty, or ending below the
   * last seq applied or received: the engine restarted, so the pod is cleared and rebuilt from it.
   * Reaching back to the first applied batch: a rebuild loses nothing, so rebuild. Either way the
   * batches still queued from the dropped connection go: the old engine's, or in the buffer just
   * applied (applied after the rebuild, they would resurrect a dead engine's blocks, or continue
   * the new sequence with the old one's). Otherwise it is the same engine with a longer history
   * than its buffer: only what is new is applied.
   */
  private async verify(): Promise<void> {
    let reference = this.lastSeq;
    for (const q of this.queue) if (q.arrival <= this.verifyArrival && (reference === null || q.message.seq > reference)) reference = q.message.seq;
    if (reference === null) return;
    const batches = await this.fetchReplay(0n, 'reconnect');
    if (batches === null) return;
    const newest = batches.length === 0 ? -1n : batches[batches.length - 1]!.seq;
    const restarted = newest < reference;
    const covers = batches.length > 0 && this.firstSeq !== null && batches[0]!.seq <= this.firstSeq;
    if (restarted || covers) {
      if (restarted) {
        this.counters.resets++;
        this.observer.reset?.(this.pod);
        this.logger.info({ last: reference.toString(), newest: newest.toString() }, 'engine restarted while disconnected; clearing the pod');
      }
      let stale = 0;
      while (this.queue.length > 0 && this.queue[0]!.arrival <= this.verifyArrival) {
        this.queue.shift();
        stale++;
      }
      if (stale > 0) this.logger.debug({ batches: stale }, 'batches queued from before the reconnection dropped');
      await this.sink.clear(restarted ? 'reset' : 'rebuild');
      this.lastSeq = null;
      this.tailApplied = null;
      this.firstSeq = null;
      for (const b of batches) await this.applyMessage(b, true);
    } else if (this.lastSeq !== null) {
      for (const b of batches) if (b.seq > this.lastSeq) await this.applyMessage(b, true);
    }
    this.replayHorizon = this.arrivals;
    this.observer.replay?.(this.pod, 'reconnect', 'complete');
  }

  /** The applier met a parent it never saw: rebuild the pod from the engine's replay buffer. */
  private async maybeRebuild(): Promise<void> {
    if (this.options.replay === null || this.now() < this.nextRebuildAt || this.now() < this.cooldownUntil) {
      this.observer.replay?.(this.pod, 'unknown_parent', 'skipped');
      return;
    }
    this.nextRebuildAt = this.now() + this.options.unknownParentCooldownMs;
    const batches = await this.fetchReplay(0n, 'unknown_parent');
    if (batches === null) return;
    // Rebuilding drops everything applied so far, so the replay must reach back at least as far.
    const covers = batches.length > 0 && this.firstSeq !== null && batches[0]!.seq <= this.firstSeq;
    if (!covers) {
      this.observer.replay?.(this.pod, 'unknown_parent', 'skipped');
      this.logger.info({ firstApplied: this.firstSeq?.toString(), oldestBuffered: batches[0]?.seq.toString() }, 'unknown parent older than the engine\'s replay buffer; not rebuilding');
      return;
    }
    await this.sink.clear('rebuild');
    this.lastSeq = null;
    this.tailApplied = null;
    this.firstSeq = null;
    for (const b of batches) await this.applyMessage(b, true);
    this.replayHorizon = this.arrivals;
    this.observer.replay?.(this.pod, 'unknown_parent', 'complete');
    this.logger.info({ batches: batches.length }, 'pod rebuilt from a replay after an unknown parent');
  }
}
