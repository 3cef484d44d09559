import { hostPort, tcpEndpoint, type PodTarget } from '@kvix/kv-ingest';
import { z } from 'zod';

/**
 * Pod annotations discovery reads. llm-d's name where llm-d has one (active ports); kvix.io/ for
 * what llm-d configures elsewhere (its KV-event port is a plugin parameter, the model comes from the
 * event topic), so one fleet can mix engines with different settings.
 */
export const POD_ANNOTATIONS = {
  /** Comma-separated subset of the pool's targetPorts that serve now (llm-d's; e.g. ranks still loading are left out). */
  activePorts: 'llm-d.ai/active-ports',
  /** The same, under GAIE's earlier name (llm-d still reads it as a fallback). */
  legacyActivePorts: 'inference.networking.k8s.io/active-ports',
  /** KV-event (ZeroMQ PUB) port of rank 0; rank r publishes on this + r, as vLLM offsets it. */
  kvEventsPort: 'kvix.io/kv-events-port',
  /** KV-event replay (ZeroMQ ROUTER) port of rank 0; rank r on this + r. */
  kvReplayPort: 'kvix.io/kv-replay-port',
  /** The base model the pod serves (a label value cannot hold "org/model"). */
  model: 'kvix.io/model',
  /** Comma-separated LoRA adapters the pod loads at startup (--lora-modules), so it is a candidate for them before its metrics say so. */
  loraAdapters: 'kvix.io/lora-adapters',
  /** Data-parallel ranks behind one serving port (ranks on port + r), when the pool lists a single target port. */
  dataParallelSize: 'kvix.io/data-parallel-size',
  /** vLLM's LMCache offload mode, which decides how its CPU-tier events are read: `inproc` or `mp`. */
  lmcache: 'kvix.io/lmcache',
  /** vLLM's kv_cache_report_mode: `full` re-announces prefix-cache hits. */
  kvCacheReportMode: 'kvix.io/kv-cache-report-mode',
} as const;

/** Pod labels read (llm-d's; it reads the engine type from a label, and so does kvix). */
export const POD_LABELS = {
  /** The inference engine (`vllm`, `sglang`): how the pod's events are read. Absent: told by the events. */
  engineType: 'llm-d.ai/engine-type',
  /** The same, under GAIE's earlier name (llm-d still reads it as a fallback). */
  legacyEngineType: 'inference.networking.k8s.io/engine-type',
} as const;

type EngineProfile = NonNullable<PodTarget['engine']>;

export type PodState = 'ready' | 'not_ready' | 'terminating' | 'no_ip';

export interface TargetDefaults {
  eventPort: number;
  replayPort: number | null;
  model: string;
  /** Per-pod mode dials each pod's event port; centralized mode has pods connect to us. */
  eventsByPod: boolean;
}

export interface PodView {
  /** namespace/name */
  key: string;
  name: string;
  state: PodState;
  /** One per serving rank, while the pod is ready; empty otherwise. */
  targets: PodTarget[];
  /** Annotations that could not be used (the pod still serves with defaults). */
  problems: string[];
}

const PodSchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).nullish(),
    annotations: z.record(z.string(), z.string()).nullish(),
    deletionTimestamp: z.unknown().optional(),
  }),
  status: z
    .object({
      podIP: z.string().nullish(),
      phase: z.string().nullish(),
      conditions: z.array(z.object({ type: z.string(), status: z.string() })).nullish(),
    })
    .nullish(),
});

/**
 * A pod's serving endpoints: one per target port (its data-parallel rank), while the pod is Ready,
 * has an IP and is not terminating. A pod that is being deleted stops receiving requests at once,
 * before its containers are even signalled.
 */
