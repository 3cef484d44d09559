import { defineConfig } from 'vitest/config';
import { testCeilings } from '../../vitest.shared.js';

// These suites spawn processes and open sockets: on a loaded 2-core CI machine a case can take
// several seconds without anything being wrong.
export default defineConfig({ test: { ...testCeilings() } });
