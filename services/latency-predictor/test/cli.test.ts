import { fileURLToPath } from 'node:url';
import { freePort, nodeCli, waitFor } from '@kvix/test-support';
import { afterEach, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/kvix-latency-predictor.js', import.meta.url));
const cli = nodeCli(BIN);
afterEach(() => cli.stopAll());

describe('kvix-latency-predictor command line', () => {
  it('lists every setting in --help and takes llm-d\'s objective variables', async () => {
    const help = cli.run(['--help']);
    expect(await help.exited).toBe(0);
    for (const flag of ['--port', '--prediction-port', '--objective', '--quantile', '--min-samples', '--forgetting', '--config', '--print-config']) expect(help.output()).toContain(flag);
    const printed = cli.run(['--print-config', '--port', '9000'], { LATENCY_OBJECTIVE_TYPE: 'mean', LATENCY_QUANTILE_ALPHA: '0.95' });
    expect(await printed.exited).toBe(0);
    expect(JSON.parse(printed.output())).toMatchObject({ http: { port: 9000 }, predictionPort: null, model: { objective: 'mean', quantile: 0.95 } });
  });

  it('refuses a bad configuration with exit code 2 and one line naming the key', async () => {
    const bad = cli.run(['--quantile', '1.5']);
    expect(await bad.exited).toBe(2);
    expect(bad.output().trim().split('\n')).toHaveLength(1);
    expect(bad.output()).toMatch(/model\.quantile/);
    const same = cli.run(['--port', '9000', '--prediction-port', '9000']);
    expect(await same.exited).toBe(2);
    expect(same.output()).toContain('predictionPort must differ from http.port');
  });

  it('serves until SIGTERM, then stops cleanly', async () => {
    const port = await freePort();
    const proc = cli.run(['--port', String(port), '--host', '127.0.0.1']);
    await waitFor(() => proc.output().includes('latency predictor started'), 20_000, 'the service to start');
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    expect(await proc.stop('SIGTERM')).toBe(0);
    expect(proc.output()).toContain('latency predictor stopped');
  });
});
