export { vectorsDir, readVector, readVectorJson, parseJsonExact, repoRoot } from './vectors.js';
export { freePort, freePorts, freePortRange, waitFor, ceiling, CEILING_SCALE } from './ports.js';
export { nodeCli, spawnProcess, type ManagedProcess, type NodeCli } from './processes.js';
export { startRedis, startNats, startPrometheus, type PrivateServer } from './servers.js';
export { envoyBinary, shippedEnvoyConfig, startEnvoy, startShippedEnvoy } from './envoy.js';
export { startKubeApiServer, kubeBinDir, gaieCrdsDir, gatewayApiCrdsDir, prometheusOperatorCrdsDir, type KubeApiServer, type KubeApiServerOptions } from './kube.js';
export { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
export { listeningSockets, processTree, type ListeningSocket } from './sockets.js';
export { makeTestPki, type TestPki } from './pki.js';
