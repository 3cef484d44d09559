import { BuiltinModelConfigSchema, BuiltinPredictor, type PredictionRow, type TrainingEntry } from '@kvix/latency-predictor';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  AdmissionDeniedError,
  buildPipeline,
  LATENCY_CYCLE,
  LatencyScorer,
  parsePickerConfig,
  PREDICTED_LATENCY_PICKER_CONFIG,
  PredictedLatencyProducer,
  ResponseStream,
  Scheduler,
  SloHeadroomTierFilter,
  usesLatencyPredictor,
  withPredictedLatency,
  type Candidate,
  type EndpointLatency,
  type EndpointMetrics,
  type LatencyCycle,
  type SchedulingRequest,
} from '../src/index.js';

const silent = pino({ level: 'silent' });
const metrics = (m: Partial<EndpointMetrics>): EndpointMetrics => ({ waiting: 0, running: 1, kvUsage: 0.3, blockSize: 16, numGpuBlocks: 1000, loras: [], scrapedAt: 0, ...m });
const cand = (id: string, m: Partial<EndpointMetrics> | null = {}, inFlight = 1): Candidate => ({ endpoint: { id, address: id.split(':')[0]!, port: Number(id.split(':')[1]), name: id, model: 'm', labels: {} }, metrics: m === null ? null : metrics(m), inFlight });
const prompt = (chars: number) => ({ model: 'm', prompt: { kind: 'completion' as const, prompt: 'x'.repeat(chars) } });
const req = (over: Partial<SchedulingRequest> = {}): SchedulingRequest => ({ id: 'r', model: 'm', prompt: prompt(4000), headers: {}, cycle: new Map(), ...over });

const baseRow: PredictionRow = { kv_cache_percentage: 0.3, input_token_length: 1000, num_request_waiting: 0, num_request_running: 1, num_tokens_generated: 1, prefix_cache_score: 0, pod_type: '', prefill_tokens_in_flight: 0, decode_tokens_in_flight: 0, encoder_input_size: 0, encoder_matched_size: 0 };

/** A built-in model that has learned TTFT = 20 ms + 50 ms per 1000 tokens of prefill ahead or own. */
function trainedPredictor(): BuiltinPredictor {
  const p = new BuiltinPredictor(BuiltinModelConfigSchema.parse({ objective: 'mean', minSamples: 20 }));
  const entries: TrainingEntry[] = [];
  for (let i = 0; i < 200; i++) {
    const row = { ...baseRow, input_token_length: 200 + ((i * 137) % 3000), prefill_tokens_in_flight: (i * 911) % 40_000, kv_cache_percentage: ((i * 7) % 10) / 10 };
    entries.push({ ...row, actual_ttft_ms: 20 + 0.05 * (row.input_token_length + row.prefill_tokens_in_flight), actual_tpot_ms: 15 });
  }
  p.train(entries);
  return p;
}

/** Producer, tier filter and latency scorer next to a KV-utilisation scorer that prefers pod a. */
function pipeline(predictor: BuiltinPredictor, extra: { admitter?: boolean } = {}) {
  const config = parsePickerConfig({
    plugins: [
      { type: 'predicted-latency-producer' },
      { type: 'slo-headroom-tier-filter', parameters: { epsilonExploreNeg: 0 } },
      { type: 'kv-cache-utilization-scorer' },
      { type: 'latency-scorer', parameters: { headroomSelectionStrategy: 'most' } },
      ...(extra.admitter ? [{ type: 'latency-slo-admitter' }] : []),
      { type: 'max-score-picker' },
    ],
    schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'predicted-latency-producer' }, { pluginRef: 'slo-headroom-tier-filter' }, { pluginRef: 'kv-cache-utilization-scorer', weight: 2 }, { pluginRef: 'latency-scorer', weight: 1 }, { pluginRef: 'max-score-picker' }] }],
  });
  const built = buildPipeline(config, { prefixScorer: null, logger: silent, latency: { predictor: () => predictor, metrics: null } });
  const producer = built.plugins.find((p) => p instanceof PredictedLatencyProducer) as PredictedLatencyProducer;
  return { scheduler: new Scheduler(built, 0), producer };
}

