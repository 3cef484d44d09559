import type { InFlightSource, InFlightTokenSource } from '@kvix/replication';
import { sumCounts, sumTokens } from './load-sums.js';
import type { TokensInFlight } from './messages.js';

const NO_TOKENS: TokensInFlight = { prefill: 0, decode: 0 };

/** What the primary knows of one worker's load: its last report. */
export interface WorkerLoad {
  load: Record<string, number>;
  tokens: Record<string, TokensInFlight>;
}

/**
 * An EPP with routing workers as one replica in the replicas' load exchange (`--nats-url`): what it
 * reports is its workers' requests and tokens in flight summed, and what the other replicas report
 * goes on to every worker (`relay`, coalesced to one message per turn of the event loop), which
 * adds it to its own and its sibling workers' as it does for them.
 */
export class ReplicaLoad {
  private readonly listeners = new Set<(id: string, inFlight: number) => void>();
  private readonly tokenListeners = new Set<() => void>();
  private peerCount: (id: string) => number = () => 0;
  private peerTokenCount: (id: string) => TokensInFlight = () => NO_TOKENS;
  private relayScheduled = false;

  constructor(
    private readonly workers: () => Iterable<WorkerLoad>,
    /** Endpoints the peers may report load on: discovery's, as the workers know them. */
    private readonly endpoints: () => Iterable<string>,
    private readonly relay: (counts: Record<string, number>, tokens: Record<string, TokensInFlight>) => void,
  ) {}

  /** A worker reported (or died): the sums changed. */
  changed(): void {
    for (const l of this.listeners) l('', 0);
    for (const l of this.tokenListeners) l();
  }

  readonly requests: InFlightSource = {
    ownInFlight: () => sumCounts([...this.workers()].map((w) => w.load)),
    onInFlightChange: (listener) => {
      this.listeners.add(listener);
      return () => this.listeners.delete(listener);
    },
    setPeerInFlight: (source) => {
      this.peerCount = source;
    },
    peersChanged: () => this.scheduleRelay(),
  };

  readonly tokens: InFlightTokenSource = {
    own: () => sumTokens([...this.workers()].map((w) => w.tokens)),
    onChange: (listener) => {
      this.tokenListeners.add(listener);
      return () => this.tokenListeners.delete(listener);
    },
    setPeerTokens: (source) => {
      this.peerTokenCount = source;
    },
  };

  /** The other replicas' load on every endpoint, as the workers should add it now. */
  peers(): { counts: Record<string, number>; tokens: Record<string, TokensInFlight> } {
    const counts: Record<string, number> = {};
    const tokens: Record<string, TokensInFlight> = {};
    for (const id of this.endpoints()) {
      const n = this.peerCount(id);
      if (n > 0) counts[id] = n;
      const t = this.peerTokenCount(id);
      if (t.prefill > 0 || t.decode > 0) tokens[id] = { prefill: t.prefill, decode: t.decode };
    }
    return { counts, tokens };
  }

  private scheduleRelay(): void {
    if (this.relayScheduled) return;
    this.relayScheduled = true;
    setImmediate(() => {
      this.relayScheduled = false;
      const { counts, tokens } = this.peers();
      this.relay(counts, tokens);
    });
  }
}
