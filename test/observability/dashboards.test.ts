import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ceiling, repoRoot, startPrometheus, waitFor, type PrivateServer } from '@kvix/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driveTraffic, startObservedStack, type ObservedStack } from '../support/observed-stack.js';

const run = promisify(execFile);
const dashboardFile = join(repoRoot(), 'deploy/grafana/kvix-overview.json');
const rulesDir = join(repoRoot(), 'deploy/prometheus');

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
}

/** Grafana's interval variables as Prometheus needs them: windows of a few 1 s scrapes. */
const concrete = (expr: string): string => expr.replaceAll('$__rate_interval', '30s').replaceAll('$__range', '10m');

let stack: ObservedStack;
let prometheus: PrivateServer;
let traffic: Promise<void> | null = null;
let stopTraffic = false;

async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${prometheus.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
  return body.data!.result;
}

beforeAll(async () => {
  stack = await startObservedStack();
  const target = (url: string): string => new URL(url).host;
  prometheus = await startPrometheus(`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - ${join(rulesDir, 'kvix-alerts.yaml')}
scrape_configs:
  - job_name: kvix-epp
    static_configs: [{ targets: ['${target(stack.eppOps)}'] }]
  - job_name: kvix-indexer
    static_configs: [{ targets: ['${target(stack.indexer.httpUrl)}'] }]
  - job_name: kvix-kv-events
    static_configs: [{ targets: ['${target(stack.kvEvents.url)}'] }]
`);
  // Traffic keeps flowing while the panels are evaluated, so every rate has increases in its window.
  traffic = (async () => {
    for (let round = 0; !stopTraffic; round++) {
      await driveTraffic(stack, round);
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
}, ceiling(120_000));

afterAll(async () => {
  stopTraffic = true;
  await traffic?.catch(() => undefined);
  await prometheus?.dispose();
  await stack?.stop();
});

describe('dashboards and alerts on a real Prometheus', () => {
  it('scrapes the EPP, the indexer and kv-events', async () => {
    await waitFor(async () => (await query('up == 1')).length === 3, 60_000, 'three targets up');
  });

  it('answers every panel query of deploy/grafana with data from the running stack', async () => {
    const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as { panels: Panel[] };
    const targets = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: concrete(t.expr) })));
    expect(targets.length).toBeGreaterThan(30);
    const empty: string[] = [];
    for (const t of targets) {
      // Data, not NaN: a quantile of a histogram that saw nothing in its window is not data.
      const ok = await waitFor(async () => ((await query(t.expr)).some((r) => Number.isFinite(Number(r.value[1]))) ? true : undefined), 60_000, `${t.panel}: ${t.expr}`).catch(() => false);
      if (!ok) empty.push(`${t.panel}: ${t.expr}`);
    }
    expect(empty).toEqual([]);
  }, ceiling(600_000));

  it('loads the alert rules, which promtool checks and whose unit tests pass', async () => {
    const check = await run('promtool', ['check', 'rules', join(rulesDir, 'kvix-alerts.yaml')]);
    expect(check.stdout).toMatch(/SUCCESS: 7 rules found/);
    const unit = await run('promtool', ['test', 'rules', 'kvix-alerts.test.yaml'], { cwd: rulesDir });
    expect(unit.stdout).toMatch(/SUCCESS/);
    const rules = await waitFor(
      async () => {
        const body = (await (await fetch(`${prometheus.url}/api/v1/rules`)).json()) as { data: { groups: { name: string; rules: { name: string; health: string; lastEvaluation: string }[] }[] } };
        const all = body.data.groups.flatMap((g) => g.rules);
        return all.length === 7 && all.every((r) => r.health === 'ok' && !r.lastEvaluation.startsWith('0001')) ? all : undefined;
      },
      60_000,
      'every rule evaluated without error',
    );
    expect(rules.map((r) => r.name).sort()).toEqual(['KvixIndexBackendDown', 'KvixIngestionLostBatches', 'KvixNoEventSubscriptions', 'KvixPrefixHitRatioCollapse', 'KvixReplicaDisconnected', 'KvixReplicaLag', 'kvix:prefix_hit_ratio:rate10m']);
    // Nothing is wrong with this stack: no alert fires.
    expect(await query('ALERTS{alertstate="firing"}')).toEqual([]);
  });
});
