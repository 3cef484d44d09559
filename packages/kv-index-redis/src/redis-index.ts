import { createHash, randomUUID } from 'node:crypto';
import type { ConnectionOptions } from 'node:tls';
import {
  DEFAULT_SPECULATIVE_TTL_MS,
  FLAG_HAS_GROUP,
  FLAG_SPECULATIVE,
  IndexError,
  matchPrefixByLookup,
  type AddOptions,
  type IndexObserver,
  type IndexStats,
  type KeyKind,
  type KvBlockIndex,
  type LookupOptions,
  type LookupResult,
  type PodCounts,
  type PodEntry,
  type PrefixMatch,
  type PrefixMatchOptions,
} from '@kvix/kv-index';
import { Redis, type RedisOptions } from 'ioredis';
import { decodeField, engineKeyName, fieldOf, goJsonString, ownerSuffix, requestKeyName, tierMarker, type DecodedField } from './llmd-schema.js';
import { parseRedisUrl, type RedisTarget } from './redis-url.js';
import { SCRIPTS, type ScriptName } from './scripts.js';

/** Index operations, as the `operation` label of the backend error counter. */
export type BackendOperation = 'add' | 'evict' | 'lookup' | 'resolve' | 'clear' | 'stats' | 'pod_counts' | 'dump_pod' | 'sweep' | 'reconcile';

/** Backend health for metrics: `kvix_index_backend_up` and `kvix_index_backend_errors_total`. */
export interface BackendHealthObserver {
  up?(up: boolean): void;
  error?(operation: BackendOperation): void;
}

/** The two log levels the index speaks at (a pino logger fits). */
export interface RedisIndexLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface RedisIndexConfig {
  /** `redis://[user:pass@]host:port/db`, `rediss://…` (TLS), `unix:///path.sock`, `valkey://…`. */
  url: string;
  /** Prepended to every key. Default none: the schema is then exactly llm-d's. */
  keyPrefix?: string;
  /** Lifetime of speculative entries unless confirmed first. Default 2000 ms (llm-d's). */
  speculativeTtlMs?: number;
  /** How often this process sweeps expired speculative entries when idle. Default 250 ms; 0 = only on use. */
  sweepIntervalMs?: number;
  /** Most time to establish a connection. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Most time one command may take before it fails. Default 1000 ms. */
  commandTimeoutMs?: number;
  /** Longest wait between reconnection attempts (they back off from 50 ms). Default 2000 ms. */
  maxReconnectDelayMs?: number;
  /** Keys of a pod cleared per server call (bounds how long one call holds the server). Default 512. */
  clearBatch?: number;
  /**
   * Other writers share the database (a Go llm-d EPP): clear(pod) also removes their entries of
   * the pod, by a bounded SCAN of the keyspace (O(keyspace), like llm-d's own Clear), and the
   * per-pod counters are reconciled in the background with what their Evict and Clear deleted.
   * Default true; false keeps clear proportional to the pod's own entries.
   */
  sharedWithForeignWriters?: boolean;
  /** Keys SCANned per server call when clearing foreign entries. Default 1000. */
  foreignClearBatch?: number;
  /** Background reconciliation: a bounded step every this many ms (0: only on demand). Default 5000. */
  reconcileIntervalMs?: number;
  /** Keys of a pod's index checked per reconciliation step. Default 1000. */
  reconcileBatch?: number;
  /** Extra TLS options for `rediss://` (CA, client certificate). */
  tls?: ConnectionOptions;
  observer?: IndexObserver;
  health?: BackendHealthObserver;
  logger?: RedisIndexLogger;
}

type State = 'connecting' | 'up' | 'down' | 'closed';

const SHAS = Object.fromEntries(Object.entries(SCRIPTS).map(([name, src]) => [name, createHash('sha1').update(src).digest('hex')])) as Record<ScriptName, string>;
/** Pod and tier tables are shared across lookups (the scorer caches on them) and rebuilt past this. */
const MAX_INTERNED = 1 << 16;
const MAX_FIELD_CACHE = 1 << 14;

interface FieldCode {
  pod: number;
  tier: number;
  flags: number;
  group: number;
}

