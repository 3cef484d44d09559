import { defineConfig } from 'vitest/config';
import { testCeilings } from '../vitest.shared.js';

// CI runs every workspace's suite at once on 2 cores; loading .proto files is slow there.
export default defineConfig({ test: { ...testCeilings() } });
