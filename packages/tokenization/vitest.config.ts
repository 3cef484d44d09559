import { defineConfig } from 'vitest/config';

// The pool suites start worker threads that each parse Qwen3's 11 MB vocabulary; on a loaded
// 2-core machine that alone can take seconds without anything being wrong.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 30_000 } });