/**
 * The block index on Redis or Valkey, in llm-d's key schema (see llmd-schema.ts and scripts.ts),
 * plus what llm-d lacks: clear(pod) proportional to the pod's entries (a per-pod index of its
 * keys) and speculative entries that expire on the server's clock, visible to every replica.
 *
 * Every operation is one server call (a Lua script), so each is atomic and one round trip. While
 * Redis is unreachable every operation fails at once with IndexError BACKEND_UNAVAILABLE (no
 * command is queued), the health observer sees the backend down, one warning is logged; the
 * client reconnects with backoff and the first successful connection logs once and serves again.
 */
export class RedisIndex implements KvBlockIndex {
  readonly backend = 'redis';
  readonly target: RedisTarget;
  private readonly client: Redis;
  private readonly prefix: string;
  private readonly ttlMs: number;
  private readonly clearBatch: number;
  private readonly observer: IndexObserver | undefined;
  private readonly health: BackendHealthObserver | undefined;
  private readonly logger: RedisIndexLogger | undefined;
  private readonly sweepTimer: NodeJS.Timeout | undefined;
  private readonly reconcileTimer: NodeJS.Timeout | undefined;
  private readonly shared: boolean;
  private readonly foreignClearBatch: number;
  private readonly reconcileBatch: number;
  /** Background reconciliation: the pod being walked and where its HSCAN stands. */
  private reconcilePos: { pods: string[]; at: number; cursor: string } = { pods: [], at: 0, cursor: '0' };
  private reconciling = false;
  private state: State = 'connecting';
  private everUp = false;
  private downSince = 0;
  private lastError = 'not connected yet';
  private generation = 0;
  private waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  /** Marks the server's copy of the index: a different one after a reconnection means it was lost. */
  private epoch: string | null = null;
  private readonly resetListeners: (() => void)[] = [];

  private podIds = new Map<string, number>();
  private podNames: string[] = [];
  private podTable: readonly string[] = Object.freeze([]);
  private tierIds = new Map<string, number>();
  private tierNames: string[] = [];
  private tierTable: readonly string[] = Object.freeze([]);
  private readonly fieldCodes = new Map<string, FieldCode | null>();

  constructor(config: RedisIndexConfig) {
    this.target = parseRedisUrl(config.url, config.tls);
    this.prefix = config.keyPrefix ?? '';
    this.ttlMs = positive(config.speculativeTtlMs ?? DEFAULT_SPECULATIVE_TTL_MS, 'speculativeTtlMs');
    this.clearBatch = positive(config.clearBatch ?? 512, 'clearBatch');
    this.observer = config.observer;
    this.health = config.health;
    this.logger = config.logger;
    const maxDelay = positive(config.maxReconnectDelayMs ?? 2000, 'maxReconnectDelayMs');
    const options: RedisOptions = {
      db: this.target.db,
      connectTimeout: positive(config.connectTimeoutMs ?? 2000, 'connectTimeoutMs'),
      commandTimeout: positive(config.commandTimeoutMs ?? 1000, 'commandTimeoutMs'),
      // Fail fast while disconnected: nothing is queued, in-flight commands fail on a drop.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (attempt) => Math.min(maxDelay, 50 * 2 ** Math.min(attempt, 10)),
      lazyConnect: false,
      ...(this.target.path !== undefined ? { path: this.target.path } : { host: this.target.host!, port: this.target.port! }),
      ...(this.target.username !== undefined ? { username: this.target.username } : {}),
      ...(this.target.password !== undefined ? { password: this.target.password } : {}),
      ...(this.target.tls !== undefined ? { tls: this.target.tls } : {}),
    };
    this.health?.up?.(false);
    this.client = new Redis(options);
    this.client.on('ready', () => void this.onReady());
    this.client.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    this.client.on('close', () => this.onDown());
    const sweepMs = config.sweepIntervalMs ?? 250;
    if (sweepMs > 0) {
      this.sweepTimer = setInterval(() => void this.sweepNow().catch(() => undefined), sweepMs);
      this.sweepTimer.unref();
    }
    this.shared = config.sharedWithForeignWriters ?? true;
    this.foreignClearBatch = positive(config.foreignClearBatch ?? 1000, 'foreignClearBatch');
    this.reconcileBatch = positive(config.reconcileBatch ?? 1000, 'reconcileBatch');
    const reconcileMs = config.reconcileIntervalMs ?? 5000;
    if (this.shared && reconcileMs > 0) {
      this.reconcileTimer = setInterval(() => void this.reconcileStep().catch(() => undefined), reconcileMs);
      this.reconcileTimer.unref();
    }
  }

