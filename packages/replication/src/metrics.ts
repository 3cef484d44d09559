import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** `kvix_replication_*`: what an operator needs to see that replicas agree and how far behind they are. */
export class ReplicationMetrics {
  readonly connected: Gauge;
  readonly publishedOps: Counter;
  readonly publishedMessages: Counter;
  readonly publishErrors: Counter;
  readonly droppedOps: Counter<'reason'>;
  readonly resyncs: Counter;
  readonly pendingOps: Gauge;
  readonly appliedOps: Counter;
  readonly appliedSeq: Gauge;
  readonly lag: Histogram;
  readonly malformed: Counter<'source'>;
  readonly snapshotSeconds: Histogram<'operation'>;
  readonly snapshotBytes: Gauge;
  readonly snapshotEntries: Gauge;
  readonly bootstrapSeconds: Gauge;
  readonly speculationsSent: Counter;
  readonly speculationsReceived: Counter;
  readonly peers: Gauge;

  constructor(registry: Registry) {
    const r = [registry];
    this.connected = new Gauge({ name: 'kvix_replication_connected', help: '1 while connected to NATS', registers: r });
    this.publishedOps = new Counter({ name: 'kvix_replication_published_ops_total', help: 'Index operations published to the stream', registers: r });
    this.publishedMessages = new Counter({ name: 'kvix_replication_published_messages_total', help: 'Stream messages published (one per pod per flush)', registers: r });
    this.publishErrors = new Counter({ name: 'kvix_replication_publish_errors_total', help: 'Publishes that failed or timed out (stream publishes are retried; shared decisions and load reports are not)', registers: r });
    this.droppedOps = new Counter({ name: 'kvix_replication_dropped_ops_total', help: 'Operations dropped while NATS was away (the pod is resynced)', labelNames: ['reason'], registers: r });
    this.resyncs = new Counter({ name: 'kvix_replication_pod_resyncs_total', help: 'Pods republished whole after dropped operations', registers: r });
    this.pendingOps = new Gauge({ name: 'kvix_replication_pending_ops', help: 'Operations applied here and not yet acknowledged by the stream', registers: r });
    this.appliedOps = new Counter({ name: 'kvix_replication_applied_ops_total', help: 'Stream operations applied to this replica\'s index', registers: r });
    this.appliedSeq = new Gauge({ name: 'kvix_replication_applied_stream_seq', help: 'Last stream sequence applied by this replica', registers: r });
    this.lag = new Histogram({
      name: 'kvix_replication_lag_seconds',
      help: 'From the publisher applying an operation to this replica applying it',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers: r,
    });
    this.malformed = new Counter({ name: 'kvix_replication_malformed_messages_total', help: 'Messages skipped as malformed', labelNames: ['source'], registers: r });
    this.snapshotSeconds = new Histogram({ name: 'kvix_replication_snapshot_seconds', help: 'Snapshot write/read/load time', labelNames: ['operation'], buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30], registers: r });
    this.snapshotBytes = new Gauge({ name: 'kvix_replication_snapshot_bytes', help: 'Size of the last snapshot written or read', registers: r });
    this.snapshotEntries = new Gauge({ name: 'kvix_replication_snapshot_entries', help: 'Entries in the last snapshot written or read', registers: r });
    this.bootstrapSeconds = new Gauge({ name: 'kvix_replication_bootstrap_seconds', help: 'Time from start to caught up with the stream', registers: r });
    this.speculationsSent = new Counter({ name: 'kvix_replication_speculations_sent_total', help: 'Routing decisions shared with peers', registers: r });
    this.speculationsReceived = new Counter({ name: 'kvix_replication_speculations_received_total', help: 'Peers\' routing decisions applied here', registers: r });
    this.peers = new Gauge({ name: 'kvix_replication_peers', help: 'Peer replicas heard from recently', registers: r });
  }
}
