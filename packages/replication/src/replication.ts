import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { KvBlockIndex, SnapshotCapable } from '@kvix/kv-index';
import { connect, credsAuthenticator, DiscardPolicy, nanos, nkeyAuthenticator, RetentionPolicy, StorageType, type ConnectionOptions, type JetStreamClient, type JetStreamManager, type NatsConnection } from 'nats';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ReplicationError } from './errors.js';
import { LoadExchange, type InFlightSource, type InFlightTokenSource } from './load-exchange.js';
import { ReplicationMetrics } from './metrics.js';
import { OpPublisher } from './op-publisher.js';
import { PublishingIndex } from './publishing-index.js';
import type { ReplicationSettings } from './settings.js';
import { SnapshotStore } from './snapshot-store.js';
import { SpeculationExchange, SpeculationSharingIndex, type SpeculationSink } from './speculation-exchange.js';
import { StreamFollower, type FollowedIndex, type FollowerStatus } from './stream-follower.js';
import { subjects, type Subjects } from './subjects.js';

export interface ReplicationStatus {
  replicaId: string;
  origin: string;
  connected: boolean;
  server: string | null;
  index: ReplicationSettings['index'];
  ready: boolean;
  follower: FollowerStatus | null;
  publisher: { pendingOps: number; lastAckedSeq: number; lastSnapshotSeq: number; lastSnapshotAt: string | null } | null;
  peers: number;
}

