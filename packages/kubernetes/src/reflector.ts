import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeApiError, statusOf } from './errors.js';
import type { KubernetesMetrics } from './metrics.js';

export interface ReflectorOptions {
  /** Metric and log label: pods, inferencepools, … */
  resource: string;
  /** Collection path watched, e.g. /api/v1/namespaces/llm/pods. */
  path: string;
  /** Lists the collection with the same selectors the watch uses. */
  list: () => Promise<KubernetesListObject<KubernetesObject>>;
  labelSelector?: string;
  fieldSelector?: string;
  kube: KubeConfig;
  watchTimeoutSeconds: number;
  metrics: KubernetesMetrics | null;
  logger: Logger;
  /** Something changed (coalesced: one call per burst, e.g. a whole re-list). */
  onChange: () => void;
  /** A list or watch failed with this HTTP status (null: no response); the reflector retries by itself. */
  onError?: (status: number | null, err: unknown) => void;
  /** Statuses that fail `start()` at once instead of being retried (a missing CRD, RBAC). */
  fatalOnStart?: readonly number[];
  /** Statuses the owner reports itself (through onError): the reflector retries them without logging. */
  quietStatuses?: readonly number[];
  startTimeoutMs: number;
  /** Longest wait between retries after failures (default 30 s). */
  retryMaxMs?: number;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

/**
 * A watched collection held in memory: list, then watch from the list's resourceVersion with
 * bookmarks; a watch the server ends is resumed from the last resourceVersion (event or bookmark),
 * a 410 Gone (the watch fell out of the server's window) re-lists and diffs, so nothing that
 * happened meanwhile is lost. Built on client-node's ListWatch; what it leaves to its user —
 * bookmarks, server-side timeouts, restarting after errors, knowing when a list has been applied —
 * is done here.
 */
export class Reflector {
  private readonly informer: ListWatch<KubernetesObject>;
  private stopped = false;
  private listsDone = 0;
  /** Why the next list happens (410 seen, or an error restart). */
  private nextListReason: 'gone' | 'error' = 'error';
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelay = RETRY_MIN_MS;
  private failing: string | null = null;
  private changeScheduled = false;
  private firstList: { resolve: () => void; reject: (err: unknown) => void } | null = null;

  constructor(private readonly options: ReflectorOptions) {
    const watch = new RenewingWatch(options.kube, options.watchTimeoutSeconds, {
      bookmark: () => options.metrics?.bookmarks.inc({ resource: options.resource }),
      gone: () => (this.nextListReason = 'gone'),
      renewed: () => options.metrics?.watchRenewals.inc({ resource: options.resource }),
    });
    this.informer = new ListWatch(options.path, watch, () => this.list(), false, options.labelSelector, options.fieldSelector);
    const changed = (): void => this.scheduleChange();
    this.informer.on('add', changed);
    this.informer.on('update', changed);
    this.informer.on('delete', changed);
    this.informer.on('error', (err: unknown) => this.failed(err));
  }

