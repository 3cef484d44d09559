import { z } from 'zod';
import { EndpointEntrySchema } from './discovery/endpoints-file.js';

/** Ingestion settings (one validated object; services merge file, environment and flags into it). */
export const IngestConfigSchema = z
  .object({
    /** per-pod: dial every pod's event port (several consumers can each see every pod). centralized: bind one socket pods connect to. */
    mode: z.enum(['per-pod', 'centralized']).default('per-pod'),
    /** Bound address in centralized mode (loopback by default: pods on other hosts need tcp://*:5557 or an interface address). */
    centralizedEndpoint: z.string().min(1).default('tcp://127.0.0.1:5557'),
    /**
     * CURVE on the centralized endpoint: its secret key, and the publishers' public keys admitted
     * (anyone else's handshake is refused). vLLM's own publisher has no CURVE settings: use it with
     * publishers that do (the simulator's --kv-events-curve-*), or a network policy instead.
     */
    curve: z.object({ secretKeyFile: z.string().min(1), allowedKeysFile: z.string().min(1) }).strict().optional(),
    /** Topic prefix subscribed to; "" receives vLLM's default empty topic too. */
    topicPrefix: z.string().default('kv@'),
    /** Static pods (endpoints-file entries). */
    pods: z.array(EndpointEntrySchema).default([]),
    /** An endpoints file, reloaded when replaced (atomic rename). */
    endpointsFile: z.string().min(1).optional(),
    endpointsPollIntervalMs: z.number().int().min(100).default(2000),
    /** Defaults for entries that leave them out. */
    defaultEventPort: z.number().int().min(1).max(65535).default(5557),
    defaultReplayPort: z.number().int().min(1).max(65535).nullable().default(null),
    defaultModel: z.string().min(1).default('Qwen/Qwen3-0.6B'),
    /** Lanes pods are spread over; a pod's batches are applied in order within its lane. */
    workers: z.number().int().min(1).max(256).default(4),
    /** Batches queued per pod before its backlog is dropped and recovered by replay. */
    maxQueuePerPod: z.number().int().min(1).default(10_000),
    replayAttempts: z.number().int().min(1).max(20).default(3),
    replayBackoffMs: z.number().int().min(0).default(100),
    replayIdleTimeoutMs: z.number().int().min(10).default(2000),
    replayTotalTimeoutMs: z.number().int().min(100).default(30_000),
    replayCooldownMs: z.number().int().min(0).default(30_000),
    unknownParentCooldownMs: z.number().int().min(0).default(60_000),
    /** After a pod's last batch, how long it must stay quiet before its replay buffer is asked for batches lost at the end of the burst (0: never). */
    tailCheckMs: z.number().int().min(0).default(1000),
    /** While the pod stays quiet, the tail check repeats at doubling intervals up to this (at most tailCheckMs: once). */
    tailCheckMaxMs: z.number().int().min(0).default(30_000),
    receiveHighWaterMark: z.number().int().min(0).default(100_000),
    /** A seq more than this past the last one is another sequence (handled as a restart), never that many lost batches. */
    maxSeqJump: z.number().int().min(1).default(1_000_000),
    reconnectIntervalMs: z.number().int().min(10).default(100),
    reconnectMaxIntervalMs: z.number().int().min(10).default(5000),
    /** Readiness waits for discovery and the pods' startup replays, at most this long. */
    readinessTimeoutMs: z.number().int().min(0).default(15_000),
  })
  .strict()
  .refine((c) => c.curve === undefined || c.mode === 'centralized', { message: 'curve secures the centralized endpoint: set mode to centralized', path: ['curve'] });

export type IngestConfig = z.output<typeof IngestConfigSchema>;
export type IngestConfigInput = z.input<typeof IngestConfigSchema>;

export function parseIngestConfig(input: unknown): IngestConfig {
  const parsed = IngestConfigSchema.safeParse(input ?? {});
  if (!parsed.success) {
    throw new Error(`invalid ingestion configuration: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}
