import { defineConfig } from 'vitest/config';
import { testCeilings } from '../../vitest.shared.js';

// CI runs every workspace's suite at once on 2 cores: CPU-heavy cases (random-operation models,
// big vectors) can take several seconds there without anything being wrong.
export default defineConfig({ test: { ...testCeilings() } });
