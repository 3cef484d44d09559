import { ForwardingIndex, type AddOptions, type KvBlockIndex, type PodEntry } from '@kvix/kv-index';
import { ScoringError } from '../errors.js';

/**
 * How long a routing decision's speculative entries live, learned per pod from how long the pod's
 * own KV events take to confirm decisions. A fixed TTL (llm-d's 2 s) expires exactly when it is
 * needed most: once the pods queue, a prefill — and the BlockStored events it causes — starts
 * seconds after the decision, the speculation is gone before the real entries arrive, and a burst
 * of the same prefix scatters. Here the TTL is `headroom` × the `percentile` of the pod's recent
 * decision→confirmation latencies, within [minMs, maxMs].
 *
 * The latency is measured from the decision to the pod's event storing the prompt's last block
 * (where the events pass through this process's applier: `watchStores`), whether or not the
 * speculation was still alive — a TTL that is too short is seen as such. Where the index arrives
 * another way (a replica following the index stream) the index's own confirmations of live
 * speculations are the samples (`observeConfirmation`): those never exceed the TTL in force, but
 * with headroom above 1 a TTL that is too short still grows (the observed percentile sits near
 * the TTL, the next TTL is `headroom` times larger) as long as some decisions beat it. Samples
 * older than `windowMs` are forgotten, so the TTL comes back down when the queues drain.
 */
export interface AdaptiveTtlOptions {
  /** The TTL before a pod (or the fleet) has enough samples. */
  initialMs: number;
  minMs: number;
  maxMs: number;
  /** Quantile of recent confirmation latencies, in (0, 1]. */
  percentile: number;
  /** Multiplier on that quantile, ≥ 1. */
  headroom: number;
  /** Samples older than this are forgotten. */
  windowMs: number;
  /** Samples a pod needs before its own quantile is used (before, the fleet's). */
  minSamples: number;
  /** Samples kept per pod (the most recent). */
  maxSamples?: number;
  /** Clock in ms (tests inject one). */
  now?: () => number;
}

export const DEFAULT_ADAPTIVE_TTL: Omit<AdaptiveTtlOptions, 'initialMs' | 'now'> = {
  minMs: 500,
  maxMs: 30_000,
  percentile: 0.99,
  headroom: 1.5,
  windowMs: 60_000,
  minSamples: 16,
};

/** A TTL is recomputed at most this often per pod (a quantile sorts the window); between, the last one holds. */
const RECOMPUTE_EVERY_MS = 250;
const DEFAULT_MAX_SAMPLES = 512;
/** Pods tracked at most (a pod that left stops being sampled and ages out of its window). */
const MAX_PODS = 4096;

/** A decision whose last block's store has not been seen yet. */
interface PendingDecision {
  pod: string;
  at: number;
}

/** A 52-bit number for a 64-bit key's two words: a Map key without a BigInt per lookup. */
function keyNumber(lo: number, hi: number): number {
  return (hi & 0xfffff) * 0x1_0000_0000 + lo;
}

class Window {
  readonly at: Float64Array;
  readonly latency: Float64Array;
  /** Ring position of the next sample; `size` valid samples end just before it. */
  next = 0;
  size = 0;
  ttlMs = Number.NaN;
  computedAt = Number.NEGATIVE_INFINITY;
  lastLatency = Number.NaN;
  lastAt = Number.NaN;

  constructor(capacity: number) {
    this.at = new Float64Array(capacity);
    this.latency = new Float64Array(capacity);
  }

  push(at: number, latency: number): void {
    this.at[this.next] = at;
    this.latency[this.next] = latency;
    this.next = (this.next + 1) % this.at.length;
    if (this.size < this.at.length) this.size++;
  }

  /** The latencies sampled since `since`, unsorted. */
  recent(since: number, into: number[]): void {
    const cap = this.at.length;
    for (let k = 0; k < this.size; k++) {
      const i = (this.next - 1 - k + cap) % cap;
      if (this.at[i]! < since) break;
      into.push(this.latency[i]!);
    }
  }
}

export interface AdaptiveTtlSnapshot {
  /** Per pod: the TTL in force, the samples it rests on, and the quantile itself. */
  pods: { pod: string; ttlMs: number; samples: number; quantileMs: number | null }[];
  fleet: { ttlMs: number; samples: number; quantileMs: number | null };
}

