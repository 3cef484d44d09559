import type { AnalyticsView, ReuseSources } from './analytics-view.js';
import { analyticsView } from './analytics-view.js';

/** Cumulative blocks and matched blocks (with their tiers) at one instant. */
export interface ReuseTally {
  blocks: number;
  hitBlocks: number;
  tiers: Record<string, number>;
}

/**
 * One sample of the running totals. The page charts differences between consecutive samples
 * (hit ratio over each interval, not since start), so a point stays small and a restart of the
 * tallies shows as a reset rather than a wrong ratio.
 */
export interface HistoryPoint {
  /** Unix milliseconds. */
  t: number;
  /** Scored prompts per model. */
  byModel: Record<string, ReuseTally>;
  /** Routed prompts per chosen pod. */
  byPod: Record<string, ReuseTally>;
  speculation: { confirmed: number; expired: number };
  /** Index entries per pod (confirmed + speculative). */
  entries: Record<string, number>;
  /** Per pod: cumulative gaps, replays, lost batches; the event-lag p90 bucket bound (seconds). */
  events: Record<string, { gaps: number; replays: number; lost: number; lagP90: number | null }>;
}

export interface HistoryOptions {
  /** Milliseconds between samples. */
  intervalMs: number;
  /** Samples kept (the oldest is dropped). */
  capacity: number;
}

export const DEFAULT_HISTORY: HistoryOptions = { intervalMs: 5000, capacity: 720 };

/**
 * The recent past of the reuse analytics, sampled on a timer in a fixed-size ring, so the page
 * opens on the last hour rather than an empty chart. A sample costs one analytics view (a
 * snapshot of counters and the index's per-pod counts).
 */
export class ReuseHistory {
  private readonly points: HistoryPoint[] = [];
  private timer: NodeJS.Timeout | null = null;
  private sampling: Promise<void> | null = null;

  constructor(
    private readonly sources: ReuseSources,
    readonly options: HistoryOptions = DEFAULT_HISTORY,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {}

  start(): void {
    if (this.timer) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Takes a sample now (also what the timer does); concurrent calls share one. */
  sample(): Promise<void> {
    this.sampling ??= (async () => {
      try {
        // No shared prefixes: a point does not chart them, and merged tallies ship without them.
        this.push(toPoint(await analyticsView(this.sources, 0), Date.now()));
      } catch (err) {
        // A backend away (Redis) skips a sample; the chart shows the hole.
        this.onError(err as Error);
      } finally {
        this.sampling = null;
      }
    })();
    return this.sampling;
  }

  /** Samples after `since` (Unix ms), oldest first. */
  since(since = 0): HistoryPoint[] {
    return this.points.filter((p) => p.t > since);
  }

  private push(point: HistoryPoint): void {
    this.points.push(point);
    if (this.points.length > this.options.capacity) this.points.splice(0, this.points.length - this.options.capacity);
  }
}

function toPoint(view: AnalyticsView, t: number): HistoryPoint {
  const tallies = (by: Record<string, { blocks: number; hitBlocks: number; tiers: Record<string, number> }>): Record<string, ReuseTally> =>
    Object.fromEntries(Object.entries(by).map(([k, v]) => [k, { blocks: v.blocks, hitBlocks: v.hitBlocks, tiers: { ...v.tiers } }]));
  return {
    t,
    byModel: tallies(view.scoring.byModel),
    byPod: tallies(view.routing.byPod),
    speculation: { confirmed: view.speculation.confirmed, expired: view.speculation.expired },
    entries: Object.fromEntries(Object.entries(view.index.byPod).map(([pod, c]) => [pod, c.entries])),
    events: Object.fromEntries(Object.entries(view.events).map(([pod, e]) => [pod, { gaps: e.gaps, replays: e.replays, lost: e.lost, lagP90: e.lagSeconds.p90 }])),
  };
}
