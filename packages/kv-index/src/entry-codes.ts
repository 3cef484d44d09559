import { IndexError, type PodEntry } from './types.js';

/**
 * An entry as one 32-bit code: pod id (16 bits) | tier id (6) | speculative (1) | has group (1) |
 * group (8). Codes make entry identity a single integer compare and keep the index's nodes
 * object-free.
 */
export const MAX_PODS = 1 << 16;
export const MAX_TIERS = 1 << 6;
export const MAX_GROUP = 255;
const SPECULATIVE_BIT = 1 << 22;
const HAS_GROUP_BIT = 1 << 23;

export const podOf = (code: number): number => code & 0xffff;
export const tierOf = (code: number): number => (code >>> 16) & 0x3f;
export const isSpeculativeCode = (code: number): boolean => (code & SPECULATIVE_BIT) !== 0;
export const hasGroupCode = (code: number): boolean => (code & HAS_GROUP_BIT) !== 0;
export const groupOf = (code: number): number => code >>> 24;
/** The same entry without its speculative bit: what a confirmation replaces. */
export const withoutSpeculation = (code: number): number => (code & ~SPECULATIVE_BIT) >>> 0;
/** The code's identity apart from tier and speculation: the pod and its group. */
export const podAndGroup = (code: number): number => (code & 0xff80ffff) >>> 0;

export const DEFAULT_TIERS = ['gpu', 'cpu', 'disk', 'storage'] as const;

export class EntryCodec {
  private readonly podIds = new Map<string, number>();
  /** Pod names by id (undefined for free ids). */
  readonly podNames: (string | undefined)[] = [];
  private readonly freePodIds: number[] = [];
  private readonly tierIds = new Map<string, number>();
  readonly tierNames: string[] = [];
  private readonly canonical = new Map<number, PodEntry>();
  /** Bumped whenever a pod id is assigned or released (caches of podNames key on it). */
  version = 0;

  constructor() {
    for (const t of DEFAULT_TIERS) this.tierId(t, true);
  }

  get podCount(): number {
    return this.podIds.size;
  }

  /** The pod's id, registering it when `create` (otherwise -1 for an unknown pod). */
  podId(pod: string, create: boolean): number {
    let id = this.podIds.get(pod);
    if (id !== undefined) return id;
    if (!create) return -1;
    if (pod.length === 0) throw new IndexError('INVALID_ENTRY', 'pod identifier must not be empty');
    id = this.freePodIds.pop() ?? this.podNames.length;
    if (id >= MAX_PODS) throw new IndexError('TOO_MANY_PODS', `more than ${MAX_PODS} pods`);
    this.podIds.set(pod, id);
    this.podNames[id] = pod;
    this.version++;
    return id;
  }

  /** Forget a pod that holds nothing, so long-running fleets with pod churn reuse ids. */
  releasePod(id: number): void {
    const name = this.podNames[id];
    if (name === undefined) return;
    this.podIds.delete(name);
    this.podNames[id] = undefined;
    this.freePodIds.push(id);
    this.version++;
    for (const code of [...this.canonical.keys()]) if (podOf(code) === id) this.canonical.delete(code);
  }

  tierId(tier: string, create: boolean): number {
    let id = this.tierIds.get(tier);
    if (id !== undefined) return id;
    if (!create) return -1;
    if (tier.length === 0) throw new IndexError('INVALID_ENTRY', 'tier must not be empty');
    id = this.tierNames.length;
    if (id >= MAX_TIERS) throw new IndexError('TOO_MANY_TIERS', `more than ${MAX_TIERS} distinct tiers`);
    this.tierIds.set(tier, id);
    this.tierNames.push(tier);
    return id;
  }

  /** The code of an entry; with create=false, -1 when its pod or tier was never seen. */
  encode(entry: PodEntry, create: boolean): number {
    const group = entry.group;
    if (group !== undefined && (!Number.isInteger(group) || group < 0 || group > MAX_GROUP)) {
      throw new IndexError('INVALID_ENTRY', `group must be an integer in [0, ${MAX_GROUP}], got ${String(group)}`);
    }
    const pod = this.podId(entry.pod, create);
    const tier = this.tierId(entry.tier, create);
    if (pod < 0 || tier < 0) return -1;
    let code = pod | (tier << 16);
    if (entry.speculative) code |= SPECULATIVE_BIT;
    if (group !== undefined) code |= HAS_GROUP_BIT | (group << 24);
    return code >>> 0;
  }

  decode(code: number): PodEntry {
    let entry = this.canonical.get(code);
    if (entry === undefined) {
      const e: { pod: string; tier: string; speculative: boolean; group?: number } = {
        pod: this.podNames[podOf(code)] ?? '?',
        tier: this.tierNames[tierOf(code)] ?? '?',
        speculative: isSpeculativeCode(code),
      };
      if (hasGroupCode(code)) e.group = groupOf(code);
      entry = Object.freeze(e);
      this.canonical.set(code, entry);
    }
    return entry;
  }
}