  /**
   * Calls `listener` when the server turns out to have lost the index (restarted without
   * persistence, flushed, failed over to an empty replica): whoever feeds the index must rebuild it.
   */
  onDataLoss(listener: () => void): void {
    this.resetListeners.push(listener);
  }

  /** Whether the server is reachable and the index serves. */
  get isUp(): boolean {
    return this.state === 'up';
  }

  /** Resolves once the index serves; rejects with BACKEND_UNAVAILABLE after `timeoutMs`. */
  ready(timeoutMs = 10_000): Promise<void> {
    if (this.state === 'up') return Promise.resolve();
    if (this.state === 'closed') return Promise.reject(new IndexError('CLOSED', 'index is closed'));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(this.unavailable());
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  // ---- connection state ----------------------------------------------------------------------

  private async onReady(): Promise<void> {
    const generation = ++this.generation;
    let epoch: string;
    try {
      // Scripts are loaded before the index serves, so no call ever falls back to EVAL (whose
      // retry after NOSCRIPT would reorder it behind later calls).
      await this.loadScripts();
      const pipeline = this.client.pipeline();
      pipeline.hsetnx(`${this.prefix}kvix:stats`, 'epoch', randomUUID());
      pipeline.hget(`${this.prefix}kvix:stats`, 'epoch');
      const results = (await pipeline.exec()) ?? [];
      const failed = results.find(([err]) => err !== null);
      if (failed) throw failed[0];
      epoch = results.at(-1)![1] as string;
    } catch (err) {
      // Serving without the scripts is impossible: drop the connection and let the backoff retry.
      this.lastError = `loading scripts: ${(err as Error).message}`;
      if (generation === this.generation && this.state !== 'closed') this.client.disconnect(true);
      return;
    }
    if (generation !== this.generation || this.state === 'closed') return;
    this.lastError = 'connection closed';
    const wasDown = this.state === 'down' && this.everUp;
    this.state = 'up';
    this.health?.up?.(true);
    if (wasDown) this.logger?.info({ url: this.target.display, downForMs: Date.now() - this.downSince }, 'redis index reachable again');
    else this.logger?.info({ url: this.target.display, db: this.target.db, keyPrefix: this.prefix }, 'redis index connected');
    this.everUp = true;
    for (const w of this.waiters.splice(0)) w.resolve();
    this.adoptEpoch(epoch);
  }

  private adoptEpoch(epoch: string): void {
    const lost = this.epoch !== null && epoch !== this.epoch;
    this.epoch = epoch;
    if (!lost) return;
    this.logger?.warn({ url: this.target.display }, 'redis no longer holds the index (restarted empty, flushed or failed over): it is rebuilt from the engines');
    for (const listener of this.resetListeners) listener();
  }

  private async loadScripts(): Promise<void> {
    const pipeline = this.client.pipeline();
    for (const src of Object.values(SCRIPTS)) pipeline.script('LOAD', src);
    const failed = ((await pipeline.exec()) ?? []).find(([err]) => err !== null);
    if (failed) throw failed[0];
  }

  private onDown(): void {
    this.generation++;
    if (this.state === 'closed' || this.state === 'down') return;
    const first = this.state === 'connecting';
    this.state = 'down';
    this.downSince = Date.now();
    this.health?.up?.(false);
    this.logger?.warn(
      { url: this.target.display, err: this.lastError },
      first ? 'redis index unreachable; index operations fail until it is reachable' : 'redis index went away; index operations fail until it returns',
    );
  }

  private unavailable(): IndexError {
    return new IndexError('BACKEND_UNAVAILABLE', `redis at ${this.target.display} is unreachable (${this.lastError})`);
  }

  /** Runs a script; every failure is a typed, counted error. */
  private async script(operation: BackendOperation, name: ScriptName, keys: readonly string[], args: readonly string[]): Promise<unknown[]> {
    this.checkServing(operation);
    try {
      return (await this.client.evalsha(SHAS[name], keys.length, ...keys, this.prefix, ...args)) as unknown[];
    } catch (err) {
      throw this.failed(operation, err);
    }
  }

  private checkServing(operation: BackendOperation): void {
    if (this.state === 'closed') throw new IndexError('CLOSED', 'index is closed');
    if (this.state !== 'up') {
      this.health?.error?.(operation);
      throw this.unavailable();
    }
  }

  private failed(operation: BackendOperation, err: unknown): IndexError {
    this.health?.error?.(operation);
    if (err instanceof IndexError) return err;
    const e = err as Error;
    // ioredis's wording for "the connection dropped under this command" names its options, not the cause.
    const message = e.name === 'MaxRetriesPerRequestError' ? 'connection lost' : /enableOfflineQueue/.test(e.message) ? 'not connected' : e.message;
    this.lastError = message;
    // Someone flushed the server's script cache (SCRIPT FLUSH): load them again for the next call.
    if (message.startsWith('NOSCRIPT')) void this.loadScripts().catch(() => undefined);
    return new IndexError('BACKEND_UNAVAILABLE', `redis ${operation} failed at ${this.target.display}: ${message}`);
  }

  // ---- contract ------------------------------------------------------------------------------

  async add(engineKeys: BigUint64Array | null, requestKeys: BigUint64Array, entries: readonly PodEntry[], options: AddOptions = {}): Promise<void> {
    this.checkOpen();
    if (requestKeys.length === 0 || entries.length === 0) return;
    const ttl = options.ttlMs ?? this.ttlMs;
    const args: string[] = [String(Math.max(1, Math.round(ttl))), String(entries.length)];
    for (const e of entries) args.push(fieldOf(e), e.pod, e.speculative ? '1' : '0', ownerSuffix(e.group), tierMarker(e.tier));
    args.push(String(requestKeys.length));
    for (let i = 0; i < requestKeys.length; i++) args.push(requestKeys[i]!.toString());
    if (engineKeys !== null && engineKeys.length > 0) appendEngineMap(args, engineKeys, requestKeys);
    else args.push('0');
    const [expired, admitted, confirmations] = (await this.script('add', 'add', [], args)) as [string, number, string];
    this.reportExpired(expired);
    if (admitted > 0) this.observer?.admitted?.(admitted);
    if (confirmations !== '') {
      for (const line of confirmations.split('\n')) {
        const tab = line.lastIndexOf('\t');
        this.observer?.speculationConfirmed?.(line.slice(0, tab), Number(line.slice(tab + 1)));
      }
    }
  }

  async evict(key: bigint, kind: KeyKind, entries: readonly PodEntry[]): Promise<void> {
    this.checkOpen();
    if (entries.length === 0) return;
    const args: string[] = [kind, key.toString(), String(entries.length)];
    for (const e of entries) args.push(fieldOf(e), e.pod);
    const [expired, removed] = (await this.script('evict', 'evict', [], args)) as [string, number];
    this.reportExpired(expired);
    if (removed > 0) this.observer?.evicted?.(removed, 'event');
  }

  async requestKeyFor(engineKey: bigint): Promise<bigint | undefined> {
    this.checkOpen();
    this.checkServing('resolve');
    let last: string[];
    try {
      last = await this.client.zrange(engineKeyName(this.prefix, engineKey), -1, -1);
    } catch (err) {
      throw this.failed('resolve', err);
    }
    return last.length === 0 ? undefined : BigInt(last[0]!);
  }

  async requestKeysFor(engineKey: bigint): Promise<bigint[]> {
    this.checkOpen();
    this.checkServing('resolve');
    try {
      return (await this.client.zrange(engineKeyName(this.prefix, engineKey), 0, -1)).map((k) => BigInt(k));
    } catch (err) {
      throw this.failed('resolve', err);
    }
  }

  async lookup(requestKeys: BigUint64Array, options: LookupOptions = {}): Promise<LookupResult> {
    this.checkOpen();
    const n = requestKeys.length;
    if (n === 0) return this.emptyResult();
    const keys: string[] = new Array<string>(n);
    for (let i = 0; i < n; i++) keys[i] = requestKeyName(this.prefix, requestKeys[i]!);
    const args: string[] = [options.earlyStop === false ? '0' : '1', options.pods === undefined ? '0' : '1'];
    if (options.pods !== undefined) for (const pod of options.pods) args.push(pod);
    this.checkServing('lookup');
    let reply: Buffer[];
    try {
      reply = (await this.client.callBuffer('EVALSHA', SHAS.lookup, n, ...keys, this.prefix, ...args)) as Buffer[];
    } catch (err) {
      throw this.failed('lookup', err);
    }
    this.reportExpired(reply[0]!.toString());
    return this.decodeLookup(Number(reply[1]), reply[2]!, reply.slice(3));
  }

  /**
   * The lookup's one round trip (the script already stops where no candidate goes on), scored in
   * this process: walking runs would save nothing next to the network hop.
   */
  matchPrefix(requestKeys: BigUint64Array, options: PrefixMatchOptions = {}): Promise<PrefixMatch> {
    return matchPrefixByLookup(this, requestKeys, options);
  }

  async clear(pod: string): Promise<number> {
    this.checkOpen();
    let cursor = '0';
    let removed = 0;
    // Bounded steps through the pod's own index: never one long call.
    do {
      const [expired, next, n] = (await this.script('clear', 'clear', [], [pod, cursor, String(this.clearBatch)])) as [string, string, number];
      this.reportExpired(expired);
      removed += n;
      cursor = next;
    } while (cursor !== '0');
    if (this.shared) removed += await this.clearForeign(pod);
    if (removed > 0) this.observer?.evicted?.(removed, 'clear');
    return removed;
  }

  /** What other writers (a Go llm-d EPP) hold under the pod, removed by a bounded walk of the keyspace. */
  private async clearForeign(pod: string): Promise<number> {
    const fieldPrefix = `{"PodIdentifier":${goJsonString(pod)},`;
    let cursor = '0';
    let removed = 0;
    do {
      const [expired, next, n] = (await this.script('clear', 'clear_foreign', [], [pod, cursor, String(this.foreignClearBatch), fieldPrefix])) as [string, string, number];
      this.reportExpired(expired);
      removed += n;
      cursor = next;
    } while (cursor !== '0');
    return removed;
  }

  /**
   * Brings a pod's counters (or every pod's) in line with what the database holds, after another
   * writer deleted entries kvix counted (llm-d's Evict, Clear). Proportional to the pods' entries.
   * Returns the entries that were gone.
   */
  async reconcile(pod?: string): Promise<number> {
    this.checkOpen();
    const pods = pod !== undefined ? [pod] : (await this.podCounts()).map((c) => c.pod);
    let dropped = 0;
    for (const p of pods) {
      let cursor = '0';
      do {
        const [expired, next, n] = (await this.script('reconcile', 'reconcile', [], [p, cursor, String(this.reconcileBatch)])) as [string, string, number, number];
        this.reportExpired(expired);
        dropped += n;
        cursor = next;
      } while (cursor !== '0');
    }
    return dropped;
  }

  /** One bounded background step: the next batch of keys of the next pod. */
  private async reconcileStep(): Promise<void> {
    if (this.state !== 'up' || this.reconciling) return;
    this.reconciling = true;
    try {
      const pos = this.reconcilePos;
      if (pos.at >= pos.pods.length) {
        this.reconcilePos = { pods: (await this.podCounts()).map((c) => c.pod), at: 0, cursor: '0' };
        if (this.reconcilePos.pods.length === 0) return;
      }
      const p = this.reconcilePos;
      const [expired, next] = (await this.script('reconcile', 'reconcile', [], [p.pods[p.at]!, p.cursor, String(this.reconcileBatch)])) as [string, string, number, number];
      this.reportExpired(expired);
      if (next === '0') {
        p.at++;
        p.cursor = '0';
      } else p.cursor = next;
    } finally {
      this.reconciling = false;
    }
  }

  async stats(): Promise<IndexStats> {
    this.checkOpen();
    this.checkServing('stats');
    let reply: unknown[];
    let info: string;
    try {
      [reply, info] = await Promise.all([
        this.client.evalsha(SHAS.stats, 0, this.prefix) as Promise<unknown[]>,
        this.client.call('INFO', 'memory', 'stats') as Promise<string>,
      ]);
    } catch (err) {
      throw this.failed('stats', err);
    }
    this.reportExpired(reply[0] as string);
    const c = counters(reply[1] as string[]);
    const fromInfo = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    const usedMemory = fromInfo('used_memory');
    return {
      backend: this.backend,
      entries: c.get('entries') ?? 0,
      // A key holds at least one entry: clamped, since another writer emptying keys kvix created is not seen per key.
      keys: Math.min(c.get('keys') ?? 0, c.get('entries') ?? 0),
      pods: [...c.keys()].filter((k) => k.startsWith('e:')).length,
      engineMappings: c.get('mappings') ?? 0,
      // The server's, shared with whatever else it holds.
      bytesInUse: usedMemory,
      bytesAllocated: Math.max(usedMemory, fromInfo('used_memory_rss')),
      // Capacity is the server's maxmemory policy, not the index's.
      capacity: { maxEntries: 0, maxBytes: fromInfo('maxmemory') },
      capacityEvictions: fromInfo('evicted_keys'),
      speculative: { active: c.get('speculative') ?? 0, confirmed: c.get('confirmed') ?? 0, expired: c.get('expired') ?? 0 },
    };
  }

  async podCounts(): Promise<PodCounts[]> {
    this.checkOpen();
    // The stats script sweeps first, so expired speculation is not counted (with or without the sweep timer).
    const [expired, flat] = (await this.script('pod_counts', 'stats', [], [])) as [string, string[]];
    this.reportExpired(expired);
    const c = counters(flat);
    const out: PodCounts[] = [];
    for (const [name, entries] of c) {
      if (!name.startsWith('e:')) continue;
      const pod = name.slice(2);
      out.push({ pod, entries, speculative: c.get(`s:${pod}`) ?? 0 });
    }
    return out.sort((a, b) => (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0));
  }

  /** Pages in request-key order (a hash has no insertion order); reads the pod's whole index per call. */
  async dumpPod(pod: string, offset: number, limit: number): Promise<{ total: number; items: { key: bigint; entry: PodEntry }[] }> {
    this.checkOpen();
    // What another writer deleted is not dumped (nor counted any more).
    if (this.shared) await this.reconcile(pod);
    // Expired speculation goes first, as for every other call (the pages below are plain reads).
    const [expired] = (await this.script('dump_pod', 'sweep', [], [randomUUID()])) as [string, string];
    this.reportExpired(expired);
    const all: { key: bigint; entry: PodEntry }[] = [];
    try {
      let cursor = '0';
      do {
        const [next, kv] = await this.client.hscan(`${this.prefix}kvix:pod:${pod}`, cursor, 'COUNT', 1000);
        for (let i = 0; i + 1 < kv.length; i += 2) {
          const key = BigInt(kv[i]!);
          for (const line of kv[i + 1]!.split('\n')) {
            const tab = line.indexOf('\t');
            const decoded = decodeField(tab < 0 ? line : line.slice(0, tab));
            if (decoded !== null) all.push({ key, entry: toEntry(decoded) });
          }
        }
        cursor = next;
      } while (cursor !== '0');
    } catch (err) {
      throw this.failed('dump_pod', err);
    }
    all.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { total: all.length, items: all.slice(offset, offset + limit) };
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    const wasUp = this.state === 'up';
    this.state = 'closed';
    for (const w of this.waiters.splice(0)) w.reject(new IndexError('CLOSED', 'index is closed'));
    if (wasUp) await this.client.quit().catch(() => this.client.disconnect());
    else this.client.disconnect();
  }

  /** Sweeps expired speculative entries now (the timer does this every sweepIntervalMs). */
  async sweepNow(): Promise<void> {
    if (this.state !== 'up') return;
    const [expired, epoch] = (await this.script('sweep', 'sweep', [], [randomUUID()])) as [string, string];
    this.reportExpired(expired);
    // A flush while connected shows here rather than on a reconnection.
    this.adoptEpoch(epoch);
  }

  // ---- helpers -------------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.state === 'closed') throw new IndexError('CLOSED', 'index is closed');
  }

