import { rng } from '../harness.js';
import { prose } from '../text.js';

export interface Range {
  min: number;
  max: number;
}

/**
 * Shared-prefix, multi-turn chat (the shape of llm-d's precise-prefix benchmark): groups of users
 * share a long system prompt, each conversation appends its own questions and answers, and a
 * finished conversation is replaced by a fresh one in the same group.
 */
export interface WorkloadSpec {
  kind?: 'chat';
  seed: number;
  model: string;
  groups: number;
  /** System prompt lengths, spread evenly over the groups. */
  systemTokens: Range;
  /** Conversations open at once in each group. */
  conversationsPerGroup: number;
  /** Turns before a conversation ends and a new one starts. */
  turns: Range;
  questionTokens: Range;
  /** max_tokens of each request; the answer appended to the history has this length too. */
  outputTokens: Range;
  /** Characters of `prose` per Qwen3 token (measured once with the tokenizer). */
  charsPerToken: number;
}

/**
 * llm-d's chat shape, which the routing benchmark runs and the decision benchmark replays: 32 groups
 * sharing 2–6 k-token system prompts (~128 k tokens: against 8 × 32 k tokens of KV cache no pod
 * holds them all, and with the conversations' histories the fleet evicts constantly, which is where a
 * router's guess of who holds what drifts from the truth), conversations of 3–8 turns, 100–400-token
 * questions, 32–160-token answers appended to the history. `charsPerToken` 0: the generator's own.
 */
export function llmdChatSpec(seed: number, model: string, charsPerToken = 0): WorkloadSpec {
  return {
    kind: 'chat',
    seed,
    model,
    groups: 32,
    systemTokens: { min: 2000, max: 6000 },
    conversationsPerGroup: 8,
    turns: { min: 3, max: 8 },
    questionTokens: { min: 100, max: 400 },
    outputTokens: { min: 32, max: 160 },
    charsPerToken,
  };
}

export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** A request and when it arrives, ms after its step started. */
export interface Arrival {
  atMs: number;
  request: WorkloadRequest;
}

/** What the load generator replays: a seeded sequence of requests and their arrival times. */
export interface RequestSource {
  /** Every arrival of a step of `seconds` at a mean of `ratePerSec`, in time order. */
  arrivals(ratePerSec: number, seconds: number): Arrival[];
}

export interface WorkloadRequest {
  conversation: number;
  group: number;
  /** 0 for a conversation's first question. */
  turn: number;
  messages: ChatTurn[];
  maxTokens: number;
}

interface Conversation {
  id: number;
  group: number;
  turn: number;
  turns: number;
  history: ChatTurn[];
}

/**
 * The request sequence, a pure function of the spec: every arm replays exactly the same prompts
 * in the same order. Answers in the history are generated text of the requested length rather than
 * the simulator's reply, so the trace does not depend on which pod answered or when (in vLLM too
 * a re-tokenized reply need not match the generated token ids, so the history's answer blocks are
 * recomputed either way).
 */
export class Workload implements RequestSource {
  private readonly random: () => number;
  private readonly systems: string[];
  private readonly open: Conversation[] = [];
  private nextConversation = 0;
  private textSeed: number;

  constructor(private readonly spec: WorkloadSpec) {
    this.random = rng(spec.seed);
    this.textSeed = spec.seed * 1_000_003;
    this.systems = Array.from({ length: spec.groups }, (_, g) => {
      const tokens = spec.groups === 1 ? spec.systemTokens.min : spec.systemTokens.min + ((spec.systemTokens.max - spec.systemTokens.min) * g) / (spec.groups - 1);
      return `Group ${g} operating manual.\n${prose(50_000 + g, this.chars(tokens))}`;
    });
    for (let g = 0; g < spec.groups; g++) for (let c = 0; c < spec.conversationsPerGroup; c++) this.open.push(this.startConversation(g));
  }

  /** Tokens of every system prompt together (approximate): what the fleet must hold for affinity to pay. */
  get systemPromptTokens(): number {
    return Math.round(this.systems.reduce((a, s) => a + s.length, 0) / this.spec.charsPerToken);
  }

  next(): WorkloadRequest {
    const slot = Math.floor(this.random() * this.open.length);
    const conv = this.open[slot]!;
    const question: ChatTurn = { role: 'user', content: prose(this.textSeed++, this.chars(this.between(this.spec.questionTokens))) };
    const maxTokens = this.between(this.spec.outputTokens);
    const request: WorkloadRequest = {
      conversation: conv.id,
      group: conv.group,
      turn: conv.turn,
      messages: [{ role: 'system', content: this.systems[conv.group]! }, ...conv.history, question],
      maxTokens,
    };
    conv.history.push(question, { role: 'assistant', content: prose(this.textSeed++, this.chars(maxTokens)) });
    conv.turn++;
    if (conv.turn >= conv.turns) this.open[slot] = this.startConversation(conv.group);
    return request;
  }

  /** Poisson arrivals, each the next request of the sequence. */
  arrivals(ratePerSec: number, seconds: number): Arrival[] {
    const out: Arrival[] = [];
    for (let at = this.gapMs(ratePerSec); at < seconds * 1000; at += this.gapMs(ratePerSec)) out.push({ atMs: at, request: this.next() });
    return out;
  }

  /** Exponential inter-arrival gap (a Poisson process at `ratePerSec`), in ms. */
  gapMs(ratePerSec: number): number {
    return (-Math.log(1 - this.random()) / ratePerSec) * 1000;
  }

  private startConversation(group: number): Conversation {
    return { id: this.nextConversation++, group, turn: 0, turns: this.between(this.spec.turns), history: [] };
  }

  private between(r: Range): number {
    return r.min + Math.floor(this.random() * (r.max - r.min + 1));
  }

  private chars(tokens: number): number {
    return Math.max(1, Math.round(tokens * this.spec.charsPerToken));
  }
}
