export { SimPod, effectiveHashSeed, type RankEndpoint } from './pod.js';
export { SimFleet, type FleetOptions, type EndpointsFileEntry } from './fleet.js';
export { addSimOptions, explicitFlags, resolveSimConfig, SimConfigError, type SimConfig, type SimConfigInput } from './config.js';
export { Engine, type EngineConfig, type GenerationRequest, type GenerationResult } from './engine/engine.js';
export { BlockPool } from './engine/block-pool.js';
export { CpuTier, type OffloadMode } from './engine/cpu-tier.js';
export { DEFAULT_LATENCY, stepDurationMs, type LatencyModel } from './engine/latency.js';
export { EventPublisher } from './events/publisher.js';
export { parseKvEventsConfig, isBindEndpoint, offsetEndpointPort, type KvEventsConfig } from './events/kv-events-config.js';
