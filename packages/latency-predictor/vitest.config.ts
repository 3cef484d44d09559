import { defineConfig } from 'vitest/config';
import { testCeilings } from '../../vitest.shared.js';

// The client suites run real HTTP servers; on a loaded 2-core machine a case can take seconds.
export default defineConfig({ test: { ...testCeilings() } });
