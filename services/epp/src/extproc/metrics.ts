import { Counter, type Registry } from 'prom-client';

/**
 * What an ext_proc stream had done when it ended, however it ended (a proxy's half-close, or the
 * reset with which Envoy ends every stream by default: grpc-js reports both alike):
 * - `complete`: the exchange was over (answered at once, or its response ended);
 * - `incomplete`: it ended first (the client went away, or the proxy gave up on it);
 * - `malformed`: a message that did not decode; `failed`: the endpoint picker failed on the request.
 */
export type StreamOutcome = 'complete' | 'incomplete' | 'malformed' | 'failed';

export class ExtProcMetrics {
  readonly streams: Counter<'outcome'>;

  constructor(registry: Registry) {
    this.streams = new Counter({
      name: 'kvix_epp_ext_proc_streams_total',
      help: 'ext_proc streams by what they had done when they ended (Envoy ends every stream with a reset by default: a complete one is normal).',
      labelNames: ['outcome'],
      registers: [registry],
    });
  }

  ended(outcome: StreamOutcome): void {
    this.streams.inc({ outcome });
  }
}
