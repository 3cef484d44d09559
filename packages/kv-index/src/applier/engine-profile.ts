import { tierOfMedium, type BlockStored } from '@kvix/kv-events';

/** Which engine publishes a pod's events. */
export type EngineKind = 'vllm' | 'sglang';
/** How a vLLM pod's LMCache offload publishes (through vLLM's own stream), if it has one. */
export type LmcacheMode = 'none' | 'inproc' | 'mp';

/**
 * What a pod runs, from configuration (the endpoints file's `engine`, `lmcache`,
 * `kvCacheReportMode`; a discovery source's labels). The rules each event is applied by follow
 * from it; without it they are inferred from the wire (and the inference is reported).
 */
export interface EngineProfile {
  engine: EngineKind;
  lmcache?: LmcacheMode;
  /**
   * vLLM's kv_cache_report_mode "full": prefix-cache hits are re-announced as BlockStored, so a
   * GPU store of a block already held is the same copy again (idempotent), not a second copy.
   */
  reportMode?: 'default' | 'full';
}

/** The rules one event is applied by. */
export type EventRules = 'vllm' | 'sglang' | 'lmcache-inproc' | 'lmcache-mp';

/**
 * The rules for one BlockStored. LMCache's stores come through vLLM's stream without a KV-cache
 * group (vLLM's block pool and offloading connector always set one since 0.34) in a CPU-like medium.
 * Without configuration: SGLang by its map layout; LMCache in-process by what only it sends (a
 * trailing token past the chunk, or parent 0), lower-case "cpu" otherwise; LMCache MP by "CPU"
 * without a group.
 */
export function rulesFor(ev: BlockStored, profile: EngineProfile | undefined): { rules: EventRules; inferred: boolean } {
  if (profile?.engine === 'sglang') return { rules: 'sglang', inferred: false };
  const offloadShaped = ev.groupIdx === null && ev.medium !== null && tierOfMedium(ev.medium) !== 'gpu';
  if (profile !== undefined) {
    if (!offloadShaped || profile.lmcache === undefined || profile.lmcache === 'none') return { rules: 'vllm', inferred: false };
    return { rules: profile.lmcache === 'inproc' ? 'lmcache-inproc' : 'lmcache-mp', inferred: false };
  }
  if (ev.encoding?.layout === 'map' && ev.encoding.dialect === 'sglang') return { rules: 'sglang', inferred: true };
  if (!offloadShaped) return { rules: 'vllm', inferred: false };
  const e = ev.blockHashes.length;
  const trailing = ev.blockSize > 0 && ev.tokenIds.length === ev.blockSize * e + 1;
  if (trailing || ev.parentBlockHash === 0n || ev.medium === 'cpu') return { rules: 'lmcache-inproc', inferred: true };
  return { rules: 'lmcache-mp', inferred: true };
}
