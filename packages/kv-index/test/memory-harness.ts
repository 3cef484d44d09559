import { InMemoryIndex } from '../src/index.js';
import type { ModelCheckHarness } from '../src/testing/model-check.js';

/** The in-memory index as a model-check run asks for it: the runner's clock, no sweep timer, the run's capacity limits. */
export function modelCheckedIndex({ speculativeTtlMs, maxEntries, maxBytes, maxEngineMappings, now, observer }: Parameters<ModelCheckHarness['create']>[0]): InMemoryIndex {
  return new InMemoryIndex({
    speculativeTtlMs,
    now,
    observer,
    sweepIntervalMs: 0,
    ...(maxEntries ? { maxEntries } : {}),
    ...(maxBytes ? { maxBytes } : {}),
    ...(maxEngineMappings ? { maxEngineMappings } : {}),
  });
}
