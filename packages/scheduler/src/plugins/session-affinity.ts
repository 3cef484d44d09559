import type { Candidate, Endpoint, ResponseHeadersHook, SchedulingRequest, Scorer, Scores } from '../types.js';

/**
 * Keeps a session on the endpoint that served it: the response carries a token naming the endpoint
 * (base64 of its address:port) in a header; a request presenting it scores 1 on that endpoint.
 */
export class SessionAffinityScorer implements Scorer, ResponseHeadersHook {
  readonly kind = 'scorer';
  readonly type = 'session-affinity-scorer';

  constructor(
    readonly name: string,
    private readonly header = 'x-session-token',
  ) {}

  score(request: SchedulingRequest, candidates: readonly Candidate[]): Scores {
    const token = request.headers[this.header];
    let pinned: string | null = null;
    if (token) {
      try {
        pinned = Buffer.from(token, 'base64').toString('utf8');
      } catch {
        pinned = null;
      }
    }
    return new Map(candidates.map((c) => [c.endpoint.id, c.endpoint.id === pinned ? 1 : 0]));
  }

  responseHeaders(_request: SchedulingRequest, servedBy: Endpoint): Record<string, string> {
    return { [this.header]: Buffer.from(servedBy.id).toString('base64') };
  }
}
