import { defineConfig } from 'vitest/config';
import { CEILING_SCALE, testCeilings } from '../../vitest.shared.js';

// Each file starts its own kube-apiserver + etcd (~330 MB, a few CPU-seconds): one file at a time
// keeps a 2-core CI machine responsive. The global setup builds the binaries first if the cache
// lacks them (minutes, once), outside any test's timeout. Ceilings scale with the machine's load.
export default defineConfig({ test: { ...testCeilings(60_000), hookTimeout: 180_000 * CEILING_SCALE, fileParallelism: false, globalSetup: ['./test/global-setup.ts'] } });
