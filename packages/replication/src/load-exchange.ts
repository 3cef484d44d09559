import { decode, encode } from '@msgpack/msgpack';
import type { NatsConnection, Subscription } from 'nats';
import type { Logger } from 'pino';
import type { ReplicationMetrics } from './metrics.js';
import type { Subjects } from './subjects.js';

/** What a router exposes of its in-flight counts (the scheduler's endpoint registry fits it). */
export interface InFlightSource {
  ownInFlight(): Map<string, number>;
  onInFlightChange(listener: (id: string, inFlight: number) => void): () => void;
  setPeerInFlight(source: (id: string) => number): void;
}

interface PeerLoad {
  counts: Map<string, number>;
  seenAt: number;
}

const HEARTBEAT_MS = 1000;

/**
 * In-flight request counts between router replicas: each publishes its own counts (coalesced over
 * a few milliseconds after a change, and every second regardless), and adds its live peers' counts
 * to its own when scoring load. A peer that stops reporting is forgotten after `peerTimeoutMs`.
 */
export class LoadExchange {
  private sub: Subscription | null = null;
  private readonly peers = new Map<string, PeerLoad>();
  private flushTimer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private source: InFlightSource | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly origin: string,
    private readonly options: { flushMs: number; peerTimeoutMs: number },
    private readonly metrics: ReplicationMetrics,
    private readonly logger: Logger,
  ) {}

  attach(source: InFlightSource): void {
    this.source = source;
    source.setPeerInFlight((id) => this.peerInFlight(id));
    this.unsubscribe = source.onInFlightChange(() => this.schedule());
    this.sub = this.nc.subscribe(this.subjects.allLoad, { callback: (err, msg) => !err && this.receive(msg.data) });
    this.heartbeat = setInterval(() => {
      this.publish();
      this.forgetSilentPeers();
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
    this.publish();
  }

  /** In flight to an endpoint from every live peer. */
  peerInFlight(id: string): number {
    let n = 0;
    const alive = Date.now() - this.options.peerTimeoutMs;
    for (const p of this.peers.values()) if (p.seenAt >= alive) n += p.counts.get(id) ?? 0;
    return n;
  }

  peerCount(): number {
    return this.peers.size;
  }

  /** Tells the peers this replica has nothing in flight any more (on shutdown). */
  stop(): void {
    this.unsubscribe?.();
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (!this.nc.isClosed()) {
      try {
        this.nc.publish(this.subjects.load(this.origin), encode([this.origin, {}, true]));
      } catch {
        // Peers forget this replica after peerTimeoutMs anyway.
      }
    }
    this.sub?.unsubscribe();
  }

  private schedule(): void {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null;
      this.publish();
    }, this.options.flushMs);
  }

  private publish(): void {
    if (!this.source || this.nc.isClosed()) return;
    try {
      this.nc.publish(this.subjects.load(this.origin), encode([this.origin, Object.fromEntries(this.source.ownInFlight()), false]));
    } catch (err) {
      // Runs from timers: a draining or overfull connection must not take the process down.
      this.metrics.publishErrors.inc();
      this.logger.debug({ err: (err as Error).message }, 'in-flight counts not shared this time');
    }
  }

  private receive(data: Uint8Array): void {
    try {
      const doc = decode(data);
      if (!Array.isArray(doc) || typeof doc[0] !== 'string' || typeof doc[1] !== 'object' || doc[1] === null) throw new Error('expected [origin, counts, leaving]');
      const [origin, counts, leaving] = doc as [string, Record<string, unknown>, boolean];
      if (origin === this.origin) return;
      if (leaving) {
        if (this.peers.delete(origin)) this.logger.info({ peer: origin }, 'peer replica left');
      } else {
        const map = new Map<string, number>();
        for (const [k, v] of Object.entries(counts)) if (typeof v === 'number' && v > 0) map.set(k, v);
        if (!this.peers.has(origin)) this.logger.info({ peer: origin }, 'peer replica joined');
        this.peers.set(origin, { counts: map, seenAt: Date.now() });
      }
      this.metrics.peers.set(this.peers.size);
    } catch (err) {
      this.metrics.malformed.inc({ source: 'load' });
      this.logger.debug({ err: (err as Error).message }, 'skipping a malformed load message');
    }
  }

  private forgetSilentPeers(): void {
    const alive = Date.now() - this.options.peerTimeoutMs;
    for (const [origin, p] of this.peers) {
      if (p.seenAt < alive) {
        this.peers.delete(origin);
        this.logger.warn({ peer: origin }, 'peer replica silent; its in-flight counts are no longer counted');
      }
    }
    this.metrics.peers.set(this.peers.size);
  }
}
