import { defineConfig } from 'vitest/config';

// Every test starts real gRPC and HTTP servers; on a busy 2-core CI machine that takes a while.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 30_000 } });
