import { errorBody, registerErrorHandlers } from '@kvix/service-kit';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { BuiltinPredictor } from '../model/builtin-predictor.js';
import {
  BUILTIN_MODEL_TYPE,
  MAX_BULK_ROWS,
  parsePredictionRow,
  parseTrainingEntry,
  type BulkPredictionError,
  type BulkPredictionResponse,
  type BulkPredictionResponseWithErrors,
  type PredictionResponse,
  type PredictionRow,
  type StatusResponse,
  type TrainingEntry,
  type ValidationIssue,
} from '../wire.js';

/** The predictor server's own metrics, next to the model snapshot on /metrics. */
export class PredictorServerMetrics {
  readonly rows: Counter<'route'>;
  readonly rejected: Counter<'route' | 'reason'>;
  readonly duration: Histogram<'route'>;
  readonly trainingEntries: Counter;

  constructor(registry: Registry, model: BuiltinPredictor) {
    const registers = [registry];
    this.rows = new Counter({ name: 'kvix_latency_predictor_server_rows_total', help: 'Rows predicted, per route.', labelNames: ['route'], registers });
    this.rejected = new Counter({ name: 'kvix_latency_predictor_server_rejected_total', help: 'Requests refused, per route and reason (invalid: 422, not_ready: 503).', labelNames: ['route', 'reason'], registers });
    this.duration = new Histogram({ name: 'kvix_latency_predictor_server_request_duration_seconds', help: 'Handling one prediction or training request.', labelNames: ['route'], buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05], registers });
    this.trainingEntries = new Counter({ name: 'kvix_latency_predictor_server_training_entries_total', help: 'Training entries accepted.', registers });
    new Gauge({
      name: 'kvix_latency_predictor_model_samples',
      help: 'Observations the built-in model has learned from, per model (ttft, tpot).',
      labelNames: ['model'],
      registers,
      collect() {
        const s = model.describe().samples!;
        this.set({ model: 'ttft' }, s.ttft);
        this.set({ model: 'tpot' }, s.tpot);
      },
    });
  }
}

export interface PredictorApiOptions {
  model: BuiltinPredictor;
  /** Which of llm-d's two servers this listener is: the prediction API, the training API, or both. */
  serve: { prediction: boolean; training: boolean };
  /** What `/status` reports as the training server (the other listener, in split mode). */
  trainingServerUrl: string;
  /** prom-client metrics, served on /metrics before the model snapshot. */
  registry: Registry;
  metrics: PredictorServerMetrics;
  /** False while shutting down: /readyz answers 503. */
  serving: () => boolean;
}

const NOT_READY = 'Models not ready';

/**
 * llm-d-latency-predictor's HTTP API backed by the built-in model: the prediction server's
 * `/predict`, `/predict/bulk`, `/predict/bulk/strict`, `/status`, `/reload` and the training
 * server's `/add_training_data_bulk`, `/model/download/info`, `/metrics` (the model snapshot in
 * its Prometheus-text shape, here after kvix's own metrics), with its status codes: 422 with
 * FastAPI's `detail` list for invalid bodies, 503 while the model is not ready, 202 for training.
 */
