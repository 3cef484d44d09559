import { connectivityState, type ChannelOptions } from '@grpc/grpc-js';
import { grpcChannelCredentials, grpcChannelOptions, loadExtProc, type ExternalProcessorClient, type GrpcClientTls } from '@kvix/proto';
import type { ProcessorFailure } from './processor-failure.js';

/** Envoy's default `healthy_panic_threshold`: below this share of usable hosts, every host is used. */
const PANIC_THRESHOLD = 0.5;

// grpc-js backs off reconnecting a failed channel (1 s, growing to 120 s) and fails calls at once
// while it does. Envoy's connection pool instead dials again for the next stream, so a replica
// that comes back is used as soon as its ejection ends: keep grpc-js's backoff short.
const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1_000,
};

/** One host of the ext_proc cluster: its own gRPC channel, as Envoy keeps a connection pool per host. */
export class ProcessorHost {
  readonly client: ExternalProcessorClient;
  /** `performance.now()` until which outlier detection keeps the host out of the rotation. */
  ejectedUntil = 0;
  streams = 0;
  failures = 0;
  ejections = 0;

  constructor(
    readonly target: string,
    tls?: GrpcClientTls,
  ) {
    const { ExternalProcessor } = loadExtProc().envoy.service.ext_proc.v3;
    this.client = new ExternalProcessor(target, grpcChannelCredentials(tls), { ...CHANNEL_OPTIONS, ...grpcChannelOptions(tls) });
  }

  /** What grpc-js reports as the peer of a call that never got a connection. */
  get channelTarget(): string {
    return this.client.getChannel().getTarget();
  }

  /** Not ejected, and its channel is not in TRANSIENT_FAILURE (where grpc-js fails every call). */
  usable(now: number): boolean {
    return now >= this.ejectedUntil && this.client.getChannel().getConnectivityState(false) !== connectivityState.TRANSIENT_FAILURE;
  }
}

/** Counters for one ext_proc host, as Envoy's cluster and outlier-detection stats would show them. */
export interface ProcessorHostStats {
  /** Process streams opened on the host, first attempts and retries alike. */
  streams: number;
  /** Streams that failed (connect failure, reset or error status). */
  failures: number;
  /** Times outlier detection took the host out of the rotation. */
  ejections: number;
}

/**
 * The ext_proc cluster: round robin over its hosts, skipping those that passive outlier detection
 * ejected after a locally originated failure (a failed connect or a reset; a status the processor
 * sends is not one), for `ejectionMs`. When fewer than half of the hosts are usable, Envoy's panic
 * mode picks from all of them instead.
 */
export class ProcessorPool {
  readonly hosts: ProcessorHost[];
  private next = 0;
  retries = 0;

  constructor(
    targets: readonly string[],
    private readonly ejectionMs: number,
    /** TLS to the ext_proc hosts (mutual with a client certificate); plaintext without. */
    tls?: GrpcClientTls,
  ) {
    this.hosts = targets.map((target) => new ProcessorHost(target, tls));
  }

  /**
   * The host for a new stream, or for a retry (`exclude` holds the hosts already tried, as the
   * `previous_hosts` retry predicate does). Undefined when no host the balancer would pick is
   * left untried.
   */
  pick(exclude: ReadonlySet<ProcessorHost> = new Set()): ProcessorHost | undefined {
    const now = performance.now();
    const usable = this.hosts.filter((h) => h.usable(now));
    const panic = usable.length < this.hosts.length * PANIC_THRESHOLD;
    const chosen = this.roundRobin((h) => !exclude.has(h) && (panic || h.usable(now)));
    if (chosen) chosen.streams++;
    return chosen;
  }

  /** Records a failed stream; a locally originated failure ejects the host. */
  onFailure(host: ProcessorHost, failure: ProcessorFailure): void {
    host.failures++;
    if ((failure === 'connect-failure' || failure === 'reset') && this.ejectionMs > 0) {
      const now = performance.now();
      if (now >= host.ejectedUntil) host.ejections++;
      host.ejectedUntil = now + this.ejectionMs;
    }
  }

  stats(): Record<string, ProcessorHostStats> {
    return Object.fromEntries(this.hosts.map((h) => [h.target, { streams: h.streams, failures: h.failures, ejections: h.ejections }]));
  }

  close(): void {
    for (const host of this.hosts) host.client.close();
  }

  private roundRobin(eligible: (host: ProcessorHost) => boolean): ProcessorHost | undefined {
    for (let i = 0; i < this.hosts.length; i++) {
      const index = (this.next + i) % this.hosts.length;
      const host = this.hosts[index] as ProcessorHost;
      if (eligible(host)) {
        this.next = index + 1;
        return host;
      }
    }
    return undefined;
  }
}