export function podView(raw: unknown, ports: readonly number[], defaults: TargetDefaults): PodView | null {
  const parsed = PodSchema.safeParse(raw);
  if (!parsed.success) return null;
  const { metadata, status } = parsed.data;
  const key = `${metadata.namespace ?? ''}/${metadata.name}`;
  const problems: string[] = [];
  const base = { key, name: metadata.name, problems };
  if (metadata.deletionTimestamp !== undefined && metadata.deletionTimestamp !== null) return { ...base, state: 'terminating', targets: [] };
  if (status?.phase === 'Succeeded' || status?.phase === 'Failed') return { ...base, state: 'not_ready', targets: [] };
  const ready = status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  if (!ready) return { ...base, state: 'not_ready', targets: [] };
  const ip = status?.podIP;
  if (!ip) return { ...base, state: 'no_ip', targets: [] };

  const annotations = metadata.annotations ?? {};
  const ranks = servingRanks(ports, annotations, problems);
  const eventPort = portAnnotation(annotations, POD_ANNOTATIONS.kvEventsPort, problems) ?? defaults.eventPort;
  const replayPort = portAnnotation(annotations, POD_ANNOTATIONS.kvReplayPort, problems) ?? defaults.replayPort;
  const model = annotations[POD_ANNOTATIONS.model]?.trim() || defaults.model;
  const adapters = (annotations[POD_ANNOTATIONS.loraAdapters] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const labels = { ...(metadata.labels ?? {}) };
  const engine = engineProfile(labels, annotations, problems);
  const targets = ranks.map(({ port, rank }): PodTarget => ({
    id: hostPort(ip, port),
    name: rank === 0 ? metadata.name : `${metadata.name}/rank-${rank}`,
    address: ip,
    port,
    rank,
    eventEndpoint: defaults.eventsByPod ? tcpEndpoint(ip, eventPort + rank) : null,
    replayEndpoint: replayPort === null ? null : tcpEndpoint(ip, replayPort + rank),
    model,
    labels,
    ...(adapters.length > 0 ? { adapters } : {}),
    ...(engine ? { engine } : {}),
  }));
  return { ...base, state: 'ready', targets };
}

/**
 * The (port, rank) pairs a pod serves: the target ports in order (rank = position, as llm-d numbers
 * them), narrowed by the active-ports annotation; one port with a data-parallel size annotation
 * expands to consecutive ports.
 */
function servingRanks(ports: readonly number[], annotations: Record<string, string>, problems: string[]): { port: number; rank: number }[] {
  let all = ports.map((port, rank) => ({ port, rank }));
  const dpText = annotations[POD_ANNOTATIONS.dataParallelSize];
  if (dpText !== undefined && ports.length === 1) {
    const dp = Number(dpText);
    if (Number.isInteger(dp) && dp >= 1 && dp <= 256) all = Array.from({ length: dp }, (_, rank) => ({ port: ports[0]! + rank, rank }));
    else problems.push(`${POD_ANNOTATIONS.dataParallelSize}=${JSON.stringify(dpText)} is not an integer in 1..256`);
  }
  const activeText = annotations[POD_ANNOTATIONS.activePorts] ?? annotations[POD_ANNOTATIONS.legacyActivePorts];
  if (activeText === undefined) return all;
  const active = new Set(
    activeText
      .split(',')
      .map((s) => Number(s.trim()))
      .filter((n) => Number.isInteger(n) && n > 0),
  );
  return all.filter((r) => active.has(r.port));
}

function portAnnotation(annotations: Record<string, string>, name: string, problems: string[]): number | undefined {
  const text = annotations[name];
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  if (Number.isInteger(n) && n >= 1 && n <= 65535) return n;
  problems.push(`${name}=${JSON.stringify(text)} is not a port`);
  return undefined;
}

/** What the pod runs, when its labels or annotations say (the endpoints file's engine/lmcache/kvCacheReportMode). */
function engineProfile(labels: Record<string, string>, annotations: Record<string, string>, problems: string[]): EngineProfile | undefined {
  const engineText = labels[POD_LABELS.engineType] ?? labels[POD_LABELS.legacyEngineType];
  const lmcache = annotations[POD_ANNOTATIONS.lmcache];
  const reportMode = annotations[POD_ANNOTATIONS.kvCacheReportMode];
  if (engineText === undefined && lmcache === undefined && reportMode === undefined) return undefined;
  let engine: EngineProfile['engine'] = 'vllm';
  if (engineText === 'vllm' || engineText === 'sglang') engine = engineText;
  else if (engineText !== undefined) {
    problems.push(`${POD_LABELS.engineType}=${JSON.stringify(engineText)} is not vllm or sglang (the pod's events tell)`);
    if (lmcache === undefined && reportMode === undefined) return undefined;
  }
  const profile: EngineProfile = { engine };
  if (lmcache === 'none' || lmcache === 'inproc' || lmcache === 'mp') profile.lmcache = lmcache;
  else if (lmcache !== undefined) problems.push(`${POD_ANNOTATIONS.lmcache}=${JSON.stringify(lmcache)} is not none, inproc or mp`);
  if (reportMode === 'default' || reportMode === 'full') profile.reportMode = reportMode;
  else if (reportMode !== undefined) problems.push(`${POD_ANNOTATIONS.kvCacheReportMode}=${JSON.stringify(reportMode)} is not default or full`);
  return profile;
}
