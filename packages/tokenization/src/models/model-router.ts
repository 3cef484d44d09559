import { bundledNames, isBundledName } from '../bundled.js';
import { TokenizationError } from '../errors.js';
import { LocalTokenizerPool } from '../pool/local-tokenizer-pool.js';
import type { PromptInput, PromptTokenizer, TokenizedPrompt, TokenizeOptions, TokenizerSource } from '../prompt-tokenizer.js';
import { RenderClient } from '../render/render-client.js';
import type { RenderTarget, TokenizationConfig } from './tokenization-config.js';

interface Route {
  source: TokenizerSource;
  tokenizer: PromptTokenizer;
}

/** Sends each model's requests to the local pool or to its vLLM server, as configured. */
export class ModelRouter implements PromptTokenizer {
  readonly pool: LocalTokenizerPool | null;
  private readonly routes = new Map<string, Route>();
  private readonly defaultRoute: Route | 'bundled' | 'reject';
  private readonly clients: RenderClient[] = [];

  constructor(config: TokenizationConfig) {
    const localModels: Record<string, string> = {};
    for (const [model, route] of Object.entries(config.models)) if (route.local !== undefined) localModels[model] = route.local;
    const fallback = config.default;
    const needsPool =
      Object.keys(localModels).length > 0 || fallback === 'bundled' || (typeof fallback === 'object' && fallback.local !== undefined);
    this.pool = needsPool
      ? new LocalTokenizerPool({
          models: localModels,
          unlisted: fallback === 'bundled' ? 'bundled' : typeof fallback === 'object' && fallback.local !== undefined ? { spec: fallback.local } : 'reject',
          workers: config.workers,
          maxInFlight: config.maxInFlight,
          maxPromptTokens: config.maxPromptTokens,
          maxCharsPerToken: config.maxCharsPerToken,
          maxThreadHeapMb: config.threadHeapMb,
        })
      : null;

    // Models on the same server share its connections.
    const clientsByTarget = new Map<string, RenderClient>();
    const clientFor = (target: RenderTarget): RenderClient => {
      const id = JSON.stringify([target.url, target.timeoutMs ?? null, Object.entries(target.headers ?? {}).sort()]);
      let client = clientsByTarget.get(id);
      if (client === undefined) {
        client = new RenderClient({ url: target.url, timeoutMs: target.timeoutMs, headers: target.headers });
        clientsByTarget.set(id, client);
        this.clients.push(client);
      }
      return client;
    };
    const routeOf = (route: { local?: string | undefined; render?: RenderTarget | undefined }): Route =>
      route.render !== undefined ? { source: 'render', tokenizer: clientFor(route.render) } : { source: 'local', tokenizer: this.pool! };

    for (const [model, route] of Object.entries(config.models)) this.routes.set(model, routeOf(route));
    this.defaultRoute = typeof fallback === 'string' ? fallback : routeOf(fallback);
  }

  /** Where the model's requests go, or null when no tokenizer is configured for it. */
  routeFor(model: string): Route | null {
    const listed = this.routes.get(model);
    if (listed !== undefined) return listed;
    if (this.defaultRoute === 'reject') return null;
    if (this.defaultRoute === 'bundled') return isBundledName(model) ? { source: 'local', tokenizer: this.pool! } : null;
    return this.defaultRoute;
  }

  /** Like routeFor, but an unroutable model is an UNKNOWN_MODEL error. */
  route(model: string): Route {
    const route = this.routeFor(model);
    if (route === null) throw this.unknownModel(model);
    return route;
  }

  async tokenize(model: string, input: PromptInput, options?: TokenizeOptions): Promise<TokenizedPrompt> {
    return this.route(model).tokenizer.tokenize(model, input, options);
  }

  async close(): Promise<void> {
    await Promise.all([this.pool?.close(), ...this.clients.map((c) => c.close())]);
  }

  private unknownModel(model: string): TokenizationError {
    const listed = [...this.routes.keys()];
    const configured = listed.length > 0 ? `configured: ${listed.join(', ')}` : 'no models are configured';
    const why =
      this.defaultRoute === 'bundled'
        ? `it is not configured and is not a bundled tokenizer (${configured}; bundled: ${bundledNames().join(', ')})`
        : `it is not configured (${configured}) and unlisted models are rejected`;
    return new TokenizationError('UNKNOWN_MODEL', `no tokenizer for model "${model}": ${why}`);
  }
}
