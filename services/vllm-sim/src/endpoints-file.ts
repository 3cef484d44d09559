import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { stringify } from 'yaml';

/** One pod as kvix's endpoints-file discovery reads it. */
export interface EndpointsFileEntry {
  name: string;
  address: string;
  port: number;
  eventPort: number | null;
  replayPort: number | null;
  model: string;
  dataParallelSize?: number;
  /** What the pod runs, so ingestion reads its events by the right rules (kvix's endpoints-file keys). */
  engine?: 'vllm' | 'sglang';
  lmcache?: 'inproc' | 'mp';
  kvCacheReportMode?: 'full';
}

/**
 * Written to a temporary file and renamed, so a watcher never reads half a file. The directory is
 * created if missing (the README's /tmp/kvix/endpoints.yaml on a fresh machine).
 */
export function writeEndpointsFile(path: string, endpoints: readonly EndpointsFileEntry[]): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, stringify({ endpoints }));
  renameSync(tmp, path);
}
