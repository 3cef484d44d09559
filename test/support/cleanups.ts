import { afterEach } from 'vitest';

/**
 * The list a test file pushes stop functions to as its tests start things; after each test they run
 * newest first (a stack stops before the pods it routes to), and the list empties.
 */
export function cleanupsAfterEach(): (() => Promise<void>)[] {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return cleanups;
}
