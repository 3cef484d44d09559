import { hostname } from 'node:os';
import { ConfigError } from '@kvix/service-kit';
import { z } from 'zod';

/**
 * What a process does with the shared index state:
 * - `publish`: it ingests pods' KV events itself and publishes every index operation it applies
 *   (and periodic snapshots) to the stream;
 * - `follow`: it dials no pod; its index is bootstrapped from the latest snapshot and kept current
 *   from the stream;
 * - `off`: the index is not replicated (each replica ingests on its own, or the index is shared in Redis).
 */
export const INDEX_REPLICATION_MODES = ['publish', 'follow', 'off'] as const;
export type IndexReplicationMode = (typeof INDEX_REPLICATION_MODES)[number];

export const ReplicationSettingsSchema = z
  .object({
    /** NATS server URL(s), comma-separated; replication is off without one. `tls://` asks for TLS. */
    natsUrl: z.string().min(1).optional(),
    /**
     * TLS to NATS (implied by a `tls://` URL; required when the server demands it): the CA the
     * server's certificate must chain to, and a client certificate for servers that verify clients.
     */
    natsTls: z
      .object({ caFile: z.string().min(1).optional(), certFile: z.string().min(1).optional(), keyFile: z.string().min(1).optional() })
      .strict()
      .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), { message: 'certFile and keyFile go together' })
      .optional(),
    /** How this process proves who it is to NATS: a .creds file (JWT + nkey seed), an nkey seed file, or a token file. */
    natsAuth: z
      .object({ credsFile: z.string().min(1).optional(), nkeySeedFile: z.string().min(1).optional(), tokenFile: z.string().min(1).optional() })
      .strict()
      .refine((a) => [a.credsFile, a.nkeySeedFile, a.tokenFile].filter((x) => x !== undefined).length <= 1, { message: 'give one of credsFile, nkeySeedFile, tokenFile' })
      .optional(),
    /** This replica's name among its peers (default: hostname and pid). */
    replicaId: z.string().min(1).default(`${hostname()}-${process.pid}`),
    index: z.enum(INDEX_REPLICATION_MODES).default('off'),
    /** Share routing decisions' speculative entries with the other replicas. */
    shareSpeculation: z.boolean().default(true),
    /** Share in-flight request counts with the other replicas. */
    shareLoad: z.boolean().default(true),
    subjectPrefix: z
      .string()
      .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'a NATS subject prefix: tokens of letters, digits, _ and - separated by dots')
      .default('kvix'),
    stream: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, 'a JetStream stream name: letters, digits, _ and -')
      .default('KVIX_INDEX'),
    /** Object-store bucket holding the latest snapshot. */
    snapshotBucket: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, 'a bucket name: letters, digits, _ and -')
      .default('kvix-index-snapshots'),
    /** How long to try reaching NATS at start before giving up (afterwards a lost connection is retried forever). */
    connectTimeoutMs: z.number().int().min(100).default(10_000),
    /** How often a publisher writes a snapshot (new replicas replay the stream only from it). */
    snapshotIntervalMs: z.number().int().min(1000).default(30_000),
    /** How long the stream keeps operations; must exceed the snapshot interval by a wide margin. */
    streamMaxAgeMs: z.number().int().min(60_000).default(60 * 60_000),
    streamMaxBytes: z.number().int().min(1 << 20).default(4 * 2 ** 30),
    /** Operations a publisher holds per pod while NATS is away before dropping them and resyncing the pod. */
    maxPendingOpsPerPod: z.number().int().min(100).default(200_000),
    /** Longest wait for a JetStream acknowledgement before a publish is retried. */
    publishTimeoutMs: z.number().int().min(100).default(5000),
    /** How soon a change of this replica's in-flight counts reaches its peers (coalescing window). */
    loadFlushMs: z.number().int().min(0).default(5),
    /** Peers' counts are forgotten after this long without a report (a replica that died). */
    peerTimeoutMs: z.number().int().min(500).default(3000),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.index !== 'off' && s.natsUrl === undefined) ctx.addIssue({ code: 'custom', path: ['natsUrl'], message: `index replication "${s.index}" needs a NATS URL (--nats-url / KVIX_NATS_URL)` });
    if (s.streamMaxAgeMs < 2 * s.snapshotIntervalMs) ctx.addIssue({ code: 'custom', path: ['streamMaxAgeMs'], message: 'must be at least twice snapshotIntervalMs, or a new replica may find the stream already trimmed past the last snapshot' });
  });

export type ReplicationSettings = z.output<typeof ReplicationSettingsSchema>;
export type ReplicationSettingsInput = z.input<typeof ReplicationSettingsSchema>;

/**
 * What a process embedding an index (EPP, indexer) does with it: the effective replication mode
 * (off without NATS), and whether it dials the pods' KV events itself — not when it follows the
 * stream, nor when `kvEvents` is off because another process writes a shared Redis index.
 */
export function indexRole(settings: ReplicationSettings, backend: 'memory' | 'redis', kvEvents: boolean): { mode: IndexReplicationMode; ingests: boolean } {
  const mode = settings.natsUrl === undefined ? 'off' : settings.index;
  if (mode === 'follow' && backend === 'redis') {
    throw new ConfigError('replication.index "follow" keeps an in-memory copy of a publisher\'s index, but index.backend is redis, which every replica already shares; set replication.index to off (and --no-kv-events, if another process writes the index)');
  }
  return { mode, ingests: mode !== 'follow' && kvEvents };
}
