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
    for (const flag of ['--http-host', '--http-port', '--prediction-port', '--objective', '--quantile', '--min-samples', '--forgetting', '--config', '--print-config']) expect(help.output()).toContain(flag);
    const printed = cli.run(['--print-config', '--http-port', '9000'], { LATENCY_OBJECTIVE_TYPE: 'mean', LATENCY_QUANTILE_ALPHA: '0.95' });
    expect(await printed.exited).toBe(0);
    expect(JSON.parse(printed.output())).toMatchObject({ http: { host: '127.0.0.1', port: 9000 }, predictionPort: null, model: { objective: 'mean', quantile: 0.95 } });
  });

  it('still takes the old --host/--port, with one deprecation line each', async () => {
    const old = cli.run(['--print-config', '--host', '0.0.0.0', '--port', '9001']);
    expect(await old.exited).toBe(0);
    expect(old.output()).toContain('kvix-latency-predictor: --host is deprecated; use --http-host\n');
    expect(old.output()).toContain('kvix-latency-predictor: --port is deprecated; use --http-port\n');
    expect(JSON.parse(old.output().slice(old.output().indexOf('{')))).toMatchObject({ http: { host: '0.0.0.0', port: 9001 } });
  });

  it('refuses a bad flag, and a port in use, with exit code 2 and one line', async () => {
    const typo = cli.run(['--http-prot', '1']);
    expect(await typo.exited).toBe(2);
    expect(typo.output()).toBe("kvix-latency-predictor: unknown option '--http-prot' (Did you mean --http-port?) (see --help)\n");
    const { createServer } = await import('node:net');
    const held = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => held.listen(port, '127.0.0.1', resolve));
    try {
      const taken = cli.run(['--http-port', String(port)]);
      expect(await taken.exited).toBe(2);
      expect(taken.output().trim().split('\n')).toHaveLength(1);
      expect(taken.output()).toMatch(new RegExp(`port ${port} \\(HTTP \\(training and prediction API\\), --http-port\\) is in use by pid ${process.pid} `));
    } finally {
      held.close();
    }
  });

  it('refuses a bad configuration with exit code 2 and one line naming the key', async () => {
    const bad = cli.run(['--quantile', '1.5']);
    expect(await bad.exited).toBe(2);
    expect(bad.output().trim().split('\n')).toHaveLength(1);
    expect(bad.output()).toMatch(/model\.quantile/);
    const same = cli.run(['--http-port', '9000', '--prediction-port', '9000']);
    expect(await same.exited).toBe(2);
    expect(same.output()).toContain('predictionPort must differ from http.port');
  });

  it('serves until SIGTERM, then stops cleanly', async () => {
    const port = await freePort();
    const proc = cli.run(['--http-port', String(port), '--http-host', '127.0.0.1']);
    await waitFor(() => proc.output().includes('latency predictor started'), 20_000, 'the service to start');
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    expect(await proc.stop('SIGTERM')).toBe(0);
    expect(proc.output()).toContain('latency predictor stopped');
  });
});