describe('predicted-latency routing', () => {
  it('sends an SLO request away from a pod predicted too slow, and leaves requests without an SLO alone', async () => {
    const { scheduler, producer } = pipeline(trainedPredictor());
    const a = cand('a:1', { kvUsage: 0.1 });
    const b = cand('b:1', { kvUsage: 0.5 });
    // This router already sent pod a 30 k tokens to prefill: the model predicts ~1.5 s there.
    for (let i = 0; i < 3; i++) {
      const r = req({ id: `load-${i}`, prompt: prompt(40_000) });
      await scheduler.schedule(r, [a, b]);
      producer.preRequest(r, { endpoints: [a.endpoint], scores: {}, total: {} });
    }
    expect(producer.inFlight.prefillTokens('a:1')).toBe(30_000);
    const plain = await scheduler.schedule(req(), [a, b]);
    expect(plain.endpoints[0]!.id).toBe('a:1');
    const slo = req({ headers: { 'x-llm-d-slo-ttft-ms': '500' } });
    const routed = await scheduler.schedule(slo, [a, b]);
    expect(routed.endpoints[0]!.id).toBe('b:1');
    const cycle = slo.cycle.get(LATENCY_CYCLE) as LatencyCycle;
    expect(cycle.status).toBe('predicted');
    expect(cycle.predictions.get('a:1')!.ttftValid).toBe(false);
    expect(cycle.predictions.get('b:1')!.ttftMs).toBeLessThan(500);
  });

  it('routes SLO requests on the other scorers while the model is untrained, never failing them', async () => {
    const { scheduler } = pipeline(new BuiltinPredictor(BuiltinModelConfigSchema.parse({ minSamples: 20 })));
    const r = req({ headers: { 'x-llm-d-slo-ttft-ms': '100' } });
    const result = await scheduler.schedule(r, [cand('a:1', { kvUsage: 0.1 }), cand('b:1', { kvUsage: 0.5 })]);
    expect(result.endpoints[0]!.id).toBe('a:1');
    expect((r.cycle.get(LATENCY_CYCLE) as LatencyCycle).status).toBe('unavailable');
  });

  it('sheds a sheddable SLO request no pod can serve in time, but admits it when a pod is idle and always admits others', async () => {
    const { scheduler } = pipeline(trainedPredictor(), { admitter: true });
    const busy = [cand('a:1', { kvUsage: 0.5, running: 3 }, 3), cand('b:1', { kvUsage: 0.6, running: 2 }, 2)];
    const tight = { 'x-llm-d-slo-ttft-ms': '5' };
    await expect(scheduler.schedule(req({ headers: tight, priority: -1 }), busy)).rejects.toSatisfy((e: unknown) => e instanceof AdmissionDeniedError && e.denial.status === 429 && e.denial.droppedReason === 'rejected-saturated');
    expect((await scheduler.schedule(req({ headers: tight, priority: 0 }), busy)).endpoints).toHaveLength(1);
    expect((await scheduler.schedule(req({ headers: tight, priority: -1 }), [...busy, cand('c:1', { kvUsage: 0.5, running: 0 }, 0)])).endpoints).toHaveLength(1);
  });

  it('turns a streamed response into a TTFT and a TPOT training entry and releases the pod\'s in-flight tokens', async () => {
    const predictor = trainedPredictor();
    const { scheduler, producer } = pipeline(predictor);
    const a = cand('a:1');
    const r = req();
    const result = await scheduler.schedule(r, [a]);
    await scheduler.preRequest(r, result);
    expect(producer.inFlight.prefillTokens('a:1')).toBe(1000);
    const before = predictor.describe().samples!;
    scheduler.responseFirstToken(r, a.endpoint);
    expect(producer.inFlight.prefillTokens('a:1')).toBe(0);
    expect(producer.inFlight.decodeTokens('a:1')).toBe(1000);
    scheduler.responseComplete(r, { servedBy: a.endpoint, status: 200, error: null, streamed: true, completionTokens: 8 });
    expect(predictor.describe().samples).toEqual({ ttft: before.ttft + 1, tpot: before.tpot + 1 });
    expect(producer.inFlight.requestCount('a:1')).toBe(0);
    expect(producer.tracked).toBe(0);
  });

  it('learns nothing from a failed request or one a fallback pod served', async () => {
    const predictor = trainedPredictor();
    const { scheduler, producer } = pipeline(predictor);
    const [a, b] = [cand('a:1'), cand('b:1')];
    const before = predictor.describe().samples!;
    const failed = req();
    await scheduler.preRequest(failed, await scheduler.schedule(failed, [a]));
    scheduler.responseComplete(failed, { servedBy: a.endpoint, status: 500, error: null, streamed: true, completionTokens: 0 });
    const moved = req();
    await scheduler.preRequest(moved, await scheduler.schedule(moved, [a]));
    scheduler.responseFirstToken(moved, b.endpoint);
    scheduler.responseComplete(moved, { servedBy: b.endpoint, status: 200, error: null, streamed: true, completionTokens: 5 });
    expect(predictor.describe().samples).toEqual(before);
    expect(producer.tracked).toBe(0);
  });
});

