/** The topic prefix llm-d deployments publish under (`kv@<podIP>:<port>@<model>`). */
export const DEFAULT_TOPIC_PREFIX = 'kv';

export interface ParsedTopic {
  /** The leading part ("kv" by convention), or null when the topic is not in the 3-part form. */
  prefix: string | null;
  /** `address:port` of the serving endpoint, or null when the topic does not say. */
  podId: string | null;
  /** Model name (may contain '/'), or null when the topic does not say. */
  model: string | null;
}

/**
 * Splits a topic on '@' into exactly three parts. Anything else (vLLM's default empty topic, a
 * custom one, a model name containing '@') means "pod and model unknown": the subscriber then
 * falls back to its own endpoint identity.
 */
export function parseTopic(topic: string): ParsedTopic {
  const parts = topic.split('@');
  if (parts.length !== 3) return { prefix: null, podId: null, model: null };
  const [prefix, podId, model] = parts as [string, string, string];
  return { prefix, podId: podId === '' ? null : podId, model: model === '' ? null : model };
}

export function formatTopic(podId: string, model: string, prefix = DEFAULT_TOPIC_PREFIX): string {
  return `${prefix}@${podId}@${model}`;
}
