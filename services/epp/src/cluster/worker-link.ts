import type { InMemoryIndex, PodEntry } from '@kvix/kv-index';
import { applyIndexOps, type SpeculationSink } from '@kvix/replication';
import type { Readiness } from '@kvix/service-kit';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { isPrimaryMessage, type MetricFamilyJson, type PrimaryMessage, type WorkerMessage, type WorkerStatus } from './messages.js';

/** What a worker answers the primary with: its readiness, its index copy, its metrics. */
export interface WorkerSurface {
  registry: Registry;
  readiness(): Readiness;
  pods(): Promise<WorkerStatus['pods']>;
}

/**
 * A worker's end of the cluster IPC channel: it follows the primary's index (the snapshot, then
 * every operation the primary's ingestion applied, as an HA replica follows the index stream),
 * shares its routing decisions' speculative entries with the other workers through the primary,
 * and answers the primary's status and metrics questions.
 */
export class PrimaryLink implements SpeculationSink {
  private index: InMemoryIndex | null = null;
  private surface: WorkerSurface | null = null;
  private appliedSeq = 0;
  /** Batches apply one after another, in the order they were sent. */
  private applying: Promise<void> = Promise.resolve();
  private fedResolve: (() => void) | null = null;
  private malformed = 0;
  private readonly onMessage = (m: unknown): void => this.receive(m);

  constructor(
    /** Named in the gateway's `x-kvix-worker` header and in logs. */
    readonly workerId: string,
    private readonly logger: Logger,
  ) {
    process.on('message', this.onMessage);
  }

  /** Loads the primary's index into `index` (empty) and keeps it following; resolves once loaded. */
  follow(index: InMemoryIndex): Promise<void> {
    this.index = index;
    const fed = new Promise<void>((resolve) => (this.fedResolve = resolve));
    this.send({ kvix: 'feed?' });
    return fed;
  }

  serve(surface: WorkerSurface): void {
    this.surface = surface;
  }

  started(ports: { gatewayPort: number | null; extProcPort: number | null }): void {
    this.send({ kvix: 'started', ...ports });
  }

  publish(requestKeys: BigUint64Array, entries: readonly PodEntry[], ttlMs: number | undefined): void {
    this.send({ kvix: 'speculation', requestKeys, entries: [...entries], ttlMs: ttlMs ?? 0 });
  }

  close(): void {
    process.off('message', this.onMessage);
  }

  private send(m: WorkerMessage): void {
    // The channel is gone when the primary died; the worker is stopping then (see main).
    if (process.connected) process.send!(m);
  }

  private receive(m: unknown): void {
    if (!isPrimaryMessage(m)) return;
    const msg = m as PrimaryMessage;
    switch (msg.kvix) {
      case 'snapshot':
        this.enqueue(() => {
          if (msg.snapshot && this.index) this.index.importSnapshot(msg.snapshot);
          this.appliedSeq = msg.seq;
          this.fedResolve?.();
          this.fedResolve = null;
          return Promise.resolve();
        });
        break;
      case 'ops':
        this.enqueue(async () => {
          if (this.index) await applyIndexOps(this.index, msg.ops);
          this.appliedSeq = msg.seq;
        });
        break;
      case 'speculation':
        if (this.index) {
          const entries = msg.entries.map((e) => ({ ...e, speculative: true }));
          void this.index.add(null, msg.requestKeys, entries, msg.ttlMs > 0 ? { ttlMs: msg.ttlMs } : {}).catch((err: unknown) => this.dropped(err));
        }
        break;
      case 'status?':
        void this.status().then((status) => this.send({ kvix: 'status', id: msg.id, status }));
        break;
      case 'metrics?':
        void this.metrics().then((metrics) => this.send({ kvix: 'metrics', id: msg.id, metrics }));
        break;
    }
  }

  private enqueue(step: () => Promise<void>): void {
    this.applying = this.applying.then(step).catch((err: unknown) => this.dropped(err));
  }

  private dropped(err: unknown): void {
    this.malformed++;
    if (this.malformed === 1 || this.malformed % 1000 === 0) this.logger.warn({ err: (err as Error).message, total: this.malformed }, 'an index operation from the primary could not be applied; skipped');
  }

  private async status(): Promise<WorkerStatus> {
    const r = this.surface?.readiness() ?? { ready: false, detail: { starting: true } };
    return { pid: process.pid, ready: r.ready, detail: r.detail ?? {}, appliedSeq: this.appliedSeq, pods: this.surface ? await this.surface.pods() : [] };
  }

  private async metrics(): Promise<MetricFamilyJson[]> {
    if (!this.surface) return [];
    const families = await this.surface.registry.getMetricsAsJSON();
    // Plain data only: a metric's collect function cannot cross the channel.
    return families.map((f) => ({ name: f.name, help: f.help, type: String(f.type), aggregator: f.aggregator, values: f.values.map((v) => ({ value: v.value, labels: { ...v.labels } as Record<string, string | number>, ...('metricName' in v && typeof v.metricName === 'string' ? { metricName: v.metricName } : {}) })) }));
  }
}
