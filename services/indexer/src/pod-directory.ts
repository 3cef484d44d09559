import type { DiscoveryHub, Ingestor, PodDebugState } from '@kvix/kv-ingest';

/** A pod as the APIs describe it; `stream` only where this process reads the pod's KV events itself. */
export interface DirectoryPod {
  id: string;
  name: string;
  model: string;
  connected: boolean;
  stream: PodDebugState['stream'] | null;
}

/**
 * Which pods exist, for the stats, dump and analytics views: the ingestor's view when this
 * indexer dials the pods, discovery's alone when it follows a replicated index (the stream
 * positions then live in the publisher).
 */
export interface PodDirectory {
  pods(): DirectoryPod[];
  hasPod(id: string): boolean;
}

export function ingestorDirectory(ingestor: Ingestor): PodDirectory {
  return { pods: () => ingestor.podStates(), hasPod: (id) => ingestor.hasPod(id) };
}

export function discoveryDirectory(hub: DiscoveryHub): PodDirectory {
  return {
    pods: () => hub.targets.map((t) => ({ id: t.id, name: t.name, model: t.model, connected: false, stream: null })),
    hasPod: (id) => hub.targets.some((t) => t.id === id),
  };
}
