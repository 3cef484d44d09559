import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  ApproximatePrefixCacheScorer,
  buildPipeline,
  EndpointPickerConfigSchema,
  KvCacheUtilizationScorer,
  MaxScorePicker,
  NoHitLruScorer,
  PREFIX_MATCH,
  QueueScorer,
  RoundRobinPicker,
  Scheduler,
  SessionAffinityScorer,
  WeightedRandomPicker,
  parsePickerConfig,
  type Candidate,
  type EndpointMetrics,
  type SchedulingRequest,
} from '../src/index.js';

const silent = pino({ level: 'silent' });
const metrics = (m: Partial<EndpointMetrics>): EndpointMetrics => ({ waiting: 0, running: 0, kvUsage: 0, blockSize: 16, numGpuBlocks: 1000, loras: [], scrapedAt: 0, ...m });
const cand = (id: string, m: Partial<EndpointMetrics> | null = {}, inFlight = 0): Candidate => ({ endpoint: { id, address: id.split(':')[0]!, port: Number(id.split(':')[1]), name: id, model: 'm', labels: {} }, metrics: m === null ? null : metrics(m), inFlight });
const req = (over: Partial<SchedulingRequest> = {}): SchedulingRequest => ({ id: 'r', model: 'm', prompt: null, headers: {}, cycle: new Map(), ...over });
const seq = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length]!;
};

describe('load scorers', () => {
  it('score shorter queues higher, relative to the candidates, counting this router\'s own excess in flight', () => {
    const q = new QueueScorer('q');
    expect([...q.score(req(), [cand('a:1', { waiting: 0 }), cand('b:1', { waiting: 5 }), cand('c:1', { waiting: 10 })]).values()]).toEqual([1, 0.5, 0]);
    expect([...q.score(req(), [cand('a:1', { waiting: 3 }), cand('b:1', { waiting: 3 })]).values()]).toEqual([1, 1]);
    // 6 sent there, 2 reported running: 4 are waiting whatever the last scrape said.
    expect([...q.score(req(), [cand('a:1', { waiting: 0, running: 2 }, 6), cand('b:1', { waiting: 2 })]).values()]).toEqual([0, 1]);
    expect([...new QueueScorer('q', false).score(req(), [cand('a:1', { waiting: 0, running: 2 }, 6), cand('b:1', { waiting: 2 })]).values()]).toEqual([1, 0]);
  });

  it('score an emptier KV cache higher and treat unknown metrics as empty', () => {
    expect([...new KvCacheUtilizationScorer('kv').score(req(), [cand('a:1', { kvUsage: 0.25 }), cand('b:1', null)]).values()]).toEqual([0.75, 1]);
  });
});

describe('no-hit LRU', () => {
  it('sends cold requests to the endpoint least recently given one, and is neutral for warm ones', () => {
    const s = new NoHitLruScorer('lru');
    const cs = [cand('a:1'), cand('b:1'), cand('c:1')];
    const pickFirst = (r: SchedulingRequest) => {
      const scores = s.score(r, cs);
      const best = [...scores.entries()].sort((x, y) => y[1] - x[1])[0]![0];
      s.preRequest(r, { endpoints: [cs.find((c) => c.endpoint.id === best)!.endpoint], scores: {}, total: {} });
      return best;
    };
    const cold = () => req({ cycle: new Map([[PREFIX_MATCH, { cold: true, totalBlocks: 4, bestMatchedBlocks: 0 }]]) });
    const order = [pickFirst(cold()), pickFirst(cold()), pickFirst(cold()), pickFirst(cold())];
    expect(new Set(order.slice(0, 3)).size).toBe(3);
    expect(order[3]).toBe(order[0]);
    const warm = req({ cycle: new Map([[PREFIX_MATCH, { cold: false, totalBlocks: 4, bestMatchedBlocks: 2 }]]) });
    expect([...s.score(warm, cs).values()]).toEqual([0.5, 0.5, 0.5]);
  });
});

describe('approximate prefix scorer', () => {
  it('remembers where it sent a prompt and scores the shared part of the next one there', () => {
    const s = new ApproximatePrefixCacheScorer('approx', { blockSizeChars: 16, maxPrefixBlocks: 64, lruCapacityPerServer: 1000 });
    const cs = [cand('a:1'), cand('b:1')];
    const prompt = (text: string) => req({ prompt: { model: 'm', prompt: { kind: 'completion', prompt: text } } });
    const first = prompt('x'.repeat(64) + 'first question....');
    s.score(first, cs);
    s.preRequest(first, { endpoints: [cs[0]!.endpoint], scores: {}, total: {} });
    const second = s.score(prompt('x'.repeat(64) + 'second question...'), cs);
    expect(second.get('a:1')).toBeCloseTo(4 / 5);
    expect(second.get('b:1')).toBe(0);
  });
});

