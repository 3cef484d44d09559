import { request } from 'node:http';
import { ceiling, freePort } from '@kvix/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { EnvoySim, EnvoySimError, type EnvoySimOptions, type ExchangeReport } from '../src/index.js';
import { echoUpstream, send, startProcessor, startUpstream, type ClientResponse, type ProcessorScript, type TestProcessor, type TestUpstream } from './harness.js';

// The ext_proc filter's gRPC service as a cluster of several EPP replicas: round robin, retries
// of a stream that fails before the processor answers, passive ejection, and FailOpen to the
// default upstreams. Every processor and upstream is a real server on a local port.

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

async function processor(script: ProcessorScript, port?: number): Promise<TestProcessor> {
  const p = await startProcessor(script, port);
  closers.push(() => p.close());
  return p;
}
async function upstream(u: Promise<TestUpstream>): Promise<TestUpstream> {
  const started = await u;
  closers.push(() => started.close());
  return started;
}
async function simFor(options: EnvoySimOptions): Promise<EnvoySim> {
  const sim = await EnvoySim.start(options);
  closers.push(() => sim.close());
  return sim;
}
/** A host:port nobody listens on: connecting to it is refused. */
const deadEndpoint = async () => `127.0.0.1:${await freePort()}`;

/** A gate a test opens when it wants held processors to answer. */
function gate(): { opened: Promise<void>; open(): void } {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

const COMPLETION = JSON.stringify({ model: 'm', prompt: 'a prompt the processor must see whole before it picks' });

/** Sends one request and returns its response with the simulator's report for it. */
async function exchange(sim: EnvoySim, body = COMPLETION): Promise<{ res: ClientResponse; report: ExchangeReport }> {
  const reports: ExchangeReport[] = [];
  const collect = (r: ExchangeReport) => reports.push(r);
  sim.on('exchange', collect);
  const res = await send(sim, 'POST', '/v1/completions', body, { 'x-request-id': `rq-${Math.random()}` });
  await expect.poll(() => reports.length).toBeGreaterThan(0);
  sim.off('exchange', collect);
  return { res, report: reports[0] as ExchangeReport };
}

/** Every report the simulator emits from now on, by x-request-id. */
function recordReports(sim: EnvoySim): Map<string, ExchangeReport> {
  const reports = new Map<string, ExchangeReport>();
  sim.on('exchange', (r) => reports.set(r.requestId, r));
  return reports;
}

describe('an ext_proc cluster of several hosts', () => {
  it('spreads the streams round robin over the hosts', async () => {
    const vllm = await upstream(echoUpstream());
    const epps = [await processor({ endpoints: [vllm.address] }), await processor({ endpoints: [vllm.address] }), await processor({ endpoints: [vllm.address] })];
    const sim = await simFor({ extProcTargets: epps.map((e) => e.target) });

    const hosts: string[] = [];
    for (let i = 0; i < 6; i++) {
      const { res, report } = await exchange(sim);
      expect(res.status).toBe(200);
      expect(report.processorAttempts).toEqual([{ host: report.processorHost }]);
      hosts.push(report.processorHost);
    }

    const targets = epps.map((e) => e.target);
    expect(hosts).toEqual([...targets, ...targets]);
    expect(epps.map((e) => e.streams.length)).toEqual([2, 2, 2]);
    expect(sim.stats().processorHosts[targets[1] as string]).toEqual({ streams: 2, failures: 0, ejections: 0 });
  });

  it('retries the stream on the next host when a host refuses the connection, replaying the body, and then skips that host', async () => {
    const vllm = await upstream(echoUpstream());
    const dead = await deadEndpoint();
    const a = await processor({ endpoints: [vllm.address] });
    const b = await processor({ endpoints: [vllm.address] });
    const sim = await simFor({ extProcTargets: [dead, a.target, b.target], extProcEjectionMs: 600_000, chunkSize: 8 });

    const first = await exchange(sim);
    const rest = [];
    for (let i = 0; i < 4; i++) rest.push(await exchange(sim));

    expect(first.res.status).toBe(200);
    // The body was streamed to the dead host first: what the upstream got is the replay, whole.
    expect(JSON.parse(first.res.body).got).toBe(COMPLETION);
    expect(first.report.processorAttempts).toEqual([
      { host: dead, failure: 'connect-failure', error: expect.stringMatching(/^14 UNAVAILABLE/) },
      { host: a.target },
    ]);
    expect(first.report).toMatchObject({ processorHost: a.target, processorRetries: 1, processor: 'processed', outcome: 'proxied' });
    expect(rest.map((r) => r.res.status)).toEqual([200, 200, 200, 200]);
    expect(rest.every((r) => r.report.processorRetries === 0 && r.report.processorHost !== dead)).toBe(true);
    const stats = sim.stats();
    expect(stats.processorHosts[dead]).toEqual({ streams: 1, failures: 1, ejections: 1 });
    expect(stats.processorRetries).toBe(1);
  });

  it('without a retry policy a refused connection is a 500, and the next request skips the ejected host', async () => {
    const vllm = await upstream(echoUpstream());
    const dead = await deadEndpoint();
    const a = await processor({ endpoints: [vllm.address] });
    const sim = await simFor({ extProcTargets: [dead, a.target], extProcRetryOn: [], extProcEjectionMs: 600_000 });

    const first = await exchange(sim);
    const second = await exchange(sim);

    expect(first.res.status).toBe(500);
    expect(first.report).toMatchObject({ outcome: 'processor-error', processor: 'failed', processorHost: dead, processorRetries: 0 });
    expect(second.res.status).toBe(200);
    expect(second.report.processorHost).toBe(a.target);
  });

  it('retries a stream the processor ends with UNAVAILABLE before answering, without ejecting that host', async () => {
    const vllm = await upstream(echoUpstream());
    const draining = await processor({ unavailable: true });
    const a = await processor({ endpoints: [vllm.address] });
    const sim = await simFor({ extProcTargets: [draining.target, a.target] });

    const { res, report } = await exchange(sim);

    expect(res.status).toBe(200);
    expect(report.processorAttempts.map((x) => [x.host, x.failure])).toEqual([
      [draining.target, 'unavailable'],
      [a.target, undefined],
    ]);
    // A status the processor sends is not a locally originated failure: no ejection.
    expect(sim.stats().processorHosts[draining.target]).toEqual({ streams: 1, failures: 1, ejections: 0 });
  });

  it('fails with 500 once every host has been tried', async () => {
    const dead = [await deadEndpoint(), await deadEndpoint(), await deadEndpoint()];
    const sim = await simFor({ extProcTargets: dead });

    const { res, report } = await exchange(sim);

    expect(res.status).toBe(500);
    expect(report.outcome).toBe('processor-error');
    expect(report.processorAttempts.map((x) => x.failure)).toEqual(['connect-failure', 'connect-failure', 'connect-failure']);
    expect(new Set(report.processorAttempts.map((x) => x.host))).toEqual(new Set(dead));
  });

  it('uses an ejected host again once its ejection is over and it is back', async () => {
    const vllm = await upstream(echoUpstream());
    const port = await freePort();
    const revived = `127.0.0.1:${port}`;
    const a = await processor({ endpoints: [vllm.address] });
    const sim = await simFor({ extProcTargets: [revived, a.target], extProcEjectionMs: 50 });

    const first = await exchange(sim);
    expect(first.report.processorAttempts[0]).toMatchObject({ host: revived, failure: 'connect-failure' });
    const back = await processor({ endpoints: [vllm.address] }, port);

    await expect
      .poll(async () => (await exchange(sim)).report.processorHost, { timeout: ceiling(20_000), interval: 20 })
      .toBe(revived);
    expect(back.streams.length).toBeGreaterThan(0);
  });
});

describe('an ext_proc host killed while its streams are open', () => {
  /**
   * Three held processors, six concurrent requests (two streams on each host), then the second
   * host is killed before it answers and the other two are let go.
   */
  async function killMidTraffic(optionsFor: Partial<EnvoySimOptions> | ((picked: string) => Partial<EnvoySimOptions>)) {
    const vllm = await upstream(echoUpstream());
    const options = typeof optionsFor === 'function' ? optionsFor(vllm.address) : optionsFor;
    const release = gate();
    const epps = [
      await processor({ endpoints: [vllm.address], hold: release.opened }),
      await processor({ endpoints: [vllm.address], hold: release.opened }),
      await processor({ endpoints: [vllm.address], hold: release.opened }),
    ];
    const sim = await simFor({ extProcTargets: epps.map((e) => e.target), ...options });
    const reports = recordReports(sim);

    const pending = Array.from({ length: 6 }, (_, i) => send(sim, 'POST', '/v1/completions', COMPLETION, { 'x-request-id': `rq-${i}` }));
    await expect.poll(() => epps.map((e) => e.streams.filter((s) => s.messages.some((m) => m.requestBody?.endOfStream)).length)).toEqual([2, 2, 2]);
    const killed = epps[1] as TestProcessor;
    await killed.close();
    release.open();
    const responses = await Promise.all(pending);
    await expect.poll(() => reports.size).toBe(6);
    const all = [...reports.values()];
    return { vllm, killed, responses, sim, onKilled: all.filter((r) => r.processorAttempts[0]?.host === killed.target), others: all.filter((r) => r.processorAttempts[0]?.host !== killed.target) };
  }

  it('with failureModeAllow, its requests go to the default upstreams and every client gets a 200', async () => {
    const pool = [await upstream(echoUpstream()), await upstream(echoUpstream())];
    // The processors' pick is a pod of the pool too (override_host routes only to pool hosts), last in turn.
    const { vllm, killed, responses, sim, onKilled, others } = await killMidTraffic((picked) => ({ failureModeAllow: true, defaultUpstream: [...pool.map((p) => p.address), picked] }));

    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(responses.every((r) => JSON.parse(r.body).got === COMPLETION)).toBe(true);
    expect(onKilled).toHaveLength(2);
    for (const r of onKilled) {
      expect(r).toMatchObject({ processor: 'skipped', outcome: 'proxied', processorRetries: 0 });
      expect(r.processorAttempts).toEqual([{ host: killed.target, failure: 'reset', error: expect.any(String) }]);
    }
    // Round robin over the default upstreams: one each.
    expect(new Set(onKilled.map((r) => r.served))).toEqual(new Set(pool.map((p) => p.address)));
    expect(others.every((r) => r.processor === 'processed' && r.served === vllm.address)).toBe(true);
    expect(sim.stats().defaultUpstreamRequests).toBe(2);
    expect(sim.stats().processorHosts[killed.target]?.ejections).toBe(1);

    // The killed host is out of the rotation: the next requests are processed by the other two.
    const after = [await exchange(sim), await exchange(sim), await exchange(sim)];
    expect(after.map((x) => [x.res.status, x.report.processor])).toEqual([
      [200, 'processed'],
      [200, 'processed'],
      [200, 'processed'],
    ]);
    expect(after.some((x) => x.report.processorHost === killed.target)).toBe(false);
  });

  it('without failureModeAllow, its requests fail with 500 as Envoy answers them', async () => {
    const { responses, onKilled, others } = await killMidTraffic({});

    expect(responses.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 500, 500]);
    expect(onKilled.map((r) => [r.status, r.outcome, r.processor])).toEqual([
      [500, 'processor-error', 'failed'],
      [500, 'processor-error', 'failed'],
    ]);
    expect(others.every((r) => r.status === 200 && r.processor === 'processed')).toBe(true);
  });

  it("with 'reset' in extProcRetryOn, its streams are replayed on the other hosts and processed there", async () => {
    const { killed, responses, onKilled } = await killMidTraffic({ extProcRetryOn: ['connect-failure', 'unavailable', 'reset'] });

    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    for (const r of onKilled) {
      expect(r).toMatchObject({ processor: 'processed', processorRetries: 1 });
      expect(r.processorAttempts[0]).toMatchObject({ host: killed.target, failure: 'reset' });
      expect(r.processorHost).not.toBe(killed.target);
    }
  });

  it('after it picked the destination, the rest of the exchange goes through unprocessed under failureModeAllow', async () => {
    const release = gate();
    const vllm = await upstream(
      startUpstream((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: 1\n\n');
        void release.opened.then(() => res.end('data: [DONE]\n\n'));
      }),
    );
    const epp = await processor({ endpoints: [vllm.address], rewriteResponseChunk: (c) => c.toUpperCase() });
    const sim = await simFor({ extProcTarget: epp.target, failureModeAllow: true });
    const reports = recordReports(sim);

    const body = await new Promise<string>((resolve, reject) => {
      const req = request(`${sim.url}/v1/completions`, { method: 'POST' }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
          // The processor has handled the first event: kill it, then let the upstream finish.
          if (text.includes('DATA: 1')) void epp.close().then(() => release.open());
        });
        res.on('end', () => resolve(text));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(COMPLETION);
    });

    expect(body).toBe('DATA: 1\n\ndata: [DONE]\n\n');
    await expect.poll(() => reports.size).toBe(1);
    expect([...reports.values()][0]).toMatchObject({ status: 200, outcome: 'proxied', processor: 'skipped', served: vllm.address });
  });
});

