import { defineConfig } from 'vitest/config';

// These suites spawn processes and open sockets: on a loaded 2-core CI machine a case can take
// several seconds without anything being wrong.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 30_000 } });
