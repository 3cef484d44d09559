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
  /**
   * Called whenever a peer's reported load changed (it reported, left, or went silent): a source
   * that hands the peers' load on (an EPP primary to its routing workers) reads it again then.
   */
  peersChanged?(): void;
}

/** Tokens a router has in flight per endpoint (the predicted-latency producer's tracker fits it). */
export interface InFlightTokenSource {
  own(): Map<string, { prefill: number; decode: number }>;
  onChange(listener: () => void): () => void;
  setPeerTokens(source: (id: string) => { prefill: number; decode: number }): void;
}

interface PeerLoad {
  counts: Map<string, number>;
  tokens: Map<string, { prefill: number; decode: number }>;
  seenAt: number;
}

const HEARTBEAT_MS = 1000;

/**
 * In-flight load between router replicas — request counts per endpoint, and the tokens in flight
 * when predicted-latency routing tracks them: each publishes its own (coalesced over
 * a few milliseconds after a change, and every second regardless), and adds its live peers' counts
 * to its own when scoring load. A peer that stops reporting is forgotten after `peerTimeoutMs`.
 */
export class LoadExchange {
  private sub: Subscription | null = null;
  private readonly peers = new Map<string, PeerLoad>();
  private flushTimer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly unsubscribes: (() => void)[] = [];
  private source: InFlightSource | null = null;
  private tokens: InFlightTokenSource | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly origin: string,
    private readonly options: { flushMs: number; peerTimeoutMs: number },
    private readonly metrics: ReplicationMetrics,
    private readonly logger: Logger,
  ) {}

  attach(source: InFlightSource, tokens: InFlightTokenSource | null = null): void {
    this.source = source;
    this.tokens = tokens;
    source.setPeerInFlight((id) => this.peerInFlight(id));
    this.unsubscribes.push(source.onInFlightChange(() => this.schedule()));
    if (tokens) {
      tokens.setPeerTokens((id) => this.peerTokens(id));
      this.unsubscribes.push(tokens.onChange(() => this.schedule()));
    }
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

  /** Tokens in flight to an endpoint from every live peer. */
  peerTokens(id: string): { prefill: number; decode: number } {
    let prefill = 0;
    let decode = 0;
    const alive = Date.now() - this.options.peerTimeoutMs;
    for (const p of this.peers.values()) {
      if (p.seenAt < alive) continue;
      const t = p.tokens.get(id);
      if (t) {
        prefill += t.prefill;
        decode += t.decode;
      }
    }
    return { prefill, decode };
  }

  peerCount(): number {
    return this.peers.size;
  }

  /** Tells the peers this replica has nothing in flight any more (on shutdown). */
  stop(): void {
    for (const u of this.unsubscribes.splice(0)) u();
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
      const tokens = this.tokens ? Object.fromEntries([...this.tokens.own()].map(([id, t]) => [id, [t.prefill, t.decode]])) : {};
      this.nc.publish(this.subjects.load(this.origin), encode([this.origin, Object.fromEntries(this.source.ownInFlight()), false, tokens]));
    } catch (err) {
      // Runs from timers: a draining or overfull connection must not take the process down.
      this.metrics.publishErrors.inc();
      this.logger.debug({ err: (err as Error).message }, 'in-flight counts not shared this time');
    }
  }

  private receive(data: Uint8Array): void {
    try {
      const doc = decode(data);
      if (!Array.isArray(doc) || typeof doc[0] !== 'string' || typeof doc[1] !== 'object' || doc[1] === null) throw new Error('expected [origin, counts, leaving, tokens?]');
      const [origin, counts, leaving, rawTokens] = doc as [string, Record<string, unknown>, boolean, Record<string, unknown> | undefined];
      if (origin === this.origin) return;
      if (leaving) {
        if (this.peers.delete(origin)) this.logger.info({ peer: origin }, 'peer replica left');
      } else {
        const map = new Map<string, number>();
        for (const [k, v] of Object.entries(counts)) if (typeof v === 'number' && v > 0) map.set(k, v);
        const tokens = new Map<string, { prefill: number; decode: number }>();
        if (typeof rawTokens === 'object' && rawTokens !== null) {
          for (const [k, v] of Object.entries(rawTokens)) {
            if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'number') tokens.set(k, { prefill: Math.max(0, v[0]), decode: Math.max(0, v[1]) });
          }
        }
        if (!this.peers.has(origin)) this.logger.info({ peer: origin }, 'peer replica joined');
        this.peers.set(origin, { counts: map, tokens, seenAt: Date.now() });
      }
      this.metrics.peers.set(this.peers.size);
      this.source?.peersChanged?.();
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
        this.source?.peersChanged?.();
      }
    }
    this.metrics.peers.set(this.peers.size);
  }
}
