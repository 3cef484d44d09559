import { RequestKeyHasher } from '@kvix/block-keys';
import { DEFAULT_TIER_WEIGHTS, InMemoryIndex } from '@kvix/kv-index';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { AdaptiveSpeculativeTtl, PrefixScorer, ScoringError, ScoringMetrics, type AdaptiveTtlOptions } from '../src/index.js';

/** A clock tests move by hand. */
function fakeClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

const OPTIONS: AdaptiveTtlOptions = { initialMs: 2000, minMs: 500, maxMs: 30_000, percentile: 0.99, headroom: 1.5, windowMs: 60_000, minSamples: 16 };

function tracker(clock: { now: () => number }, overrides: Partial<AdaptiveTtlOptions> = {}): AdaptiveSpeculativeTtl {
  return new AdaptiveSpeculativeTtl({ ...OPTIONS, ...overrides, now: clock.now });
}

/** One confirmation per clock step (the same latency twice at one instant counts once). */
function confirm(t: AdaptiveSpeculativeTtl, clock: { advance: (ms: number) => void }, pod: string, latencies: number[]): void {
  for (const ms of latencies) {
    clock.advance(1);
    t.observeConfirmation(pod, ms);
  }
}

describe('adaptive speculative TTL', () => {
  it('uses the initial TTL until a pod or the fleet has enough confirmations', () => {
    const clock = fakeClock();
    const t = tracker(clock);
    expect(t.ttlFor('a:1')).toBe(2000);
    confirm(t, clock, 'a:1', Array(15).fill(100));
    clock.advance(300);
    expect(t.ttlFor('a:1')).toBe(2000);
  });

  it("follows headroom × the p99 of a pod's recent confirmation latencies", () => {
    const clock = fakeClock();
    const t = tracker(clock);
    // 100 confirmations: 1 s, 2 s, …, 100 ms apart in latency; p99 (nearest rank) is the 99th.
    confirm(t, clock, 'a:1', Array.from({ length: 100 }, (_, i) => 1000 + 10 * i));
    clock.advance(300);
    expect(t.ttlFor('a:1')).toBe(Math.round(1.5 * 1980));
  });

  it('keeps each pod apart, and gives a pod without enough samples the fleet-wide value', () => {
    const clock = fakeClock();
    const t = tracker(clock);
    confirm(t, clock, 'slow:1', Array(40).fill(4000));
    confirm(t, clock, 'fast:1', Array(40).fill(400));
    confirm(t, clock, 'new:1', [100]);
    clock.advance(300);
    expect(t.ttlFor('slow:1')).toBe(6000);
    expect(t.ttlFor('fast:1')).toBe(600);
    // The fleet's p99 over all 81 samples is a slow pod's latency.
    expect(t.ttlFor('new:1')).toBe(6000);
    expect(t.ttlFor('never-seen:1')).toBe(6000);
  });

  it('stays within its bounds', () => {
    const clock = fakeClock();
    const t = tracker(clock, { minMs: 800, maxMs: 10_000 });
    confirm(t, clock, 'quick:1', Array(30).fill(20));
    confirm(t, clock, 'stuck:1', Array(30).fill(60_000));
    clock.advance(300);
    expect(t.ttlFor('quick:1')).toBe(800);
    expect(t.ttlFor('stuck:1')).toBe(10_000);
  });

  it('forgets confirmations older than its window, so the TTL comes back down when queues drain', () => {
    const clock = fakeClock();
    const t = tracker(clock);
    confirm(t, clock, 'a:1', Array(50).fill(8000));
    clock.advance(300);
    expect(t.ttlFor('a:1')).toBe(12_000);
    clock.advance(61_000);
    confirm(t, clock, 'a:1', Array(20).fill(200));
    clock.advance(300);
    expect(t.ttlFor('a:1')).toBe(500);
  });

  it('counts the confirmations of one decision (same instant, same latency) once', () => {
    const clock = fakeClock();
    const t = tracker(clock);
    clock.advance(1);
    for (let block = 0; block < 300; block++) t.observeConfirmation('a:1', 3000);
    confirm(t, clock, 'a:1', Array(200).fill(100));
    clock.advance(300);
    // Had the 300 blocks counted, 3 s would be the p99.
    expect(t.ttlFor('a:1')).toBe(500);
    expect(t.snapshot().pods[0]).toMatchObject({ pod: 'a:1', samples: 201 });
  });

  it('grows out of a TTL that is too short, although only confirmations that beat it are ever seen', () => {
    const clock = fakeClock();
    const t = tracker(clock);
    // The pods' events really take 5–6 s once queues form; a speculation that expired is never confirmed.
    let rounds = 0;
    while (t.ttlFor('a:1') < 6000 && rounds < 20) {
      const ttl = t.ttlFor('a:1');
      const seen = Array.from({ length: 50 }, (_, i) => 5000 + 20 * i).filter((ms) => ms < ttl);
      // Confirmations that beat the TTL; with none (TTL below all latencies) the speculations expire
      // unseen, and the ones confirmed in the tail of the last window keep the TTL where it is.
      confirm(t, clock, 'a:1', seen.length > 0 ? seen : Array(20).fill(Math.min(ttl - 1, 5000)));
      clock.advance(300);
      rounds++;
    }
    expect(t.ttlFor('a:1')).toBeGreaterThanOrEqual(6000);
    expect(rounds).toBeLessThanOrEqual(4);
  });

  it('refuses settings that make no sense', () => {
    const clock = fakeClock();
    for (const bad of [{ minMs: 5000, maxMs: 1000 }, { percentile: 0 }, { percentile: 1.5 }, { headroom: 0.5 }, { windowMs: 0 }, { initialMs: -1 }]) {
      expect(() => tracker(clock, bad)).toThrow(ScoringError);
    }
    expect(AdaptiveSpeculativeTtl.fromSettings({ speculativeTtlMs: 2000, adaptiveSpeculativeTtl: { ...OPTIONS, enabled: false } })).toBeNull();
  });
});