export class AdaptiveSpeculativeTtl {
  private readonly options: Required<Omit<AdaptiveTtlOptions, 'now'>>;
  private readonly now: () => number;
  private readonly pods = new Map<string, Window>();
  private readonly fleet: Window;
  private readonly pending = new Map<number, PendingDecision[]>();
  /** Pending decisions in the order they were made, to forget those never stored. */
  private readonly pendingOrder: { key: number; at: number }[] = [];
  private pendingHead = 0;

  /** From a service's index settings (`speculativeTtlMs` and its `adaptiveSpeculativeTtl` section); null when off. */
  static fromSettings(settings: { speculativeTtlMs: number; adaptiveSpeculativeTtl: Omit<AdaptiveTtlOptions, 'initialMs' | 'now' | 'maxSamples'> & { enabled: boolean } }): AdaptiveSpeculativeTtl | null {
    const { enabled, ...options } = settings.adaptiveSpeculativeTtl;
    return enabled ? new AdaptiveSpeculativeTtl({ ...options, initialMs: settings.speculativeTtlMs }) : null;
  }

  constructor(options: AdaptiveTtlOptions) {
    const o = { maxSamples: DEFAULT_MAX_SAMPLES, ...options };
    const positiveInt = (v: number, name: string): void => {
      if (!(Number.isInteger(v) && v > 0)) throw new ScoringError('INVALID_CONFIG', `adaptive speculative TTL: ${name} must be a positive integer, got ${String(v)}`);
    };
    positiveInt(o.initialMs, 'initialMs');
    positiveInt(o.minMs, 'minMs');
    positiveInt(o.maxMs, 'maxMs');
    positiveInt(o.windowMs, 'windowMs');
    positiveInt(o.minSamples, 'minSamples');
    positiveInt(o.maxSamples, 'maxSamples');
    if (o.minMs > o.maxMs) throw new ScoringError('INVALID_CONFIG', `adaptive speculative TTL: minMs (${o.minMs}) is above maxMs (${o.maxMs})`);
    if (!(o.percentile > 0 && o.percentile <= 1)) throw new ScoringError('INVALID_CONFIG', `adaptive speculative TTL: percentile must be in (0, 1], got ${String(o.percentile)}`);
    if (!(o.headroom >= 1 && Number.isFinite(o.headroom))) throw new ScoringError('INVALID_CONFIG', `adaptive speculative TTL: headroom must be ≥ 1, got ${String(o.headroom)}`);
    this.options = { initialMs: o.initialMs, minMs: o.minMs, maxMs: o.maxMs, percentile: o.percentile, headroom: o.headroom, windowMs: o.windowMs, minSamples: o.minSamples, maxSamples: o.maxSamples };
    this.now = options.now ?? (() => performance.timeOrigin + performance.now());
    // The fleet window sees every pod's samples, so it keeps more.
    this.fleet = new Window(o.maxSamples * 4);
  }

  /**
   * A speculative entry of `pod` was confirmed by the pod's own event, `latencyMs` after the
   * decision. Every block of a decision is confirmed by the same event at the same moment, with
   * the same latency: such repeats count once.
   */
  observeConfirmation(pod: string, latencyMs: number): void {
    if (!(latencyMs >= 0) || !Number.isFinite(latencyMs)) return;
    const now = this.now();
    let w = this.pods.get(pod);
    if (w === undefined) {
      if (this.pods.size >= MAX_PODS) this.forgetIdlePods(now);
      if (this.pods.size >= MAX_PODS) return;
      w = new Window(this.options.maxSamples);
      this.pods.set(pod, w);
    }
    if (w.lastAt === now && w.lastLatency === latencyMs) return;
    w.lastAt = now;
    w.lastLatency = latencyMs;
    w.push(now, latencyMs);
    this.fleet.push(now, latencyMs);
  }

  /**
   * A decision sent a prompt whose last block has request key `lastKey` to `pod`; the latency is
   * taken when an event of the pod stores that block (`stored`). Decisions never stored (the pod
   * already held the prompt, or the request failed) are forgotten after maxMs.
   */
  decided(pod: string, lastKey: bigint): void {
    const now = this.now();
    this.forgetPending(now);
    const key = keyNumber(Number(lastKey & 0xffffffffn), Number(lastKey >> 32n));
    const list = this.pending.get(key);
    if (list === undefined) this.pending.set(key, [{ pod, at: now }]);
    else if (!list.some((d) => d.pod === pod)) list.push({ pod, at: now });
    else return;
    this.pendingOrder.push({ key, at: now });
  }

