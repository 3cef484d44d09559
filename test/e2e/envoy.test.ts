import type { EnvoyProcess } from '@kvix/envoy';
import { freePorts, nodeCli, repoRoot, waitFor, type ManagedProcess } from '@kvix/test-support';
import { writeEndpointsFile } from '@kvix/vllm-sim';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { chat, MODEL, send, startRealEnvoy } from '../support/stack.js';

// The failure cases of the issue that found Envoy answering 503/500 where envoy-sim did not, with
// real processes so a kill is a SIGKILL: pods and the EPP as processes, the shipped Envoy in front.
const pods = nodeCli(join(repoRoot(), 'services/vllm-sim/bin/vllm-sim.js'));
const epps = nodeCli(join(repoRoot(), 'services/epp/bin/kvix-epp.js'));

interface PodProc {
  id: string;
  proc: ManagedProcess;
}

interface EppProc {
  proc: ManagedProcess;
  extProc: number;
  metricsPort: number;
  metrics: string;
}

async function startPod(): Promise<PodProc & { port: number; eventPort: number; replayPort: number }> {
  const [port, eventPort, replayPort] = (await freePorts(3)) as [number, number, number];
  const proc = pods.run([
    '--host', '127.0.0.1', '--port', String(port), '--time-scale', '50', '--log-level', 'warn', '--python-hash-seed', '0',
    '--kv-events-config', JSON.stringify({ enable_kv_cache_events: true, endpoint: `tcp://*:${eventPort}`, replay_endpoint: `tcp://*:${replayPort}` }),
  ]);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`)).status === 200, 30_000, `pod on ${port} (${proc.output().slice(-300)})`);
  return { id: `127.0.0.1:${port}`, proc, port, eventPort, replayPort };
}

/** The EPP with its default settings (only addresses given), as a process; `ports` to restart it in place. */
async function startEpp(file: string, ports?: { extProc: number; metricsPort: number }): Promise<EppProc> {
  const [extProc, metricsPort] = ports ? [ports.extProc, ports.metricsPort] : ((await freePorts(2)) as [number, number]);
  const proc = epps.run(['--endpoints-file', file, '--no-gateway', '--ext-proc-host', '127.0.0.1', '--ext-proc-port', String(extProc), '--metrics-host', '127.0.0.1', '--metrics-port', String(metricsPort), '--tokenizer-workers', '1', '--log-level', 'info']);
  const metrics = `http://127.0.0.1:${metricsPort}`;
  await waitFor(async () => (await fetch(`${metrics}/readyz`)).status === 200, 30_000, `the EPP ready (${proc.output().slice(-500)})`);
  return { proc, extProc: extProc!, metricsPort: metricsPort!, metrics };
}

