import { defineConfig } from 'vitest/config';
import { testCeilings } from '../../vitest.shared.js';

// Each case starts a real Envoy process (about a second on a busy 2-core machine); ceilings scale
// with the machine's load.
export default defineConfig({ test: { ...testCeilings(60_000) } });