describe('routing decisions with the adaptive TTL', () => {
  const MODEL = 'm';
  const hasher = new RequestKeyHasher({ blockSize: 4 });
  const prompt = (base: number): number[] => Array.from({ length: 32 }, (_, i) => base + i);

  function setup() {
    const clock = fakeClock();
    // A window long enough for every round below (~4 s each).
    const ttl = tracker(clock, { windowMs: 300_000 });
    const index = new InMemoryIndex({ sweepIntervalMs: 0, now: clock.now });
    // What the event applier writes to: the pods' stores pass through the TTL's watch.
    const applied = ttl.watchStores(index);
    const metrics = new ScoringMetrics(new Registry());
    metrics.watchSpeculativeTtl(ttl);
    const scorer = new PrefixScorer({ index, hasher, weights: DEFAULT_TIER_WEIGHTS, tokenizer: null, maxPromptTokens: 1000, logger: pino({ level: 'silent' }), speculativeTtl: ttl, metrics });
    const decide = async (base: number, pod = 'a:1') => scorer.recordDecision({ model: MODEL, prompt: { kind: 'tokens', tokenIds: prompt(base) }, pod });
    const store = async (base: number, pod = 'a:1') => applied.add(null, hasher.keys(prompt(base), MODEL), [{ pod, tier: 'gpu', speculative: false }]);
    const speculative = async (base: number): Promise<number> => (await scorer.score({ model: MODEL, prompt: { kind: 'tokens', tokenIds: prompt(base) } })).scores[0]?.tiers['speculative'] ?? 0;
    return { clock, ttl, metrics, decide, store, speculative };
  }

  it("learn the time from a decision to the pod's event storing its prompt, and keep the speculation that long", async () => {
    const { clock, decide, store, speculative, metrics } = setup();
    // Before anything is learned: the initial 2 s, which the pod's 4-s events outlast.
    expect((await decide(0)).ttlMs).toBe(2000);
    clock.advance(2100);
    expect(await speculative(0)).toBe(0);
    // Seen although the speculation had expired: the store is what is measured.
    clock.advance(1900);
    await store(0);
    let base = 1000;
    for (let round = 0; round < 30; round++, base += 100) {
      await decide(base);
      clock.advance(3500 + (round % 10) * 100);
      await store(base);
    }
    clock.advance(300);
    const learned = (await decide(base)).ttlMs!;
    expect(learned).toBe(Math.round(1.5 * 4400));
    clock.advance(4000);
    expect(await speculative(base)).toBe(8);
    const gauge = await metrics['registers'][0]!.getSingleMetric('kvix_speculative_ttl_seconds')!.get();
    expect(gauge.values.find((v) => v.labels['pod'] === 'a:1')?.value).toBeCloseTo(learned / 1000, 3);
  });

  it('measure only stores by the pod the decision chose, and forget decisions never stored', async () => {
    const { clock, ttl, decide, store } = setup();
    await decide(0, 'a:1');
    clock.advance(300);
    // Another pod storing the same blocks says nothing about a:1.
    await store(0, 'b:1');
    expect(ttl.snapshot().pods).toEqual([]);
    // Past maxMs the decision is forgotten: a store after that is not a sample.
    clock.advance(31_000);
    await decide(5000, 'a:1');
    await store(0, 'a:1');
    expect(ttl.snapshot().pods).toEqual([]);
    clock.advance(250);
    await store(5000, 'a:1');
    expect(ttl.snapshot().pods).toEqual([expect.objectContaining({ pod: 'a:1', samples: 1, quantileMs: 250 })]);
  });
});
