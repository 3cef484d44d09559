import { decode, encode } from '@msgpack/msgpack';
import { ForwardingIndex, type AddOptions, type KvBlockIndex, type PodEntry } from '@kvix/kv-index';
import type { NatsConnection, Subscription } from 'nats';
import type { Logger } from 'pino';
import type { ReplicationMetrics } from './metrics.js';
import type { Subjects } from './subjects.js';

/**
 * Routing decisions' speculative entries, shared between router replicas over core NATS. Without
 * it, a burst of same-prefix requests spread over N replicas lands on up to N pods: each replica
 * only sees its own decisions until the engine's events arrive. Core NATS (not the stream): the
 * entries live seconds, so only speed matters, and a replica that starts later needs none of them.
 */
export class SpeculationExchange implements SpeculationSink {
  private sub: Subscription | null = null;
  private malformed = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly origin: string,
    /** Where peers' decisions go: the local index (not a sharing wrapper, or they would echo), or a relay to routing workers. */
    private readonly index: Pick<KvBlockIndex, 'add'>,
    private readonly metrics: ReplicationMetrics,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.sub = this.nc.subscribe(this.subjects.speculation, {
      callback: (err, msg) => {
        if (err) return;
        void this.receive(msg.data);
      },
    });
  }

  publish(requestKeys: BigUint64Array, entries: readonly PodEntry[], ttlMs: number | undefined): void {
    if (this.nc.isClosed()) return;
    const keys = new Uint8Array(requestKeys.buffer, requestKeys.byteOffset, requestKeys.byteLength);
    try {
      this.nc.publish(this.subjects.speculation, encode([this.origin, keys, entries.map((e) => [e.pod, e.tier, e.group ?? -1]), ttlMs ?? 0]));
      this.metrics.speculationsSent.inc();
    } catch (err) {
      // Draining at shutdown, or the reconnect buffer is full: the decision stands locally; peers
      // see the pod's events instead.
      this.metrics.publishErrors.inc();
      this.logger.debug({ err: (err as Error).message }, 'a routing decision was not shared');
    }
  }

  private async receive(data: Uint8Array): Promise<void> {
    try {
      const doc = decode(data);
      if (!Array.isArray(doc) || typeof doc[0] !== 'string' || !(doc[1] instanceof Uint8Array) || doc[1].byteLength % 8 !== 0 || !Array.isArray(doc[2]) || typeof doc[3] !== 'number') {
        throw new Error('expected [origin, keys, entries, ttlMs]');
      }
      if (doc[0] === this.origin) return;
      const keys = new BigUint64Array(new Uint8Array(doc[1] as Uint8Array).buffer);
      const entries: PodEntry[] = (doc[2] as unknown[]).map((raw) => {
        if (!Array.isArray(raw) || typeof raw[0] !== 'string' || typeof raw[1] !== 'string' || typeof raw[2] !== 'number') throw new Error('an entry must be [pod, tier, group]');
        return raw[2] >= 0 ? { pod: raw[0], tier: raw[1], speculative: true, group: raw[2] } : { pod: raw[0], tier: raw[1], speculative: true };
      });
      const ttlMs = doc[3] as number;
      await this.index.add(null, keys, entries, ttlMs > 0 ? { ttlMs } : {});
      this.metrics.speculationsReceived.inc();
    } catch (err) {
      this.malformed++;
      this.metrics.malformed.inc({ source: 'speculation' });
      if (this.malformed === 1 || this.malformed % 1000 === 0) this.logger.warn({ err: (err as Error).message, total: this.malformed }, 'skipping a malformed or unusable speculation message');
    }
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }
}

/** Where a router's speculative entries go to reach its peers (NATS between replicas, IPC between workers). */
export interface SpeculationSink {
  publish(requestKeys: BigUint64Array, entries: readonly PodEntry[], ttlMs: number | undefined): void;
}

/**
 * The index a router's scorer uses in an active-active deployment: speculative adds (routing
 * decisions) are applied locally and shared with the peers; everything else passes through.
 */
export class SpeculationSharingIndex extends ForwardingIndex {
  constructor(
    inner: KvBlockIndex,
    private readonly exchange: SpeculationSink,
  ) {
    super(inner);
  }

  override async add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options?: AddOptions): Promise<void> {
    await this.inner.add(engineKeys, requestKeys, entries, options);
    const speculative = entries.filter((e) => e.speculative);
    if (speculative.length > 0) this.exchange.publish(requestKeys, speculative, options?.ttlMs);
  }
}