  /** Resolves once the first list is held; rejects on a fatal status, or when the API server stays unreachable past startTimeoutMs. */
  start(): Promise<void> {
    const first = new Promise<void>((resolve, reject) => (this.firstList = { resolve, reject }));
    const timer = setTimeout(() => this.firstList?.reject(new Error(`no answer listing ${this.options.resource} within ${this.options.startTimeoutMs} ms${this.failing ? ` (${this.failing})` : ''}`)), this.options.startTimeoutMs);
    timer.unref();
    void this.informer.start();
    return first.finally(() => {
      clearTimeout(timer);
      this.firstList = null;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    await this.informer.stop();
  }

  items(): readonly KubernetesObject[] {
    return this.informer.list();
  }

  get resourceVersion(): string {
    return this.informer.latestResourceVersion();
  }

  private async list(): Promise<KubernetesListObject<KubernetesObject>> {
    const reason = this.listsDone === 0 ? 'initial' : this.nextListReason;
    const result = await this.options.list();
    // ListWatch would go on to open a watch nobody stops (it checks for stop() only before listing).
    if (this.stopped) throw new Error('reflector stopped');
    this.listsDone++;
    this.nextListReason = 'error';
    this.options.metrics?.lists.inc({ resource: this.options.resource, reason });
    if (reason === 'gone') this.options.logger.info({ resource: this.options.resource }, 'watch expired (410 Gone): re-listed');
    // ListWatch applies the items right after this promise resolves; the list counts once they are in.
    setImmediate(() => this.listed());
    return result;
  }

  private listed(): void {
    if (this.stopped) return;
    if (this.failing !== null) this.options.logger.info({ resource: this.options.resource }, 'watch recovered');
    this.failing = null;
    this.retryDelay = RETRY_MIN_MS;
    this.scheduleChange();
    this.firstList?.resolve();
  }

  private failed(err: unknown): void {
    if (this.stopped) return;
    const status = statusOf(err);
    const { resource, metrics, logger } = this.options;
    metrics?.errors.inc({ resource, status: String(status ?? 0) });
    this.options.onError?.(status, err);
    const description = describeApiError(err);
    if (this.firstList && status !== null && (this.options.fatalOnStart ?? []).includes(status)) {
      this.firstList.reject(err);
      return;
    }
    // One line when a failure starts (or changes), not one per retry.
    const quiet = status !== null && (this.options.quietStatuses ?? []).includes(status);
    if (this.failing !== description && !quiet) logger.warn({ resource, err: description, retryInMs: this.retryDelay }, 'watch failed; retrying');
    this.failing = description;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped) void this.informer.start();
    }, this.retryDelay);
    this.retryTimer.unref();
    this.retryDelay = Math.min(this.retryDelay * 2, this.options.retryMaxMs ?? RETRY_MAX_MS);
  }

  private scheduleChange(): void {
    if (this.changeScheduled || this.stopped) return;
    this.changeScheduled = true;
    setImmediate(() => {
      this.changeScheduled = false;
      if (this.stopped) return;
      this.options.metrics?.objects.set({ resource: this.options.resource }, this.informer.list().length);
      this.options.onChange();
      // A watch event proves the connection works again after a failure.
      if (this.failing !== null && this.listsDone > 0) {
        this.options.logger.info({ resource: this.options.resource }, 'watch recovered');
        this.failing = null;
        this.retryDelay = RETRY_MIN_MS;
      }
    });
  }
}

interface WatchHooks {
  bookmark(): void;
  gone(): void;
  renewed(): void;
}

/**
 * client-node's Watch with what a long-running watch needs: bookmarks requested, a server-side
 * timeout (jittered, so replicas do not renew in step) shorter than the client's inactivity timer,
 * and the 410s and renewals reported.
 */
class RenewingWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly timeoutSeconds: number,
    private readonly hooks: WatchHooks,
  ) {
    super(config);
    // client-node aborts a watch after 30 s without bytes, which a quiet collection hits between
    // bookmarks (about one a minute): each would be a needless reconnect. The field is private in
    // the typings only; the server-side timeout below ends the watch first instead.
    (this as unknown as { requestTimeoutMs: number }).requestTimeoutMs = (timeoutSeconds * 2 + 60) * 1000;
  }

  override watch(path: string, queryParams: Record<string, unknown>, callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    const timeoutSeconds = this.timeoutSeconds + Math.floor(Math.random() * this.timeoutSeconds);
    let gone = false;
    return super.watch(
      path,
      { ...queryParams, allowWatchBookmarks: true, timeoutSeconds },
      (phase, obj, raw) => {
        if (phase === 'BOOKMARK') this.hooks.bookmark();
        if (phase === 'ERROR' && (obj as { code?: unknown } | null)?.code === 410) {
          gone = true;
          this.hooks.gone();
        }
        callback(phase, obj, raw);
      },
      (err) => {
        if (statusOf(err) === 410) this.hooks.gone();
        // A clean end after a 410 event is followed by a list, not a resumed watch.
        else if ((err === null || err === undefined) && !gone) this.hooks.renewed();
        done(err);
      },
    );
  }
}
