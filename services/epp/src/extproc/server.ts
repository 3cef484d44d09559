import { Server, status, type ServerDuplexStream } from '@grpc/grpc-js';
import { grpcServerCredentials, loadExtProc, MalformedRequest, withMalformedRequests, type GrpcServerTls, type ProcessingRequest__Output, type ProcessingResponse } from '@kvix/proto';
import type { RequestDirector } from '@kvix/scheduler';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ExtProcMetrics, type StreamOutcome } from './metrics.js';
import { ExchangeProcessor } from './processor.js';

export interface ExtProcContext {
  director: RequestDirector;
  logger: Logger;
  /** Where `kvix_epp_ext_proc_streams_total` is registered (none: not counted). */
  registry?: Registry;
  /** llm-d's ext_proc stream metrics; `opened` returns the stream's close callback (gRPC code name). */
  streams?: { opened(): (code: string) => void };
}

export interface ExtProcOptions {
  host: string;
  port: number;
  maxBodyBytes?: number;
  /** TLS (mutual with a client CA); plaintext without. */
  tls?: GrpcServerTls | undefined;
  /** Streams one connection may have open at once. */
  maxConcurrentStreams?: number;
}

export interface RunningExtProc {
  port: number;
  /** Readiness (and the ext_proc service's health) follows this; liveness is SERVING while the server runs. */
  setServing(serving: boolean): void;
  stop(graceMs: number): Promise<void>;
}

export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

/**
 * Envoy's External Processor for the Gateway API Inference Extension protocol, with the gRPC
 * health service Envoy's cluster health check and Kubernetes probes ask (`liveness`, `readiness`,
 * the ext_proc service name). A stream closed cleanly by the server lets Envoy proceed without it.
 */
export async function startExtProcServer(ctx: ExtProcContext, options: ExtProcOptions): Promise<RunningExtProc> {
  const maxBodyBytes = options.maxBodyBytes ?? 32 * 1024 * 1024;
  // A proxy sending bodies per message (STREAMED) may pass on what it buffered as one message: up
  // to the body limit, plus room for headers and framing (grpc-js refuses more than 4 MiB by default).
  const server = new Server({ 'grpc.max_concurrent_streams': options.maxConcurrentStreams ?? 1024, 'grpc.max_receive_message_length': maxBodyBytes + 1024 * 1024 });
  const definition = loadExtProc().envoy.service.ext_proc.v3.ExternalProcessor.service;
  const metrics = ctx.registry ? new ExtProcMetrics(ctx.registry) : null;
  server.addService(withMalformedRequests(definition), {
    Process: (call: ServerDuplexStream<ProcessingRequest__Output | MalformedRequest, ProcessingResponse>) => {
      const processor = new ExchangeProcessor(call as ServerDuplexStream<ProcessingRequest__Output, ProcessingResponse>, { director: ctx.director, logger: ctx.logger, maxBodyBytes });
      // Each stream is counted once, when it first ends.
      let ended = false;
      const end = (how: StreamOutcome): void => {
        if (ended) return;
        ended = true;
        metrics?.ended(how);
      };
      const closed = ctx.streams?.opened();
      let code: string | null = null;
      // The first outcome is the stream's status (an error also ends it); Go's code names, as llm-d labels them.
      const close = (c: string): void => {
        if (code !== null) return;
        code = c;
        closed?.(c);
      };
      // Messages are handled one at a time, in order: a body chunk must not overtake its headers.
      let chain: Promise<void> = Promise.resolve();
      call.on('data', (message: ProcessingRequest__Output | MalformedRequest) => {
        chain = chain.then(async () => {
          if (message instanceof MalformedRequest) {
            end('malformed');
            processor.abort('MALFORMED');
            close('InvalidArgument');
            // Emitting the error is how a grpc-js server stream ends with a status (destroy sends none).
            call.emit('error', Object.assign(new Error(`malformed ProcessingRequest: ${message.reason}`), { code: status.INVALID_ARGUMENT }));
            return;
          }
          try {
            await processor.onMessage(message);
          } catch (err) {
            ctx.logger.error({ err: (err as Error).message }, 'ext_proc stream failed');
            end('failed');
            processor.abort('INTERNAL');
            close('Internal');
            call.emit('error', Object.assign(new Error('the endpoint picker failed on this request'), { code: status.INTERNAL }));
          }
        });
      });
      // The proxy is done sending: half-closed (the stream then ends cleanly on our side too) or reset.
      call.on('end', () => {
        void chain.then(() => {
          end(processor.complete ? 'complete' : 'incomplete');
          processor.onProxyDone();
          close('OK');
          if (call.writable) call.end();
        });
      });
      // Envoy resets every stream once its exchange is over (unless graceful close is on): that is
      // the normal end, not an error, and aborting a finished exchange changes nothing. A reset
      // before that is a client or proxy giving up on the request.
      call.on('cancelled', () => {
        end(processor.complete ? 'complete' : 'incomplete');
        processor.abort('CANCELLED');
        close('Canceled');
      });
      call.on('error', () => {
        end(processor.complete ? 'complete' : 'incomplete');
        processor.abort('STREAM_ERROR');
        close('Unknown');
      });
    },
  });
  const health = new HealthImplementation({ '': 'NOT_SERVING', liveness: 'SERVING', readiness: 'NOT_SERVING', [EXT_PROC_SERVICE]: 'NOT_SERVING' });
  health.addToServer(server);
  const address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, grpcServerCredentials(options.tls), (err, bound) => (err ? reject(new Error(`cannot listen for ext_proc on ${address}: ${err.message}`)) : resolve(bound))),
  );
  ctx.logger.info({ port }, 'ext_proc server listening');
  return {
    port,
    setServing: (serving) => {
      for (const s of ['', 'readiness', EXT_PROC_SERVICE]) health.setStatus(s, serving ? 'SERVING' : 'NOT_SERVING');
    },
    stop: (graceMs) =>
      new Promise<void>((resolve) => {
        for (const s of ['', 'liveness', 'readiness', EXT_PROC_SERVICE]) health.setStatus(s, 'NOT_SERVING');
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
