import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ceiling, freePortRange, freePorts, listeningSockets, processTree, spawnProcess, waitFor } from '@kvix/test-support';
import { findEnvoy } from '@kvix/envoy';
import { describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/kvix.js', import.meta.url));

// What starting the pods and the EPP takes at most on an idle machine; waitFor and ceiling() scale it
// for a loaded one. The stack says when it is ready and the test waits for that.
const READY_MS = 60_000;

describe('kvix stack (npm start)', () => {
  it('runs pods, the endpoint picker and Envoy (a real one when installed, saying so) on loopback only, routes through both fronts, restarts a killed pod, and stops cleanly on Ctrl-C', async () => {
    const [gateway, metrics, extProc, envoy] = await freePorts(4);
    // Pods on base + i, their events on events + i and replay on events + 100 + i.
    const base = await freePortRange(2);
    const events = await freePortRange(102);
    const dir = mkdtempSync(join(tmpdir(), 'kvix-stack-'));
    const proc = spawnProcess(process.execPath, [BIN, 'stack', '--pods', '2', '--base-port', String(base), '--base-event-port', String(events), '--gateway-port', String(gateway), '--metrics-port', String(metrics), '--ext-proc-port', String(extProc), '--envoy-port', String(envoy), '--dir', dir], { processGroup: true });
    try {
      await waitFor(() => proc.output().includes('kvix is running.') || proc.child.exitCode !== null, READY_MS, () => `the stack banner; output so far:\n${proc.output()}`);
      expect(proc.output()).toContain(`http://localhost:${gateway}`);
      // The banner says which Envoy runs: the real one CI installs (KVIX_ENVOY_BIN, .venv-envoy), else envoy-sim.
      expect(proc.output()).toContain(findEnvoy() ? 'a real Envoy 1.40.0 running deploy/envoy/envoy.yaml' : 'envoy-sim, an Envoy stand-in (no Envoy installed: npm run envoy:install');

      // Secure by default: every socket the stack and its pods listen on is bound to 127.0.0.1.
      const sockets = listeningSockets(processTree(proc.child.pid!));
      const ports = new Set(sockets.map((s) => s.port));
      for (const p of [gateway!, metrics!, extProc!, envoy!, base, base + 1, events, events + 1, events + 100, events + 101]) expect(ports, `port ${p} listened on`).toContain(p);
      expect(sockets.filter((s) => s.address !== '127.0.0.1')).toEqual([]);

      const body = JSON.stringify({ model: 'support', max_tokens: 4, messages: [{ role: 'user', content: 'Is the stack up?' }] });
      for (const port of [gateway!, envoy!]) {
        const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        expect(res.status).toBe(200);
        expect(((await res.json()) as { model: string }).model).toBe('support');
        expect(res.headers.get('x-kvix-endpoint')).toMatch(/^127\.0\.0\.1:\d+$/);
      }
      const pid = Number(/pod-1 :\d+ \(pid (\d+)\)/.exec(proc.output())?.[1]);
      process.kill(pid, 'SIGTERM');
      await waitFor(() => proc.output().includes('pod-1 restarted'), READY_MS, 'the killed pod to be restarted');
      await waitFor(
        async () => {
          const status = (await (await fetch(`http://127.0.0.1:${metrics}/debug/endpoints`)).json()) as { endpoints: { healthy: boolean }[] };
          return status.endpoints.length === 2 && status.endpoints.every((e) => e.healthy);
        },
        READY_MS,
        'the restarted pod back in the candidate set',
      );
    } finally {
      // Ctrl-C as a terminal sends it: to every process of the group at once, pods included.
      process.kill(-proc.child.pid!, 'SIGINT');
    }
    expect(await proc.exited).toBe(0);
    const stopping = proc.output().slice(proc.output().indexOf('SIGINT: stopping'));
    expect(stopping).toContain('stopped cleanly');
    expect(stopping).not.toContain('restarting');
    // Nothing left listening.
    await expect(fetch(`http://127.0.0.1:${base}/health`)).rejects.toThrow();
  }, ceiling(3 * READY_MS));

  it('refuses to start when one of its ports is taken: exit 2, one line naming the port, its flag and the holder, nothing started', async () => {
    const [gateway, metrics, extProc, envoy] = await freePorts(4);
    const base = await freePortRange(2);
    const events = await freePortRange(102);
    const held: Server = createServer();
    await new Promise<void>((resolve) => held.listen(metrics, '127.0.0.1', resolve));
    try {
      const proc = spawnProcess(process.execPath, [BIN, 'stack', '--pods', '2', '--base-port', String(base), '--base-event-port', String(events), '--gateway-port', String(gateway), '--metrics-port', String(metrics), '--ext-proc-port', String(extProc), '--envoy-port', String(envoy), '--dir', mkdtempSync(join(tmpdir(), 'kvix-stack-'))]);
      expect(await proc.exited).toBe(2);
      const lines = proc.output().trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`port ${metrics} \\(metrics, --metrics-port\\) is in use by pid ${process.pid} `));
      // No pod was started on the way.
      await expect(fetch(`http://127.0.0.1:${base}/health`)).rejects.toThrow();
    } finally {
      held.close();
    }
  }, ceiling(READY_MS));

  it('refuses a second stack in a directory another live stack uses (its endpoints file would be overwritten)', async () => {
    const [gateway, metrics, extProc, envoy] = await freePorts(4);
    const base = await freePortRange(2);
    const events = await freePortRange(102);
    const dir = mkdtempSync(join(tmpdir(), 'kvix-stack-'));
    // A live process owns it: this test's own.
    writeFileSync(join(dir, 'stack.pid'), `${process.pid}\n`);
    const proc = spawnProcess(process.execPath, [BIN, 'stack', '--pods', '2', '--base-port', String(base), '--base-event-port', String(events), '--gateway-port', String(gateway), '--metrics-port', String(metrics), '--ext-proc-port', String(extProc), '--envoy-port', String(envoy), '--dir', dir]);
    expect(await proc.exited).toBe(2);
    expect(proc.output().trim().split('\n')).toEqual([`stack: another kvix stack (pid ${process.pid}) uses ${dir} for its endpoints file and logs; stop it or pass --dir <another directory>`]);
  }, ceiling(READY_MS));
});