async function metric(epp: EppProc, re: RegExp): Promise<number> {
  const text = await (await fetch(`${epp.metrics}/metrics`)).text();
  return [...text.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
}

let envoy: EnvoyProcess | undefined;
afterEach(async () => {
  await envoy?.stop();
  envoy = undefined;
  await epps.stopAll();
  await pods.stopAll();
});
afterAll(async () => {
  await epps.stopAll();
  await pods.stopAll();
});

async function fleet(n: number): Promise<{ list: Awaited<ReturnType<typeof startPod>>[]; file: string }> {
  const list = [];
  for (let i = 0; i < n; i++) list.push(await startPod());
  const file = join(mkdtempSync(join(tmpdir(), 'kvix-e2e-envoy-')), 'endpoints.yaml');
  writeEndpointsFile(file, list.map((p, i) => ({ name: `pod-${i}`, address: '127.0.0.1', port: p.port, eventPort: p.eventPort, replayPort: p.replayPort, model: MODEL })));
  return { list, file };
}

describe('the shipped Envoy configuration with the EPP at its default settings', () => {
  it('loses nothing when the chosen pod is SIGKILLed and the next same-prefix request is sent at once', async () => {
    const { list, file } = await fleet(3);
    const epp = await startEpp(file);
    envoy = await startRealEnvoy([`127.0.0.1:${epp.extProc}`], list.map((p) => p.id));
    const first = await send(envoy.url(), '/v1/chat/completions', chat('Which carrier is fastest?'));
    expect(first.status).toBe(200);
    const victim = list.find((p) => p.id === first.endpoint)!;
    expect(victim).toBeDefined();
    // Warm: the prefix is on the victim, so the EPP's pick for the next one is the victim again.
    expect((await send(envoy.url(), '/v1/chat/completions', chat('Which carrier is fastest for pallets?'))).endpoint).toBe(victim.id);
    victim.proc.child.kill('SIGKILL');
    const next = await send(envoy.url(), '/v1/chat/completions', chat('Which carrier is fastest for parcels?'));
    expect({ status: next.status, servedByVictim: next.endpoint === victim.id }).toEqual({ status: 200, servedByVictim: false });
    const after = [];
    for (let i = 0; i < 4; i++) after.push(await send(envoy.url(), '/v1/chat/completions', chat(`Which carrier is fastest for order ${i}?`)));
    expect(after.map((a) => [a.status, a.endpoint === victim.id])).toEqual(after.map(() => [200, false]));
    // The EPP learnt from Envoy's served-endpoint metadata (or its own probes) that the pod is gone.
    await waitFor(async () => {
      const status = (await (await fetch(`${epp.metrics}/debug/endpoints`)).json()) as { endpoints: { id: string; healthy: boolean }[] };
      return status.endpoints.find((x) => x.id === victim.id)?.healthy === false;
    }, 10_000, 'the victim out of the candidate set');
  });

  it('sends a request whose pod dies before answering to the next endpoint the EPP listed', async () => {
    const { list, file } = await fleet(3);
    const epp = await startEpp(file);
    envoy = await startRealEnvoy([`127.0.0.1:${epp.extProc}`], list.map((p) => p.id));
    const first = await send(envoy.url(), '/v1/chat/completions', chat('Where do returns go?'));
    const victim = list.find((p) => p.id === first.endpoint)!;
    // Frozen, the pod still accepts connections (the kernel does) but answers nothing; the EPP,
    // whose last probe was fine, picks it again for the same prefix, and Envoy sends it there.
    victim.proc.child.kill('SIGSTOP');
    const pending = send(envoy.url(), '/v1/chat/completions', chat('Where do returns go on Sundays?'));
    await waitFor(async () => (await envoy!.stat('cluster.vllm_pool.upstream_rq_active')) >= 1, 10_000, 'the request sent to the frozen pod');
    // Then it dies with the request unanswered: its connection is reset, and Envoy retries on the
    // next endpoint of the EPP's list (envoy.lb metadata, override_host), which serves it.
    victim.proc.child.kill('SIGKILL');
    const answer = await pending;
    expect({ status: answer.status, servedByVictim: answer.endpoint === victim.id }).toEqual({ status: 200, servedByVictim: false });
    expect(list.map((p) => p.id)).toContain(answer.endpoint);
    expect(await envoy.stat('cluster.vllm_pool.upstream_rq_retry_success')).toBe(1);
    await waitFor(async () => (await metric(epp, /^kvix_epp_fallbacks_used_total (\d+)/gm)) === 1, 10_000, 'the EPP told the request was served by a fallback');
  });

  it('keeps serving while the only EPP is down (FailOpen to the pool), routes again through the restarted EPP as soon as Envoy finds it healthy, and treats Envoy\'s stream resets as normal', async () => {
    const { list, file } = await fleet(2);
    let epp = await startEpp(file);
    envoy = await startRealEnvoy([`127.0.0.1:${epp.extProc}`], list.map((p) => p.id));
    for (let i = 0; i < 4; i++) {
      const a = await send(envoy.url(), '/v1/chat/completions', chat(`Before ${i}`, { stream: i % 2 === 0 }));
      expect({ status: a.status, routed: a.endpoint !== null }).toEqual({ status: 200, routed: true });
    }
    // Envoy ends every ext_proc stream with a reset once its exchange is over (its default): the
    // EPP counts them complete, fails nothing, logs nothing above info.
    await waitFor(async () => (await metric(epp, /^kvix_epp_ext_proc_streams_total\{outcome="complete"\} (\d+)/gm)) === 4, 10_000, 'four complete streams');
    expect(await metric(epp, /^kvix_epp_ext_proc_streams_total\{outcome="(?:incomplete|malformed|failed)"\} (\d+)/gm)).toBe(0);
    expect(await metric(epp, /^llm_d_epp_request_error_total\{[^}]*\} (\d+)/gm)).toBe(0);
    expect(await envoy.stat('cluster.epp.upstream_rq_tx_reset')).toBe(await envoy.stat('http.inference.ext_proc.streams_started'));
    expect(await envoy.stat('http.inference.ext_proc.streams_failed')).toBe(0);
    expect(await envoy.stat('http.inference.ext_proc.spurious_msgs_received')).toBe(0);
    // Nothing about the streams logged at warn or above (a loaded machine may log a slow metrics scrape: not ours).
    expect(epp.proc.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l) && /ext[-_]proc|stream/i.test(l))).toEqual([]);

    const ports = { extProc: epp.extProc, metricsPort: epp.metricsPort };
    await epp.proc.stop('SIGKILL');
    for (let i = 0; i < 4; i++) {
      const a = await send(envoy.url(), '/v1/chat/completions', chat(`While it is down ${i}`));
      // Not routed by an EPP (no x-kvix-endpoint), but served: round robin over the pool.
      expect({ status: a.status, routed: a.endpoint !== null }).toEqual({ status: 200, routed: false });
    }
    expect(await envoy.stat('http.inference.ext_proc.failure_mode_allowed')).toBeGreaterThan(0);

    epp = await startEpp(file, ports);
    await waitFor(async () => (await envoy!.hosts('epp')).every((h) => h.healthy), 30_000, 'Envoy to find the restarted EPP healthy');
    // Its worker thread learns of the health check a moment after the admin API: until then a
    // request still fails open (served, unrouted); then the EPP routes again.
    const back = await waitFor(async () => {
      const a = await send(envoy!.url(), '/v1/chat/completions', chat('After the restart'));
      expect(a.status).toBe(200);
      return a.endpoint !== null ? a : undefined;
    }, 30_000, 'the restarted EPP to route a request');
    expect(list.map((p) => p.id)).toContain(back.endpoint);
    expect(await metric(epp, /^llm_d_epp_request_total\{[^}]*\} (\d+)/gm)).toBeGreaterThanOrEqual(1);
  });
});
