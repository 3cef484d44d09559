import { defineConfig } from 'vitest/config';

// Each file starts its own kube-apiserver + etcd (~330 MB, a few CPU-seconds): one file at a time
// keeps a 2-core CI machine responsive. The global setup builds the binaries first if the cache
// lacks them (minutes, once), outside any test's timeout.
export default defineConfig({ test: { testTimeout: 60_000, hookTimeout: 180_000, fileParallelism: false, globalSetup: ['./test/global-setup.ts'] } });
