import { deserialize, serialize } from 'node:v8';
import type { PodScore } from '@kvix/kv-index';
import type { SpeculationTally } from '@kvix/reuse-page';
import { ReuseAnalytics } from '@kvix/scoring';
import { describe, expect, it } from 'vitest';
import { mergeWorkerAnalytics, WorkersReuseTallies, type WorkerAnalytics, type WorkerAnalyticsAnswer } from '../src/cluster/analytics-merge.js';

const BLOCK = 16;
const SHARED = [11n, 12n, 13n, 14n];

function held(pod: string, matched: number): PodScore {
  return { pod, score: matched, normalized: matched / 8, matchedBlocks: matched, totalBlocks: 8, tiers: matched > 0 ? { gpu: matched } : {} };
}

/** Distinct prompt tails across workers: each request is its own. */
let request = 0;

/** A worker that routed `n` requests sharing a 4-block prefix, each to `pod`. */
function worker(n: number, pod: string, speculation: Partial<SpeculationTally> = {}): WorkerAnalytics {
  const analytics = new ReuseAnalytics(BLOCK);
  for (let i = 0; i < n; i++) {
    const r = BigInt(++request);
    const keys = BigUint64Array.of(...SHARED, 1000n + r, 2000n + r, 3000n + r, 4000n + r);
    analytics.observeScore('m', keys, held(pod, 4), () => null);
    analytics.observeDecision('m', pod, 'decode', held(pod, 4), keys.length);
  }
  const state: WorkerAnalytics = { reuse: analytics.state({ prefixes: true }), speculation: { active: 0, confirmed: 0, expired: 0, byPod: {}, confirmationBuckets: [], ...speculation } };
  // What the primary receives: the cluster channel's "advanced" serialization is v8's.
  return deserialize(serialize(state)) as WorkerAnalytics;
}

describe("merging the routing workers' analytics on the primary", () => {
  it('adds every worker’s decisions, names the workers included, and leaves out one that did not answer', () => {
    const answers: WorkerAnalyticsAnswer[] = [
      { worker: '1', startedAt: 10, analytics: worker(3, 'a:1') },
      { worker: '2', startedAt: 20, analytics: worker(5, 'b:1') },
      { worker: '3', startedAt: 5, analytics: null },
    ];
    const merged = mergeWorkerAnalytics(answers, 10, BLOCK);
    expect(merged.workers).toEqual({ included: ['1', '2'], missing: ['3'] });
    expect(merged.routing.decisions).toBe(8);
    expect(merged.scoring.requests).toBe(8);
    expect(merged.routing.byPod['a:1']!.requests).toBe(3);
    expect(merged.routing.byPod['b:1']!.requests).toBe(5);
    expect(merged.scoring.byModel['m']).toMatchObject({ requests: 8, blocks: 64, hitBlocks: 32, blockHitRatio: 0.5 });
    // The shared 4-block prefix: 3 requests on one worker and 5 on the other are 8 requests.
    expect(merged.topPrefixes.map((p) => ({ key: p.key, blocks: p.blocks, requests: p.requests, error: p.error }))).toEqual([{ key: '14', blocks: 4, requests: 8, error: 0 }]);
  });

  it("reads speculation from the longest-running worker that answered, not the sum (every copy holds every worker's speculative entries)", () => {
    const answers: WorkerAnalyticsAnswer[] = [
      { worker: '4', startedAt: 50, analytics: worker(1, 'a:1', { confirmed: 2, active: 1, byPod: { 'a:1': 1 } }) },
      { worker: '2', startedAt: 20, analytics: worker(1, 'a:1', { confirmed: 9, expired: 1, active: 3, byPod: { 'a:1': 3 }, confirmationBuckets: [{ le: 0.1, count: 10 }, { le: Number.POSITIVE_INFINITY, count: 10 }] }) },
      { worker: '1', startedAt: 1, analytics: null },
    ];
    const merged = mergeWorkerAnalytics(answers, 0, BLOCK);
    expect(merged.speculation).toEqual({ active: 3, confirmed: 9, expired: 1, byPod: { 'a:1': 3 }, confirmationBuckets: [{ le: 0.1, count: 10 }, { le: Number.POSITIVE_INFINITY, count: 10 }] });
    expect(merged.topPrefixes).toEqual([]);
  });

  it('reads as empty tallies, every worker missing, when none answered', () => {
    const merged = mergeWorkerAnalytics(
      [
        { worker: '1', startedAt: 1, analytics: null },
        { worker: '2', startedAt: 2, analytics: null },
      ],
      5,
      BLOCK,
    );
    expect(merged).toMatchObject({ routing: { decisions: 0 }, scoring: { requests: 0 }, topPrefixes: [], speculation: { active: 0, confirmed: 0, expired: 0 }, workers: { included: [], missing: ['1', '2'] } });
  });

  it('asks the workers for their shared-prefix sketches only when prefixes are listed', async () => {
    const asked: boolean[] = [];
    const tallies = new WorkersReuseTallies(async (prefixes) => {
      asked.push(prefixes);
      return [{ worker: '1', startedAt: 1, analytics: worker(2, 'a:1') }];
    }, BLOCK);
    expect((await tallies.snapshot(0)).topPrefixes).toEqual([]);
    expect((await tallies.snapshot(3)).topPrefixes).toHaveLength(1);
    expect(asked).toEqual([false, true]);
  });
});
