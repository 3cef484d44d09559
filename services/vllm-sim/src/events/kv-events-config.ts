import { z } from 'zod';

/**
 * vLLM's `--kv-events-config`, with vLLM's keys and defaults. Unknown keys are rejected so a typo
 * does not silently publish nowhere.
 */
export const KvEventsConfigSchema = z
  .object({
    enable_kv_cache_events: z.boolean().default(false),
    publisher: z.enum(['zmq', 'null']).optional(),
    endpoint: z.string().min(1).default('tcp://*:5557'),
    replay_endpoint: z.string().min(1).nullable().default(null),
    buffer_steps: z.number().int().min(1).default(10_000),
    hwm: z.number().int().min(0).default(100_000),
    max_queue_size: z.number().int().min(1).default(100_000),
    topic: z.string().default(''),
  })
  .strict()
  .transform((c) => ({ ...c, publisher: c.publisher ?? (c.enable_kv_cache_events ? 'zmq' : 'null') }));

export type KvEventsConfig = z.output<typeof KvEventsConfigSchema>;

export function parseKvEventsConfig(input: string | object | undefined): KvEventsConfig {
  let raw: unknown = input ?? {};
  if (typeof input === 'string') {
    try {
      raw = JSON.parse(input) as unknown;
    } catch (err) {
      throw new Error(`--kv-events-config is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }
  const parsed = KvEventsConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`).join('; ');
    throw new Error(`invalid --kv-events-config: ${issues}`);
  }
  return parsed.data;
}

/** vLLM binds when the endpoint has a wildcard, is IPv6-any, or is ipc/inproc; otherwise it connects. */
export function isBindEndpoint(endpoint: string): boolean {
  return endpoint.includes('*') || endpoint.includes('::') || endpoint.startsWith('ipc://') || endpoint.startsWith('inproc://');
}

/** Data-parallel rank r publishes on port + r (inproc gets a suffix; port 0 stays 0), as vLLM does. */
export function offsetEndpointPort(endpoint: string, rank: number): string {
  if (rank === 0) return endpoint;
  if (endpoint.includes('inproc')) return `${endpoint}_dp${rank}`;
  if (endpoint.includes('tcp')) {
    const at = endpoint.lastIndexOf(':');
    const port = Number(endpoint.slice(at + 1));
    if (!Number.isInteger(port)) return endpoint;
    if (port === 0) return endpoint;
    return `${endpoint.slice(0, at)}:${port + rank}`;
  }
  throw new Error(`invalid endpoint ${endpoint}: must contain 'inproc' or 'tcp'`);
}
