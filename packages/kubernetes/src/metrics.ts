import { Counter, Gauge, type Registry } from 'prom-client';

/** What the watches against the API server are doing: how often they re-list, resume, fail. */
export class KubernetesMetrics {
  readonly lists: Counter<'resource' | 'reason'>;
  readonly watchRenewals: Counter<'resource'>;
  readonly bookmarks: Counter<'resource'>;
  readonly errors: Counter<'resource' | 'status'>;
  readonly objects: Gauge<'resource'>;
  readonly poolPods: Gauge<'state'>;
  readonly resourcesApplied: Gauge<'kind'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.lists = new Counter({ name: 'kvix_kubernetes_lists_total', help: 'Full lists of a watched resource: initial, after 410 Gone (the watch fell too far behind), or after an error.', labelNames: ['resource', 'reason'], registers });
    this.watchRenewals = new Counter({ name: 'kvix_kubernetes_watch_renewals_total', help: 'Watches the server ended (timeout) and that resumed from their last resourceVersion without a list.', labelNames: ['resource'], registers });
    this.bookmarks = new Counter({ name: 'kvix_kubernetes_watch_bookmarks_total', help: 'BOOKMARK events received (they advance the resourceVersion a renewed watch resumes from).', labelNames: ['resource'], registers });
    this.errors = new Counter({ name: 'kvix_kubernetes_errors_total', help: 'Failed lists and watches, by HTTP status (0: no response).', labelNames: ['resource', 'status'], registers });
    this.objects = new Gauge({ name: 'kvix_kubernetes_watched_objects', help: 'Objects currently held from each watched resource.', labelNames: ['resource'], registers });
    this.poolPods = new Gauge({ name: 'kvix_kubernetes_pool_pods', help: 'Selected pods by state: ready (endpoints), not_ready, terminating, no_ip.', labelNames: ['state'], registers });
    this.resourcesApplied = new Gauge({ name: 'kvix_kubernetes_pool_resources', help: 'InferenceModelRewrite and InferenceObjective resources of the pool being applied.', labelNames: ['kind'], registers });
  }
}