  private reportExpired(packed: string): void {
    if (packed === '') return;
    for (const line of packed.split('\n')) {
      const tab = line.lastIndexOf('\t');
      const pod = line.slice(0, tab);
      const count = Number(line.slice(tab + 1));
      this.observer?.speculationExpired?.(pod, count);
      this.observer?.evicted?.(count, 'expiry');
    }
  }

  private decodeLookup(keyCount: number, packed: Buffer, fields: Buffer[]): LookupResult {
    const codes: (FieldCode | null)[] = fields.map((f) => this.codeOf(f.toString()));
    const offsets = new Uint32Array(keyCount + 1);
    const total = packed.length / 2 - keyCount;
    const podIndex = new Uint32Array(total);
    const tierIndex = new Uint8Array(total);
    const flags = new Uint8Array(total);
    const group = new Uint16Array(total);
    let at = 0;
    let count = 0;
    for (let i = 0; i < keyCount; i++) {
      offsets[i] = count;
      const n = packed.readUInt16BE(at);
      at += 2;
      for (let j = 0; j < n; j++, at += 2) {
        const code = codes[packed.readUInt16BE(at) - 1];
        if (code === null || code === undefined) continue;
        podIndex[count] = code.pod;
        tierIndex[count] = code.tier;
        flags[count] = code.flags;
        group[count] = code.group;
        count++;
      }
    }
    offsets[keyCount] = count;
    return {
      keyCount,
      offsets,
      podIndex: count === total ? podIndex : podIndex.subarray(0, count),
      tierIndex: count === total ? tierIndex : tierIndex.subarray(0, count),
      flags: count === total ? flags : flags.subarray(0, count),
      group: count === total ? group : group.subarray(0, count),
      pods: this.podTable,
      tiers: this.tierTable,
    };
  }

