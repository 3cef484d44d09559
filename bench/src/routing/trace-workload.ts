import { rng } from '../harness.js';
import { prose } from '../text.js';
import type { Arrival, ChatTurn, Range, RequestSource, WorkloadRequest } from './workload.js';

/**
 * A trace-like workload, the second shape the routing benchmark measures so that a win on the
 * chat shape is not taken for a general one: many tenants of very unequal activity (Zipf), each
 * with its own instructions, asking about long documents many tenants share (Zipf popularity: a
 * few hot manuals, a long tail). The document comes first (the system message), then the
 * tenant's instructions and question, so tenants share the document's blocks and a tenant's own
 * requests share more. Sessions carry a few follow-up questions; bursts — a tenant's batch job or
 * agent fan-out sending many questions about one document within a second — make requests with
 * a long common prefix arrive faster than any engine can announce what it cached.
 */
export interface TraceWorkloadSpec {
  kind: 'trace';
  seed: number;
  model: string;
  tenants: number;
  /** Zipf exponent of tenant activity (1 ≈ web traffic). */
  tenantSkew: number;
  tenantPromptTokens: Range;
  documents: number;
  documentTokens: Range;
  /** Zipf exponent of document popularity. */
  documentSkew: number;
  /** Questions in a session (the later ones carry the earlier questions and answers). */
  sessionTurns: Range;
  questionTokens: Range;
  outputTokens: Range;
  /** Share of requests that arrive in bursts. */
  burstShare: number;
  /** Requests per burst. */
  burstSize: Range;
  /** A burst's requests arrive within this many ms of its start. */
  burstSpreadMs: number;
  charsPerToken: number;
}

interface Session {
  tenant: number;
  document: number;
  turn: number;
  turns: number;
  history: ChatTurn[];
  id: number;
}

/** Cumulative Zipf weights over n items, for sampling by binary search. */
function zipf(n: number, s: number): Float64Array {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) cdf[i] = total += 1 / (i + 1) ** s;
  for (let i = 0; i < n; i++) cdf[i]! /= total;
  return cdf;
}

function sample(cdf: Float64Array, u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid]! < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class TraceWorkload implements RequestSource {
  private readonly random: () => number;
  private readonly tenantPrompts: string[];
  private readonly documents: string[];
  private readonly tenantCdf: Float64Array;
  private readonly documentCdf: Float64Array;
  /** Open sessions per tenant (a tenant's next plain request continues one of them or starts one). */
  private readonly sessions = new Map<number, Session[]>();
  private textSeed: number;
  private nextSession = 0;

  constructor(private readonly spec: TraceWorkloadSpec) {
    this.random = rng(spec.seed);
    this.textSeed = spec.seed * 1_000_003 + 17;
    this.tenantPrompts = Array.from({ length: spec.tenants }, (_, t) => `Tenant ${t} instructions.\n${prose(70_000 + t + spec.seed * 10_000, this.chars(this.between(spec.tenantPromptTokens)))}`);
    this.documents = Array.from({ length: spec.documents }, (_, d) => `Document ${d}.\n${prose(90_000 + d, this.chars(spec.documentTokens.min + ((spec.documentTokens.max - spec.documentTokens.min) * d) / Math.max(1, spec.documents - 1)))}`);
    this.tenantCdf = zipf(spec.tenants, spec.tenantSkew);
    this.documentCdf = zipf(spec.documents, spec.documentSkew);
  }

  /** Tokens of every document together (approximate). */
  get documentTokens(): number {
    return Math.round(this.documents.reduce((a, d) => a + d.length, 0) / this.spec.charsPerToken);
  }

  arrivals(ratePerSec: number, seconds: number): Arrival[] {
    const horizon = seconds * 1000;
    const out: Arrival[] = [];
    // Background: a Poisson process carrying the requests that are not in bursts.
    const background = ratePerSec * (1 - this.spec.burstShare);
    for (let at = this.gap(background); at < horizon; at += this.gap(background)) out.push({ atMs: at, request: this.plain() });
    // Bursts start as a Poisson process sized so that they carry burstShare of the rate.
    const meanBurst = (this.spec.burstSize.min + this.spec.burstSize.max) / 2;
    const bursts = (ratePerSec * this.spec.burstShare) / meanBurst;
    for (let at = this.gap(bursts); at < horizon; at += this.gap(bursts)) {
      const tenant = this.tenant();
      const document = this.document();
      const size = this.between(this.spec.burstSize);
      for (let i = 0; i < size; i++) {
        const when = at + this.random() * this.spec.burstSpreadMs;
        if (when < horizon) out.push({ atMs: when, request: this.oneShot(tenant, document) });
      }
    }
    return out.sort((a, b) => a.atMs - b.atMs);
  }

  /** A request from a tenant's session: a follow-up when one is open, else a new session's first question. */
  private plain(): WorkloadRequest {
    const tenant = this.tenant();
    const open = this.sessions.get(tenant) ?? [];
    let session = open.length > 0 && this.random() < 0.6 ? open[Math.floor(this.random() * open.length)]! : null;
    if (session === null) {
      session = { tenant, document: this.document(), turn: 0, turns: this.between(this.spec.sessionTurns), history: [], id: this.nextSession++ };
      open.push(session);
      // A tenant keeps a handful of sessions open; the oldest is dropped.
      if (open.length > 4) open.shift();
      this.sessions.set(tenant, open);
    }
    const question: ChatTurn = { role: 'user', content: this.question() };
    const maxTokens = this.between(this.spec.outputTokens);
    const request: WorkloadRequest = {
      conversation: session.id,
      group: session.document,
      turn: session.turn,
      messages: this.messages(tenant, session.document, session.history, question),
      maxTokens,
    };
    session.history.push(question, { role: 'assistant', content: prose(this.textSeed++, this.chars(maxTokens)) });
    session.turn++;
    if (session.turn >= session.turns) open.splice(open.indexOf(session), 1);
    return request;
  }

  /** A burst member: one question about the document, no history. */
  private oneShot(tenant: number, document: number): WorkloadRequest {
    const maxTokens = this.between(this.spec.outputTokens);
    return {
      conversation: -1,
      group: document,
      turn: 0,
      messages: this.messages(tenant, document, [], { role: 'user', content: this.question() }),
      maxTokens,
    };
  }

  /** The document as the system message; the tenant's instructions open the first user turn. */
  private messages(tenant: number, document: number, history: ChatTurn[], question: ChatTurn): ChatTurn[] {
    const [first, ...rest] = history.length === 0 ? [question] : [...history, question];
    return [
      { role: 'system', content: this.documents[document]! },
      { role: 'user', content: `${this.tenantPrompts[tenant]!}\n\n${first!.content}` },
      ...rest,
    ];
  }

  private question(): string {
    return prose(this.textSeed++, this.chars(this.between(this.spec.questionTokens)));
  }

  private tenant(): number {
    return sample(this.tenantCdf, this.random());
  }

  private document(): number {
    return sample(this.documentCdf, this.random());
  }

  private gap(ratePerSec: number): number {
    if (ratePerSec <= 0) return Number.POSITIVE_INFINITY;
    return (-Math.log(1 - this.random()) / ratePerSec) * 1000;
  }

  private between(r: Range): number {
    return r.min + Math.floor(this.random() * (r.max - r.min + 1));
  }

  private chars(tokens: number): number {
    return Math.max(1, Math.round(tokens * this.spec.charsPerToken));
  }
}