export function registerPredictorApi(app: FastifyInstance, options: PredictorApiOptions): void {
  const { model, metrics } = options;
  const meta = (): Pick<PredictionResponse, 'predicted_at' | 'model_type' | 'objective_type' | 'quantile' | 'last_model_load'> => ({
    predicted_at: new Date().toISOString(),
    model_type: BUILTIN_MODEL_TYPE,
    objective_type: model.config.objective,
    quantile: model.config.quantile,
    last_model_load: model.lastModelLoad?.toISOString() ?? null,
  });
  // FastAPI's `detail` for llm-d's clients, beside kvix's common `error` object.
  const invalid = (reply: FastifyReply, route: string, issues: ValidationIssue[]) => {
    metrics.rejected.inc({ route, reason: 'invalid' });
    return reply.code(422).send({ detail: issues, ...errorBody('INVALID_REQUEST', issues.map((i) => `${i.loc.join('.')}: ${i.msg}`).join('; ')) });
  };
  const notReady = (reply: FastifyReply, route: string) => {
    metrics.rejected.inc({ route, reason: 'not_ready' });
    return reply.code(503).send({ detail: NOT_READY, ...errorBody('NOT_READY', NOT_READY) });
  };
  registerErrorHandlers(app, { extraFields: (c) => ({ detail: c.status === 404 ? 'Not Found' : c.message }) });
  const timed = (route: string, started: number) => metrics.duration.observe({ route }, (performance.now() - started) / 1000);

  app.get('/healthz', async () => ({ status: 'ok', service: 'kvix-latency-predictor' }));
  app.get('/readyz', async (_req, reply) => {
    // Ready to take traffic once listening: training data must reach an untrained model.
    const serving = options.serving();
    return reply.code(serving ? 200 : 503).send({ status: serving ? 'ready' : 'shutting down', model_ready: model.ready, model_type: BUILTIN_MODEL_TYPE, objective_type: model.config.objective, quantile: model.config.quantile });
  });

  if (options.serve.prediction) {
    app.get('/status', async (): Promise<StatusResponse> => ({
      is_ready: model.ready,
      model_type: BUILTIN_MODEL_TYPE,
      objective_type: model.config.objective,
      quantile: model.config.quantile,
      last_model_load: model.lastModelLoad?.toISOString() ?? null,
      training_server_url: options.trainingServerUrl,
      models_exist: { ttft_model: model.ready, tpot_model: (model.describe().samples?.tpot ?? 0) >= model.config.minSamples },
    }));

    app.post('/reload', async () => ({ synced: true, loaded: model.ready, is_ready: model.ready, model_type: BUILTIN_MODEL_TYPE, objective_type: model.config.objective, quantile: model.config.quantile, last_load_time: model.lastModelLoad?.toISOString() ?? null }));

    app.post('/predict', async (req, reply) => {
      const started = performance.now();
      const row = parsePredictionRow(req.body);
      if (!row.ok) return invalid(reply, 'predict', row.issues);
      if (!model.ready) return notReady(reply, 'predict');
      const [p] = model.predictNow([row.value]);
      metrics.rows.inc({ route: 'predict' });
      timed('predict', started);
      return { ttft_ms: p!.ttftMs, tpot_ms: p!.tpotMs, ...meta() } satisfies PredictionResponse;
    });

    app.post('/predict/bulk/strict', async (req, reply) => {
      const started = performance.now();
      const rows = parseBulk(req.body);
      if (!rows.ok) return invalid(reply, 'bulk_strict', rows.issues);
      if (!model.ready) return notReady(reply, 'bulk_strict');
      const m = meta();
      const predictions = model.predictNow(rows.value).map((p) => ({ ttft_ms: p.ttftMs, tpot_ms: p.tpotMs, ...m }));
      metrics.rows.inc({ route: 'bulk_strict' }, predictions.length);
      timed('bulk_strict', started);
      return { predictions, total_requests: predictions.length, successful_predictions: predictions.length, failed_predictions: 0, processing_time_ms: performance.now() - started } satisfies BulkPredictionResponse;
    });

    app.post('/predict/bulk', async (req, reply) => {
      const started = performance.now();
      const body = req.body as { requests?: unknown } | null;
      const shape = bulkShape(body);
      if (shape !== null) return invalid(reply, 'bulk', shape);
      const raw = body!.requests as unknown[];
      const predictions: (PredictionResponse | null)[] = raw.map(() => null);
      const errors: BulkPredictionError[] = [];
      const valid: { index: number; row: PredictionRow }[] = [];
      raw.forEach((r, index) => {
        const row = parsePredictionRow(r, ['body', 'requests', index]);
        if (row.ok) valid.push({ index, row: row.value });
        else errors.push({ index, error: row.issues.map((i) => `${i.loc.slice(3).join('.')}: ${i.msg}`).join('; '), request: r });
      });
      if (valid.length > 0) {
        if (!model.ready) for (const v of valid) errors.push({ index: v.index, error: `Batch prediction error: ${NOT_READY}`, request: raw[v.index] });
        else {
          const m = meta();
          model.predictNow(valid.map((v) => v.row)).forEach((p, i) => (predictions[valid[i]!.index] = { ttft_ms: p.ttftMs, tpot_ms: p.tpotMs, ...m }));
        }
      }
      errors.sort((a, b) => a.index - b.index);
      const ok = predictions.filter((p) => p !== null).length;
      metrics.rows.inc({ route: 'bulk' }, ok);
      timed('bulk', started);
      return { predictions, errors, total_requests: raw.length, successful_predictions: ok, failed_predictions: raw.length - ok, processing_time_ms: performance.now() - started } satisfies BulkPredictionResponseWithErrors;
    });
  }

  if (options.serve.training) {
    app.post('/add_training_data_bulk', async (req, reply) => {
      const started = performance.now();
      const body = req.body as { entries?: unknown } | null;
      if (typeof body !== 'object' || body === null || !Array.isArray(body.entries)) return invalid(reply, 'train', [{ loc: ['body', 'entries'], msg: 'Field required', type: 'missing' }]);
      const entries: TrainingEntry[] = [];
      const issues: ValidationIssue[] = [];
      body.entries.forEach((e, i) => {
        const parsed = parseTrainingEntry(e, ['body', 'entries', i]);
        if (parsed.ok) entries.push(parsed.value);
        else issues.push(...parsed.issues);
      });
      // All or nothing, as pydantic validates the whole body.
      if (issues.length > 0) return invalid(reply, 'train', issues);
      model.train(entries);
      metrics.trainingEntries.inc(entries.length);
      timed('train', started);
      return reply.code(202).send({ message: `Accepted ${entries.length} training samples.` });
    });

    app.get('/model/download/info', async () => ({
      model_type: BUILTIN_MODEL_TYPE,
      objective_type: model.config.objective,
      quantile: model.config.quantile,
      available_endpoints: { coefficients: '/metrics' },
      model_status: { ttft_model_ready: model.ready, tpot_model_ready: (model.describe().samples?.tpot ?? 0) >= model.config.minSamples },
    }));
  }

  app.get('/metrics', async (_req, reply) => {
    const own = await options.registry.metrics();
    return reply.header('content-type', options.registry.contentType).send(options.serve.training ? `${own}${modelSnapshotText(model)}` : own);
  });

  app.get('/', async () => ({ message: 'kvix latency predictor (llm-d-latency-predictor API, built-in model)', model_type: BUILTIN_MODEL_TYPE, objective_type: model.config.objective, quantile: model.config.quantile, is_ready: model.ready, serves: options.serve }));
}

