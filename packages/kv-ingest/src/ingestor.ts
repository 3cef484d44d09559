import { parseTopic, type DecodedBatch, type EventDecodeError } from '@kvix/kv-events';
import type { EngineProfile, EventApplier, EventRules } from '@kvix/kv-index';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { IngestConfig } from './config.js';
import type { BackendStatus } from './index-stack.js';
import { FileDiscovery } from './discovery/file.js';
import { targetsOf } from './discovery/endpoints-file.js';
import { StaticDiscovery } from './discovery/static.js';
import type { DiscoverySource, PodTarget } from './discovery/types.js';
import type { IngestMetrics } from './metrics.js';
import { PodStream, type IncomingBatch, type StreamState, type StreamSink } from './stream/pod-stream.js';
import { authorizeCurveDomain, forgetCurveDomain, readCurveAllowList, readCurveSecretKey } from './transport/curve.js';
import { EventSubscriber, ZmqReplayClient } from './transport/zmq.js';

export interface IngestorOptions {
  config: IngestConfig;
  applier: EventApplier;
  metrics: IngestMetrics;
  logger: Logger;
  /** Replaces the discovery sources the config describes (tests, a Kubernetes watcher). */
  discovery?: DiscoverySource[];
  /**
   * The index backend's reachability (IndexStack.status): failed pods wait for it before resyncing
   * (rather than refetching replays into a backend that is still down), and every pod is rebuilt
   * when it comes back without the index.
   */
  backend?: BackendStatus;
}

export interface PodDebugState {
  id: string;
  name: string;
  model: string;
  eventEndpoint: string | null;
  replayEndpoint: string | null;
  connected: boolean;
  reconnections: number;
  topicMismatches: number;
  malformedMessages: number;
  /** How the pod's events are read: from configuration, or the rules its events made kvix infer. */
  engine: { configured: EngineProfile | null; inferredRules: EventRules[] };
  /** Batches refused whole by a sanity limit. */
  rejectedBatches: number;
  stream: StreamState;
}

interface PodRuntime {
  target: PodTarget;
  stream: PodStream;
  subscriber: EventSubscriber | null;
  lane: Lane;
  connected: boolean;
  reconnections: number;
  topicMismatches: number;
  malformed: number;
  mismatchLogged: boolean;
  /** A disconnect was seen since the last connection: the next connection is a reconnection. */
  disconnectedSince: boolean;
  /** Centralized mode: introduced by its own topic, not by discovery. */
  fromTopic: boolean;
  /** Fires once the pod has been quiet for quietDelayMs (see armTailCheck). */
  quietTimer: NodeJS.Timeout | null;
  quietDelayMs: number;
  inferredRules: EventRules[];
  rejectedBatches: number;
}

/** How often idle pods' LMCache in-process entries are checked for expiry (busy pods check at every batch). */
const LMCACHE_EXPIRY_INTERVAL_MS = 10_000;

/** After a sink failure (an index backend down), a pod waits this long before retrying. */
const FAILURE_BACKOFF_MS = 1000;

interface LaneHooks {
  failed(stream: PodStream, err: Error): void;
  /** A drain went through (after failures: the pod recovered). */
  succeeded(stream: PodStream): void;
  /** Whether a failed pod may retry now (false while the index backend is down). */
  canRetry(): boolean;
}

/** Pods are spread over lanes; within a lane, pods take turns and each pod's batches stay in order. */
class Lane {
  private readonly ready = new Set<PodStream>();
  /** Pods that failed wait for their retry: new messages only queue (no replay per message). */
  private readonly held = new Set<PodStream>();
  private wake: (() => void) | null = null;
  private stopped = false;
  readonly done: Promise<void>;

  constructor(private readonly hooks: LaneHooks) {
    this.done = this.run();
  }

  private retryLater(stream: PodStream): void {
    this.held.add(stream);
    setTimeout(() => {
      if (this.stopped) return;
      if (!this.hooks.canRetry()) return this.retryLater(stream);
      this.held.delete(stream);
      this.schedule(stream);
    }, FAILURE_BACKOFF_MS).unref();
  }

  schedule(stream: PodStream): void {
    if (this.stopped || this.held.has(stream)) return;
    this.ready.add(stream);
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.ready.size === 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      for (const stream of [...this.ready]) {
        this.ready.delete(stream);
        try {
          // A bounded turn keeps one busy pod from starving the others in its lane.
          await stream.drain(64);
          this.hooks.succeeded(stream);
          if (stream.hasWork) this.ready.add(stream);
        } catch (err) {
          this.hooks.failed(stream, err as Error);
          this.retryLater(stream);
        }
        if (this.stopped) return;
      }
    }
  }
}

