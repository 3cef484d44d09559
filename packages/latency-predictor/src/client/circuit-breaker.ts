export type CircuitState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. */
  failureThreshold: number;
  /** How long an open circuit refuses calls before one probe may try. */
  cooldownMs: number;
  now?: () => number;
}

/**
 * Stops calling a server that keeps failing: after `failureThreshold` consecutive failures every
 * call is refused at once (the router falls back without paying a timeout per request); after
 * `cooldownMs` one probe goes through, and its outcome closes or reopens the circuit.
 */
export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private current: CircuitState = 'closed';
  private readonly now: () => number;

  constructor(
    private readonly options: CircuitBreakerOptions,
    private readonly onChange: (state: CircuitState) => void = () => {},
  ) {
    this.now = options.now ?? Date.now;
  }

  get state(): CircuitState {
    return this.current;
  }

  /** Whether a call may go out now (an open circuit past its cooldown lets exactly one probe through). */
  allow(): boolean {
    if (this.current === 'closed') return true;
    if (this.current === 'open' && this.now() - this.openedAt >= this.options.cooldownMs) {
      this.set('half-open');
      return true;
    }
    return false;
  }

  /** Whether `allow()` would let a call through, without changing state. */
  wouldAllow(): boolean {
    return this.current === 'closed' || (this.current === 'open' && this.now() - this.openedAt >= this.options.cooldownMs);
  }

  success(): void {
    this.failures = 0;
    if (this.current !== 'closed') this.set('closed');
  }

  failure(): void {
    this.failures++;
    if (this.current === 'half-open' || (this.current === 'closed' && this.failures >= this.options.failureThreshold)) {
      this.openedAt = this.now();
      this.set('open');
    }
  }

  private set(state: CircuitState): void {
    this.current = state;
    this.onChange(state);
  }
}
