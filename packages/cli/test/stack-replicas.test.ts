import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ceiling, freePortRange, spawnProcess, startNats, waitFor } from '@kvix/test-support';
import { describe, expect, it, onTestFinished } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/kvix.js', import.meta.url));

describe('kvix stack --replicas (the local active-active setup)', () => {
  it('routes through one gateway over the replicas, survives a killed replica, restarts it from the snapshot, and stops on Ctrl-C', async () => {
    const nats = await startNats();
    // Disposed whatever happens: a failed assertion must not leave a nats-server running.
    onTestFinished(() => nats.dispose());
    // Every port the stack derives from a base must be free: pods (base + i), their events
    // (events + i, replay + 100), replicas' ext_proc and metrics, then the publisher.
    const [gateway, base] = [await freePortRange(1), await freePortRange(2)];
    const events = await freePortRange(102);
    const extProc = await freePortRange(2);
    const metrics = await freePortRange(4);
    const dir = mkdtempSync(join(tmpdir(), 'kvix-stack-ha-'));
    const proc = spawnProcess(process.execPath, [
      BIN, 'stack', '--replicas', '2', '--pods', '2', '--nats-url', nats.url, '--latency-predictor', 'off',
      '--base-port', String(base), '--base-event-port', String(events), '--gateway-port', String(gateway), '--metrics-port', String(metrics), '--ext-proc-port', String(extProc), '--dir', dir,
    ]);
    try {
      await waitFor(() => proc.output().includes('kvix is running with 2 active-active'), 90_000, () => `the stack banner; output so far:\n${proc.output()}`);
      const ask = async (i: number): Promise<number> => {
        const res = await fetch(`http://127.0.0.1:${gateway}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'support', max_tokens: 4, messages: [{ role: 'user', content: `Replica check ${i}` }] }) });
        // A 404 here means the request reached a pod unrouted (FailOpen: no replica answered).
        if (res.status !== 200) throw new Error(`request ${i}: ${res.status} ${await res.text()}`);
        return res.status;
      };
      for (let i = 0; i < 4; i++) expect(await ask(i)).toBe(200);
      const replication = (await (await fetch(`http://127.0.0.1:${metrics + 1}/debug/replication`)).json()) as { index: string; peers: number };
      expect(replication).toMatchObject({ index: 'follow', peers: 1 });

      const pid = Number(/kill (\d+)\s+# kill epp-r2/.exec(proc.output())?.[1]);
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 6; i++) expect(await ask(10 + i)).toBe(200);
      await waitFor(() => proc.output().includes('epp-r2 restarted'), 30_000, 'the killed replica to be restarted');
      const back = await waitFor(async () => {
        const r = (await (await fetch(`http://127.0.0.1:${metrics + 1}/debug/replication`)).json()) as { follower: { ready: boolean; snapshotSeq: number | null } | null };
        return r.follower?.ready ? r : undefined;
      }, 60_000, 'the restarted replica to catch up');
      expect(back.follower).toMatchObject({ ready: true });
    } finally {
      proc.child.kill('SIGINT');
    }
    expect(await proc.exited).toBe(0);
    await expect(fetch(`http://127.0.0.1:${base}/health`)).rejects.toThrow();
  }, ceiling(180_000));
});
