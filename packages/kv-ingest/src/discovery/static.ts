import type { DiscoverySource, PodTarget } from './types.js';

/** A fixed list of pods (from configuration). */
export class StaticDiscovery implements DiscoverySource {
  readonly name = 'static';
  constructor(private readonly targets: readonly PodTarget[]) {}

  async start(onSnapshot: (targets: readonly PodTarget[]) => void): Promise<void> {
    onSnapshot(this.targets);
  }

  async stop(): Promise<void> {}
}