  private emptyResult(): LookupResult {
    return { keyCount: 0, offsets: new Uint32Array(1), podIndex: new Uint32Array(0), tierIndex: new Uint8Array(0), flags: new Uint8Array(0), group: new Uint16Array(0), pods: this.podTable, tiers: this.tierTable };
  }

  /** A field's pod, tier, flags and group as table indexes (cached: the same few fields recur in every lookup). */
  private codeOf(field: string): FieldCode | null {
    let code = this.fieldCodes.get(field);
    if (code !== undefined) return code;
    const d = decodeField(field);
    if (d === null) code = null;
    else {
      if (this.podIds.size >= MAX_INTERNED || this.tierIds.size >= 255) this.resetTables();
      code = { pod: this.intern(d.pod, this.podIds, this.podNames, 'pod'), tier: this.intern(d.tier, this.tierIds, this.tierNames, 'tier'), flags: (d.speculative ? FLAG_SPECULATIVE : 0) | (d.group >= 0 ? FLAG_HAS_GROUP : 0), group: Math.max(0, d.group) };
    }
    if (this.fieldCodes.size >= MAX_FIELD_CACHE) this.fieldCodes.clear();
    this.fieldCodes.set(field, code);
    return code;
  }

  private intern(name: string, ids: Map<string, number>, names: string[], which: 'pod' | 'tier'): number {
    let id = ids.get(name);
    if (id !== undefined) return id;
    id = names.length;
    ids.set(name, id);
    names.push(name);
    // A new table object per change: earlier results keep theirs, the scorer's caches see the change.
    if (which === 'pod') this.podTable = Object.freeze([...names]);
    else this.tierTable = Object.freeze([...names]);
    return id;
  }

