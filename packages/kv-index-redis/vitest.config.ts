import { defineConfig } from 'vitest/config';
import { testCeilings } from '../../vitest.shared.js';

// Every suite talks to a private redis-server process: on a loaded 2-core CI machine a case can
// take seconds without anything being wrong. Files run one at a time so TTL waits stay honest.
export default defineConfig({ test: { ...testCeilings(), fileParallelism: false } });
