import type { IndexStack } from '@kvix/kv-ingest';
import type { PodDirectory } from './pod-directory.js';
import { ApiError } from './errors.js';

export interface PodView {
  pod: string;
  name: string | null;
  model: string | null;
  entries: number;
  speculative: number;
  /** Discovery knows the pod (an index-only pod holds speculative entries of an undiscovered pod). */
  discovered: boolean;
  connected: boolean;
  lastSeq: string | null;
  phase: string | null;
  gaps: number;
  replays: number;
  lost: number;
}

export interface StatsView {
  backend: string;
  entries: number;
  keys: number;
  bytesInUse: number;
  bytesAllocated: number;
  maxEntries: number;
  maxBytes: number;
  capacityEvictions: number;
  speculative: { active: number; confirmed: number; expired: number };
  pods: PodView[];
}

/** Index and ingestion state per pod: what GetStats and GET /v1/stats, /v1/pods answer. */
export async function statsView(stack: IndexStack, directory: PodDirectory): Promise<StatsView> {
  const [stats, counts] = await Promise.all([stack.index.stats(), stack.index.podCounts()]);
  const byPod = new Map(counts.map((c) => [c.pod, c]));
  const pods: PodView[] = directory.pods().map((p) => ({
    pod: p.id,
    name: p.name,
    model: p.model,
    entries: byPod.get(p.id)?.entries ?? 0,
    speculative: byPod.get(p.id)?.speculative ?? 0,
    discovered: true,
    connected: p.connected,
    lastSeq: p.stream?.lastSeq ?? null,
    phase: p.stream?.phase ?? null,
    gaps: p.stream?.gaps ?? 0,
    replays: p.stream?.replays ?? 0,
    lost: p.stream?.lost ?? 0,
  }));
  const listed = new Set(pods.map((p) => p.pod));
  for (const c of counts) {
    if (!listed.has(c.pod)) pods.push({ pod: c.pod, name: null, model: null, entries: c.entries, speculative: c.speculative, discovered: false, connected: false, lastSeq: null, phase: null, gaps: 0, replays: 0, lost: 0 });
  }
  pods.sort((a, b) => (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0));
  return {
    backend: stats.backend,
    entries: stats.entries,
    keys: stats.keys,
    bytesInUse: stats.bytesInUse,
    bytesAllocated: stats.bytesAllocated,
    maxEntries: stats.capacity.maxEntries,
    maxBytes: stats.capacity.maxBytes,
    capacityEvictions: stats.capacityEvictions,
    speculative: stats.speculative,
    pods,
  };
}

export interface DumpView {
  pod: string;
  total: number;
  offset: number;
  items: { key: string; tier: string; speculative: boolean; group?: number }[];
}

export const MAX_DUMP_LIMIT = 10_000;

export async function dumpView(stack: IndexStack, directory: PodDirectory, pod: string, offset: number, limit: number): Promise<DumpView> {
  const page = await stack.index.dumpPod(pod, offset, Math.min(limit, MAX_DUMP_LIMIT));
  if (page.total === 0 && !directory.hasPod(pod)) throw new ApiError('UNKNOWN_POD', `unknown pod ${pod}: neither discovery nor the index knows it`);
  return {
    pod,
    total: page.total,
    offset,
    items: page.items.map(({ key, entry }) => ({ key: key.toString(), tier: entry.tier, speculative: entry.speculative, ...(entry.group !== undefined ? { group: entry.group } : {}) })),
  };
}