function readSecret(path: string, what: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (err) {
    throw new ReplicationError('INVALID_CONFIG', `cannot read the NATS ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** The connect options for NATS TLS and credentials (none: plaintext, anonymous). */
export function natsSecurity(settings: Pick<ReplicationSettings, 'natsTls' | 'natsAuth'>): Partial<ConnectionOptions> {
  const out: Partial<ConnectionOptions> = {};
  const tls = settings.natsTls;
  // A missing file must fail here, by name, not inside the client's connect loop.
  if (tls !== undefined) {
    for (const [what, file] of [['CA', tls.caFile], ['client certificate', tls.certFile], ['client key', tls.keyFile]] as const) if (file !== undefined) readSecret(file, what);
    out.tls = { ...(tls.caFile ? { caFile: tls.caFile } : {}), ...(tls.certFile ? { certFile: tls.certFile } : {}), ...(tls.keyFile ? { keyFile: tls.keyFile } : {}) };
  }
  const auth = settings.natsAuth;
  if (auth?.credsFile !== undefined) out.authenticator = credsAuthenticator(readSecret(auth.credsFile, 'credentials file'));
  else if (auth?.nkeySeedFile !== undefined) out.authenticator = nkeyAuthenticator(new TextEncoder().encode(new TextDecoder().decode(readSecret(auth.nkeySeedFile, 'nkey seed file')).trim()));
  else if (auth?.tokenFile !== undefined) {
    const token = new TextDecoder().decode(readSecret(auth.tokenFile, 'token file')).trim();
    if (token === '') throw new ReplicationError('INVALID_CONFIG', `the NATS token file ${auth.tokenFile} is empty`);
    out.token = token;
  }
  return out;
}

/** Retries the first connection until `connectTimeoutMs` (NATS may start after kvix in a fresh deployment). */
async function connectWithin(url: string, settings: ReplicationSettings, logger: Logger): Promise<NatsConnection> {
  const deadline = Date.now() + settings.connectTimeoutMs;
  const security = natsSecurity(settings);
  let warned = false;
  for (;;) {
    try {
      return await connect({ servers: url.split(',').map((s) => s.trim()), name: `kvix ${settings.replicaId}`, maxReconnectAttempts: -1, reconnectTimeWait: 250, timeout: Math.min(5000, settings.connectTimeoutMs), ...security });
    } catch (err) {
      if (Date.now() >= deadline) throw new ReplicationError('UNREACHABLE', `cannot reach NATS at ${url} within ${settings.connectTimeoutMs} ms: ${(err as Error).message}`, { cause: err });
      if (!warned) logger.warn({ nats: url, err: (err as Error).message }, 'NATS not reachable yet; retrying');
      warned = true;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** JetStream keeps message ids this long to drop a retried publish that had in fact landed. */
const DUPLICATE_WINDOW_MS = 120_000;

/**
 * One process's part in an active-active deployment, over one NATS connection: the index stream
 * (publish what this process applies, or follow what another applies), snapshots, and the
 * speculation and load exchanges between router replicas.
 */
export class Replication {
  readonly metrics: ReplicationMetrics;
  readonly subjects: Subjects;
  /** Unique per process start, so a restarted replica is a new peer and its message ids are new. */
  readonly origin: string;
  private js: JetStreamClient | null = null;
  private jsm: JetStreamManager | null = null;
  private snapshots: SnapshotStore | null = null;
  private follower: StreamFollower | null = null;
  private publisher: OpPublisher | null = null;
  private publishing: KvBlockIndex | null = null;
  private snapshotTimer: NodeJS.Timeout | null = null;
  private lastSnapshotSeq = 0;
  private lastSnapshotAt: Date | null = null;
  private speculation: SpeculationExchange | null = null;
  private load: LoadExchange | null = null;
  private connected = false;
  private bootstrapped = false;
  private closing = false;

  private constructor(
    readonly settings: ReplicationSettings & { natsUrl: string },
    private readonly nc: NatsConnection,
    registry: Registry,
    private readonly logger: Logger,
  ) {
    this.metrics = new ReplicationMetrics(registry);
    this.subjects = subjects(settings.subjectPrefix);
    this.origin = `${settings.replicaId}#${randomBytes(4).toString('hex')}`;
    this.connected = true;
    this.metrics.connected.set(1);
    void this.watchConnection();
  }

  /** Connects (waiting for NATS if it is not up yet) and prepares the stream when the index is replicated. */
  static async start(settings: ReplicationSettings, options: { registry: Registry; logger: Logger }): Promise<Replication> {
    const url = settings.natsUrl;
    if (url === undefined) throw new ReplicationError('UNREACHABLE', 'replication needs a NATS URL');
    const logger = options.logger;
    logger.info({ nats: url, replicaId: settings.replicaId, index: settings.index }, 'connecting to NATS');
    const nc = await connectWithin(url, settings, logger);
    const r = new Replication({ ...settings, natsUrl: url }, nc, options.registry, logger);
    try {
      if (settings.index !== 'off') await r.prepareStream();
    } catch (err) {
      await nc.close();
      throw err;
    }
    logger.info({ server: nc.getServer(), origin: r.origin }, 'connected to NATS');
    return r;
  }

  private async prepareStream(): Promise<void> {
    try {
      this.jsm = await this.nc.jetstreamManager({ timeout: 5000 });
    } catch (err) {
      throw new ReplicationError('NO_JETSTREAM', `NATS at ${this.settings.natsUrl} has no JetStream (start nats-server with -js): ${(err as Error).message}`, { cause: err });
    }
    this.js = this.nc.jetstream();
    const s = this.settings;
    const config = {
      name: s.stream,
      subjects: [this.subjects.allOps],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(s.streamMaxAgeMs),
      max_bytes: s.streamMaxBytes,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    };
    const existing = await this.jsm.streams.info(s.stream).catch(() => null);
    if (existing === null) {
      await this.jsm.streams.add(config);
      this.logger.info({ stream: s.stream, subjects: config.subjects }, 'created the index stream');
    } else if (existing.config.max_age !== config.max_age || existing.config.max_bytes !== config.max_bytes) {
      await this.jsm.streams.update(s.stream, { subjects: config.subjects, max_age: config.max_age, max_bytes: config.max_bytes, duplicate_window: config.duplicate_window });
      this.logger.info({ stream: s.stream }, 'updated the index stream\'s retention');
    }
    this.snapshots = await SnapshotStore.open(this.js, s.snapshotBucket);
  }

  private async watchConnection(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect' && this.connected) {
        this.connected = false;
        this.metrics.connected.set(0);
        if (!this.closing) this.logger.warn({ server: s.data }, 'lost the NATS connection; reconnecting (routing goes on with the state held here)');
      } else if (s.type === 'reconnect' && !this.connected) {
        this.connected = true;
        this.metrics.connected.set(1);
        this.logger.info({ server: s.data }, 'reconnected to NATS');
      }
    }
  }

  /**
   * Follow the stream into `index`: load the latest snapshot, apply everything after it. Resolves
   * once caught up with what the stream held at the start (the replica may then serve).
   */
  async follow(index: FollowedIndex, options: { onApplied?: (lagMs: number, ops: number) => void } = {}): Promise<StreamFollower> {
    const { js, jsm, snapshots } = this.requireStream();
    this.follower = new StreamFollower({ js, jsm, stream: this.settings.stream, subjects: this.subjects, snapshots, index, metrics: this.metrics, logger: this.logger.child({ part: 'stream-follower' }), ...options });
    await this.follower.start();
    await this.follower.caughtUp;
    this.bootstrapped = true;
    return this.follower;
  }

  /**
   * The index the event applier should write to in a publishing process: `index` itself, plus every
   * operation published. Call `startPublishing()` before ingestion starts.
   */
  publishTo(index: KvBlockIndex & Partial<SnapshotCapable>): PublishingIndex {
    const { js } = this.requireStream();
    if (this.publisher) throw new ReplicationError('INVALID_INDEX', 'this process already publishes an index');
    let wrapper: PublishingIndex | null = null;
    this.publisher = new OpPublisher({
      js,
      subjects: this.subjects,
      origin: this.origin,
      maxPendingOpsPerPod: this.settings.maxPendingOpsPerPod,
      publishTimeoutMs: this.settings.publishTimeoutMs,
      podState: (pod) => wrapper!.podState(pod),
      metrics: this.metrics,
      logger: this.logger.child({ part: 'stream-publisher' }),
    });
    wrapper = new PublishingIndex(index, this.publisher);
    this.publishing = index;
    return wrapper;
  }

  /**
   * Brings the published index up to date from the snapshot and the stream first (a restarted
   * publisher resumes the shared state instead of starting empty and snapshotting that), then
   * writes snapshots periodically when the backend can export one.
   */
  async startPublishing(): Promise<void> {
    const index = this.publishing as (KvBlockIndex & Partial<SnapshotCapable>) | null;
    if (!index) throw new ReplicationError('INVALID_INDEX', 'publishTo() first');
    if (typeof index.exportSnapshot === 'function' && typeof index.importSnapshot === 'function') {
      const follower = await this.follow(index as FollowedIndex);
      await follower.stop();
      this.follower = null;
      this.lastSnapshotSeq = follower.status().snapshotSeq ?? 0;
      this.snapshotTimer = setInterval(() => void this.writeSnapshot().catch((err: Error) => this.logger.warn({ err: err.message }, 'cannot write the index snapshot; retrying at the next interval')), this.settings.snapshotIntervalMs);
      this.snapshotTimer.unref();
    }
    this.bootstrapped = true;
  }

  /** Resolves when every operation published so far is acknowledged by the stream. */
  published(): Promise<void> {
    return this.publisher?.idle() ?? Promise.resolve();
  }

  /** Writes a snapshot now if anything was published since the last one; returns whether it did. */
  async writeSnapshot(force = false): Promise<boolean> {
    const index = this.publishing as (KvBlockIndex & Partial<SnapshotCapable>) | null;
    if (!index?.exportSnapshot || !this.publisher || !this.snapshots) return false;
    const seq = this.publisher.lastAckedSeq;
    if (!force && seq === this.lastSnapshotSeq) return false;
    const t0 = performance.now();
    // Exported synchronously with the sequence read above: every acknowledged operation is in it,
    // and the ones applied but not yet acknowledged are replayed on top, which is harmless (adds,
    // evictions and clears of exact entries are idempotent).
    const snapshot = index.exportSnapshot();
    const bytes = await this.snapshots.write({ snapshot, streamSeq: seq, createdAt: Date.now(), origin: this.origin });
    this.lastSnapshotSeq = seq;
    this.lastSnapshotAt = new Date();
    this.metrics.snapshotSeconds.observe({ operation: 'write' }, (performance.now() - t0) / 1000);
    this.metrics.snapshotBytes.set(bytes);
    this.metrics.snapshotEntries.set(snapshot.entryPod.length);
    this.logger.info({ entries: snapshot.entryPod.length, bytes, streamSeq: seq, ms: Math.round(performance.now() - t0) }, 'index snapshot written');
    return true;
  }

  /** The scorer's index: its routing decisions' speculative entries reach every peer. */
  shareSpeculation(scorerIndex: KvBlockIndex, localIndex: KvBlockIndex): KvBlockIndex {
    return new SpeculationSharingIndex(scorerIndex, this.exchangeSpeculation(localIndex));
  }

  /**
   * The speculation exchange alone: what is published through the returned sink reaches every
   * peer, and the peers' decisions go into `into` (an EPP primary relays both ways for its routing
   * workers, which hold the indexes).
   */
  exchangeSpeculation(into: Pick<KvBlockIndex, 'add'>): SpeculationSink {
    if (this.speculation) throw new ReplicationError('INVALID_INDEX', 'this process already exchanges speculation');
    this.speculation = new SpeculationExchange(this.nc, this.subjects, this.origin, into, this.metrics, this.logger.child({ part: 'speculation-exchange' }));
    this.speculation.start();
    return this.speculation;
  }

  /** In-flight requests (and, with predicted-latency routing, tokens) add up across replicas. */
  shareLoad(source: InFlightSource, tokens: InFlightTokenSource | null = null): void {
    this.load = new LoadExchange(this.nc, this.subjects, this.origin, { flushMs: this.settings.loadFlushMs, peerTimeoutMs: this.settings.peerTimeoutMs }, this.metrics, this.logger.child({ part: 'load-exchange' }));
    this.load.attach(source, tokens);
  }

  /** Ready once the index (if replicated) is bootstrapped; a lost connection later does not unready it. */
  ready(): boolean {
    return this.settings.index === 'off' || this.bootstrapped;
  }

  status(): ReplicationStatus {
    return {
      replicaId: this.settings.replicaId,
      origin: this.origin,
      connected: this.connected,
      server: this.connected ? this.nc.getServer() : null,
      index: this.settings.index,
      ready: this.ready(),
      follower: this.follower?.status() ?? null,
      publisher: this.publisher ? { pendingOps: this.publisher.pendingOps, lastAckedSeq: this.publisher.lastAckedSeq, lastSnapshotSeq: this.lastSnapshotSeq, lastSnapshotAt: this.lastSnapshotAt?.toISOString() ?? null } : null,
      peers: this.load?.peerCount() ?? 0,
    };
  }

  /**
   * Graceful stop: publish what is pending (bounded by `timeoutMs`), write a last snapshot, tell
   * peers this replica's load is gone, then drain the connection.
   */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const deadline = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
    if (this.snapshotTimer) clearInterval(this.snapshotTimer);
    if (this.publisher) {
      await Promise.race([this.publisher.idle(), deadline]);
      if (this.publisher.pendingOps > 0) this.logger.warn({ pendingOps: this.publisher.pendingOps }, 'stopping with unpublished index operations; replicas catch up when pods replay them');
      await Promise.race([this.writeSnapshot().catch(() => false), deadline]);
      this.publisher.close();
    }
    this.load?.stop();
    this.speculation?.stop();
    await this.follower?.stop();
    await Promise.race([this.nc.drain().catch(() => undefined), deadline]);
    if (!this.nc.isClosed()) await this.nc.close();
    this.metrics.connected.set(0);
  }

  private requireStream(): { js: JetStreamClient; jsm: JetStreamManager; snapshots: SnapshotStore } {
    if (!this.js || !this.jsm || !this.snapshots) throw new ReplicationError('INVALID_INDEX', 'index replication is off in this process\'s settings');
    return { js: this.js, jsm: this.jsm, snapshots: this.snapshots };
  }
}
