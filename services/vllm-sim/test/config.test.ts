import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { effectiveHashSeed, isBindEndpoint, offsetEndpointPort, resolveSimConfig } from '../src/index.js';

describe('simulator configuration', () => {
  it('publishes events by default, with vLLM\'s defaults for everything the user leaves out', () => {
    const c = resolveSimConfig({}, {});
    expect(c.kvEvents).toMatchObject({ enable_kv_cache_events: true, publisher: 'zmq', endpoint: 'tcp://*:5557', replay_endpoint: 'tcp://*:5558', buffer_steps: 10_000, hwm: 100_000, topic: '' });
    expect(c.topicGiven).toBe(false);
    expect(c).toMatchObject({ blockSize: 16, prefixCachingHashAlgo: 'sha256', kvEventsLayout: 'map', kvEventsIntHashes: true, servedModelName: ['Qwen/Qwen3-0.6B'] });
  });

  it('layers defaults < config file < vLLM environment variables < flags', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-config-'));
    const file = join(dir, 'sim.yaml');
    writeFileSync(file, 'blockSize: 64\npythonHashSeed: "1"\nmaxNumSeqs: 8\n');
    const c = resolveSimConfig({ config: file, maxNumSeqs: '4' }, { PYTHONHASHSEED: '7', VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES: '0' });
    expect(c).toMatchObject({ blockSize: 64, pythonHashSeed: '7', maxNumSeqs: 4, kvEventsIntHashes: false });
  });

  it('rejects unknown keys and bad values with one clear message', () => {
    expect(() => resolveSimConfig({ blockSize: '0' }, {})).toThrow(/blockSize/);
    expect(() => resolveSimConfig({ kvEventsConfig: '{"enable_kv_cache_events": true, "endpont": "x"}' }, {})).toThrow(/endpont/);
    expect(() => resolveSimConfig({ kvEventsConfig: '{not json' }, {})).toThrow(/not valid JSON/);
    expect(() => resolveSimConfig({ prefixCachingHashAlgo: 'md5' }, {})).toThrow(/prefixCachingHashAlgo/);
    expect(() => resolveSimConfig({ config: '/nonexistent/sim.yaml' }, {})).toThrow(/cannot read config file/);
  });

  it('follows vLLM 0.33 for NONE_HASH when PYTHONHASHSEED is unset', () => {
    expect(effectiveHashSeed({ pythonHashSeed: null, prefixCachingHashAlgo: 'sha256' })).toBe('vllm-none-hash');
    expect(effectiveHashSeed({ pythonHashSeed: null, prefixCachingHashAlgo: 'xxhash' })).toBeNull();
    expect(effectiveHashSeed({ pythonHashSeed: '42', prefixCachingHashAlgo: 'xxhash' })).toBe('42');
  });

  it('takes --lora-modules in both of vLLM\'s syntaxes: name=path, or JSON with an optional base model', () => {
    const c = resolveSimConfig({ loraModules: ['sql-lora=/adapters/sql', '{"name": "chat-lora", "path": "/adapters/chat", "base_model_name": "Qwen/Qwen3-0.6B"}'] }, {});
    expect(c.loraModules).toEqual([
      { name: 'sql-lora', path: '/adapters/sql', baseModelName: null },
      { name: 'chat-lora', path: '/adapters/chat', baseModelName: 'Qwen/Qwen3-0.6B' },
    ]);
    expect(resolveSimConfig({ loraModules: [{ name: 'a', path: '/a' }] }, {}).loraModules).toEqual([{ name: 'a', path: '/a', baseModelName: null }]);
    expect(() => resolveSimConfig({ loraModules: ['{"name": "x"'] }, {})).toThrow(/loraModules/);
    expect(() => resolveSimConfig({ loraModules: ['{"name": "x", "path": "/x", "rank": 8}'] }, {})).toThrow(/rank/);
    expect(() => resolveSimConfig({ loraModules: ['a=b=c'] }, {})).toThrow(/name=path/);
  });

  it('binds or connects by vLLM\'s rule and offsets ports by data-parallel rank', () => {
    expect(isBindEndpoint('tcp://*:5557')).toBe(true);
    expect(isBindEndpoint('tcp://10.0.0.9:5557')).toBe(false);
    expect(isBindEndpoint('ipc:///tmp/kv')).toBe(true);
    expect(offsetEndpointPort('tcp://*:5557', 2)).toBe('tcp://*:5559');
    expect(offsetEndpointPort('tcp://*:0', 2)).toBe('tcp://*:0');
    expect(offsetEndpointPort('inproc://cache', 1)).toBe('inproc://cache_dp1');
  });
});