describe('latency scorer and tier filter', () => {
  const lat = (ttftMs: number, slo: number, dispatched = 1): EndpointLatency => ({ ttftMs, tpotMs: 0, ttftHeadroom: slo - ttftMs, tpotHeadroom: 0, ttftValid: ttftMs < slo, tpotValid: true, dispatched });
  const withCycle = (predictions: Record<string, EndpointLatency>, status: LatencyCycle['status'] = 'predicted') =>
    req({ cycle: new Map([[LATENCY_CYCLE, { ttftSloMs: 100, tpotSloMs: 0, status, predictions: new Map(Object.entries(predictions)), rows: new Map() } satisfies LatencyCycle]]) });
  const cs = [cand('a:1'), cand('b:1'), cand('c:1')];
  const scorer = (strategy: 'least' | 'most', whenNoneMeetsSlo: 'least-deficit' | 'defer' = 'least-deficit') => new LatencyScorer('l', { ttftWeight: 0.8, tpotWeight: 0.2, headroomSelectionStrategy: strategy, compositeKVWeight: 1, compositeQueueWeight: 1, compositePrefixWeight: 1, whenNoneMeetsSlo });

  it('among pods meeting the SLO prefers the most headroom (most) or the least (least), and zeroes the ones missing it', () => {
    const r = withCycle({ 'a:1': lat(20, 100), 'b:1': lat(80, 100), 'c:1': lat(150, 100) });
    const most = scorer('most').score(r, cs);
    expect(most.get('a:1')!).toBeGreaterThan(most.get('b:1')!);
    expect(most.get('c:1')).toBe(0);
    const least = scorer('least').score(r, cs);
    expect(least.get('b:1')!).toBeGreaterThan(least.get('a:1')!);
  });

  it('when no pod meets the SLO prefers an idle one, then the smallest deficit', () => {
    expect([...scorer('most').score(withCycle({ 'a:1': lat(300, 100), 'b:1': lat(200, 100), 'c:1': lat(900, 100, 0) }), cs).entries()].sort((x, y) => y[1] - x[1])[0]![0]).toBe('c:1');
    expect([...scorer('most').score(withCycle({ 'a:1': lat(300, 100), 'b:1': lat(200, 100), 'c:1': lat(900, 100) }), cs).entries()].sort((x, y) => y[1] - x[1])[0]![0]).toBe('b:1');
    // defer: in overload every pod misses; the other scorers (cache affinity) decide, an idle pod still first.
    expect([...scorer('most', 'defer').score(withCycle({ 'a:1': lat(300, 100), 'b:1': lat(200, 100), 'c:1': lat(900, 100) }), cs).values()]).toEqual([1, 1, 1]);
    expect([...scorer('most', 'defer').score(withCycle({ 'a:1': lat(300, 100), 'b:1': lat(200, 100), 'c:1': lat(900, 100, 0) }), cs).entries()].sort((x, y) => y[1] - x[1])[0]![0]).toBe('c:1');
  });

  it('scores every pod alike for a request without an SLO', () => {
    expect([...scorer('most').score(withCycle({}, 'skipped'), cs).values()]).toEqual([1, 1, 1]);
  });

  it('keeps only the pods meeting the SLO, except for the exploration share', () => {
    const r = withCycle({ 'a:1': lat(20, 100), 'b:1': lat(150, 100), 'c:1': lat(50, 100) });
    expect(new SloHeadroomTierFilter('f', 0.01, () => 0.5).filter(r, cs).map((c) => c.endpoint.id)).toEqual(['a:1', 'c:1']);
    expect(new SloHeadroomTierFilter('f', 0.01, () => 0.001).filter(r, cs).map((c) => c.endpoint.id)).toEqual(['b:1']);
    expect(new SloHeadroomTierFilter('f', 0.01, () => 0.5).filter(withCycle({}, 'unavailable'), cs)).toHaveLength(3);
  });
});

