import { defineConfig } from 'vitest/config';

// Each case starts a real Envoy process (about a second on a busy 2-core machine).
export default defineConfig({ test: { testTimeout: 60_000, hookTimeout: 60_000 } });