function bulkShape(body: { requests?: unknown } | null): ValidationIssue[] | null {
  if (typeof body !== 'object' || body === null || !Array.isArray(body.requests)) return [{ loc: ['body', 'requests'], msg: 'Field required', type: 'missing' }];
  if (body.requests.length < 1) return [{ loc: ['body', 'requests'], msg: 'List should have at least 1 item after validation, not 0', type: 'too_short' }];
  if (body.requests.length > MAX_BULK_ROWS) return [{ loc: ['body', 'requests'], msg: `List should have at most ${MAX_BULK_ROWS} items after validation, not ${body.requests.length}`, type: 'too_long' }];
  return null;
}

function parseBulk(body: unknown): { ok: true; value: PredictionRow[] } | { ok: false; issues: ValidationIssue[] } {
  const shape = bulkShape(body as { requests?: unknown } | null);
  if (shape !== null) return { ok: false, issues: shape };
  const raw = (body as { requests: unknown[] }).requests;
  const rows: PredictionRow[] = [];
  const issues: ValidationIssue[] = [];
  raw.forEach((r, i) => {
    const row = parsePredictionRow(r, ['body', 'requests', i]);
    if (row.ok) rows.push(row.value);
    else issues.push(...row.issues);
  });
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value: rows };
}

/** The model in the training server's /metrics shape: type, objective, linear coefficients per raw feature, sample counts. */
export function modelSnapshotText(model: BuiltinPredictor): string {
  const { ttft, tpot } = model.snapshot();
  const lines = [
    '# HELP model_type The latency model in use (llm-d-latency-predictor snapshot).',
    '# TYPE model_type gauge',
    `model_type{type="${BUILTIN_MODEL_TYPE}"} 1`,
    '# TYPE objective_type gauge',
    `objective_type{type="${model.config.objective}"} 1`,
    '# TYPE model_quantile gauge',
    `model_quantile ${model.config.quantile}`,
  ];
  for (const [prefix, m] of [['ttft', ttft], ['tpot', tpot]] as const) {
    lines.push(`# TYPE ${prefix}_intercept gauge`, `${prefix}_intercept ${fmt(m.coefficients['intercept'] ?? 0)}`, `# TYPE ${prefix}_coef gauge`);
    for (const [feature, value] of Object.entries(m.coefficients)) if (feature !== 'intercept') lines.push(`${prefix}_coef{feature="${feature}"} ${fmt(value)}`);
    lines.push(`# TYPE ${prefix}_quantile_calibration gauge`, `${prefix}_quantile_calibration ${fmt(m.calibration)}`);
  }
  lines.push('# TYPE training_samples_count gauge', `training_samples_count{model="ttft"} ${ttft.samples}`, `training_samples_count{model="tpot"} ${tpot.samples}`);
  return `${lines.join('\n')}\n`;
}

function fmt(v: number): string {
  return Number.isFinite(v) ? v.toPrecision(8) : '0';
}
