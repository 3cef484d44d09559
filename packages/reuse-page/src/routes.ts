import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { analyticsView, type ReuseSources } from './analytics-view.js';
import type { ReuseHistory } from './history.js';

/** Fields whose keys are data (pod ids, model names, tiers), not field names. */
const MAP_FIELDS = new Set(['byModel', 'byPod', 'events', 'tiers', 'entries']);

/** camelCase keys → snake_case, recursively (the JSON API's style); keys of MAP_FIELDS' values are kept. */
export function snakeCase(value: unknown, mapKeys = false): unknown {
  if (Array.isArray(value)) return value.map((v) => snakeCase(v));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[mapKeys ? k : k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = snakeCase(v, MAP_FIELDS.has(k));
  return out;
}

/** The /v1/analytics document: hit ratios, top shared prefixes and holders, speculation, events, index (snake_case). */
export async function analyticsDocument(sources: ReuseSources, top: number): Promise<unknown> {
  return snakeCase(await analyticsView(sources, top));
}

/** The /v1/analytics/history document: samples after `since` (Unix ms). */
export function historyDocument(history: ReuseHistory, since: number): unknown {
  return snakeCase({ intervalMs: history.options.intervalMs, points: history.since(since) });
}

interface Asset {
  type: string;
  body: Buffer;
}

/** The page and what it loads, read once: the package's ui/ files and uPlot's browser build from npm. */
function loadAssets(): Map<string, Asset> {
  const ui = join(dirname(fileURLToPath(import.meta.url)), '..', 'ui');
  const uplot = join(dirname(createRequire(import.meta.url).resolve('uplot')), '..', 'dist');
  const files: [string, string, string][] = [
    ['', join(ui, 'index.html'), 'text/html; charset=utf-8'],
    ['app.js', join(ui, 'app.js'), 'text/javascript; charset=utf-8'],
    ['app.css', join(ui, 'app.css'), 'text/css; charset=utf-8'],
    ['vendor/uPlot.iife.min.js', join(uplot, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    ['vendor/uPlot.min.css', join(uplot, 'uPlot.min.css'), 'text/css; charset=utf-8'],
  ];
  return new Map(files.map(([path, file, type]) => [path, { type, body: readFileSync(file) }]));
}

export interface ReuseRoutesOptions {
  sources: ReuseSources;
  history: ReuseHistory;
  /** Shared prefixes listed by default. */
  topPrefixes: number;
  /**
   * Also serve GET /v1/analytics (a service with its own route for it, timed and with its error
   * codes, leaves this off).
   */
  analyticsRoute: boolean;
}

/**
 * The cache-reuse page at /ui/ (and /ui, redirected), its history at /v1/analytics/history, and
 * optionally /v1/analytics itself, on a Fastify app (the listener that serves the analytics).
 */
export function registerReuseRoutes(app: FastifyInstance, options: ReuseRoutesOptions): void {
  const assets = loadAssets();
  const topOf = (raw: unknown): number | null => {
    if (raw === undefined) return options.topPrefixes;
    const n = Number(raw);
    return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : null;
  };
  if (options.analyticsRoute) {
    app.get<{ Querystring: { top?: string } }>('/v1/analytics', async (req, reply) => {
      const top = topOf(req.query.top);
      if (top === null) return reply.code(400).send({ error: { code: 'INVALID_REQUEST', message: 'top must be an integer from 1 to 1000' } });
      return analyticsDocument(options.sources, top);
    });
  }
  app.get<{ Querystring: { since?: string } }>('/v1/analytics/history', async (req, reply) => {
    const since = req.query.since === undefined ? 0 : Number(req.query.since);
    if (!Number.isFinite(since) || since < 0) return reply.code(400).send({ error: { code: 'INVALID_REQUEST', message: 'since must be a Unix time in milliseconds' } });
    return historyDocument(options.history, since);
  });
  app.get('/ui', async (_req, reply) => reply.redirect('ui/', 302));
  app.get<{ Params: { '*': string } }>('/ui/*', async (req, reply) => {
    const asset = assets.get(req.params['*']);
    if (!asset) return reply.code(404).send({ error: { code: 'NOT_FOUND', message: `no page asset ${req.params['*']}` } });
    return reply.header('content-type', asset.type).header('cache-control', 'no-cache').send(asset.body);
  });
}