describe('session affinity', () => {
  it('keeps a session on the endpoint named by its token', () => {
    const s = new SessionAffinityScorer('sa');
    const cs = [cand('a:1'), cand('b:1')];
    const token = s.responseHeaders(req(), cs[1]!.endpoint)['x-session-token']!;
    expect([...s.score(req({ headers: { 'x-session-token': token } }), cs).values()]).toEqual([0, 1]);
    expect([...s.score(req(), cs).values()]).toEqual([0, 0]);
  });
});

describe('pickers', () => {
  const scored = [
    { candidate: cand('a:1'), score: 1 },
    { candidate: cand('b:1'), score: 3 },
    { candidate: cand('c:1'), score: 2 },
  ];
  it('max-score picks the best and orders the fallbacks by score', () => {
    expect(new MaxScorePicker('p', seq(0.3, 0.7)).pick(req(), scored, 2).map((c) => c.endpoint.id)).toEqual(['b:1', 'c:1', 'a:1']);
  });
  it('weighted-random picks in proportion to the score, without repeating an endpoint', () => {
    const picker = new WeightedRandomPicker('p', seq(0.99, 0.0, 0.5));
    const picked = picker.pick(req(), scored, 2).map((c) => c.endpoint.id);
    expect(picked[0]).toBe('c:1');
    expect(new Set(picked).size).toBe(3);
  });
  it('round-robin takes each endpoint in turn', () => {
    const picker = new RoundRobinPicker('p');
    expect([0, 1, 2, 3].map(() => picker.pick(req(), scored, 0)[0]!.endpoint.id)).toEqual(['a:1', 'b:1', 'c:1', 'a:1']);
  });
});

describe('configuration', () => {
  it('accepts llm-d\'s EndpointPickerConfig shape and weights the scores', async () => {
    const config = parsePickerConfig({
      apiVersion: 'llm-d.ai/v1alpha1',
      kind: 'EndpointPickerConfig',
      plugins: [{ type: 'single-profile-handler' }, { type: 'queue-scorer' }, { name: 'kv', type: 'kv-cache-utilization-scorer' }, { type: 'max-score-picker' }],
      schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'queue-scorer', weight: 2 }, { pluginRef: 'kv', weight: 1 }, { pluginRef: 'max-score-picker' }] }],
    });
    const pipeline = buildPipeline(config, { prefixScorer: null, logger: silent });
    expect(pipeline.ignored).toEqual(['single-profile-handler']);
    const result = await new Scheduler(pipeline, 1).schedule(req(), [cand('a:1', { waiting: 10, kvUsage: 0 }), cand('b:1', { waiting: 0, kvUsage: 0.5 })]);
    expect(result.total).toEqual({ 'a:1': 1, 'b:1': 2.5 });
    expect(result.endpoints.map((e) => e.id)).toEqual(['b:1', 'a:1']);
  });

  it('names what is wrong with a configuration', () => {
    const build = (c: unknown) => () => buildPipeline(EndpointPickerConfigSchema.parse(c), { prefixScorer: null, logger: silent });
    const profile = (refs: string[]) => [{ name: 'default', plugins: refs.map((pluginRef) => ({ pluginRef })) }];
    expect(build({ plugins: [{ type: 'queue-scorer' }], schedulingProfiles: profile(['nope']) })).toThrow(/refers to plugin "nope"/);
    expect(build({ plugins: [{ type: 'quantum-scorer' }], schedulingProfiles: profile(['quantum-scorer']) })).toThrow(/unknown type "quantum-scorer"; kvix supports/);
    expect(build({ plugins: [{ type: 'queue-scorer', parameters: { speed: 1 } }], schedulingProfiles: profile(['queue-scorer']) })).toThrow(/plugin "queue-scorer" parameters: .*speed/);
    expect(build({ plugins: [{ type: 'precise-prefix-cache-scorer' }], schedulingProfiles: profile(['precise-prefix-cache-scorer']) })).toThrow(/no embedded index here/);
    expect(build({ plugins: [{ type: 'max-score-picker' }, { type: 'random-picker' }], schedulingProfiles: profile(['max-score-picker', 'random-picker']) })).toThrow(/two pickers/);
    expect(() => parsePickerConfig({ plugins: [], schedulingProfiles: [] })).toThrow(/plugins: .*schedulingProfiles/s);
  });
});
