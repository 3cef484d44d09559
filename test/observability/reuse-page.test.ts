/// <reference lib="dom" />
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Indexer, IndexerConfigSchema } from '@kvix/indexer';
import { ceiling, freePort, freePortRange, nodeCli, repoRoot, waitFor, type ManagedProcess } from '@kvix/test-support';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, endpointsFile, MODEL, send, silent, startSim, type Sim } from '../support/stack.js';

// Debian's chromium (.ci/run installs it): a missing browser fails here, it is never skipped.
const CHROMIUM = process.env['KVIX_CHROMIUM'] ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
/** Where to write the page's screenshot (docs/img/reuse-page.png is made this way). */
const SCREENSHOT = process.env['KVIX_UI_SCREENSHOT'];

let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
});

afterAll(async () => {
  await browser?.close();
});

/** Pixels a chart's canvas painted (uPlot draws series and axes on it): 0 for a blank chart. */
async function paintedPixels(page: Page, id: string): Promise<number> {
  return page.evaluate((chartId) => {
    const canvas = document.querySelector(`#${chartId} canvas`) as HTMLCanvasElement | null;
    if (!canvas) return 0;
    const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) n++;
    return n;
  }, id);
}

async function openPage(url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1100 } });
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  const res = await page.goto(url);
  expect(res?.status()).toBe(200);
  expect(page.url()).toMatch(/\/ui\/$/);
  return { page, errors };
}

async function chartsFilled(page: Page, ids: string[]): Promise<void> {
  await page.waitForFunction((list) => list.every((id) => Number(document.getElementById(id)?.dataset['points'] ?? 0) > 0), ids, { timeout: ceiling(120_000), polling: 250 });
  for (const id of ids) expect(await paintedPixels(page, id), `${id} painted`).toBeGreaterThan(500);
}

/** Three tenants, each with its own long system prompt: three shared prefixes, on different pods. */
const TENANTS = ['a logistics company that ships parcels across Europe', 'a bike shop in Lyon with a repair workshop', 'a travel agency planning rail trips'].map(
  (who) => `You are the assistant of ${who}. You know every detail of its catalogue, prices, opening hours and policies, and you answer in two short sentences. `.repeat(3),
);

/** Sends prefix-sharing traffic from the three tenants until `done` says stop. */
function keepSending(base: string, done: () => boolean): Promise<void> {
  return (async () => {
    for (let i = 0; !done(); i++) {
      const body = { model: MODEL, max_tokens: 8, messages: [{ role: 'system', content: TENANTS[i % TENANTS.length] }, { role: 'user', content: `Question ${i}: what should I know?` }] };
      await send(base, '/v1/chat/completions', body).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
}

describe('the cache-reuse page (/ui) in headless Chromium', () => {
  it("against `kvix stack` (npm start): the banner links it, and after traffic it charts reuse per model, pod and tier, speculation, index size and event lag, and lists shared prefixes with their holders", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvix-ui-stack-'));
    const base = await freePortRange(3);
    const events = await freePortRange(103);
    const [gateway, metrics, extProc, envoy] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const stack: ManagedProcess = nodeCli(join(repoRoot(), 'packages/cli/bin/kvix.js')).run(['stack', '--pods', '3', '--base-port', String(base), '--base-event-port', String(events), '--gateway-port', String(gateway), '--metrics-port', String(metrics), '--ext-proc-port', String(extProc), '--envoy-port', String(envoy), '--time-scale', '20', '--dir', dir]);
    let stop = false;
    let traffic: Promise<void> | null = null;
    try {
      const banner = await waitFor(() => /reuse page\s+(http:\/\/localhost:\d+\/ui)\b/.exec(stack.output()) ?? undefined, 120_000, `the stack's banner (${stack.output().slice(-600)})`);
      expect(banner[1]).toBe(`http://localhost:${metrics}/ui`);
      traffic = keepSending(`http://127.0.0.1:${gateway}`, () => stop);
      const { page, errors } = await openPage(banner[1]!.replace('localhost', '127.0.0.1'));
      await chartsFilled(page, ['chart-model', 'chart-pod', 'chart-tier', 'chart-spec', 'chart-entries', 'chart-lag']);
      await page.waitForFunction(() => document.querySelectorAll('#prefixes .chip').length > 0, undefined, { timeout: ceiling(30_000) });
      expect(await page.locator('#ingestion tbody tr').count()).toBe(3);
      expect(await page.locator('#kpi-hit').textContent()).toMatch(/%$/);
      expect(await page.locator('#status').getAttribute('class')).not.toBe('error');
      if (SCREENSHOT) {
        // A fuller picture for the docs: a minute of history.
        await page.waitForFunction(() => ((window as unknown as { kvixReusePage?: { points: number } }).kvixReusePage?.points ?? 0) >= 12, undefined, { timeout: ceiling(120_000) });
        mkdirSync(dirname(SCREENSHOT), { recursive: true });
        await page.screenshot({ path: SCREENSHOT, fullPage: true });
      }
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      stop = true;
      await traffic;
      await stack.stop('SIGINT', 15_000);
      rmSync(dir, { recursive: true, force: true });
    }
  }, ceiling(300_000));

  it("on the indexer's HTTP port, beside /v1/analytics", async () => {
    const sims: Sim[] = [];
    let indexer: Indexer | null = null;
    try {
      for (let i = 0; i < 3; i++) sims.push(await startSim());
      indexer = await Indexer.start(
        IndexerConfigSchema.parse({ logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, ingest: { endpointsFile: endpointsFile(sims), readinessTimeoutMs: 5000 }, tokenization: { workers: 1 }, analytics: { historyIntervalMs: 500 } }),
        silent,
      );
      const http = indexer.httpUrl;
      await waitFor(async () => (await fetch(`${http}/readyz`)).status === 200, 30_000, 'the indexer');
      const { page, errors } = await openPage(`${http}/ui`);
      let stop = false;
      // A router in front of it: engines serve the prompts (their KV events reach the index) and the indexer scores them.
      const traffic = (async () => {
        for (let i = 0; !stop; i++) {
          const body = chat(`Where is parcel ${i}?`, { max_tokens: 8 });
          await fetch(`${http}/v1/score/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages: body['messages'] }) });
          await send(sims[i % sims.length]!.url, '/v1/chat/completions', body).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      try {
        await chartsFilled(page, ['chart-model', 'chart-entries', 'chart-lag']);
        await page.waitForFunction(() => document.querySelectorAll('#ingestion tbody tr').length === 3, undefined, { timeout: ceiling(30_000) });
      } finally {
        stop = true;
        await traffic;
      }
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await indexer?.stop();
      for (const s of sims) await s.pod.stop();
    }
  }, ceiling(300_000));
});
