import type { PromptSpec } from '@kvix/scoring';

/** A routable endpoint: one model server (one data-parallel rank), named by its serving address:port. */
export interface Endpoint {
  /** address:port — the identity events and routing share. */
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly name: string;
  /** The model it serves (from discovery), if known. */
  readonly model: string | null;
  readonly labels: Readonly<Record<string, string>>;
  /** LoRA adapters discovery says it loads (its metrics may add others). */
  readonly adapters?: readonly string[];
}

/** What the data layer last learned from an endpoint's /metrics. */
export interface EndpointMetrics {
  waiting: number;
  running: number;
  /** KV-cache utilisation in [0, 1]. */
  kvUsage: number;
  blockSize: number | null;
  numGpuBlocks: number | null;
  /** LoRA adapters loaded (running or waiting). */
  loras: readonly string[];
  scrapedAt: number;
}

/** An endpoint with everything scorers read. */
export interface Candidate {
  endpoint: Endpoint;
  /** Null until the first scrape succeeds. */
  metrics: EndpointMetrics | null;
  /** Requests this router sent and that have not finished. */
  inFlight: number;
}

/**
 * Milliseconds one routing decision spent per stage, for decision profiles, benchmarks and traces;
 * a stage the request skipped stays 0. `tokenizerCall` through `prefixScore` come from the precise
 * prefix scorer (the tokenizer call includes its template and encode, measured where they ran);
 * `producers`, `filters`, `scorers` and `pick` are the scheduler's plugin stages (the precise
 * scorer's lookup runs as a producer, so it is inside `producers`).
 */
export interface DecisionTimings {
  parse: number;
  tokenizerCall: number;
  template: number;
  encode: number;
  hash: number;
  lookup: number;
  prefixScore: number;
  producers: number;
  /** Admitters and filters. */
  filters: number;
  scorers: number;
  pick: number;
  /** Pre-request hooks (speculative entries, LRU updates). */
  hooks: number;
}

export function newDecisionTimings(): DecisionTimings {
  return { parse: 0, tokenizerCall: 0, template: 0, encode: 0, hash: 0, lookup: 0, prefixScore: 0, producers: 0, filters: 0, scorers: 0, pick: 0, hooks: 0 };
}

/** What the router knows of a request when it schedules it. */
export interface SchedulingRequest {
  id: string;
  /** The model the request is scheduled for (after aliasing). */
  model: string;
  /** The prompt, when the body had one; null schedules on load only. */
  prompt: PromptSpec | null;
  /** Request headers, lower-case names. */
  headers: Readonly<Record<string, string>>;
  /** Plugins pass data between stages of one scheduling cycle here (e.g. prefix match results). */
  readonly cycle: Map<string, unknown>;
  /** The objective's priority (x-llm-d-inference-objective); below 0 the request may be shed. Default 0. */
  priority?: number;
  /** Filled in as the decision runs, when the caller wants them (the director always does). */
  timings?: DecisionTimings;
}

/** A scorer's opinion of each candidate, in [0, 1] (missing candidates score 0). */
export type Scores = Map<string, number>;

export interface Scorer {
  readonly kind: 'scorer';
  readonly type: string;
  readonly name: string;
  score(request: SchedulingRequest, candidates: readonly Candidate[]): Scores | Promise<Scores>;
}

export interface Filter {
  readonly kind: 'filter';
  readonly type: string;
  readonly name: string;
  filter(request: SchedulingRequest, candidates: readonly Candidate[]): readonly Candidate[];
}

export interface ScoredCandidate {
  candidate: Candidate;
  /** Weighted sum of the scorers' (clamped) scores. */
  score: number;
}

export interface Picker {
  readonly kind: 'picker';
  readonly type: string;
  readonly name: string;
  /** Candidates in the order to try them: the first is the choice, the rest the fallback list. */
  pick(request: SchedulingRequest, scored: readonly ScoredCandidate[], fallbacks: number): Candidate[];
}

/** The outcome of scheduling one request. */
export interface SchedulingResult {
  /** The chosen endpoint first, then fallbacks in order. */
  endpoints: Endpoint[];
  /** Per candidate, per scorer, the raw score (for debugging and the decision log). */
  scores: Record<string, Record<string, number>>;
  total: Record<string, number>;
}

/** Called once a request is sent to its endpoint (speculative entries, LRU bookkeeping, …). */
export interface PreRequestHook {
  preRequest(request: SchedulingRequest, result: SchedulingResult): void | Promise<void>;
}

/** Headers a plugin adds to the response (session affinity's token). */
export interface ResponseHeadersHook {
  responseHeaders(request: SchedulingRequest, servedBy: Endpoint): Record<string, string>;
}

/**
 * Runs before admission and filters (llm-d's data producers): computes what later stages of the
 * cycle read. Producers run in ascending `producerStage` (prefix scores before the latency
 * predictions that use them) and must not throw: a failing producer leaves its data out.
 */
export interface Producer {
  readonly producerStage: number;
  produce(request: SchedulingRequest, candidates: readonly Candidate[]): Promise<void> | void;
}

/** A producer with nothing else to do in a profile (the predicted-latency producer). */
export interface ProducerPlugin extends Producer {
  readonly kind: 'producer';
  readonly type: string;
  readonly name: string;
}

/** Why an admitter refused a request. */
export interface AdmissionDenial {
  /** HTTP status for the client (429: shed). */
  status: number;
  code: string;
  message: string;
  /** x-llm-d-request-dropped-reason value. */
  droppedReason: string;
}

/** Decides, after the producers and before filtering, whether the request is served at all. */
export interface Admitter {
  readonly kind: 'admitter';
  readonly type: string;
  readonly name: string;
  admit(request: SchedulingRequest, candidates: readonly Candidate[]): AdmissionDenial | null;
}

/** How a routed request's response went, for plugins that learn from it. */
export interface CompletedResponse {
  servedBy: Endpoint;
  /** HTTP status from the endpoint; null when none arrived. */
  status: number | null;
  /** Set when the request failed or the client went away. */
  error: string | null;
  /** Streamed (server-sent events) rather than one JSON document. */
  streamed: boolean;
  /** Generated tokens: the response's usage, else the streamed chunks that carried text. */
  completionTokens: number | null;
}

/** Response observers (training the latency predictor). Called at most once each per request. */
export interface ResponseHooks {
  /** The first streamed chunk carrying generated text went through. */
  responseFirstToken?(request: SchedulingRequest, servedBy: Endpoint): void;
  /** The response ended or the request failed. */
  responseComplete?(request: SchedulingRequest, response: CompletedResponse): void;
}

export type Plugin = (Scorer | Filter | Picker | ProducerPlugin | Admitter) & Partial<PreRequestHook> & Partial<ResponseHeadersHook> & Partial<Producer> & ResponseHooks & { close?(): Promise<void> };

export function isPreRequestHook(p: Plugin): p is Plugin & PreRequestHook {
  return typeof p.preRequest === 'function';
}

export function isResponseHeadersHook(p: Plugin): p is Plugin & ResponseHeadersHook {
  return typeof p.responseHeaders === 'function';
}

export function isProducer(p: Plugin): p is Plugin & Producer {
  return typeof p.produce === 'function';
}