/**
 * Turns the KV-event streams of every discovered pod into index updates: one subscription per
 * pod (or one bound socket in centralized mode), batches applied in sequence order with gaps
 * replayed, pods added and removed as discovery changes.
 */
export class Ingestor {
  private readonly pods = new Map<string, PodRuntime>();
  private readonly snapshots = new Map<string, readonly PodTarget[]>();
  private readonly lanes: Lane[];
  private readonly sources: DiscoverySource[];
  private central: EventSubscriber | null = null;
  /** The ZAP domain of the centralized socket's CURVE allow-list, while registered. */
  private curveDomain: string | null = null;
  private unknownTopicLogged = false;
  private depthTimer: NodeJS.Timeout | null = null;
  private expiryTimer: NodeJS.Timeout | null = null;
  private started = false;
  private isReady = false;
  private readyWaiters: (() => void)[] = [];
  private reconciling: Promise<void> = Promise.resolve();
  /** Pods whose last drain failed: their failure was logged once, their recovery will be. */
  private readonly failing = new Set<string>();
  /** `<pod>/<kind>` of bad input already logged (the first of each kind per pod is; the rest are counted). */
  private readonly badInputLogged = new Set<string>();

  constructor(private readonly options: IngestorOptions) {
    const { config } = options;
    const backend = options.backend;
    const hooks: LaneHooks = {
      failed: (stream, err) => this.laneFailure(stream, err),
      succeeded: (stream) => this.laneRecovered(stream),
      canRetry: () => backend === undefined || backend.isUp,
    };
    this.lanes = Array.from({ length: config.workers }, () => new Lane(hooks));
    backend?.onReset(() => this.rebuildAll());
    this.sources = options.discovery ?? createDiscoverySources(config, options.logger);
    options.metrics.queueCapacity.set(config.maxQueuePerPod);
  }

  private get logger(): Logger {
    return this.options.logger;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const c = this.options.config;
    if (c.mode === 'centralized') {
      const curve = await this.curveFor(c);
      this.central = new EventSubscriber(c.centralizedEndpoint, 'bind', { ...this.subscriberOptions(), ...(curve ? { curve } : {}) }, {
        message: (m) => this.onCentralMessage(m),
        malformed: (err) => this.onMalformed(null, err),
        connected: () => undefined,
        disconnected: () => undefined,
        reconnecting: () => undefined,
      });
      await this.central.start();
      this.logger.info({ endpoint: c.centralizedEndpoint, curve: curve !== null }, 'listening for KV events (centralized mode)');
    }
    if (this.sources.length === 0 && c.mode === 'per-pod') {
      this.logger.warn('no pods configured: set pods or endpointsFile');
    }
    for (const source of this.sources) {
      await source.start((targets) => this.onSnapshot(source.name, targets));
    }
    await this.reconciling;
    this.depthTimer = setInterval(() => this.refreshDepth(), 1000);
    this.depthTimer.unref();
    // LMCache in-process never announces removals: its entries expire, idle pods included (in each pod's lane).
    this.expiryTimer = setInterval(() => this.expireLmcache(), LMCACHE_EXPIRY_INTERVAL_MS);
    this.expiryTimer.unref();
    void this.settleReadiness();
  }

  /** Ready once discovery ran and every pod known at startup finished its startup replay (bounded wait). */
  get ready(): boolean {
    return this.isReady;
  }

