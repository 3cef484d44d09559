import { defineConfig } from 'vitest/config';
import { testCeilings } from '../../vitest.shared.js';

// The pool suites start worker threads that each parse Qwen3's 11 MB vocabulary; on a loaded
// 2-core machine that alone can take seconds without anything being wrong.
export default defineConfig({ test: { ...testCeilings() } });
