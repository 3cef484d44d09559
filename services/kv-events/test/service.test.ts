import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeSeq } from '@kvix/kv-events';
import { freePortRange, freePorts, spawnProcess, waitFor, type ManagedProcess } from '@kvix/test-support';
import { resolveSimConfig, SimFleet, type EndpointsFileEntry } from '@kvix/vllm-sim';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { Publisher } from 'zeromq';

const BIN = fileURLToPath(new URL('../bin/kvix-kv-events.js', import.meta.url));
const MODEL = 'Qwen/Qwen3-0.6B';
/** Environment without the developer's KVIX_* settings, so tests see only what they set. */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KVIX_')));

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempFile(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'kvix-kv-events-')), name);
  writeFileSync(path, text);
  return path;
}

function run(args: string[], env: NodeJS.ProcessEnv = {}): ManagedProcess {
  const proc = spawnProcess(process.execPath, [BIN, ...args], { env: { ...cleanEnv, ...env } });
  cleanups.push(() => proc.stop('SIGKILL'));
  return proc;
}

describe('kvix-kv-events command line', () => {
  it('documents its flags under --help', async () => {
    const proc = run(['--help']);
    expect(await proc.exited).toBe(0);
    for (const flag of ['--endpoints-file', '--pod', '--mode', '--http-port', '--block-size', '--config']) expect(proc.output()).toContain(flag);
  });

  it('refuses a bad configuration with exit code 2 and one line naming every bad key', async () => {
    const config = tempFile('config.yaml', 'ingest:\n  workers: 0\n  endpointFile: /tmp/x.yaml\nindex:\n  blockSize: 16\n');
    const proc = run(['--config', config]);
    expect(await proc.exited).toBe(2);
    const out = proc.output().trim();
    expect(out.split('\n')).toHaveLength(1);
    expect(out).toMatch(/^kvix-kv-events: invalid kv-events configuration/);
    expect(out).toContain('ingest.workers');
    expect(out).toContain('endpointFile');
    const badPod = run(['--pod', 'not-an-address']);
    expect(await badPod.exited).toBe(2);
    expect(badPod.output()).toContain('pod "not-an-address" is not host:port');
  });

  it('resolves flags over the environment over the config file', async () => {
    const config = tempFile('config.yaml', 'logLevel: debug\nindex:\n  blockSize: 64\n  hashSeed: from-file\ningest:\n  workers: 2\n');
    const proc = run(['--config', config, '--block-size', '32', '--print-config'], { KVIX_BLOCK_SIZE: '48', KVIX_WORKERS: '3', KVIX_PODS: '10.0.0.7:8000,[fd00::1]:8001' });
    expect(await proc.exited).toBe(0);
    const resolved = JSON.parse(proc.output()) as { logLevel: string; index: { blockSize: number; hashSeed: string }; ingest: { workers: number; pods: { address: string; port: number }[] } };
    expect(resolved.logLevel).toBe('debug');
    expect(resolved.index).toMatchObject({ blockSize: 32, hashSeed: 'from-file' });
    expect(resolved.ingest.workers).toBe(3);
    expect(resolved.ingest.pods.map((p) => [p.address, p.port])).toEqual([['10.0.0.7', 8000], ['fd00::1', 8001]]);
  });
});

interface PodsView {
  pods: { id: string; connected: boolean; entries: number; stream: { phase: string; queued: number; lastSeq: string | null; resets: number; replays: number } }[];
}

