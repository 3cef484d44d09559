export { sharedDir, readSharedVector, readSharedVectorJson, parseJsonExact, repoRoot } from './shared-vectors.js';
