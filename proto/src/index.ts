import { fileURLToPath } from 'node:url';
import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import type { ProtoGrpcType as LlmdIndexerProto } from './generated/indexer.js';
import type { ProtoGrpcType as KvixIndexerProto } from './generated/kvix_indexer.js';

/** The directory holding the .proto files (import paths are relative to it). */
export const PROTO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * The options the generated types were produced with: camelCase fields, 64-bit integers as
 * decimal strings (exact), enums by name, defaults filled in, oneof discriminators set.
 */
export const LOADER_OPTIONS: Options = { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT] };

export const LLMD_INDEXER_PROTO = 'indexer/v1/indexer.proto';
export const KVIX_INDEXER_PROTO = 'kvix/indexer/v1/kvix_indexer.proto';

/** llm-d's `indexer.v1` (IndexerService.GetPodScores), wire-compatible with llm-d's own clients. */
export function loadLlmdIndexer(): LlmdIndexerProto {
  return loadPackageDefinition(loadSync(LLMD_INDEXER_PROTO, LOADER_OPTIONS)) as unknown as LlmdIndexerProto;
}

/** kvix's `kvix.indexer.v1` (KvixIndexer: Score, RecordRoutingDecision, GetStats, DumpPod). */
export function loadKvixIndexer(): KvixIndexerProto {
  return loadPackageDefinition(loadSync(KVIX_INDEXER_PROTO, LOADER_OPTIONS)) as unknown as KvixIndexerProto;
}

export type { LlmdIndexerProto, KvixIndexerProto };
export type { IndexerServiceHandlers, IndexerServiceClient } from './generated/indexer/v1/IndexerService.js';
export type { GetPodScoresRequest__Output, GetPodScoresRequest } from './generated/indexer/v1/GetPodScoresRequest.js';
export type { GetPodScoresResponse, GetPodScoresResponse__Output } from './generated/indexer/v1/GetPodScoresResponse.js';
export type { PodScore as LlmdPodScore } from './generated/indexer/v1/PodScore.js';
export type { KvixIndexerHandlers, KvixIndexerClient } from './generated/kvix/indexer/v1/KvixIndexer.js';
export type { Prompt, Prompt__Output } from './generated/kvix/indexer/v1/Prompt.js';
export type { Chat__Output } from './generated/kvix/indexer/v1/Chat.js';
export type { MultimodalItem__Output } from './generated/kvix/indexer/v1/MultimodalItem.js';
export type { ScoreRequest, ScoreRequest__Output } from './generated/kvix/indexer/v1/ScoreRequest.js';
export type { ScoreResponse, ScoreResponse__Output } from './generated/kvix/indexer/v1/ScoreResponse.js';
export type { PodScore as KvixPodScore, PodScore__Output as KvixPodScore__Output } from './generated/kvix/indexer/v1/PodScore.js';
export type { RoutingDecisionRequest, RoutingDecisionRequest__Output } from './generated/kvix/indexer/v1/RoutingDecisionRequest.js';
export type { RoutingDecisionResponse, RoutingDecisionResponse__Output } from './generated/kvix/indexer/v1/RoutingDecisionResponse.js';
export type { GetStatsResponse, GetStatsResponse__Output } from './generated/kvix/indexer/v1/GetStatsResponse.js';
export type { DumpPodRequest__Output } from './generated/kvix/indexer/v1/DumpPodRequest.js';
export type { DumpPodResponse, DumpPodResponse__Output } from './generated/kvix/indexer/v1/DumpPodResponse.js';
