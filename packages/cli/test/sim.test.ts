import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ceiling, freePortRange, waitFor } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const BIN = fileURLToPath(new URL('../bin/kvix.js', import.meta.url));

describe('kvix sim', () => {
  it('starts several pods, lists them in an endpoints file (creating its directory), and stops cleanly on SIGTERM', async () => {
    // Two pods on consecutive ports from each base; replay ports 50 above the event ports.
    const http = await freePortRange(2);
    const events = await freePortRange(52);
    // In a directory that does not exist yet, as /tmp/kvix/ on a fresh machine (the README's path).
    const file = join(mkdtempSync(join(tmpdir(), 'kvix-sim-')), 'kvix', 'endpoints.yaml');
    const child = spawn(process.execPath, [BIN, 'sim', '--pods', '2', '--base-port', String(http), '--base-event-port', String(events), '--base-replay-port', String(events + 50), '--write-endpoints', file, '--log-level', 'warn'], { stdio: 'ignore' });
    try {
      const doc = await waitFor(() => {
        try {
          return parse(readFileSync(file, 'utf8')) as { endpoints: Record<string, unknown>[] };
        } catch {
          return undefined;
        }
      }, 20_000, 'the endpoints file');
      expect(doc.endpoints).toEqual([
        { name: 'sim-0', address: '127.0.0.1', port: http, eventPort: events, replayPort: events + 50, model: 'Qwen/Qwen3-0.6B', dataParallelSize: 1, engine: 'vllm' },
        { name: 'sim-1', address: '127.0.0.1', port: http + 1, eventPort: events + 1, replayPort: events + 51, model: 'Qwen/Qwen3-0.6B', dataParallelSize: 1, engine: 'vllm' },
      ]);
      for (const port of [http!, http + 1]) expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
  }, ceiling(30_000));

  it('rejects a bad flag value as bad input', async () => {
    const child = spawn(process.execPath, [BIN, 'sim', '--pods', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toMatch(/--pods/);
  });
});
