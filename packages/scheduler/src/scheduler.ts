import { withSpan, withSpanSync } from '@kvix/telemetry';
import type { Pipeline, Profile } from './plugin-registry.js';
import type { RouterMetrics } from './metrics.js';
import { isPreRequestHook, isProducer, isResponseHeadersHook, type AdmissionDenial, type Candidate, type CompletedResponse, type Endpoint, type Plugin, type Producer, type ScoredCandidate, type SchedulingRequest, type SchedulingResult, type Scores } from './types.js';

/** Every candidate was filtered out, or there was none. */
export class NoCandidatesError extends Error {
  override readonly name = 'NoCandidatesError';
  readonly code = 'NO_CANDIDATES';
}

/** An admitter refused the request (a sheddable request no endpoint can serve within its SLO). */
export class AdmissionDeniedError extends Error {
  override readonly name = 'AdmissionDeniedError';
  readonly code = 'ADMISSION_DENIED';
  constructor(
    readonly plugin: string,
    readonly denial: AdmissionDenial,
  ) {
    super(denial.message);
  }
}

/**
 * Runs one scheduling profile: producers (data later stages read), admitters, filters in order, then every scorer (each score clamped to [0, 1]
 * and multiplied by its weight, summed per candidate), then the picker, which also orders the
 * fallbacks.
 */
export class Scheduler {
  private readonly profile: Profile;
  private readonly plugins: Plugin[];
  private readonly producers: (Plugin & Producer)[];

  constructor(
    pipeline: Pipeline,
    private readonly fallbacks: number,
    private readonly metrics: RouterMetrics | null = null,
  ) {
    this.profile = pipeline.profile;
    this.plugins = pipeline.plugins;
    this.producers = this.plugins.filter(isProducer).sort((a, b) => a.producerStage - b.producerStage);
  }

  get profileName(): string {
    return this.profile.name;
  }

  describe(): { profile: string; producers: string[]; admitters: string[]; filters: string[]; scorers: { name: string; type: string; weight: number }[]; picker: string } {
    return {
      profile: this.profile.name,
      producers: this.producers.map((p) => p.name),
      admitters: this.profile.admitters.map((a) => a.name),
      filters: this.profile.filters.map((f) => f.name),
      scorers: this.profile.scorers.map((s) => ({ name: s.scorer.name, type: s.scorer.type, weight: s.weight })),
      picker: this.profile.picker.name,
    };
  }

