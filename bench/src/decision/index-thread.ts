import { parentPort } from 'node:worker_threads';
import { InMemoryIndex, type IndexSnapshot } from '@kvix/kv-index';

/**
 * The alternative to an index on the request event loop, measured by the decision benchmark: the
 * index on its own thread, asked by message. It is loaded with a snapshot of the EPP's index and
 * answers lookups with the result columns (copied out and transferred), as a thread that also ran
 * ingestion would.
 */
export type ToIndexThread = { type: 'load'; snapshot: IndexSnapshot } | { type: 'lookup'; id: number; keys: BigUint64Array; pods: string[] } | { type: 'stop' };
export type FromIndexThread = { type: 'loaded'; entries: number } | { type: 'lookup'; id: number; keyCount: number; offsets: Uint32Array; podIndex: Uint32Array; tierIndex: Uint8Array; flags: Uint8Array; pods: readonly string[] };

const index = new InMemoryIndex({ sweepIntervalMs: 0 });
const port = parentPort!;
port.on('message', (msg: ToIndexThread) => {
  if (msg.type === 'load') {
    port.postMessage({ type: 'loaded', entries: index.importSnapshot(msg.snapshot) } satisfies FromIndexThread);
  } else if (msg.type === 'lookup') {
    const r = index.lookupSync(msg.keys, { pods: msg.pods });
    const offsets = r.offsets.slice();
    const podIndex = r.podIndex.slice();
    const tierIndex = r.tierIndex.slice();
    const flags = r.flags.slice();
    port.postMessage({ type: 'lookup', id: msg.id, keyCount: r.keyCount, offsets, podIndex, tierIndex, flags, pods: r.pods } satisfies FromIndexThread, [offsets.buffer, podIndex.buffer, tierIndex.buffer, flags.buffer]);
  } else {
    port.close();
  }
});
