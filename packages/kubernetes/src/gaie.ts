import { z } from 'zod';

/** A namespaced custom resource kind, as the API addresses it. */
export interface ResourceKind {
  group: string;
  version: string;
  plural: string;
  kind: string;
}

/** The Gateway API Inference Extension's pool (GA since v1.0). */
export const INFERENCE_POOL: ResourceKind = { group: 'inference.networking.k8s.io', version: 'v1', plural: 'inferencepools', kind: 'InferencePool' };

/**
 * InferenceModelRewrite and InferenceObjective: defined by GAIE up to v1.5.0 in
 * inference.networking.x-k8s.io/v1alpha2, then moved unchanged (same schema) to llm-d's router as
 * llm-d.ai/v1alpha2. When both groups are installed only llm-d.ai is read, as llm-d's EPP does.
 */
export const POLICY_GROUPS = ['llm-d.ai', 'inference.networking.x-k8s.io'] as const;
export type PolicyGroup = (typeof POLICY_GROUPS)[number];

export function modelRewriteKind(group: PolicyGroup): ResourceKind {
  return { group, version: 'v1alpha2', plural: 'inferencemodelrewrites', kind: 'InferenceModelRewrite' };
}

export function objectiveKind(group: PolicyGroup): ResourceKind {
  return { group, version: 'v1alpha2', plural: 'inferenceobjectives', kind: 'InferenceObjective' };
}

const Metadata = z.object({
  name: z.string().min(1),
  namespace: z.string().optional(),
  generation: z.number().int().optional(),
  resourceVersion: z.string().optional(),
  uid: z.string().optional(),
  // The list API hands Dates (client-node deserializes), the watch stream strings.
  creationTimestamp: z.union([z.string(), z.date()]).optional(),
});

export const InferencePoolSchema = z.object({
  metadata: Metadata,
  spec: z.object({
    selector: z.object({ matchLabels: z.record(z.string(), z.string()) }),
    targetPorts: z.array(z.object({ number: z.number().int().min(1).max(65535) })).min(1),
    appProtocol: z.string().optional(),
    endpointPickerRef: z
      .object({ name: z.string(), kind: z.string().optional(), group: z.string().optional(), port: z.object({ number: z.number().int() }).optional(), failureMode: z.string().optional() })
      .optional(),
  }),
});
export type InferencePool = z.infer<typeof InferencePoolSchema>;

const PoolRef = z.object({ name: z.string().min(1), group: z.string().optional(), kind: z.string().optional() });

export const InferenceModelRewriteSchema = z.object({
  metadata: Metadata,
  spec: z.object({
    poolRef: PoolRef,
    rules: z.array(
      z.object({
        matches: z.array(z.object({ model: z.object({ type: z.string().optional(), value: z.string().min(1) }) })).optional(),
        targets: z.array(z.object({ modelRewrite: z.string().min(1), weight: z.number().int().min(0).optional() })).optional(),
      }),
    ),
  }),
});
export type InferenceModelRewrite = z.infer<typeof InferenceModelRewriteSchema>;

export const InferenceObjectiveSchema = z.object({
  metadata: Metadata,
  spec: z.object({ poolRef: PoolRef, priority: z.number().int().nullish() }),
});
export type InferenceObjective = z.infer<typeof InferenceObjectiveSchema>;

/** Whether a poolRef names this pool (kind InferencePool in GAIE's GA group; both default so). */
export function refersToPool(ref: z.infer<typeof PoolRef>, poolName: string): boolean {
  return ref.name === poolName && (ref.group ?? INFERENCE_POOL.group) === INFERENCE_POOL.group && (ref.kind ?? INFERENCE_POOL.kind) === INFERENCE_POOL.kind;
}

export function creationTime(meta: { creationTimestamp?: string | Date | undefined }): number {
  const t = meta.creationTimestamp;
  if (t === undefined) return 0;
  const ms = t instanceof Date ? t.getTime() : Date.parse(t);
  return Number.isFinite(ms) ? ms : 0;
}
