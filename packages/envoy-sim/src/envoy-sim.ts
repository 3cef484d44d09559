import { EventEmitter } from 'node:events';
import { Agent, createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Endpoint } from './destination.js';
import { EnvoySimError } from './errors.js';
import { Exchange } from './exchange.js';
import type { ExchangeReport } from './exchange-report.js';
import { resolveOptions, type EnvoySimOptions, type ResolvedOptions } from './options.js';
import { ProcessorPool, type ProcessorHostStats } from './processor-pool.js';
import type { ProcessorStream } from './processor-stream.js';

/** Events: `exchange` once per request, when the client has its whole answer (or lost its connection). */
export interface EnvoySimEvents {
  exchange: [report: ExchangeReport];
}

/** Counters since the simulator started, named after the Envoy stats they stand for. */
export interface EnvoySimStats {
  /** Per ext_proc host (`extProcTargets` entry): streams opened, failed, and ejections. */
  processorHosts: Record<string, ProcessorHostStats>;
  /** Streams re-opened on another ext_proc host (the ext_proc cluster's `upstream_rq_retry`). */
  processorRetries: number;
  /** Requests sent to the default upstream list because the processor was out of the picture. */
  defaultUpstreamRequests: number;
}

/**
 * An HTTP/1.1 listener that handles every request as Envoy does with the ext_proc filter in
 * FULL_DUPLEX_STREAMED mode (both body directions, trailers SEND) in front of an ORIGINAL_DST
 * cluster that routes on `x-gateway-destination-endpoint`. See the package README for what is and
 * is not reproduced.
 */
export class EnvoySim extends EventEmitter<EnvoySimEvents> {
  private readonly options: ResolvedOptions;
  private readonly pool: ProcessorPool;
  private nextDefaultUpstream = 0;
  private defaultUpstreamRequests = 0;
  private readonly agent = new Agent({ keepAlive: true });
  private readonly server: Server;
  private readonly exchanges = new Set<Exchange>();
  private streams = new Set<ProcessorStream>();
  private nextId = 1;
  private listening = false;

  /** @throws EnvoySimError INVALID_OPTIONS */
  constructor(options: EnvoySimOptions) {
    super();
    this.options = resolveOptions(options);
    this.pool = new ProcessorPool(this.options.extProcTargets, this.options.extProcEjectionMs, this.options.extProcTls);
    this.server = createServer((req, res) => {
      const exchange: Exchange = new Exchange(req, res, {
        id: this.nextId++,
        options: this.options,
        pool: this.pool,
        agent: this.agent,
        defaultUpstreams: () => this.rotateDefaultUpstreams(),
        onStream: (stream) => this.track(stream),
        onDone: (report) => {
          this.exchanges.delete(exchange);
          this.emit('exchange', report);
        },
      });
      this.exchanges.add(exchange);
      exchange.start();
    });
  }

  /** Creates a simulator and waits until it listens. */
  static async start(options: EnvoySimOptions): Promise<EnvoySim> {
    const sim = new EnvoySim(options);
    await sim.listen();
    return sim;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listening = true;
  }

  /** @throws EnvoySimError NOT_LISTENING */
  get port(): number {
    const address = this.server.address() as AddressInfo | null;
    if (!this.listening || address === null) throw new EnvoySimError('NOT_LISTENING', 'the simulator is not listening');
    return address.port;
  }

  /** Base URL of the listener, e.g. `http://127.0.0.1:40123`. */
  get url(): string {
    const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
    return `http://${host}:${this.port}`;
  }

  stats(): EnvoySimStats {
    return { processorHosts: this.pool.stats(), processorRetries: this.pool.retries, defaultUpstreamRequests: this.defaultUpstreamRequests };
  }

  /** Stops listening, resets requests in flight and their processor streams, closes the gRPC channels. */
  async close(): Promise<void> {
    const wasListening = this.listening;
    this.listening = false;
    for (const exchange of [...this.exchanges]) exchange.abort();
    for (const stream of this.streams) stream.cancel();
    this.streams.clear();
    const closed = wasListening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
    this.server.closeAllConnections();
    await closed;
    this.agent.destroy();
    this.pool.close();
  }

  /** The default upstreams starting at the next one in turn: round robin, the rest as fallbacks. */
  private rotateDefaultUpstreams(): Endpoint[] {
    const list = this.options.defaultUpstreams;
    if (list.length === 0) return [];
    this.defaultUpstreamRequests++;
    const start = this.nextDefaultUpstream++ % list.length;
    return [...list.slice(start), ...list.slice(0, start)];
  }

  private track(stream: ProcessorStream): void {
    // Finished streams are dropped as new ones come, so the set stays as small as the traffic.
    if (this.streams.size > 64) this.streams = new Set([...this.streams].filter((s) => s.open));
    this.streams.add(stream);
  }
}
