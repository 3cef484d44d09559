export { sharedDir, readSharedVector, readSharedVectorJson, parseJsonExact, repoRoot } from './shared-vectors.js';
export { freePort, freePorts, waitFor } from './ports.js';
export { spawnProcess, type ManagedProcess } from './processes.js';
