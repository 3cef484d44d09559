import { defineConfig } from 'vitest/config';

// The client suites run real HTTP servers; on a loaded 2-core machine a case can take seconds.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 30_000 } });
