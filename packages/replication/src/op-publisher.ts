import { headers, type JetStreamClient } from 'nats';
import type { Logger } from 'pino';
import type { PodEntry } from '@kvix/kv-index';
import { encodeOps, type IndexOp } from './ops-codec.js';
import type { ReplicationMetrics } from './metrics.js';
import type { Subjects } from './subjects.js';

export const ORIGIN_HEADER = 'Kvix-Origin';
/** When the oldest operation of the message was applied (ms since the epoch, fractional): replication lag starts there. */
export const APPLIED_AT_HEADER = 'Kvix-Applied-At';

/** Wall-clock milliseconds with sub-millisecond resolution (comparable between processes on one host). */
export const preciseNow = (): number => performance.timeOrigin + performance.now();
/** Operations per stream message: big enough to amortise the acknowledgement, small next to NATS's 1 MiB payload limit. */
const MAX_OPS_PER_MESSAGE = 512;

interface PodQueue {
  ops: IndexOp[];
  /** When each queued operation was applied. */
  times: number[];
  publishing: boolean;
  /** Operations were dropped: the pod must be republished whole before anything else. */
  resync: boolean;
  /** How many of `ops` (from the front) are in the message being published: those are sealed. */
  sealed: number;
}

export interface OpPublisherOptions {
  js: JetStreamClient;
  subjects: Subjects;
  /** Unique per process start: message ids are `<origin>:<n>`, deduplicated by JetStream on retry. */
  origin: string;
  maxPendingOpsPerPod: number;
  publishTimeoutMs: number;
  /** The pod's whole current state as operations (clear first), for a resync after dropped operations. */
  podState: (pod: string) => Promise<IndexOp[]>;
  metrics: ReplicationMetrics;
  logger: Logger;
}

/**
 * Publishes each pod's operations in the order they were applied. One message per pod is in flight
 * at a time: a retried publish can then never land after a later one, which keeps every pod's
 * history in order on the stream (operations accumulate meanwhile and go out together, so the
 * acknowledgement round trip bounds latency, not throughput). While NATS is away operations are
 * held up to a bound per pod; past it they are dropped and the pod is later republished whole.
 */
export class OpPublisher {
  private readonly queues = new Map<string, PodQueue>();
  private pending = 0;
  private counter = 0;
  private closed = false;
  private lastSeq = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private failing = false;

  constructor(private readonly o: OpPublisherOptions) {}

  /** Highest stream sequence acknowledged for this publisher's messages. */
  get lastAckedSeq(): number {
    return this.lastSeq;
  }

  get pendingOps(): number {
    return this.pending;
  }

  enqueue(pod: string, op: IndexOp): void {
    if (this.closed) return;
    let q = this.queues.get(pod);
    if (!q) {
      q = { ops: [], times: [], publishing: false, resync: false, sealed: 0 };
      this.queues.set(pod, q);
    }
    if (q.ops.length >= this.o.maxPendingOpsPerPod) {
      this.o.metrics.droppedOps.inc({ reason: 'backlog' }, q.ops.length + 1);
      this.pending -= q.ops.length;
      if (!q.resync) this.o.logger.warn({ pod, dropped: q.ops.length + 1 }, 'replication backlog full while NATS is away: dropping this pod\'s operations; it will be republished whole');
      q.ops = [];
      q.times = [];
      q.sealed = 0;
      q.resync = true;
    } else if (!this.coalesce(q, op)) {
      q.ops.push(op);
      q.times.push(preciseNow());
      this.pending++;
    }
    this.o.metrics.pendingOps.set(this.pending);
    if (!q.publishing) {
      q.publishing = true;
      // Operations applied in the same tick (one event batch, usually) share a message.
      setImmediate(() => void this.drain(pod, q));
    }
  }

  /**
   * Consecutive removals of the same entries become one operation with many keys: an engine
   * announces evictions in lists, and one key per operation tripled the stream's encoding cost.
   */
  private coalesce(q: PodQueue, op: IndexOp): boolean {
    if (op.kind !== 'evict' || q.ops.length <= q.sealed) return false;
    const last = q.ops[q.ops.length - 1]!;
    if (last.kind !== 'evict' || last.keyKind !== op.keyKind || last.keys.length >= 4096 || !sameEntries(last.entries, op.entries)) return false;
    last.keys.push(...op.keys);
    return true;
  }

  /** Resolves once every operation enqueued so far is acknowledged (or the publisher closed). */
  idle(): Promise<void> {
    if (this.pending === 0 && ![...this.queues.values()].some((q) => q.publishing)) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.closed = true;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private async drain(pod: string, q: PodQueue): Promise<void> {
    let backoff = 50;
    while (!this.closed && (q.ops.length > 0 || q.resync)) {
      // A message is retried unchanged under the same id until acknowledged: JetStream then drops
      // the retry if the first attempt did land, and nothing is ever published twice or partly.
      const resync = q.resync;
      const appliedAt = resync ? preciseNow() : q.times[0]!;
      const batch = resync ? await this.o.podState(pod) : q.ops.slice(0, MAX_OPS_PER_MESSAGE);
      if (!resync) q.sealed = batch.length;
      const messages = [...chunks(batch)].map((ops) => ({ ops, data: encodeOps(ops), msgID: `${this.o.origin}:${++this.counter}` }));
      for (let i = 0; i < messages.length && !this.closed; ) {
        const m = messages[i]!;
        try {
          const h = headers();
          h.set(ORIGIN_HEADER, this.o.origin);
          h.set(APPLIED_AT_HEADER, String(appliedAt));
          const ack = await this.o.js.publish(this.o.subjects.ops(pod), m.data, { msgID: m.msgID, headers: h, timeout: this.o.publishTimeoutMs });
          if (ack.seq > this.lastSeq) this.lastSeq = ack.seq;
          this.o.metrics.publishedMessages.inc();
          this.o.metrics.publishedOps.inc(m.ops.length);
          if (this.failing) {
            this.failing = false;
            this.o.logger.info('publishing index operations to the stream again');
          }
          backoff = 50;
          i++;
        } catch (err) {
          this.o.metrics.publishErrors.inc();
          if (!this.failing) {
            this.failing = true;
            this.o.logger.warn({ pod, err: (err as Error).message }, 'cannot publish index operations; holding them and retrying');
          }
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(backoff * 2, 2000);
        }
      }
      if (this.closed) break;
      if (resync) {
        q.resync = false;
        this.o.metrics.resyncs.inc();
        this.o.logger.info({ pod, ops: batch.length }, 'pod republished whole after dropped operations');
      } else if (!q.resync) {
        // (A backlog overflow during the publish already emptied the queue and asked for a resync.)
        q.ops.splice(0, batch.length);
        q.times.splice(0, batch.length);
        q.sealed = 0;
        this.pending -= batch.length;
        this.o.metrics.pendingOps.set(this.pending);
      }
    }
    q.publishing = false;
    if (this.pending === 0 && ![...this.queues.values()].some((x) => x.publishing)) for (const w of this.idleWaiters.splice(0)) w();
  }
}

function sameEntries(a: readonly PodEntry[], b: readonly PodEntry[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.pod !== y.pod || x.tier !== y.tier || x.group !== y.group) return false;
  }
  return true;
}

/** A resync of a large pod is split so that no message approaches the payload limit. */
function* chunks(ops: IndexOp[]): Generator<IndexOp[]> {
  for (let i = 0; i < ops.length; i += MAX_OPS_PER_MESSAGE) yield ops.slice(i, i + MAX_OPS_PER_MESSAGE);
}
