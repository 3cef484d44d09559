import { defineConfig } from 'vitest/config';

// CI runs every workspace's suite at once on 2 cores; loading .proto files is slow there.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 30_000 } });
