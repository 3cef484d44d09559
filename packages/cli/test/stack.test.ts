import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePortRange, freePorts, spawnProcess, waitFor } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/kvix.js', import.meta.url));

describe('kvix stack (npm start)', () => {
  it('runs pods, the endpoint picker and the Envoy stand-in, routes through both fronts, restarts a killed pod, and stops on Ctrl-C', async () => {
    const [gateway, metrics, extProc, envoy] = await freePorts(4);
    // Pods on base + i, their events on events + i and replay on events + 100 + i.
    const base = await freePortRange(2);
    const events = await freePortRange(102);
    const dir = mkdtempSync(join(tmpdir(), 'kvix-stack-'));
    const proc = spawnProcess(process.execPath, [BIN, 'stack', '--pods', '2', '--base-port', String(base), '--base-event-port', String(events), '--gateway-port', String(gateway), '--metrics-port', String(metrics), '--ext-proc-port', String(extProc), '--envoy-port', String(envoy), '--dir', dir]);
    try {
      await waitFor(() => proc.output().includes('kvix is running.'), 60_000, `the stack banner; output so far:\n${proc.output()}`);
      expect(proc.output()).toContain(`http://localhost:${gateway}`);
      const body = JSON.stringify({ model: 'support', max_tokens: 4, messages: [{ role: 'user', content: 'Is the stack up?' }] });
      for (const port of [gateway!, envoy!]) {
        const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        expect(res.status).toBe(200);
        expect(((await res.json()) as { model: string }).model).toBe('support');
      }
      const pid = Number(/pod-1 :\d+ \(pid (\d+)\)/.exec(proc.output())?.[1]);
      process.kill(pid, 'SIGTERM');
      await waitFor(() => proc.output().includes('pod-1 restarted'), 30_000, 'the killed pod to be restarted');
      await waitFor(async () => {
        const status = (await (await fetch(`http://127.0.0.1:${metrics}/debug/endpoints`)).json()) as { endpoints: { healthy: boolean }[] };
        return status.endpoints.length === 2 && status.endpoints.every((e) => e.healthy);
      }, 30_000, 'the restarted pod back in the candidate set');
    } finally {
      proc.child.kill('SIGINT');
    }
    expect(await proc.exited).toBe(0);
    // Nothing left listening.
    await expect(fetch(`http://127.0.0.1:${base}/health`)).rejects.toThrow();
  }, 120_000);
});
