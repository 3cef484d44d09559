export type {
  AllBlocksCleared,
  BlockRemoved,
  BlockStored,
  DecodedBatch,
  EventBatch,
  EventEncoding,
  KvEvent,
  KvEventType,
  MapDialect,
  MsgpackValue,
  SkippedEvent,
} from './types.js';
export { EventDecodeError, EventEncodeError, type EventDecodeErrorCode, type EventEncodeErrorCode } from './errors.js';
export { decodeEventBatch } from './decode.js';
export { encodeEventBatch, LATEST_ARRAY_LENGTH, type EncodeOptions } from './encode.js';
export { MsgpackWriter } from './msgpack-writer.js';
export { parseTopic, formatTopic, DEFAULT_TOPIC_PREFIX, type ParsedTopic } from './topic.js';
export {
  REPLAY_END_SEQ,
  decodeSeq,
  encodeSeq,
  parseEventMessage,
  encodeEventMessage,
  parseReplayReply,
  encodeReplayRequest,
  type EventMessage,
  type ReplayReply,
} from './frames.js';
export { tierOfMedium, tierOfEvent, REMOTE_TIER } from './tier.js';
export { batchToDebugJson, eventToDebugJson, msgpackToJson, type JsonValue } from './debug-json.js';