describe('configuration', () => {
  it('refuses latency plugins without a predictor and names the fix', () => {
    expect(usesLatencyPredictor(PREDICTED_LATENCY_PICKER_CONFIG)).toBe(true);
    const config = parsePickerConfig({ plugins: [{ type: 'predicted-latency-producer' }, { type: 'queue-scorer' }], schedulingProfiles: [{ name: 'd', plugins: [{ pluginRef: 'predicted-latency-producer' }, { pluginRef: 'queue-scorer' }] }] });
    expect(() => buildPipeline(config, { prefixScorer: null, logger: silent })).toThrow(/no latency predictor here; configure latencyPredictor/);
  });

  it('adds predicted-latency routing to any profile, before its picker, keeping its plugins\' parameters', () => {
    const config = withPredictedLatency({ plugins: [{ type: 'queue-scorer', parameters: { countInFlight: false } }, { name: 'pick', type: 'weighted-random-picker' }], schedulingProfiles: [{ name: 'p', plugins: [{ pluginRef: 'queue-scorer', weight: 2 }, { pluginRef: 'pick' }] }] });
    expect(config.schedulingProfiles[0]!.plugins.map((r) => r.pluginRef)).toEqual(['predicted-latency-producer', 'slo-headroom-tier-filter', 'queue-scorer', 'latency-scorer', 'pick']);
    expect(config.plugins[0]).toEqual({ type: 'queue-scorer', parameters: { countInFlight: false } });
    const scheduler = new Scheduler(buildPipeline(parsePickerConfig(config), { prefixScorer: null, logger: silent, latency: { predictor: () => trainedPredictor(), metrics: null } }), 0);
    expect(scheduler.describe()).toMatchObject({ producers: ['predicted-latency-producer'], admitters: ['latency-slo-admitter'], picker: 'pick' });
  });

  it('accepts llm-d\'s predicted-latency configuration, with the admitter declared only under plugins', () => {
    const config = parsePickerConfig({
      plugins: [{ type: 'predicted-latency-producer', parameters: { sloBufferFactor: 1.2, contextTTL: '5m', streamingMode: true } }, { type: 'latency-scorer' }, { type: 'weighted-random-picker' }, { type: 'slo-headroom-tier-filter' }, { type: 'latency-slo-admitter' }],
      schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'predicted-latency-producer' }, { pluginRef: 'slo-headroom-tier-filter' }, { pluginRef: 'latency-scorer' }, { pluginRef: 'weighted-random-picker' }] }],
    });
    const scheduler = new Scheduler(buildPipeline(config, { prefixScorer: null, logger: silent, latency: { predictor: () => trainedPredictor(), metrics: null } }), 0);
    expect(scheduler.describe()).toMatchObject({ producers: ['predicted-latency-producer'], admitters: ['latency-slo-admitter'], filters: ['slo-headroom-tier-filter'] });
  });
});

describe('response stream', () => {
  it('reports the first chunk carrying text, not the role-only opening chunk, and counts text chunks', () => {
    const seen: string[] = [];
    const s = new ResponseStream({ rewrite: null, sse: true, onFirstBytes: () => seen.push('bytes'), onFirstToken: () => seen.push('token'), onUsage: () => undefined });
    const ev = (delta: object) => Buffer.from(`data: ${JSON.stringify({ choices: [{ index: 0, delta }] })}\n\n`);
    s.push(ev({ role: 'assistant', content: '' }));
    expect(seen).toEqual(['bytes']);
    s.push(ev({ content: 'Hel' }));
    s.push(ev({ content: 'lo' }));
    s.push(ev({ content: '' }));
    s.push(Buffer.from('data: [DONE]\n\n'));
    expect(seen).toEqual(['bytes', 'token']);
    expect(s.tokenChunks).toBe(2);
  });
});
