import { fastifyListenerOptions, secureFastifyListener, type HttpListenerSettings } from '@kvix/service-kit';
import Fastify, { type FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { BuiltinPredictor } from '../model/builtin-predictor.js';
import { PredictorServerMetrics, registerPredictorApi } from './api.js';

export interface PredictorServerOptions {
  model: BuiltinPredictor;
  host: string;
  /** The training API, and the prediction API too unless `predictionPort` is set. 0: any free port. */
  port: number;
  /** Serve the prediction API on its own port (llm-d's layout: training :8000, prediction :8001). */
  predictionPort?: number | null;
  /** Default: a fresh registry with the process metrics. */
  registry?: Registry;
  /**
   * Limits, TLS and bearer token of both listeners (training changes every router's predictions:
   * see SECURITY.md). Default: 16 MiB bodies (10,000 rows of ~350 bytes), no TLS, no token.
   */
  listener?: HttpListenerSettings;
}

const DEFAULT_LISTENER: HttpListenerSettings = { maxBodyBytes: 16 * 1024 * 1024, maxConnections: 1024, headersTimeoutMs: 10_000, bodyTimeoutMs: 30_000 };

export interface RunningPredictorServer {
  /** Where the training API answers. */
  trainingUrl: string;
  /** Where the prediction API answers (the same as trainingUrl unless split). */
  predictionUrl: string;
  registry: Registry;
  /** Stops taking new requests, lets the ones in flight finish, closes the listeners. */
  close(): Promise<void>;
}

/**
 * llm-d-latency-predictor's two servers backed by one built-in model: on one port by default (a
 * client needs only one URL), or split across two like llm-d's sidecars.
 */
export async function startPredictorServer(options: PredictorServerOptions): Promise<RunningPredictorServer> {
  const registry = options.registry ?? new Registry();
  if (!options.registry) collectDefaultMetrics({ register: registry });
  const metrics = new PredictorServerMetrics(registry, options.model);
  let serving = true;
  const split = options.predictionPort !== undefined && options.predictionPort !== null;
  const apps: FastifyInstance[] = [];
  const make = (serve: { prediction: boolean; training: boolean }, trainingServerUrl: () => string): FastifyInstance => {
    const listener = options.listener ?? DEFAULT_LISTENER;
    const app = Fastify({ logger: false, ...fastifyListenerOptions(listener) });
    secureFastifyListener(app, listener);
    registerPredictorApi(app, { model: options.model, serve, trainingServerUrl: trainingServerUrl(), registry, metrics, serving: () => serving });
    apps.push(app);
    return app;
  };
  const listen = async (app: FastifyInstance, port: number): Promise<string> => {
    try {
      await app.listen({ host: options.host, port });
    } catch (err) {
      await Promise.allSettled(apps.map((a) => a.close()));
      throw new Error(`cannot listen on ${options.host}:${port}: ${(err as Error).message}`, { cause: err });
    }
    const addr = app.server.address();
    const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
    const host = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;
    return `${options.listener?.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  };
  let trainingUrl = '';
  const training = make({ prediction: !split, training: true }, () => trainingUrl);
  trainingUrl = await listen(training, options.port);
  let predictionUrl = trainingUrl;
  if (split) predictionUrl = await listen(make({ prediction: true, training: false }, () => trainingUrl), options.predictionPort!);
  return {
    trainingUrl,
    predictionUrl,
    registry,
    close: async () => {
      serving = false;
      await Promise.all(apps.map((a) => a.close()));
    },
  };
}
