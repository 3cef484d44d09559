import type { ServiceError } from '@grpc/grpc-js';
import { grpcChannelCredentials, grpcChannelOptions, loadKvixIndexer, type GrpcClientTls, type KvixIndexerClient, type Prompt, type ScoreResponse__Output } from '@kvix/proto';
import type { PromptSpec, ScoreInput } from '@kvix/scoring';
import type { PrefixBackend, PrefixScoresResult } from './precise-prefix.js';

/** kvix.indexer.v1 over gRPC: prefix scores from an indexer running elsewhere (shared by several EPPs). */
export class RemotePrefixBackend implements PrefixBackend {
  readonly kind = 'remote';
  private readonly client: KvixIndexerClient;

  constructor(
    readonly target: string,
    private readonly timeoutMs: number,
    tls?: GrpcClientTls,
  ) {
    const Client = loadKvixIndexer().kvix.indexer.v1.KvixIndexer;
    this.client = new Client(target, grpcChannelCredentials(tls), grpcChannelOptions(tls));
  }

  score(input: ScoreInput): Promise<PrefixScoresResult> {
    const request = { prompt: toProto(input), ...(input.candidates ? { candidates: { pods: [...input.candidates] } } : {}) };
    return new Promise((resolve, reject) =>
      this.client.Score(request, { deadline: Date.now() + this.timeoutMs }, (err: ServiceError | null, res?: ScoreResponse__Output) => {
        if (err || !res) return reject(err ?? new Error('empty answer'));
        resolve({ scores: res.scores.map((s) => ({ pod: s.pod, normalized: s.normalized, matchedBlocks: s.matchedBlocks })), totalBlocks: res.totalBlocks, requestKeys: null });
      }),
    );
  }

  recordDecision(input: ScoreInput, pod: string, _requestKeys: BigUint64Array | null, ttlMs: number | null): Promise<void> {
    return new Promise((resolve, reject) =>
      this.client.RecordRoutingDecision({ prompt: toProto(input), pod, ttlMs: ttlMs ?? 0 }, { deadline: Date.now() + this.timeoutMs }, (err: ServiceError | null) => (err ? reject(err) : resolve())),
    );
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

function toProto(spec: PromptSpec): Prompt {
  const base: Prompt = {
    model: spec.model,
    loraName: spec.loraName ?? '',
    cacheSalt: spec.cacheSalt ?? '',
    multimodal: (spec.multimodal ?? []).map((m) => ({ identifier: m.identifier, offset: m.offset, length: m.length })),
  };
  const p = spec.prompt;
  if (p.kind === 'tokens') return { ...base, tokenIds: { ids: Array.from(p.tokenIds) } };
  if (p.kind === 'completion') return { ...base, completion: p.prompt };
  const o = p.options ?? {};
  return {
    ...base,
    chat: {
      messagesJson: JSON.stringify(p.messages),
      toolsJson: o.tools ? JSON.stringify(o.tools) : '',
      ...(o.addGenerationPrompt !== undefined ? { addGenerationPrompt: o.addGenerationPrompt } : {}),
      continueFinalMessage: o.continueFinalMessage ?? false,
      chatTemplateKwargsJson: o.chatTemplateKwargs ? JSON.stringify(o.chatTemplateKwargs) : '',
      chatTemplate: o.chatTemplate ?? '',
    },
  };
}
