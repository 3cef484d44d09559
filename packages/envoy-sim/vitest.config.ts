import { defineConfig } from 'vitest/config';
import { testCeilings } from '../../vitest.shared.js';

// Every test starts real gRPC and HTTP servers; on a busy 2-core CI machine that takes a while.
export default defineConfig({ test: { ...testCeilings() } });
