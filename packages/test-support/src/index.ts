export { vectorsDir, readVector, readVectorJson, parseJsonExact, repoRoot } from './vectors.js';
export { freePort, freePorts, freePortRange, waitFor } from './ports.js';
export { nodeCli, spawnProcess, type ManagedProcess, type NodeCli } from './processes.js';
export { startRedis, startNats, type PrivateServer } from './servers.js';
export { listeningSockets, processTree, type ListeningSocket } from './sockets.js';
