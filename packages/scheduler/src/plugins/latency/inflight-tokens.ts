const NO_TOKENS = { prefill: 0, decode: 0 };

/** What one dispatched request adds to its pod's load until it finishes. */
interface Dispatch {
  pod: string;
  /** Uncached prompt tokens: prefill work until the first token comes back. */
  prefillTokens: number;
  /** The whole prompt: context the pod decodes over once prefill is done. */
  contextTokens: number;
  /** The request's TPOT SLO (0: none): a pod's tightest running TPOT SLO bounds what a newcomer may cost it. */
  tpotSloMs: number;
  decoding: boolean;
}

interface PodLoad {
  prefillTokens: number;
  decodeTokens: number;
  requests: Set<string>;
}

/**
 * Per pod, the tokens this router has in flight there (llm-d's in-flight load): uncached prompt
 * tokens of requests still prefilling, and context tokens of requests decoding. The pod's own
 * metrics lag a scrape behind; these move the moment a request is dispatched or answers, which is
 * what a latency prediction for the very next request needs.
 */
export class InFlightTokens {
  private readonly requests = new Map<string, Dispatch>();
  private readonly pods = new Map<string, PodLoad>();
  private readonly listeners = new Set<() => void>();
  private peer: (pod: string) => { prefill: number; decode: number } = () => NO_TOKENS;

  /**
   * Tokens other router replicas have in flight, added to this router's own in what the
   * predictor is told: each of N replicas alone sees 1/N of a pod's load.
   */
  setPeerTokens(source: (pod: string) => { prefill: number; decode: number }): void {
    this.peer = source;
  }

  /** This router's own tokens per pod (what it reports to its peers). */
  own(): Map<string, { prefill: number; decode: number }> {
    const out = new Map<string, { prefill: number; decode: number }>();
    for (const [pod, load] of this.pods) out.set(pod, { prefill: load.prefillTokens, decode: load.decodeTokens });
    return out;
  }

  /** Called after every dispatch, first token and finish. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  dispatch(requestId: string, pod: string, prefillTokens: number, contextTokens: number, tpotSloMs: number): void {
    this.finish(requestId);
    const d: Dispatch = { pod, prefillTokens: Math.max(0, Math.round(prefillTokens)), contextTokens: Math.max(0, Math.round(contextTokens)), tpotSloMs, decoding: false };
    this.requests.set(requestId, d);
    const load = this.load(pod);
    load.prefillTokens += d.prefillTokens;
    load.requests.add(requestId);
    this.changed();
  }

  /** The first token came back: its prefill is done, its context is now decoded over. */
  firstToken(requestId: string): void {
    const d = this.requests.get(requestId);
    if (!d || d.decoding) return;
    d.decoding = true;
    const load = this.load(d.pod);
    load.prefillTokens -= d.prefillTokens;
    load.decodeTokens += d.contextTokens;
    this.changed();
  }

  finish(requestId: string): void {
    const d = this.requests.get(requestId);
    if (!d) return;
    this.requests.delete(requestId);
    const load = this.pods.get(d.pod);
    if (!load) return;
    if (d.decoding) load.decodeTokens -= d.contextTokens;
    else load.prefillTokens -= d.prefillTokens;
    load.requests.delete(requestId);
    if (load.requests.size === 0) this.pods.delete(d.pod);
    this.changed();
  }

  /** Prefill tokens in flight on the pod, this router's and its peers'. */
  prefillTokens(pod: string): number {
    return (this.pods.get(pod)?.prefillTokens ?? 0) + this.peer(pod).prefill;
  }

  /** Decode (context) tokens in flight on the pod, this router's and its peers'. */
  decodeTokens(pod: string): number {
    return (this.pods.get(pod)?.decodeTokens ?? 0) + this.peer(pod).decode;
  }

  requestCount(pod: string): number {
    return this.pods.get(pod)?.requests.size ?? 0;
  }

  /** The tightest TPOT SLO among the requests in flight on the pod; 0 when none has one. */
  minTpotSlo(pod: string): number {
    const load = this.pods.get(pod);
    if (!load) return 0;
    let min = 0;
    for (const id of load.requests) {
      const slo = this.requests.get(id)?.tpotSloMs ?? 0;
      if (slo > 0 && (min === 0 || slo < min)) min = slo;
    }
    return min;
  }

  has(requestId: string): boolean {
    return this.requests.has(requestId);
  }

  get size(): number {
    return this.requests.size;
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  private load(pod: string): PodLoad {
    let load = this.pods.get(pod);
    if (!load) this.pods.set(pod, (load = { prefillTokens: 0, decodeTokens: 0, requests: new Set() }));
    return load;
  }
}