describe('kvix-kv-events against simulated vLLM pods', () => {
  it('keeps an index equal to the pods\' own view through dropped batches, a restart, garbage and a removal', async () => {
    const [httpPort, roguePort] = await freePorts(2);
    // Pod i listens on each base + i: three consecutive ports per base.
    const [basePort, baseEventPort, baseReplayPort] = [await freePortRange(3), await freePortRange(3), await freePortRange(3)];
    const simConfig = resolveSimConfig({ timeScale: 100, logLevel: 'silent', pythonHashSeed: '0', numGpuBlocksOverride: 64 }, {});
    const fleet = await SimFleet.start(simConfig, { pods: 3, basePort, baseEventPort, baseReplayPort }, pino({ level: 'silent' }));
    cleanups.push(() => fleet.stop());
    const entries = fleet.entries();
    const simUrl = (i: number): string => `http://127.0.0.1:${entries[i]!.port}`;
    const podId = (i: number): string => `127.0.0.1:${entries[i]!.port}`;
    const rogue: EndpointsFileEntry = { name: 'rogue', address: '127.0.0.1', port: 9, eventPort: roguePort!, replayPort: null, model: MODEL, dataParallelSize: 1 };
    const endpointsFile = tempFile('endpoints.yaml', '');
    const writeEndpoints = (list: EndpointsFileEntry[]): void => {
      writeFileSync(`${endpointsFile}.tmp`, stringify({ endpoints: list }));
      renameSync(`${endpointsFile}.tmp`, endpointsFile);
    };
    writeEndpoints([...entries, rogue]);

    // Pods serve (and publish) before the service exists: startup replay must pick that up.
    const post = async (url: string, body: unknown): Promise<unknown> => {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const text = await res.text();
      expect(res.status, `${url}: ${text}`).toBe(200);
      return JSON.parse(text);
    };
    const prompts = (n: number, salt: number): number[][] =>
      Array.from({ length: n }, (_, i) => [...Array.from({ length: 48 + (i % 3) * 16 }, (_, k) => 500 + (i % 5) * 311 + k), ...Array.from({ length: 16 + (i % 2) * 16 }, (_, k) => salt * 10_000 + i * 97 + k)]);
    const traffic = (work: number[][]): Promise<unknown[]> => Promise.all(work.map((prompt, i) => post(`${simUrl(i % 3)}/v1/completions`, { model: MODEL, prompt, max_tokens: 8 })));
    const before = prompts(12, 1);
    await traffic(before);

    const service = run(['--endpoints-file', endpointsFile, '--http-port', String(httpPort), '--topic-prefix', '', '--debug-routes', '--log-level', 'info']);
    const api = `http://127.0.0.1:${httpPort}`;
    const failure = (): string => `service output:\n${service.output()}`;
    await waitFor(async () => (await fetch(`${api}/readyz`).catch(() => null))?.status === 200, 15_000, 'readiness');

    const podsView = async (): Promise<PodsView> => (await (await fetch(`${api}/debug/pods`)).json()) as PodsView;
    const caughtUp = async (pods: number[]): Promise<void> => {
      await waitFor(async () => {
        const view = await podsView();
        for (const i of pods) {
          const state = (await (await fetch(`${simUrl(i)}/sim/state`)).json()) as { publisher: { nextSeq: string } };
          const p = view.pods.find((x) => x.id === podId(i));
          if (!p || p.stream.phase !== 'idle' || p.stream.queued > 0 || p.stream.lastSeq !== String(BigInt(state.publisher.nextSeq) - 1n)) return false;
        }
        return true;
      }, 15_000, 'the service to catch up');
    };
    const expectMatches = async (work: number[][], pods: number[]): Promise<void> => {
      for (const tokens of work) {
        const scored = (await post(`${api}/debug/lookup`, { tokens, model: MODEL })) as { pods: { pod: string; matchedBlocks: number }[] };
        for (const i of pods) {
          const own = (await post(`${simUrl(i)}/sim/prefix`, { tokens })) as { anyTierBlocks: number };
          expect({ pod: podId(i), blocks: scored.pods.find((s) => s.pod === podId(i))?.matchedBlocks ?? 0 }, failure()).toEqual({ pod: podId(i), blocks: own.anyTierBlocks });
        }
      }
    };
    await caughtUp([0, 1, 2]);
    await expectMatches(before, [0, 1, 2]);

    // Faults: pod 0's batches never reach the wire (the next one reveals the gap); pod 1's engine
    // restarts; garbage arrives from a third endpoint.
    await post(`${simUrl(0)}/sim/faults`, { dropEventsFraction: 1 });
    await post(`${simUrl(1)}/sim/faults`, { restartEngine: true });
    const publisher = new Publisher({ linger: 0 });
    await publisher.bind(`tcp://127.0.0.1:${roguePort}`);
    cleanups.push(() => publisher.close());
    const metricsText = async (): Promise<string> => (await fetch(`${api}/metrics`)).text();
    const sample = (text: string, name: string, labels: string): number => Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    const errorsOf = (text: string, operation: string): number => sample(text, 'llm_d_epp_kv_cache_events_zmq_errors_total', `pod_identifier="127.0.0.1:9",operation="${operation}"`);
    // The service dials the rogue endpoint on its reconnect schedule: keep sending until it listens.
    let seq = 0n;
    await waitFor(async () => {
      await publisher.send([Buffer.from('kv@127.0.0.1:9@m'), Buffer.from(encodeSeq(seq++)), Buffer.from('not msgpack at all')]);
      await publisher.send([Buffer.from('kv@127.0.0.1:9@m'), Buffer.from('two frames')]);
      const text = await metricsText();
      return errorsOf(text, 'frames') > 0 && errorsOf(text, 'decode') > 0;
    }, 15_000, 'the garbage to be counted');
    const during = prompts(24, 2);
    await traffic(during);
    await post(`${simUrl(0)}/sim/faults`, { dropEventsFraction: 0 });
    await traffic(prompts(3, 3));
    await caughtUp([0, 1, 2]);
    await expectMatches([...before, ...during], [0, 1, 2]);

    const metrics = await metricsText();
    expect(metrics).toMatch(/^llm_d_epp_kv_cache_events_active_subscribers 4$/m);
    expect(sample(metrics, 'kvix_ingest_gaps_total', `pod="${podId(0)}"`)).toBeGreaterThan(0);
    expect(metrics).toMatch(/^llm_d_epp_kv_cache_index_lookup_requests_total [1-9]/m);

    // Pod 2 leaves the endpoints file: its entries leave the index.
    writeEndpoints([entries[0]!, entries[1]!]);
    await waitFor(async () => (await podsView()).pods.length === 2, 10_000, 'pod 2 to be removed');
    const scored = (await post(`${api}/debug/lookup`, { tokens: before[2], model: MODEL })) as { pods: { pod: string }[] };
    expect(scored.pods.map((p) => p.pod)).not.toContain(podId(2));
    expect((await fetch(`${api}/debug/pods/${podId(2)}/entries`)).status).toBe(404);

    expect(await service.stop('SIGTERM'), failure()).toBe(0);
    expect(service.output()).toContain('kv-events service stopped');
  });
});
