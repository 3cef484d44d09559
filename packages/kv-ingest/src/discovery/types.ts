import type { EngineProfile } from '@kvix/kv-index';
/**
 * One engine to subscribe to: a pod, or one data-parallel rank of a pod (each rank is its own
 * routing endpoint with its own event port).
 */
export interface PodTarget {
  /**
   * Identity in the index: the serving endpoint `address:port` of this rank, exactly what the
   * router names endpoints (a mismatch here is the classic cause of "every score is 0").
   */
  id: string;
  /** Discovery's name (with `/rank-N` for data-parallel ranks above 0). */
  name: string;
  address: string;
  /** Serving (HTTP) port of this rank. */
  port: number;
  rank: number;
  /** Where this rank publishes KV events (per-pod mode); null in centralized mode. */
  eventEndpoint: string | null;
  replayEndpoint: string | null;
  /** The model the pod serves (the request-key root when events carry no LoRA name). */
  model: string;
  /** Discovery labels (endpoints-file `labels`, Kubernetes pod labels): routers read e.g. draining from them. */
  labels?: Readonly<Record<string, string>>;
  /** LoRA adapters discovery says the pod loads (Kubernetes annotation): a candidate for them before its metrics report them. */
  adapters?: readonly string[];
  /** What the pod runs (engine, LMCache mode): how its events are read. Absent: told by the events, and reported. */
  engine?: EngineProfile;
}

/**
 * A source of pod targets: a static list, an endpoints file, and (by the same contract) the
 * Kubernetes pod watcher of @kvix/kubernetes. A source reports complete snapshots; the ingestor diffs them.
 */
export interface DiscoverySource {
  readonly name: string;
  /** Starts watching; resolves once the first snapshot was delivered (or throws if it cannot be). */
  start(onSnapshot: (targets: readonly PodTarget[]) => void): Promise<void>;
  stop(): Promise<void>;
}

export function hostPort(address: string, port: number): string {
  return address.includes(':') && !address.startsWith('[') ? `[${address}]:${port}` : `${address}:${port}`;
}

export function tcpEndpoint(address: string, port: number): string {
  return `tcp://${hostPort(address, port)}`;
}