  async schedule(request: SchedulingRequest, candidates: readonly Candidate[]): Promise<SchedulingResult> {
    const started = process.hrtime.bigint();
    const timings = request.timings;
    let mark = performance.now();
    /** Adds the time since the last mark to a stage, and moves the mark. */
    const lap = (stage: 'producers' | 'filters' | 'scorers' | 'pick'): void => {
      const now = performance.now();
      if (timings) timings[stage] += now - mark;
      mark = now;
    };
    for (const producer of this.producers) {
      const t0 = process.hrtime.bigint();
      try {
        await withSpan('kvix.plugin', pluginAttributes('Producer', producer.type, producer.name), () => producer.produce(request, candidates));
      } catch {
        // A producer's data is an input to routing, never a reason to fail it.
      }
      this.metrics?.pluginDuration.observe({ extension_point: 'Producer', plugin_type: producer.type, plugin_name: producer.name }, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    lap('producers');
    for (const admitter of this.profile.admitters) {
      const denial = this.timed('Admission', admitter.type, admitter.name, () => admitter.admit(request, candidates));
      if (denial !== null) throw new AdmissionDeniedError(admitter.name, denial);
    }
    let remaining = candidates;
    for (const filter of this.profile.filters) {
      remaining = this.timed('Filter', filter.type, filter.name, () => filter.filter(request, remaining));
    }
    lap('filters');
    if (remaining.length === 0) throw new NoCandidatesError(candidates.length === 0 ? 'no endpoint is ready' : 'every endpoint was filtered out');
    // In profile order: a scorer may read what an earlier one left in the cycle (no-hit LRU reads
    // the prefix match), so they do not run concurrently.
    const perScorer: Scores[] = [];
    for (const { scorer } of this.profile.scorers) {
      const t0 = process.hrtime.bigint();
      perScorer.push(await withSpan('kvix.plugin', pluginAttributes('Scorer', scorer.type, scorer.name), () => scorer.score(request, remaining)));
      this.metrics?.pluginDuration.observe({ extension_point: 'Scorer', plugin_type: scorer.type, plugin_name: scorer.name }, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const scores: Record<string, Record<string, number>> = {};
    const total: Record<string, number> = {};
    const scored: ScoredCandidate[] = remaining.map((candidate) => {
      const id = candidate.endpoint.id;
      const mine: Record<string, number> = {};
      let sum = 0;
      this.profile.scorers.forEach(({ scorer, weight }, i) => {
        const raw = perScorer[i]!.get(id) ?? 0;
        const clamped = Number.isFinite(raw) ? Math.min(1, Math.max(0, raw)) : 0;
        mine[scorer.name] = clamped;
        sum += clamped * weight;
      });
      scores[id] = mine;
      total[id] = sum;
      return { candidate, score: sum };
    });
    lap('scorers');
    const picker = this.profile.picker;
    const picked = this.timed('Picker', picker.type, picker.name, () =>
      withSpanSync('kvix.pick', pluginAttributes('Picker', picker.type, picker.name), (span) => {
        const endpoints = picker.pick(request, scored, this.fallbacks);
        span.setAttribute('kvix.endpoints', endpoints.map((c) => c.endpoint.id));
        return endpoints;
      }),
    );
    lap('pick');
    this.metrics?.schedulerE2e.observe({}, Number(process.hrtime.bigint() - started) / 1e9);
    return { endpoints: picked.map((c) => c.endpoint), scores, total };
  }

  /** Runs every plugin's pre-request hook (speculative entries, LRU updates); a failing hook is its own problem. */
  async preRequest(request: SchedulingRequest, result: SchedulingResult): Promise<void> {
    await Promise.all(
      this.plugins.filter(isPreRequestHook).map(async (p) => {
        const t0 = process.hrtime.bigint();
        try {
          await withSpan('kvix.plugin', pluginAttributes('PreRequest', p.type, p.name), () => p.preRequest(request, result));
        } finally {
          this.metrics?.pluginDuration.observe({ extension_point: 'PreRequest', plugin_type: p.type, plugin_name: p.name }, Number(process.hrtime.bigint() - t0) / 1e9);
        }
      }),
    );
  }

  responseHeaders(request: SchedulingRequest, servedBy: Endpoint): Record<string, string> {
    const out: Record<string, string> = {};
    for (const p of this.plugins.filter(isResponseHeadersHook)) Object.assign(out, p.responseHeaders(request, servedBy));
    return out;
  }

  /** The first generated token of a streamed response went through. */
  responseFirstToken(request: SchedulingRequest, servedBy: Endpoint): void {
    for (const p of this.plugins) {
      try {
        p.responseFirstToken?.(request, servedBy);
      } catch {
        // Observers learn from responses; their failures must not touch the response.
      }
    }
  }

  /** The response ended (or failed). */
  responseComplete(request: SchedulingRequest, response: CompletedResponse): void {
    for (const p of this.plugins) {
      try {
        p.responseComplete?.(request, response);
      } catch {
        // As above.
      }
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.plugins.map((p) => p.close?.()));
  }

  private timed<T>(point: string, type: string, name: string, work: () => T): T {
    const t0 = process.hrtime.bigint();
    try {
      // The picker has its own span (kvix.pick); admitters and filters get the plugins' one.
      return point === 'Picker' ? work() : withSpanSync('kvix.plugin', pluginAttributes(point, type, name), work);
    } finally {
      this.metrics?.pluginDuration.observe({ extension_point: point, plugin_type: type, plugin_name: name }, Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }
}

/** A plugin span's attributes: llm-d's metric labels, so traces and metrics name plugins alike. */
function pluginAttributes(extensionPoint: string, type: string, name: string): Record<string, string> {
  return { 'kvix.plugin.extension_point': extensionPoint, 'kvix.plugin.type': type, 'kvix.plugin.name': name };
}
