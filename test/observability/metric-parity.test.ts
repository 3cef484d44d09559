import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ceiling } from '@kvix/test-support';
import { parse as parseYaml } from 'yaml';
import { driveTraffic, startObservedStack, type ObservedStack } from '../support/observed-stack.js';
import { parseExposition, type Family } from './exposition.js';

interface Entry {
  name: string;
  type: 'counter' | 'gauge' | 'histogram';
  labels: string[];
  section: string;
  twinOf?: string;
  services: ('epp' | 'indexer' | 'kv-events')[];
  data: boolean;
}

const catalogue = (parseYaml(readFileSync(new URL('./llm-d-metrics.yaml', import.meta.url), 'utf8')) as { series: Entry[] }).series;

let stack: ObservedStack;
const scraped = new Map<string, Map<string, Family>>();

beforeAll(async () => {
  stack = await startObservedStack();
  for (let round = 0; round < 2; round++) await driveTraffic(stack, round);
  const targets = { epp: stack.eppOps, indexer: stack.indexer.httpUrl, 'kv-events': stack.kvEvents.url };
  for (const [service, base] of Object.entries(targets)) scraped.set(service, parseExposition(await (await fetch(`${base}/metrics`)).text()));
}, ceiling(120_000));

afterAll(async () => {
  await stack?.stop();
});

/** The indexer of this stack follows the index stream: it dials no pod, so event series have no samples there. */
const ingests = (service: string): boolean => service !== 'indexer';

describe("llm-d's metric catalogue (test/observability/llm-d-metrics.yaml)", () => {
  it('names every deprecated twin after a current series of the catalogue', () => {
    const names = new Set(catalogue.map((e) => e.name));
    for (const e of catalogue.filter((x) => x.twinOf)) expect(names.has(e.twinOf!), `${e.name} twins ${e.twinOf}`).toBe(true);
  });

  it('is exported by the running EPP, indexer and kv-events under the same names, types and labels, with samples after traffic', () => {
    const problems: string[] = [];
    for (const e of catalogue) {
      for (const service of e.services) {
        const family = scraped.get(service)!.get(e.name);
        const where = `${e.name} (${e.section}) on ${service}`;
        if (!family) {
          problems.push(`${where}: missing`);
          continue;
        }
        if (family.type !== e.type) problems.push(`${where}: type ${family.type}, llm-d's is ${e.type}`);
        const expected = new Set(e.labels);
        for (const s of family.samples) {
          const extra = Object.keys(s).filter((k) => !expected.has(k));
          if (extra.length > 0) problems.push(`${where}: labels ${extra.join(', ')} are not llm-d's (${e.labels.join(', ') || 'none'})`);
        }
        const needsData = e.data && (ingests(service) || !/_kv_cache_events_|kvcache_kvevents_/.test(e.name));
        if (!needsData) continue;
        if (family.samples.length === 0) {
          problems.push(`${where}: no samples after traffic`);
          continue;
        }
        const seen = new Set(family.samples.flatMap((s) => Object.keys(s)));
        const missing = e.labels.filter((l) => !seen.has(l));
        if (missing.length > 0) problems.push(`${where}: no sample carries ${missing.join(', ')}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('writes each deprecated twin with the same observations as its current series', async () => {
    const text = await (await fetch(`${stack.eppOps}/metrics`)).text();
    const sum = (sample: string): number => {
      let total = 0;
      for (const m of text.matchAll(new RegExp(`^${sample}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) total += Number(m[1]);
      return total;
    };
    const pairs = [
      ['llm_d_epp_request_total', 'inference_objective_request_total'],
      ['llm_d_epp_request_error_total', 'inference_objective_request_error_total'],
      ['llm_d_epp_request_duration_seconds_count', 'inference_objective_request_duration_seconds_count'],
      ['llm_d_epp_prefix_indexer_hit_ratio_count', 'inference_extension_prefix_indexer_hit_ratio_count'],
      ['llm_d_epp_per_endpoint_queue_size', 'inference_pool_per_pod_queue_size'],
      ['llm_d_epp_ready_endpoints', 'inference_pool_ready_pods'],
      ['llm_d_epp_kv_cache_index_lookup_requests_total', 'kvcache_index_lookup_requests_total'],
      ['llm_d_epp_request_slo_violation_total', 'inference_objective_request_slo_violation_total'],
    ];
    const samples = (name: string): number => [...text.matchAll(new RegExp(`^${name}[{ ]`, 'gm'))].length;
    for (const [current, legacy] of pairs) {
      expect(samples(current!), current).toBeGreaterThan(0);
      expect(sum(legacy!), `${legacy} mirrors ${current}`).toBe(sum(current!));
    }
  });
});