describe('default upstreams (FailOpen)', () => {
  it('takes them round robin, the others as fallbacks when one refuses the connection', async () => {
    const dead = await deadEndpoint();
    const pod = await upstream(echoUpstream());
    const epp = await processor({ closeOnRequestHeaders: true });
    const sim = await simFor({ extProcTarget: epp.target, defaultUpstream: [dead, pod.address] });

    const first = await exchange(sim);
    const second = await exchange(sim);

    expect([first.res.status, second.res.status]).toEqual([200, 200]);
    expect(first.report.endpoints).toEqual([dead, pod.address]);
    expect(first.report.attempts.map((a) => [a.endpoint, a.error === undefined])).toEqual([
      [dead, false],
      [pod.address, true],
    ]);
    expect(second.report.endpoints).toEqual([pod.address, dead]);
    expect(second.report.served).toBe(pod.address);
  });
});

describe('cluster options', () => {
  it('rejects what it cannot use, with a stable code', () => {
    const bad: EnvoySimOptions[] = [
      {},
      { extProcTargets: [] },
      { extProcTargets: ['127.0.0.1:1', ''] },
      { extProcTargets: ['127.0.0.1:1', '127.0.0.1:1'] },
      { extProcTarget: '127.0.0.1:1', extProcTargets: ['127.0.0.1:2'] },
      { extProcTarget: '127.0.0.1:1', extProcRetryOn: ['5xx' as never] },
      { extProcTarget: '127.0.0.1:1', extProcNumRetries: -1 },
      { extProcTarget: '127.0.0.1:1', extProcEjectionMs: 1.5 },
      { extProcTarget: '127.0.0.1:1', defaultUpstream: ['127.0.0.1:8000', 'nope'] },
    ];
    for (const options of bad) {
      try {
        new EnvoySim(options);
        expect.unreachable(JSON.stringify(options));
      } catch (err) {
        expect(err).toBeInstanceOf(EnvoySimError);
        expect((err as EnvoySimError).code).toBe('INVALID_OPTIONS');
      }
    }
  });
});
