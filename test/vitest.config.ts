import { defineConfig } from 'vitest/config';
import { testCeilings } from '../vitest.shared.js';

// Each case starts simulated pods, an endpoint picker and a proxy: seconds on a loaded 2-core machine.
export default defineConfig({ test: { ...testCeilings(60_000), include: ['e2e/**/*.test.ts', 'observability/**/*.test.ts', 'hostile/**/*.test.ts'] } });
