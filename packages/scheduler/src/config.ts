import { z } from 'zod';

const PluginSpecSchema = z
  .object({
    /** How profiles refer to it; defaults to the type. */
    name: z.string().min(1).optional(),
    type: z.string().min(1),
    parameters: z.record(z.string(), z.unknown()).nullish(),
  })
  .strict();

const ProfilePluginSchema = z.object({ pluginRef: z.string().min(1), weight: z.number().min(0).optional() }).strict();

const ProfileSchema = z.object({ name: z.string().min(1), plugins: z.array(ProfilePluginSchema).min(1) }).strict();

const ModelRewriteSchema = z
  .object({
    /** The rule's name (llm-d's InferenceModelRewrite name) in metrics; defaults to `model`. */
    name: z.string().min(1).optional(),
    /** The model name clients send. */
    model: z.string().min(1),
    /** The models it is served by, chosen by weight per request. */
    targets: z.array(z.object({ model: z.string().min(1), weight: z.number().positive().default(1) }).strict()).min(1),
  })
  .strict();

const ObjectiveSchema = z
  .object({
    /** Named by the request header x-llm-d-inference-objective. */
    name: z.string().min(1),
    /** Below 0: sheddable when the pool is saturated (answered 429). */
    priority: z.number().int(),
  })
  .strict();

/**
 * The scheduler's configuration, in the shape of llm-d's EndpointPickerConfig (plugins with
 * parameters; scheduling profiles referencing them with weights; a picker), plus kvix's keys for
 * what llm-d configures elsewhere (model rewrites and objectives are CRDs there).
 */
export const EndpointPickerConfigSchema = z
  .object({
    apiVersion: z.string().optional(),
    kind: z.literal('EndpointPickerConfig').optional(),
    plugins: z.array(PluginSpecSchema).min(1),
    schedulingProfiles: z.array(ProfileSchema).min(1),
    /** Endpoints listed after the choice, for the proxy to try if the choice is unreachable. */
    fallbacks: z.number().int().min(0).max(16).default(2),
    modelRewrites: z.array(ModelRewriteSchema).default([]),
    objectives: z.array(ObjectiveSchema).default([]),
    /** The pool counts as saturated when every candidate is past one of these. */
    saturation: z
      .object({ queueDepthThreshold: z.number().int().min(1).default(5), kvCacheUtilThreshold: z.number().min(0).max(1).default(0.8) })
      .strict()
      .prefault({}),
  })
  .strict();

export type EndpointPickerConfig = z.output<typeof EndpointPickerConfigSchema>;
export type EndpointPickerConfigInput = z.input<typeof EndpointPickerConfigSchema>;
export type PluginSpec = z.output<typeof PluginSpecSchema>;
export type ModelRewrite = z.output<typeof ModelRewriteSchema>;