  whenReady(): Promise<void> {
    return this.isReady ? Promise.resolve() : new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  private async settleReadiness(): Promise<void> {
    const initial = [...this.pods.values()].map((p) => p.stream.bootstrapped);
    const timeout = this.options.config.readinessTimeoutMs;
    let timedOut = false;
    await Promise.race([Promise.all(initial), new Promise<void>((r) => setTimeout(() => ((timedOut = true), r()), timeout).unref())]);
    if (timedOut) this.logger.warn({ timeoutMs: timeout }, 'not every pod finished its startup replay in time; ready anyway');
    this.isReady = true;
    this.logger.info({ pods: this.pods.size }, 'ingestion ready');
    for (const w of this.readyWaiters.splice(0)) w();
  }

  async stop(): Promise<void> {
    if (this.depthTimer) clearInterval(this.depthTimer);
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    await Promise.allSettled(this.sources.map((s) => s.stop()));
    await this.reconciling;
    this.central?.close();
    if (this.curveDomain !== null) forgetCurveDomain(this.curveDomain);
    for (const pod of this.pods.values()) {
      if (pod.quietTimer) clearTimeout(pod.quietTimer);
      pod.subscriber?.close();
      pod.stream.close();
    }
    for (const lane of this.lanes) lane.stop();
    await Promise.allSettled(this.lanes.map((l) => l.done));
    this.pods.clear();
    this.options.metrics.activeSubscribers.set(0);
    this.logger.info('ingestion stopped');
  }

  /** Whether discovery (or, in centralized mode, a topic) has introduced this pod. */
  hasPod(id: string): boolean {
    return this.pods.has(id);
  }

  podStates(): PodDebugState[] {
    return [...this.pods.values()].map((p) => ({
      id: p.target.id,
      name: p.target.name,
      model: p.target.model,
      eventEndpoint: p.target.eventEndpoint,
      replayEndpoint: p.target.replayEndpoint,
      connected: p.connected,
      reconnections: p.reconnections,
      topicMismatches: p.topicMismatches,
      malformedMessages: p.malformed,
      engine: { configured: p.target.engine ?? null, inferredRules: [...p.inferredRules] },
      rejectedBatches: p.rejectedBatches,
      stream: p.stream.state(),
    }));
  }

  // ---- discovery -----------------------------------------------------------------------------

  private onSnapshot(source: string, targets: readonly PodTarget[]): void {
    this.snapshots.set(source, targets);
    this.reconciling = this.reconciling.then(() => this.reconcile()).catch((err: unknown) => {
      this.logger.error({ err: (err as Error).message }, 'applying a discovery change failed');
    });
  }

  private async reconcile(): Promise<void> {
    const desired = new Map<string, PodTarget>();
    for (const targets of this.snapshots.values()) for (const t of targets) if (!desired.has(t.id)) desired.set(t.id, t);
    for (const [id, runtime] of this.pods) {
      const next = desired.get(id);
      // A pod that introduced itself by its topic was never discovery's to remove: it stays until
      // discovery lists it (then it is re-added with discovery's endpoints, replay included).
      if (next === undefined && runtime.fromTopic) continue;
      if (next === undefined || !sameTarget(next, runtime.target)) await this.removePod(id, next === undefined ? 'removed from discovery' : 'changed');
    }
    for (const [id, target] of desired) if (!this.pods.has(id)) await this.addPod(target);
    this.options.metrics.activeSubscribers.set(this.pods.size);
  }

  private async addPod(target: PodTarget, fromTopic = false): Promise<void> {
    const c = this.options.config;
    const lane = this.lanes[laneOf(target.id, this.lanes.length)]!;
    const replay = target.replayEndpoint === null ? null : new ZmqReplayClient(target.replayEndpoint, { idleTimeoutMs: c.replayIdleTimeoutMs, totalTimeoutMs: c.replayTotalTimeoutMs });
    const stream = new PodStream(
      target.id,
      {
        maxQueue: c.maxQueuePerPod,
        replay,
        replayAttempts: c.replayAttempts,
        replayBackoffMs: c.replayBackoffMs,
        replayCooldownMs: c.replayCooldownMs,
        unknownParentCooldownMs: c.unknownParentCooldownMs,
        maxSeqJump: c.maxSeqJump,
      },
      this.sinkFor(target, () => runtime),
      this.streamObserver(),
      this.logger.child({ pod: target.id }),
    );
    const runtime: PodRuntime = { target, stream, subscriber: null, lane, connected: false, reconnections: 0, topicMismatches: 0, malformed: 0, mismatchLogged: false, disconnectedSince: false, fromTopic, quietTimer: null, quietDelayMs: 0, inferredRules: [], rejectedBatches: 0 };
    this.pods.set(target.id, runtime);
    if (target.eventEndpoint !== null && c.mode === 'per-pod') {
      runtime.subscriber = new EventSubscriber(target.eventEndpoint, 'connect', this.subscriberOptions(), {
        message: (m) => this.onPodMessage(runtime, m),
        malformed: (err) => this.onMalformed(runtime, err),
        connected: () => {
          if (!runtime.connected) this.logger.info({ pod: target.id, endpoint: target.eventEndpoint }, 'connected to pod events');
          runtime.connected = true;
          if (runtime.disconnectedSince) {
            // The engine may have restarted meanwhile: let its replay buffer tell.
            runtime.disconnectedSince = false;
            stream.requestVerification();
            lane.schedule(stream);
          }
        },
        disconnected: () => {
          if (runtime.connected) this.logger.warn({ pod: target.id, endpoint: target.eventEndpoint }, 'pod events disconnected; reconnecting');
          runtime.connected = false;
          runtime.disconnectedSince = true;
        },
        reconnecting: () => {
          runtime.reconnections++;
          this.options.metrics.reconnections.inc({ pod: target.id });
        },
      });
      await runtime.subscriber.start();
    }
    stream.requestBootstrap();
    lane.schedule(stream);
    // A pod whose first burst is lost whole never sends a batch that would start its quiet timer.
    this.armTailCheck(runtime);
    this.logger.info({ pod: target.id, name: target.name, model: target.model, events: target.eventEndpoint, replay: target.replayEndpoint }, 'pod added');
  }

  private async removePod(id: string, why: string): Promise<void> {
    const runtime = this.pods.get(id);
    if (runtime === undefined) return;
    this.pods.delete(id);
    if (runtime.quietTimer) clearTimeout(runtime.quietTimer);
    runtime.subscriber?.close();
    runtime.stream.close();
    // A batch half applied would add entries after the clear.
    await runtime.stream.whenApplied();
    const entries = await this.options.applier.removePod(id);
    this.options.metrics.forgetPod(id);
    this.badInputLogged.delete(`${id}/frames`);
    this.badInputLogged.delete(`${id}/decode`);
    this.logger.info({ pod: id, why, entriesDropped: entries }, 'pod removed');
  }

  // ---- messages ------------------------------------------------------------------------------

  private onPodMessage(runtime: PodRuntime, message: IncomingBatch): void {
    const pod = runtime.target.id;
    this.options.metrics.messagesReceived.inc({ pod });
    const topic = parseTopic(message.topic);
    if (topic.podId !== null && topic.podId !== pod) {
      runtime.topicMismatches++;
      this.options.metrics.topicMismatches.inc({ pod });
      if (!runtime.mismatchLogged) {
        runtime.mismatchLogged = true;
        // Events are indexed under the endpoint they came from; the router must use that name.
        this.logger.warn({ pod, topicPod: topic.podId, topic: message.topic }, 'topic names another pod than the endpoint it came from; indexing under the endpoint');
      }
    }
    runtime.stream.push(message);
    runtime.lane.schedule(runtime.stream);
    this.armTailCheck(runtime);
  }

  /**
   * (Re)starts the pod's quiet timer: a batch starts it at tailCheckMs. Each time it fires, the
   * pod's replay buffer is asked for anything after the last applied seq, and the timer starts
   * again at twice the interval, up to tailCheckMaxMs: a burst lost whole leaves no batch that
   * would start it again, and only a later burst would otherwise reveal the gap.
   */
  private armTailCheck(runtime: PodRuntime, delayMs = this.options.config.tailCheckMs): void {
    if (this.options.config.tailCheckMs === 0 || runtime.target.replayEndpoint === null) return;
    if (runtime.quietTimer !== null) {
      if (runtime.quietDelayMs === delayMs) {
        runtime.quietTimer.refresh();
        return;
      }
      clearTimeout(runtime.quietTimer);
    }
    runtime.quietDelayMs = delayMs;
    runtime.quietTimer = setTimeout(() => {
      runtime.quietTimer = null;
      // A pod whose events connection is down is verified when it comes back; probing its replay
      // socket meanwhile would only hold up its lane until the probe times out.
      if (runtime.subscriber === null || runtime.connected) {
        runtime.stream.requestTailCheck();
        runtime.lane.schedule(runtime.stream);
      }
      const max = this.options.config.tailCheckMaxMs;
      if (max > delayMs) this.armTailCheck(runtime, Math.min(max, delayMs * 2));
    }, delayMs);
    runtime.quietTimer.unref();
  }

  private onCentralMessage(message: IncomingBatch): void {
    const topic = parseTopic(message.topic);
    if (topic.podId === null) {
      this.options.metrics.zmqErrors.inc({ pod: 'unknown', operation: 'topic' });
      if (!this.unknownTopicLogged) {
        this.unknownTopicLogged = true;
        this.logger.warn({ topic: message.topic }, 'centralized mode needs topics of the form kv@<pod>@<model>; dropping messages without one');
      }
      return;
    }
    let runtime = this.pods.get(topic.podId);
    if (runtime === undefined) {
      // A pod discovery does not know yet: index it from its topic, without replay.
      const [address, port] = splitHostPort(topic.podId);
      const target: PodTarget = { id: topic.podId, name: topic.podId, address, port, rank: 0, eventEndpoint: null, replayEndpoint: null, model: topic.model ?? this.options.config.defaultModel };
      void this.addPod(target, true);
      runtime = this.pods.get(topic.podId)!;
      this.options.metrics.activeSubscribers.set(this.pods.size);
    }
    this.options.metrics.messagesReceived.inc({ pod: topic.podId });
    runtime.stream.push(message);
    runtime.lane.schedule(runtime.stream);
    this.armTailCheck(runtime);
  }

  private onMalformed(runtime: PodRuntime | null, err: EventDecodeError): void {
    const pod = runtime?.target.id ?? 'unknown';
    if (runtime) runtime.malformed++;
    this.options.metrics.zmqErrors.inc({ pod, operation: 'frames' });
    this.logBadInput(pod, 'frames', 'malformed event message dropped; later ones are only counted', err);
  }

  private logBadInput(pod: string, kind: 'frames' | 'decode', msg: string, err: EventDecodeError): void {
    const key = `${pod}/${kind}`;
    if (this.badInputLogged.has(key)) {
      this.logger.debug({ pod, code: err.code, err: err.message }, msg);
      return;
    }
    this.badInputLogged.add(key);
    this.logger.warn({ pod, code: err.code, err: err.message }, msg);
  }

  private sinkFor(target: PodTarget, runtimeOf: () => PodRuntime): StreamSink {
    const { applier, metrics } = this.options;
    return {
      apply: async (batch: DecodedBatch, message: IncomingBatch) => {
        const model = parseTopic(message.topic).model ?? target.model;
        const result = await applier.apply(batch, target.engine === undefined ? { pod: target.id, model } : { pod: target.id, model, engine: target.engine });
        const runtime = runtimeOf();
        if (result.rejected !== undefined) {
          metrics.batchesRejected.inc({ pod: target.id, reason: result.rejected });
          if (runtime.rejectedBatches++ === 0) this.logger.warn({ pod: target.id, seq: message.seq.toString(), reason: result.rejected }, 'event batch refused by a sanity limit and skipped; later ones are only counted');
        }
        for (const rules of result.inferredRules ?? []) {
          runtime.inferredRules.push(rules);
          metrics.rulesInferred.inc({ pod: target.id, rules });
          // Never guessed silently: configure `engine`/`lmcache` in the endpoints file to decide it.
          this.logger.warn({ pod: target.id, rules }, 'pod has no configured engine: its events are read by rules inferred from the wire');
        }
        metrics.batchesApplied.inc({ pod: target.id });
        metrics.lastSeq.set({ pod: target.id }, Number(message.seq));
        const lag = Date.now() / 1000 - batch.ts;
        if (lag >= 0 && lag < 3600) metrics.lag.observe({ pod: target.id }, lag);
        if (batch.skipped.length > 0) metrics.zmqErrors.inc({ pod: target.id, operation: 'event' }, batch.skipped.length);
        return { needsReplay: result.needsReplay };
      },
      clear: async (reason) => {
        const n = await applier.clearPod(target.id);
        this.logger.info({ pod: target.id, reason, entriesDropped: n }, 'pod cleared');
      },
    };
  }

  private streamObserver() {
    const m = this.options.metrics;
    return {
      gap: (pod: string) => m.gaps.inc({ pod }),
      reset: (pod: string) => m.resets.inc({ pod }),
      overflow: (pod: string) => m.overflows.inc({ pod }),
      replay: (pod: string, reason: Parameters<IngestMetrics['replay']>[1], outcome: Parameters<IngestMetrics['replay']>[2]) => m.replay(pod, reason, outcome),
      decodeError: (pod: string, err: EventDecodeError) => {
        m.zmqErrors.inc({ pod, operation: 'decode' });
        this.logBadInput(pod, 'decode', 'undecodable event batch skipped; later ones are only counted', err);
      },
      lost: (pod: string, batches: bigint) => m.lost.inc({ pod }, Number(batches)),
    };
  }

  private laneFailure(stream: PodStream, err: Error): void {
    this.options.metrics.zmqErrors.inc({ pod: stream.pod, operation: 'apply' });
    // Every failure is counted; a pod failing on every retry (its index backend down) logs once.
    if (!this.failing.has(stream.pod)) {
      this.failing.add(stream.pod);
      this.logger.error({ pod: stream.pod, err: err.message }, 'applying events failed; the pod will resync by replay');
    } else {
      this.logger.debug({ pod: stream.pod, err: err.message }, 'applying events failed again');
    }
    stream.markFailed();
  }

  private laneRecovered(stream: PodStream): void {
    if (this.failing.delete(stream.pod)) this.logger.info({ pod: stream.pod }, 'applying events recovered');
  }

  /** The index backend lost everything applied so far: every pod starts over from its engine's replay buffer. */
  private rebuildAll(): void {
    this.logger.warn({ pods: this.pods.size }, 'the index backend lost its contents; rebuilding every pod from its replay buffer');
    for (const runtime of this.pods.values()) {
      runtime.stream.requestRebuild();
      runtime.lane.schedule(runtime.stream);
    }
  }

  /** The centralized socket's CURVE settings, with its allow-list registered with the ZAP handler. */
  private async curveFor(c: IngestConfig): Promise<{ secretKey: string; zapDomain: string } | null> {
    if (c.curve === undefined) return null;
    const secretKey = readCurveSecretKey(c.curve.secretKeyFile);
    const allowed = readCurveAllowList(c.curve.allowedKeysFile);
    const zapDomain = `kvix-ingest-${randomUUID()}`;
    const warned = new Set<string>();
    await authorizeCurveDomain(zapDomain, {
      allowed,
      refused: (publicKey, address) => {
        this.options.metrics.publishersRefused.inc();
        if (warned.has(publicKey) || warned.size >= 1000) return;
        warned.add(publicKey);
        this.logger.warn({ publicKey, address }, 'a publisher not on the CURVE allow-list tried to connect; refused');
      },
    });
    this.curveDomain = zapDomain;
    this.logger.info({ allowedPublishers: allowed.size }, 'centralized endpoint requires CURVE from allow-listed publishers');
    return { secretKey, zapDomain };
  }

  private subscriberOptions() {
    const c = this.options.config;
    return { topicPrefix: c.topicPrefix, receiveHighWaterMark: c.receiveHighWaterMark, reconnectIntervalMs: c.reconnectIntervalMs, reconnectMaxIntervalMs: c.reconnectMaxIntervalMs };
  }

  private expireLmcache(): void {
    const { applier } = this.options;
    for (const runtime of this.pods.values()) {
      if (!applier.holdsLmcache(runtime.target.id) || runtime.stream.hasWork) continue;
      runtime.stream.requestChore(() => applier.expireLmcache(runtime.target.id));
      runtime.lane.schedule(runtime.stream);
    }
  }

  private refreshDepth(): void {
    let total = 0;
    for (const p of this.pods.values()) {
      const q = p.stream.queued;
      total += q;
      this.options.metrics.podQueueDepth.set({ pod: p.target.id }, q);
    }
    this.options.metrics.queueDepth.set(total);
  }
}

/** The discovery sources an ingestion configuration describes (static pods, an endpoints file). */
export function createDiscoverySources(c: IngestConfig, logger: Logger): DiscoverySource[] {
  const defaults = { eventPort: c.defaultEventPort, replayPort: c.defaultReplayPort, model: c.defaultModel };
  const eventsByPod = c.mode === 'per-pod';
  const sources: DiscoverySource[] = [];
  if (c.pods.length > 0) sources.push(new StaticDiscovery(targetsOf(c.pods, defaults, eventsByPod)));
  if (c.endpointsFile !== undefined) {
    sources.push(new FileDiscovery({ path: c.endpointsFile, defaults, eventsByPod, pollIntervalMs: c.endpointsPollIntervalMs, logger: logger.child({ discovery: 'endpoints-file' }) }));
  }
  return sources;
}

/** Label changes (a pod starting to drain) do not make a target another subscription. */
function sameTarget(a: PodTarget, b: PodTarget): boolean {
  return a.eventEndpoint === b.eventEndpoint && a.replayEndpoint === b.replayEndpoint && a.model === b.model && a.name === b.name && JSON.stringify(a.engine ?? null) === JSON.stringify(b.engine ?? null);
}

function laneOf(id: string, lanes: number): number {
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619);
  return (h >>> 0) % lanes;
}

function splitHostPort(id: string): [string, number] {
  const at = id.lastIndexOf(':');
  const host = id.slice(0, at).replace(/^\[|\]$/g, '');
  return [host, Number(id.slice(at + 1)) || 0];
}
