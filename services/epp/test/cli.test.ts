import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts, nodeCli, waitFor } from '@kvix/test-support';
import { afterEach, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/kvix-epp.js', import.meta.url));
const cli = nodeCli(BIN);
afterEach(() => cli.stopAll());
const run = cli.run;
const dir = (): string => mkdtempSync(join(tmpdir(), 'kvix-epp-cli-'));

describe('kvix-epp command line', () => {
  it('documents its flags and switches to a remote indexer with --indexer', async () => {
    const help = run(['--help']);
    expect(await help.exited).toBe(0);
    for (const flag of ['--scheduler-config', '--indexer', '--gateway-port', '--ext-proc-port', '--metrics-port', '--no-gateway', '--endpoints-file', '--routing-workers']) expect(help.output()).toContain(flag);
    const printed = run(['--indexer', 'indexer:50051', '--no-ext-proc', '--print-config'], { KVIX_GATEWAY_PORT: '8088' });
    expect(await printed.exited).toBe(0);
    const config = JSON.parse(printed.output()) as { embeddedIndex: boolean; gateway: { port: number }; extProc: { enabled: boolean }; scheduler: { plugins: { type: string; parameters?: { indexer?: string } }[] } };
    expect(config.embeddedIndex).toBe(false);
    expect(config.gateway.port).toBe(8088);
    expect(config.extProc.enabled).toBe(false);
    expect(config.scheduler.plugins.find((p) => p.type === 'precise-prefix-cache-scorer')?.parameters?.indexer).toBe('indexer:50051');
  });

  it('refuses a bad scheduler configuration with exit code 2 and one line naming the problem', async () => {
    const d = dir();
    writeFileSync(join(d, 'scheduler.yaml'), 'plugins:\n  - type: queue-scorer\n    parameters: { depth: 3 }\nschedulingProfiles:\n  - name: default\n    plugins:\n      - pluginRef: queue-scorer\n');
    const [gw, xp, mp] = await freePorts(3);
    const bad = run(['--scheduler-config', join(d, 'scheduler.yaml'), '--pod', '127.0.0.1:1', '--gateway-port', String(gw), '--ext-proc-port', String(xp), '--metrics-port', String(mp)]);
    expect(await bad.exited).toBe(2);
    expect(bad.output().trim().split('\n')).toHaveLength(1);
    expect(bad.output()).toMatch(/plugin "queue-scorer" parameters: .*depth/);
    const missing = run(['--scheduler-config', join(d, 'nope.yaml')]);
    expect(await missing.exited).toBe(2);
    expect(missing.output()).toContain('cannot read scheduler config');
  });

  it('takes the latency predictor from --latency-predictor or llm-d\'s PREDICTION_SERVER_URL, and refuses a bad one with exit code 2', async () => {
    const builtin = run(['--latency-predictor', 'builtin', '--print-config']);
    expect(await builtin.exited).toBe(0);
    expect((JSON.parse(builtin.output()) as { latencyPredictor: { enabled: boolean; predictionUrls: string[] } }).latencyPredictor).toMatchObject({ enabled: true, predictionUrls: [] });
    const llmd = run(['--print-config'], { PREDICTION_SERVER_URL: 'http://localhost:8001,http://localhost:8002', TRAINING_SERVER_URL: 'http://localhost:8000' });
    expect(await llmd.exited).toBe(0);
    expect((JSON.parse(llmd.output()) as { latencyPredictor: object }).latencyPredictor).toMatchObject({ predictionUrls: ['http://localhost:8001', 'http://localhost:8002'], trainingUrl: 'http://localhost:8000' });
    const bad = run(['--latency-predictor', 'xgboost', '--print-config']);
    expect(await bad.exited).toBe(2);
    expect(bad.output().trim().split('\n')).toHaveLength(1);
    expect(bad.output()).toContain('--latency-predictor must be builtin, off, or prediction server URLs');
  });

  it('serves until SIGTERM, then stops cleanly', async () => {
    const [gw, xp, mp] = await freePorts(3);
    const proc = run(['--pod', '127.0.0.1:1', '--gateway-port', String(gw), '--ext-proc-port', String(xp), '--metrics-port', String(mp), '--tokenizer-workers', '0']);
    // /healthz answers while tokenizers warm up; the gateway listens once the start is logged.
    await waitFor(() => proc.output().includes('epp started'), 20_000, 'the EPP to start');
    expect((await fetch(`http://127.0.0.1:${mp}/healthz`)).status).toBe(200);
    // The only pod does not exist: the gateway says so instead of hanging.
    const res = await fetch(`http://127.0.0.1:${gw}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', prompt: 'hi' }) });
    expect(res.status).toBe(503);
    expect(await proc.stop('SIGTERM')).toBe(0);
    expect(proc.output()).toContain('epp stopped');
  });
});
