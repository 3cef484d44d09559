import { describe, expect, it } from 'vitest';
import { podView, POD_ANNOTATIONS, POD_LABELS, type TargetDefaults } from '../src/pod-targets.js';

const defaults: TargetDefaults = { eventPort: 5557, replayPort: null, model: 'Qwen/Qwen3-0.6B', eventsByPod: true };

function pod(overrides: { annotations?: Record<string, string>; labels?: Record<string, string>; ready?: boolean; ip?: string | null; deleting?: boolean; phase?: string } = {}): unknown {
  return {
    metadata: {
      name: 'vllm-0',
      namespace: 'llm',
      labels: overrides.labels ?? { app: 'vllm' },
      annotations: overrides.annotations ?? {},
      ...(overrides.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    status: {
      phase: overrides.phase ?? 'Running',
      podIP: overrides.ip === undefined ? '10.0.0.7' : overrides.ip,
      conditions: [{ type: 'Ready', status: overrides.ready === false ? 'False' : 'True' }],
    },
  };
}

describe('pod → endpoints', () => {
  it('a ready pod with an IP is one endpoint per target port, ranks in port order, events on the base port + rank', () => {
    const v = podView(pod(), [8000, 8001], defaults)!;
    expect(v.state).toBe('ready');
    expect(v.targets.map((t) => [t.id, t.name, t.rank, t.eventEndpoint])).toEqual([
      ['10.0.0.7:8000', 'vllm-0', 0, 'tcp://10.0.0.7:5557'],
      ['10.0.0.7:8001', 'vllm-0/rank-1', 1, 'tcp://10.0.0.7:5558'],
    ]);
    expect(v.targets[0]!.labels).toEqual({ app: 'vllm' });
    expect(v.targets[0]!.model).toBe('Qwen/Qwen3-0.6B');
  });

  it('is no endpoint while not Ready, without an IP, terminating or finished', () => {
    expect(podView(pod({ ready: false }), [8000], defaults)).toMatchObject({ state: 'not_ready', targets: [] });
    expect(podView(pod({ ip: null }), [8000], defaults)).toMatchObject({ state: 'no_ip', targets: [] });
    expect(podView(pod({ deleting: true }), [8000], defaults)).toMatchObject({ state: 'terminating', targets: [] });
    expect(podView(pod({ phase: 'Failed' }), [8000], defaults)).toMatchObject({ state: 'not_ready', targets: [] });
  });

  it('llm-d.ai/active-ports (or GAIE\'s earlier name) narrows the target ports, keeping each port\'s rank', () => {
    const v = podView(pod({ annotations: { [POD_ANNOTATIONS.activePorts]: '8001, 8003' } }), [8000, 8001, 8002, 8003], defaults)!;
    expect(v.targets.map((t) => [t.port, t.rank, t.eventEndpoint])).toEqual([
      [8001, 1, 'tcp://10.0.0.7:5558'],
      [8003, 3, 'tcp://10.0.0.7:5560'],
    ]);
    const legacy = podView(pod({ annotations: { [POD_ANNOTATIONS.legacyActivePorts]: '8000' } }), [8000, 8001], defaults)!;
    expect(legacy.targets.map((t) => t.port)).toEqual([8000]);
  });

  it('reads the event and replay ports, model and LoRA adapters from kvix.io annotations', () => {
    const v = podView(
      pod({ annotations: { [POD_ANNOTATIONS.kvEventsPort]: '6000', [POD_ANNOTATIONS.kvReplayPort]: '6100', [POD_ANNOTATIONS.model]: 'meta-llama/Llama-3.1-8B', [POD_ANNOTATIONS.loraAdapters]: 'sql, support-v2' } }),
      [8000],
      defaults,
    )!;
    expect(v.targets[0]).toMatchObject({ eventEndpoint: 'tcp://10.0.0.7:6000', replayEndpoint: 'tcp://10.0.0.7:6100', model: 'meta-llama/Llama-3.1-8B', adapters: ['sql', 'support-v2'] });
  });

  it('reads the engine from llm-d\'s engine-type label and LMCache/report mode from annotations; none: the events tell', () => {
    expect(podView(pod(), [8000], defaults)!.targets[0]!.engine).toBeUndefined();
    const sglang = podView(pod({ labels: { app: 'vllm', [POD_LABELS.engineType]: 'sglang' } }), [8000], defaults)!;
    expect(sglang.targets[0]!.engine).toEqual({ engine: 'sglang' });
    const lmcache = podView(pod({ labels: { [POD_LABELS.legacyEngineType]: 'vllm' }, annotations: { [POD_ANNOTATIONS.lmcache]: 'mp', [POD_ANNOTATIONS.kvCacheReportMode]: 'full' } }), [8000], defaults)!;
    expect(lmcache.targets[0]!.engine).toEqual({ engine: 'vllm', lmcache: 'mp', reportMode: 'full' });
    const odd = podView(pod({ labels: { [POD_LABELS.engineType]: 'trtllm' } }), [8000], defaults)!;
    expect(odd.targets[0]!.engine).toBeUndefined();
    expect(odd.problems[0]).toMatch(/not vllm or sglang/);
  });

  it('a data-parallel size behind one target port expands to consecutive ports', () => {
    const v = podView(pod({ annotations: { [POD_ANNOTATIONS.dataParallelSize]: '3' } }), [8000], defaults)!;
    expect(v.targets.map((t) => [t.id, t.rank, t.eventEndpoint])).toEqual([
      ['10.0.0.7:8000', 0, 'tcp://10.0.0.7:5557'],
      ['10.0.0.7:8001', 1, 'tcp://10.0.0.7:5558'],
      ['10.0.0.7:8002', 2, 'tcp://10.0.0.7:5559'],
    ]);
  });

  it('a bad annotation is reported and the default used; the pod still serves', () => {
    const v = podView(pod({ annotations: { [POD_ANNOTATIONS.kvEventsPort]: 'zmq', [POD_ANNOTATIONS.dataParallelSize]: '0' } }), [8000], defaults)!;
    expect(v.state).toBe('ready');
    expect(v.targets.map((t) => t.eventEndpoint)).toEqual(['tcp://10.0.0.7:5557']);
    expect(v.problems).toHaveLength(2);
  });

  it('in centralized mode there is no event endpoint to dial; IPv6 addresses are bracketed', () => {
    const v = podView(pod({ ip: 'fd00::7' }), [8000], { ...defaults, eventsByPod: false })!;
    expect(v.targets[0]).toMatchObject({ id: '[fd00::7]:8000', eventEndpoint: null });
  });

  it('an object that is not a pod yields nothing instead of throwing', () => {
    expect(podView({ kind: 'Status' }, [8000], defaults)).toBeNull();
  });
});