  /** Pods come and go over months: past the bound, start the tables over (cached codes with them). */
  private resetTables(): void {
    this.podIds = new Map();
    this.podNames = [];
    this.podTable = Object.freeze([]);
    this.tierIds = new Map();
    this.tierNames = [];
    this.tierTable = Object.freeze([]);
    this.fieldCodes.clear();
  }
}

/**
 * Appends the engine → request map by the ratio rule (n = max(E, R); engine[⌊iE/n⌋] → request[⌊iR/n⌋]):
 * count, then per engine key its decimal, how many request keys, and those keys in order.
 */
function appendEngineMap(args: string[], engineKeys: BigUint64Array, requestKeys: BigUint64Array): void {
  const e = engineKeys.length;
  const r = requestKeys.length;
  const n = Math.max(e, r);
  args.push(String(e));
  let i = 0;
  for (let j = 0; j < e; j++) {
    const targets: string[] = [];
    while (i < n && Math.floor((i * e) / n) === j) {
      targets.push(requestKeys[Math.floor((i * r) / n)]!.toString());
      i++;
    }
    args.push(engineKeys[j]!.toString(), String(targets.length), ...targets);
  }
}

/** The counters of the stats hash (flat field/value list), negatives (foreign writers' drift) as 0. */
function counters(flat: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const v = Number(flat[i + 1]);
    const name = flat[i]!;
    if (name.startsWith('e:') || name.startsWith('s:')) {
      if (v > 0) out.set(name, v);
    } else out.set(name, Math.max(0, v));
  }
  return out;
}

function toEntry(d: DecodedField): PodEntry {
  return d.group >= 0 ? { pod: d.pod, tier: d.tier, speculative: d.speculative, group: d.group } : { pod: d.pod, tier: d.tier, speculative: d.speculative };
}

function positive(v: number, name: string): number {
  if (!(v > 0)) throw new IndexError('INVALID_CONFIG', `${name} must be a positive number, got ${String(v)}`);
  return v;
}
