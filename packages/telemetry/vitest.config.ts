import { defineConfig } from 'vitest/config';
import { testCeilings } from '../../vitest.shared.js';

// CI runs several workspaces' suites at once on 2 cores: ceilings scale with the machine's load.
export default defineConfig({ test: { ...testCeilings() } });
