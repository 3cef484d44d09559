import { z } from 'zod';
import type { EngineProfile } from '@kvix/kv-index';
import { hostPort, tcpEndpoint, type PodTarget } from './types.js';

const port = z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]).pipe(z.number().int().min(1).max(65535));

/**
 * An endpoints file entry: llm-d's file-discovery schema (name, address, port, labels, namespace)
 * extended with what KV events need. Unknown keys are ignored, as llm-d does.
 */
export const EndpointEntrySchema = z.object({
  name: z.string().min(1),
  address: z.string().min(1).refine((a) => !/\s/.test(a), 'must not contain whitespace'),
  port,
  eventPort: port.optional(),
  replayPort: port.nullish(),
  model: z.string().min(1).optional(),
  dataParallelSize: z.number().int().min(1).max(256).optional(),
  namespace: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  /** The engine the pod runs: decides how its events are read (default: told by the events themselves, and reported). */
  engine: z.enum(['vllm', 'sglang']).optional(),
  /** vLLM with LMCache offload: in-process engine (`inproc`) or multiprocess server (`mp`). */
  lmcache: z.enum(['none', 'inproc', 'mp']).optional(),
  /** vLLM's kv_cache_report_mode: `full` re-announces prefix-cache hits. */
  kvCacheReportMode: z.enum(['default', 'full']).optional(),
});
export type EndpointEntry = z.infer<typeof EndpointEntrySchema>;

export interface EntryDefaults {
  eventPort: number;
  replayPort: number | null;
  model: string;
}

export interface ParsedEndpoints {
  targets: PodTarget[];
  /** Entries that were skipped, with why (the rest of the file still applies). */
  problems: string[];
}

/** Expands entries into one target per data-parallel rank (ports offset by rank, as vLLM does). */
export function targetsOf(entries: readonly EndpointEntry[], defaults: EntryDefaults, eventsByPod = true): PodTarget[] {
  const out: PodTarget[] = [];
  for (const e of entries) {
    const ranks = e.dataParallelSize ?? 1;
    const eventPort = e.eventPort ?? defaults.eventPort;
    const replayPort = e.replayPort === undefined ? defaults.replayPort : e.replayPort;
    for (let r = 0; r < ranks; r++) {
      out.push({
        id: hostPort(e.address, e.port + r),
        name: r === 0 ? e.name : `${e.name}/rank-${r}`,
        address: e.address,
        port: e.port + r,
        rank: r,
        eventEndpoint: eventsByPod ? tcpEndpoint(e.address, eventPort + r) : null,
        replayEndpoint: replayPort === null ? null : tcpEndpoint(e.address, replayPort + r),
        model: e.model ?? defaults.model,
        ...(e.labels ? { labels: e.labels } : {}),
        ...engineOf(e),
      });
    }
  }
  return out;
}

/** The configured engine profile of an entry (its `engine`, `lmcache`, `kvCacheReportMode`), if it says any. */
function engineOf(e: EndpointEntry): { engine?: EngineProfile } {
  if (e.engine === undefined && e.lmcache === undefined && e.kvCacheReportMode === undefined) return {};
  const engine: EngineProfile = { engine: e.engine ?? 'vllm' };
  if (e.lmcache !== undefined) engine.lmcache = e.lmcache;
  if (e.kvCacheReportMode !== undefined) engine.reportMode = e.kvCacheReportMode;
  return { engine };
}

/**
 * Validates a parsed endpoints document ({endpoints: [...]}). A malformed entry is skipped with
 * a reason; duplicate names and identities keep the first occurrence.
 */
export function parseEndpointsDocument(doc: unknown, defaults: EntryDefaults, eventsByPod = true): ParsedEndpoints {
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as { endpoints?: unknown }).endpoints)) {
    throw new Error('the endpoints file must hold an "endpoints" list');
  }
  const problems: string[] = [];
  const entries: EndpointEntry[] = [];
  const names = new Set<string>();
  (doc as { endpoints: unknown[] }).endpoints.forEach((raw, i) => {
    const parsed = EndpointEntrySchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      problems.push(`endpoints[${i}]: ${issue.path.join('.') || 'entry'} ${issue.message}`);
      return;
    }
    if (names.has(parsed.data.name)) {
      problems.push(`endpoints[${i}]: duplicate name ${parsed.data.name}`);
      return;
    }
    names.add(parsed.data.name);
    entries.push(parsed.data);
  });
  const targets: PodTarget[] = [];
  const ids = new Set<string>();
  for (const t of targetsOf(entries, defaults, eventsByPod)) {
    if (ids.has(t.id)) {
      problems.push(`${t.name}: ${t.id} is already listed by another entry`);
      continue;
    }
    ids.add(t.id);
    targets.push(t);
  }
  return { targets, problems };
}
