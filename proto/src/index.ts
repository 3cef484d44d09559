import { fileURLToPath } from 'node:url';
import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import type { ProtoGrpcType as LlmdIndexerProto } from './generated/indexer.js';
import type { ProtoGrpcType as KvixIndexerProto } from './generated/kvix_indexer.js';
import type { ProtoGrpcType as ExtProcProto } from './generated/external_processor.js';

/** The directory holding the .proto files (import paths are relative to it). */
export const PROTO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * The options the generated types were produced with: camelCase fields, 64-bit integers as
 * decimal strings (exact), enums by name, defaults filled in, oneof discriminators set.
 */
export const LOADER_OPTIONS: Options = { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT] };

export const LLMD_INDEXER_PROTO = 'indexer/v1/indexer.proto';
export const KVIX_INDEXER_PROTO = 'kvix/indexer/v1/kvix_indexer.proto';
export const EXT_PROC_PROTO = 'envoy/service/ext_proc/v3/external_processor.proto';

/** llm-d's `indexer.v1` (IndexerService.GetPodScores), wire-compatible with llm-d's own clients. */
export function loadLlmdIndexer(): LlmdIndexerProto {
  return loadPackageDefinition(loadSync(LLMD_INDEXER_PROTO, LOADER_OPTIONS)) as unknown as LlmdIndexerProto;
}

/** kvix's `kvix.indexer.v1` (KvixIndexer: Score, RecordRoutingDecision, GetStats, DumpPod). */
export function loadKvixIndexer(): KvixIndexerProto {
  return loadPackageDefinition(loadSync(KVIX_INDEXER_PROTO, LOADER_OPTIONS)) as unknown as KvixIndexerProto;
}

/**
 * Envoy's `envoy.service.ext_proc.v3` (ExternalProcessor.Process), trimmed to what
 * FULL_DUPLEX_STREAMED processing needs; wire-compatible with Envoy.
 */
export function loadExtProc(): ExtProcProto {
  return loadPackageDefinition(loadSync(EXT_PROC_PROTO, LOADER_OPTIONS)) as unknown as ExtProcProto;
}

export { httpStatusNumber } from './http-status.js';

export type { LlmdIndexerProto, KvixIndexerProto, ExtProcProto };
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

// envoy.service.ext_proc.v3 and the Envoy / well-known types its messages carry.
export type { ExternalProcessorHandlers, ExternalProcessorClient } from './generated/envoy/service/ext_proc/v3/ExternalProcessor.js';
export type { ProcessingRequest, ProcessingRequest__Output } from './generated/envoy/service/ext_proc/v3/ProcessingRequest.js';
export type { ProcessingResponse, ProcessingResponse__Output } from './generated/envoy/service/ext_proc/v3/ProcessingResponse.js';
export type { ProtocolConfiguration, ProtocolConfiguration__Output } from './generated/envoy/service/ext_proc/v3/ProtocolConfiguration.js';
export type { HttpHeaders, HttpHeaders__Output } from './generated/envoy/service/ext_proc/v3/HttpHeaders.js';
export type { HttpBody, HttpBody__Output } from './generated/envoy/service/ext_proc/v3/HttpBody.js';
export type { HttpTrailers, HttpTrailers__Output } from './generated/envoy/service/ext_proc/v3/HttpTrailers.js';
export type { HeadersResponse, HeadersResponse__Output } from './generated/envoy/service/ext_proc/v3/HeadersResponse.js';
export type { BodyResponse, BodyResponse__Output } from './generated/envoy/service/ext_proc/v3/BodyResponse.js';
export type { TrailersResponse, TrailersResponse__Output } from './generated/envoy/service/ext_proc/v3/TrailersResponse.js';
export type {
  CommonResponse,
  CommonResponse__Output,
  _envoy_service_ext_proc_v3_CommonResponse_ResponseStatus as ResponseStatus,
} from './generated/envoy/service/ext_proc/v3/CommonResponse.js';
export type { HeaderMutation, HeaderMutation__Output } from './generated/envoy/service/ext_proc/v3/HeaderMutation.js';
export type { BodyMutation, BodyMutation__Output } from './generated/envoy/service/ext_proc/v3/BodyMutation.js';
export type { StreamedBodyResponse, StreamedBodyResponse__Output } from './generated/envoy/service/ext_proc/v3/StreamedBodyResponse.js';
export type { ImmediateResponse, ImmediateResponse__Output } from './generated/envoy/service/ext_proc/v3/ImmediateResponse.js';
export type { GrpcStatus, GrpcStatus__Output } from './generated/envoy/service/ext_proc/v3/GrpcStatus.js';
export type {
  ProcessingMode,
  ProcessingMode__Output,
  _envoy_extensions_filters_http_ext_proc_v3_ProcessingMode_BodySendMode as BodySendMode,
  _envoy_extensions_filters_http_ext_proc_v3_ProcessingMode_HeaderSendMode as HeaderSendMode,
} from './generated/envoy/extensions/filters/http/ext_proc/v3/ProcessingMode.js';
export type { HeaderValue, HeaderValue__Output } from './generated/envoy/config/core/v3/HeaderValue.js';
export type {
  HeaderValueOption,
  HeaderValueOption__Output,
  _envoy_config_core_v3_HeaderValueOption_HeaderAppendAction as HeaderAppendAction,
} from './generated/envoy/config/core/v3/HeaderValueOption.js';
export type { HeaderMap, HeaderMap__Output } from './generated/envoy/config/core/v3/HeaderMap.js';
export type { Metadata, Metadata__Output } from './generated/envoy/config/core/v3/Metadata.js';
export type { HttpStatus, HttpStatus__Output } from './generated/envoy/type/v3/HttpStatus.js';
export type { StatusCode, StatusCode__Output } from './generated/envoy/type/v3/StatusCode.js';
export type { Struct, Struct__Output } from './generated/google/protobuf/Struct.js';
export type { Value, Value__Output } from './generated/google/protobuf/Value.js';
export type { ListValue, ListValue__Output } from './generated/google/protobuf/ListValue.js';
export type { Duration, Duration__Output } from './generated/google/protobuf/Duration.js';
export { MalformedRequest, withMalformedRequests } from './malformed.js';
export { grpcServerCredentials, grpcChannelCredentials, grpcChannelOptions, TlsFileError, type GrpcServerTls, type GrpcClientTls } from './tls.js';
