import { Counter, Histogram, type Registry } from 'prom-client';

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

/** Requests served by each API, by method and outcome code. */
export class ApiMetrics {
  private readonly requests: Counter<'api' | 'method' | 'code'>;
  private readonly duration: Histogram<'api' | 'method'>;

  constructor(registry: Registry) {
    this.requests = new Counter({ name: 'kvix_indexer_requests_total', help: 'API requests, by API (grpc, http), method and outcome code (OK or an error code).', labelNames: ['api', 'method', 'code'], registers: [registry] });
    this.duration = new Histogram({ name: 'kvix_indexer_request_duration_seconds', help: 'API request latency, by API and method.', labelNames: ['api', 'method'], buckets: BUCKETS, registers: [registry] });
  }

  /** Times `work`, counting its outcome under `code(err)` or OK. */
  async time<T>(api: 'grpc' | 'http', method: string, work: () => Promise<T>, code: (err: unknown) => string): Promise<T> {
    const start = process.hrtime.bigint();
    try {
      const result = await work();
      this.requests.inc({ api, method, code: 'OK' });
      return result;
    } catch (err) {
      this.requests.inc({ api, method, code: code(err) });
      throw err;
    } finally {
      this.duration.observe({ api, method }, Number(process.hrtime.bigint() - start) / 1e9);
    }
  }

  /** A request rejected before it reached a handler (malformed bytes or JSON). */
  rejected(api: 'grpc' | 'http', method: string, code: string): void {
    this.requests.inc({ api, method, code });
  }
}