  /** A pod's event stored these request keys (real entries). */
  stored(pod: string, requestKeys: BigUint64Array): void {
    if (this.pending.size === 0 || requestKeys.length === 0) return;
    const words = new Uint32Array(requestKeys.buffer, requestKeys.byteOffset, requestKeys.length * 2);
    for (let i = 0; i < requestKeys.length; i++) {
      const key = keyNumber(words[2 * i]!, words[2 * i + 1]!);
      const list = this.pending.get(key);
      if (list === undefined) continue;
      const at = list.findIndex((d) => d.pod === pod);
      if (at < 0) continue;
      const decision = list[at]!;
      if (list.length === 1) this.pending.delete(key);
      else list.splice(at, 1);
      this.observeConfirmation(pod, this.now() - decision.at);
    }
  }

  /** `index` with every real entry it is given reported to `stored` (wrap what the event applier writes to). */
  watchStores(index: KvBlockIndex): KvBlockIndex {
    return new StoreWatchingIndex(index, this);
  }

  /** The TTL for a decision to `pod` now. */
  ttlFor(pod: string): number {
    const now = this.now();
    const w = this.pods.get(pod);
    if (w !== undefined) {
      const ttl = this.ttlOf(w, now);
      if (!Number.isNaN(ttl)) return ttl;
    }
    const fleet = this.ttlOf(this.fleet, now);
    return Number.isNaN(fleet) ? this.clamp(this.options.initialMs) : fleet;
  }

  snapshot(): AdaptiveTtlSnapshot {
    const now = this.now();
    const view = (w: Window): { ttlMs: number; samples: number; quantileMs: number | null } => {
      const samples: number[] = [];
      w.recent(now - this.options.windowMs, samples);
      const q = samples.length > 0 ? quantile(samples, this.options.percentile) : null;
      return { ttlMs: Number.NaN, samples: samples.length, quantileMs: q };
    };
    return {
      pods: [...this.pods.entries()].map(([pod, w]) => ({ pod, ...view(w), ttlMs: this.ttlFor(pod) })),
      fleet: { ...view(this.fleet), ttlMs: this.fleetTtl(now) },
    };
  }

  private fleetTtl(now: number): number {
    const t = this.ttlOf(this.fleet, now);
    return Number.isNaN(t) ? this.clamp(this.options.initialMs) : t;
  }

  /** The window's TTL, or NaN when it holds too few recent samples. */
  private ttlOf(w: Window, now: number): number {
    if (now - w.computedAt < RECOMPUTE_EVERY_MS) return w.ttlMs;
    const samples: number[] = [];
    w.recent(now - this.options.windowMs, samples);
    w.ttlMs = samples.length < this.options.minSamples ? Number.NaN : this.clamp(this.options.headroom * quantile(samples, this.options.percentile));
    w.computedAt = now;
    return w.ttlMs;
  }

  private clamp(ms: number): number {
    return Math.round(Math.min(this.options.maxMs, Math.max(this.options.minMs, ms)));
  }

  private forgetPending(now: number): void {
    const horizon = now - this.options.maxMs;
    const order = this.pendingOrder;
    while (this.pendingHead < order.length && order[this.pendingHead]!.at < horizon) {
      const { key, at } = order[this.pendingHead++]!;
      const list = this.pending.get(key);
      if (list === undefined) continue;
      const kept = list.filter((d) => d.at !== at);
      if (kept.length === 0) this.pending.delete(key);
      else this.pending.set(key, kept);
    }
    if (this.pendingHead > 1024 && this.pendingHead * 2 > order.length) {
      order.splice(0, this.pendingHead);
      this.pendingHead = 0;
    }
  }

  private forgetIdlePods(now: number): void {
    for (const [pod, w] of this.pods) if (!(w.lastAt >= now - this.options.windowMs)) this.pods.delete(pod);
  }
}

/** Nearest-rank quantile (sorts `values`). */
function quantile(values: number[], q: number): number {
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.max(0, Math.ceil(q * values.length) - 1))]!;
}

/** Reports the real entries added through it to the adaptive TTL (the decision's confirmation). */
class StoreWatchingIndex extends ForwardingIndex {
  constructor(
    inner: KvBlockIndex,
    private readonly ttl: AdaptiveSpeculativeTtl,
  ) {
    super(inner);
  }

  override add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options?: AddOptions): Promise<void> {
    for (const e of entries) if (!e.speculative) this.ttl.stored(e.pod, requestKeys);
    return super.add(engineKeys, requestKeys, entries, options);
  }
}
