export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** usage.prompt_tokens_details.cached_tokens, when the server reports it. */
  cachedTokens: number | null;
}

export interface ResponseStreamOptions {
  /** Set when aliasing: `model` fields naming `from` are rewritten to `to`. */
  rewrite: { from: string; to: string } | null;
  /** Server-sent events (a streaming request) rather than one JSON document. */
  sse: boolean;
  onFirstBytes(): void;
  /** The first server-sent event carrying generated text (a chat stream opens with a role-only chunk). */
  onFirstToken?(): void;
  /** Every server-sent event carrying generated text (inter-token latency). */
  onTokenChunk?(): void;
  onUsage(usage: Usage): void;
}

/** A streamed chunk with generated text (content, text, reasoning or a tool call), told apart from role-only and finish chunks without parsing. */
const TOKEN_CHUNK = /"(?:content|text|reasoning_content|reasoning|arguments)"\s*:\s*"(?!")/;

/** Most of a JSON answer buffered to rewrite or read its usage; past it the body passes through. */
const MAX_JSON_BYTES = 16 * 1024 * 1024;

/**
 * Watches (and when aliasing, rewrites) a model server's response as it streams through: SSE
 * events are handled line by line as they arrive, never held back beyond a partial line; a JSON
 * answer is rewritten whole at the end. Reads `usage` for the token metrics.
 */
export class ResponseStream {
  private partial = '';
  private started = false;
  private readonly json: Buffer[] = [];
  private jsonBytes = 0;
  private jsonOverflow = false;
  private sawToken = false;
  /** Streamed events that carried generated text (a token count when the stream has no usage). */
  tokenChunks = 0;
  /** Body bytes the model server sent. */
  bytes = 0;
  /** Time spent handling chunks here (what llm-d's response_processing_duration measures). */
  handlingSeconds = 0;

  constructor(private readonly options: ResponseStreamOptions) {}

  get sse(): boolean {
    return this.options.sse;
  }

  /** Bytes to forward now for this upstream chunk (possibly empty while a JSON answer is rewritten). */
  push(chunk: Buffer): Buffer {
    const t0 = performance.now();
    try {
      return this.handle(chunk);
    } finally {
      this.handlingSeconds += (performance.now() - t0) / 1000;
    }
  }

  private handle(chunk: Buffer): Buffer {
    this.bytes += chunk.length;
    if (chunk.length > 0 && !this.started) {
      this.started = true;
      this.options.onFirstBytes();
    }
    if (this.options.sse) return this.sseChunk(chunk);
    if (this.jsonOverflow) return chunk;
    this.json.push(chunk);
    this.jsonBytes += chunk.length;
    if (this.jsonBytes > MAX_JSON_BYTES) {
      // Too big to hold: forward as is (no rewrite, no usage).
      this.jsonOverflow = true;
      const all = Buffer.concat(this.json);
      this.json.length = 0;
      return all;
    }
    // Without a rewrite the bytes go on at once; a copy is kept to read the usage at the end.
    return this.options.rewrite ? Buffer.alloc(0) : chunk;
  }

  /** Bytes still to forward once the upstream body ended. */
  end(): Buffer {
    if (this.options.sse) {
      const rest = this.partial;
      this.partial = '';
      return rest === '' ? Buffer.alloc(0) : Buffer.from(this.sseLine(rest));
    }
    if (this.jsonOverflow || this.json.length === 0) return Buffer.alloc(0);
    const body = Buffer.concat(this.json);
    this.json.length = 0;
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      return this.options.rewrite ? body : Buffer.alloc(0);
    }
    this.readUsage(doc);
    if (!this.options.rewrite) return Buffer.alloc(0);
    return this.rewriteDoc(doc) ? Buffer.from(JSON.stringify(doc)) : body;
  }

  private sseChunk(chunk: Buffer): Buffer {
    const text = this.partial + chunk.toString('utf8');
    const lastNewline = text.lastIndexOf('\n');
    if (lastNewline < 0) {
      this.partial = text;
      return Buffer.alloc(0);
    }
    this.partial = text.slice(lastNewline + 1);
    const lines = text.slice(0, lastNewline + 1).split('\n');
    lines.pop();
    return Buffer.from(lines.map((l) => this.sseLine(l)).join('\n') + '\n');
  }

  private sseLine(line: string): string {
    if (!line.startsWith('data:')) return line;
    const payload = line.slice(5).trim();
    if (TOKEN_CHUNK.test(payload)) {
      this.tokenChunks++;
      this.options.onTokenChunk?.();
      if (!this.sawToken) {
        this.sawToken = true;
        this.options.onFirstToken?.();
      }
    }
    if (payload === '[DONE]' || (!this.options.rewrite && !payload.includes('"usage"'))) return line;
    let doc: unknown;
    try {
      doc = JSON.parse(payload);
    } catch {
      return line;
    }
    this.readUsage(doc);
    return this.options.rewrite && this.rewriteDoc(doc) ? `data: ${JSON.stringify(doc)}` : line;
  }

  private rewriteDoc(doc: unknown): boolean {
    const r = this.options.rewrite;
    if (!r || typeof doc !== 'object' || doc === null) return false;
    const obj = doc as Record<string, unknown>;
    if (obj['model'] !== r.from) return false;
    obj['model'] = r.to;
    return true;
  }

  private readUsage(doc: unknown): void {
    const usage = (doc as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown; prompt_tokens_details?: { cached_tokens?: unknown } | null } } | null)?.usage;
    if (usage && typeof usage.prompt_tokens === 'number' && typeof usage.completion_tokens === 'number') {
      const cached = usage.prompt_tokens_details?.cached_tokens;
      this.options.onUsage({ promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens, cachedTokens: typeof cached === 'number' ? cached : null });
    }
  }
}
