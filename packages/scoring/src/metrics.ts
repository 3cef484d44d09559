import { Counter, Gauge, type Histogram, type Registry } from 'prom-client';
import { FastHistogram } from '@kvix/telemetry';
import type { AdaptiveSpeculativeTtl } from './speculation/adaptive-ttl.js';

const RATIO_BUCKETS = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1];
const TOKENIZE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** The `{plugin_name, plugin_type}` llm-d's prefix-indexer series carry; kvix's precise scorer by default. */
export const PREFIX_INDEXER_PLUGIN = { plugin_name: 'precise-prefix-cache-scorer', plugin_type: 'precise-prefix-cache-scorer' } as const;

/** Scoring, routing and tokenization metrics: llm-d's hit-ratio name plus kvix's own series. */
export class ScoringMetrics {
  /**
   * llm-d's primary health signal: per scored request, the best pod's matched fraction, as
   * `llm_d_epp_prefix_indexer_hit_ratio{plugin_name,plugin_type}` and its deprecated twin
   * `inference_extension_prefix_indexer_hit_ratio` (which older dashboards query).
   */
  readonly hitRatio: { observe(ratio: number): void };
  readonly hitRatioByModel: Histogram<'model'>;
  readonly scoredBlocks: Counter<'model'>;
  readonly matchedBlocks: Counter<'model' | 'tier'>;
  readonly unknownCandidates: Counter;
  readonly decisions: Counter<'model' | 'role'>;
  readonly routedBlocks: Counter<'model' | 'pod' | 'tier'>;
  readonly routedHitRatio: Histogram<'model'>;
  readonly tokenizeSeconds: Histogram<'source' | 'cached'>;
  readonly tokenizeErrors: Counter<'source' | 'code'>;
  private readonly registers: Registry[];

  constructor(registry: Registry) {
    const registers = [registry];
    this.registers = registers;
    const help = 'Per scored request: blocks of the prompt held by the best pod / blocks of the prompt.';
    const current = new FastHistogram({ name: 'llm_d_epp_prefix_indexer_hit_ratio', help, labelNames: ['plugin_name', 'plugin_type'] as const, buckets: RATIO_BUCKETS, registers });
    const legacy = new FastHistogram({ name: 'inference_extension_prefix_indexer_hit_ratio', help: `[Deprecated: use llm_d_epp_prefix_indexer_hit_ratio] ${help}`, labelNames: ['plugin_name', 'plugin_type'] as const, buckets: RATIO_BUCKETS, registers });
    this.hitRatio = {
      observe: (ratio) => {
        current.observe(PREFIX_INDEXER_PLUGIN, ratio);
        legacy.observe(PREFIX_INDEXER_PLUGIN, ratio);
      },
    };
    this.hitRatioByModel = new FastHistogram({ name: 'kvix_scoring_hit_ratio', help: 'Per scored request and model: the best pod\'s matched fraction of the prompt.', labelNames: ['model'], buckets: RATIO_BUCKETS, registers });
    this.scoredBlocks = new Counter({ name: 'kvix_scoring_blocks_total', help: 'Prompt blocks scored.', labelNames: ['model'], registers });
    this.matchedBlocks = new Counter({ name: 'kvix_scoring_matched_blocks_total', help: 'Prompt blocks the best pod held, by tier (a block held in two tiers counts in both).', labelNames: ['model', 'tier'], registers });
    this.unknownCandidates = new Counter({ name: 'kvix_scoring_unknown_candidate_pods_total', help: 'Candidate pods neither discovery nor the index knows (usually a pod-identity mismatch).', registers });
    this.decisions = new Counter({ name: 'kvix_scoring_routing_decisions_total', help: 'Routing decisions recorded, by role (decode or prefill pod).', labelNames: ['model', 'role'], registers });
    this.routedBlocks = new Counter({ name: 'kvix_scoring_routed_blocks_total', help: 'Prompt blocks of routed requests, by what the chosen pod held them in ("miss" when it did not).', labelNames: ['model', 'pod', 'tier'], registers });
    this.routedHitRatio = new FastHistogram({ name: 'kvix_scoring_routed_hit_ratio', help: 'Per routed request: the chosen pod\'s matched fraction of the prompt.', labelNames: ['model'], buckets: RATIO_BUCKETS, registers });
    this.tokenizeSeconds = new FastHistogram({ name: 'kvix_tokenization_duration_seconds', help: 'Tokenization for scoring, by source (local, render) and whether the result cache answered.', labelNames: ['source', 'cached'], buckets: TOKENIZE_BUCKETS, registers });
    this.tokenizeErrors = new Counter({ name: 'kvix_tokenization_errors_total', help: 'Tokenization failures, by source and error code.', labelNames: ['source', 'code'], registers });
  }

  /** Reports the adaptive speculative TTL per pod (and for the fleet, pod="") on every scrape. */
  watchSpeculativeTtl(ttl: AdaptiveSpeculativeTtl): void {
    new Gauge({
      name: 'kvix_speculative_ttl_seconds',
      help: 'The TTL a routing decision to this pod gives its speculative entries now: headroom × the percentile of recent decision→confirmation latencies, bounded (pod="" for the fleet-wide value pods without enough samples use).',
      labelNames: ['pod'],
      // Every process of an EPP (`--routing-workers`) learns it from the same confirmations: averaged, not summed.
      aggregator: 'average',
      registers: this.registers,
      collect() {
        const snap = ttl.snapshot();
        this.reset();
        this.set({ pod: '' }, snap.fleet.ttlMs / 1000);
        for (const p of snap.pods) this.set({ pod: p.pod }, p.ttlMs / 1000);
      },
    });
  }

  /** The tokenization observer hook, feeding the metrics above. */
  tokenizationObserver(): { tokenized(e: { source: string; seconds: number; cached: boolean }): void; failed(e: { source: string; code: string }): void } {
    return {
      tokenized: (e) => this.tokenizeSeconds.observe({ source: e.source, cached: String(e.cached) }, e.seconds),
      failed: (e) => this.tokenizeErrors.inc({ source: e.source, code: e.code }),
    };
  }
}
