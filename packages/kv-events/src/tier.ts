/**
 * Engines name their media differently; the index names tiers. vLLM sends "GPU" (or nothing) for
 * its prefix cache, "CPU"/"STORAGE" from its offloading connector and LMCache's own string ("cpu",
 * "CPU", "LocalCPUBackend", "LocalDiskBackend"); SGLang sends "GPU", "CPU_PINNED", "DISK",
 * "EXTERNAL". Unknown media are lower-cased, so a new one still gets a tier of its own.
 */
const MEDIUM_TIERS: Readonly<Record<string, string>> = {
  gpu: 'gpu',
  cpu: 'cpu',
  cpu_pinned: 'cpu',
  localcpubackend: 'cpu',
  disk: 'disk',
  localdiskbackend: 'disk',
  storage: 'storage',
  external: 'storage',
};

/** The tier of a copy the pod does not hold itself (vLLM ≥ 0.34 `locality: "REMOTE"`). */
export const REMOTE_TIER = 'remote';

/** The index tier of a `medium`: nil means GPU; known media are normalised (CPU_PINNED → cpu, …). */
export function tierOfMedium(medium: string | null | undefined): string {
  if (medium === null || medium === undefined || medium === '') return 'gpu';
  const lower = medium.toLowerCase();
  return MEDIUM_TIERS[lower] ?? lower;
}

/**
 * The tier of an event's blocks: a remote copy (vLLM's `locality: "REMOTE"`: another host's or a
 * shared store's, reachable by the pod at a transfer's cost) is never the pod's own GPU or CPU
 * memory, whatever its medium says. `ownership` names who owns a secondary tier; a copy that is
 * local stays in its medium's tier.
 */
export function tierOfEvent(ev: { medium: string | null; locality?: string | null | undefined }): string {
  if (ev.locality !== undefined && ev.locality !== null && ev.locality.toUpperCase() === 'REMOTE') return REMOTE_TIER;
  return tierOfMedium(ev.medium);
}
