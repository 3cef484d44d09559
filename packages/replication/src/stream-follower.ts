import type { IndexSnapshot, KvBlockIndex, SnapshotCapable } from '@kvix/kv-index';
import { DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from 'nats';
import type { Logger } from 'pino';
import type { ReplicationError } from './errors.js';
import type { ReplicationMetrics } from './metrics.js';
import { decodeOps, type IndexOp } from './ops-codec.js';
import { APPLIED_AT_HEADER, preciseNow } from './op-publisher.js';
import type { SnapshotStore } from './snapshot-store.js';
import type { Subjects } from './subjects.js';

export type FollowedIndex = KvBlockIndex & SnapshotCapable;

export interface StreamFollowerOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  stream: string;
  subjects: Subjects;
  snapshots: SnapshotStore;
  index: FollowedIndex;
  metrics: ReplicationMetrics;
  logger: Logger;
  /** Called per applied message with its lag (from the publisher applying its oldest operation) — for benchmarks. */
  onApplied?: (lagMs: number, ops: number) => void;
}

export interface FollowerStatus {
  ready: boolean;
  appliedSeq: number;
  snapshotSeq: number | null;
  bootstrapMs: number | null;
  malformed: number;
}

/**
 * Keeps an index equal to the publisher's: load the latest snapshot, then apply the stream from
 * the sequence after it, in order, forever. An ordered consumer redelivers from the last sequence
 * seen after any disconnect, so the operations of a pod are never skipped or reordered.
 * Ready once it has applied everything the stream held when it started.
 */
export class StreamFollower {
  private messages: ConsumerMessages | null = null;
  private appliedSeq = 0;
  private snapshotSeq: number | null = null;
  private readyAt: number | null = null;
  private readonly startedAt = performance.now();
  private malformed = 0;
  private stopped = false;
  private readyResolve!: () => void;
  /** Resolves when caught up with the stream as it was at start. */
  readonly caughtUp = new Promise<void>((resolve) => (this.readyResolve = resolve));

  constructor(private readonly o: StreamFollowerOptions) {}

  status(): FollowerStatus {
    return { ready: this.readyAt !== null, appliedSeq: this.appliedSeq, snapshotSeq: this.snapshotSeq, bootstrapMs: this.readyAt === null ? null : this.readyAt - this.startedAt, malformed: this.malformed };
  }

  get ready(): boolean {
    return this.readyAt !== null;
  }

  async start(): Promise<void> {
    const { js, jsm, stream, logger, metrics } = this.o;
    let startSeq = 1;
    const t0 = performance.now();
    const snap = await this.o.snapshots.read().catch((err: Error) => {
      logger.warn({ err: err.message }, 'cannot read the index snapshot; replaying the stream from its start instead');
      metrics.malformed.inc({ source: 'snapshot' });
      return null;
    });
    if (snap) {
      const loaded = this.load(snap.stored.snapshot);
      this.snapshotSeq = snap.stored.streamSeq;
      startSeq = snap.stored.streamSeq + 1;
      metrics.snapshotSeconds.observe({ operation: 'load' }, (performance.now() - t0) / 1000);
      metrics.snapshotBytes.set(snap.bytes);
      metrics.snapshotEntries.set(loaded);
      logger.info({ entries: loaded, bytes: snap.bytes, streamSeq: snap.stored.streamSeq, from: snap.stored.origin, ms: Math.round(performance.now() - t0) }, 'index loaded from snapshot');
    }
    const info = await jsm.streams.info(stream);
    const target = info.state.last_seq;
    if (info.state.first_seq > startSeq && info.state.messages > 0) {
      logger.warn({ wanted: startSeq, first: info.state.first_seq }, 'the stream no longer holds every operation after the snapshot (retention trimmed it); entries stored in between are missing until pods store them again');
    }
    this.appliedSeq = startSeq - 1;
    if (target < startSeq) this.markReady();
    const consumer = await js.consumers.get(stream, { filterSubjects: this.o.subjects.allOps, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq });
    this.messages = await consumer.consume({ max_messages: 512 });
    void this.run(this.messages, target);
  }

  private load(snapshot: IndexSnapshot): number {
    return this.o.index.importSnapshot(snapshot);
  }

  private async run(messages: ConsumerMessages, target: number): Promise<void> {
    try {
      for await (const m of messages) {
        if (this.stopped) break;
        await this.apply(m);
        if (this.readyAt === null && (m.seq >= target || m.info.pending === 0)) this.markReady();
      }
    } catch (err) {
      if (!this.stopped) this.o.logger.error({ err: (err as Error).message }, 'stream consumer ended unexpectedly');
    }
  }

  private async apply(m: JsMsg): Promise<void> {
    let ops: IndexOp[];
    try {
      ops = decodeOps(m.data);
    } catch (err) {
      this.malformed++;
      this.o.metrics.malformed.inc({ source: 'stream' });
      if (this.malformed === 1 || this.malformed % 1000 === 0) this.o.logger.warn({ seq: m.seq, subject: m.subject, err: (err as ReplicationError).message, total: this.malformed }, 'skipping a malformed stream message');
      this.appliedSeq = m.seq;
      return;
    }
    await applyIndexOps(this.o.index, ops);
    this.appliedSeq = m.seq;
    this.o.metrics.appliedOps.inc(ops.length);
    this.o.metrics.appliedSeq.set(m.seq);
    const appliedAt = Number(m.headers?.get(APPLIED_AT_HEADER));
    if (appliedAt > 0) {
      const lagMs = Math.max(0, preciseNow() - appliedAt);
      this.o.metrics.lag.observe(lagMs / 1000);
      this.o.onApplied?.(lagMs, ops.length);
    }
  }

  private markReady(): void {
    if (this.readyAt !== null) return;
    this.readyAt = performance.now();
    this.o.metrics.bootstrapSeconds.set((this.readyAt - this.startedAt) / 1000);
    this.o.logger.info({ appliedSeq: this.appliedSeq, ms: Math.round(this.readyAt - this.startedAt) }, 'caught up with the index stream');
    this.readyResolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.messages?.close();
  }
}

/** Performs index operations, in order, as the process that published them did (any follower's path). */
export async function applyIndexOps(index: KvBlockIndex, ops: readonly IndexOp[]): Promise<void> {
  for (const op of ops) {
    switch (op.kind) {
      case 'add':
        await index.add(op.engineKeys, op.requestKeys, op.entries);
        break;
      case 'evict':
        for (const key of op.keys) await index.evict(key, op.keyKind, op.entries);
        break;
      case 'clear':
        await index.clear(op.pod);
        break;
    }
  }
}
