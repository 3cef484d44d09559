import { waitFor } from '@kvix/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { caughtUp, MODEL, post, startIndexer, startSim, writeEndpointsFile, type Sim } from './helpers.js';
import type { Indexer } from '../src/index.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('tokenization through vLLM\'s render endpoints', () => {
  it('scores exactly as local tokenization does, and says a dead render server is unavailable', async () => {
    const sim: Sim = await startSim();
    cleanups.push(() => sim.pod.stop());
    const endpoints = writeEndpointsFile([sim]);
    const viaRender: Indexer = await startIndexer({ ingest: { endpointsFile: endpoints }, tokenization: { default: { render: { url: sim.url } } } });
    cleanups.push(() => viaRender.stop());
    const local: Indexer = await startIndexer({ ingest: { endpointsFile: endpoints } });
    cleanups.push(() => local.stop());
    for (const i of [viaRender, local]) await waitFor(async () => (await fetch(`${i.httpUrl}/readyz`)).status === 200, 15_000, 'readiness');

    const messages = [
      { role: 'system', content: 'You translate release notes into plain English for operators. Keep version numbers exact. '.repeat(5) },
      { role: 'user', content: 'vLLM 0.33 adds render endpoints.' },
    ];
    expect((await post(`${sim.url}/v1/chat/completions`, { model: MODEL, messages, max_tokens: 3 })).status).toBe(200);
    await caughtUp(viaRender, [sim]);
    await caughtUp(local, [sim]);
    const ask = { model: MODEL, messages: [messages[0], { role: 'user', content: 'What changed in 0.34?' }], tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }] };
    const rendered = await post(`${viaRender.httpUrl}/v1/score/chat`, ask);
    const locally = await post(`${local.httpUrl}/v1/score/chat`, ask);
    expect(rendered.status).toBe(200);
    expect(rendered.json['tokenization']).toEqual({ source: 'render', cached: false });
    expect(locally.json['tokenization']).toMatchObject({ source: 'local' });
    expect(rendered.json['prompt_tokens']).toBe(locally.json['prompt_tokens']);
    expect(rendered.json['scores']).toEqual(locally.json['scores']);
    expect((rendered.json['scores'] as { matched_blocks: number }[])[0]!.matched_blocks).toBeGreaterThan(0);

    await sim.pod.stop();
    cleanups.pop();
    const down = await post(`${viaRender.httpUrl}/v1/score/chat`, { ...ask, messages: [...ask.messages, { role: 'user', content: 'one more' }] });
    expect(down.status).toBe(502);
    expect((down.json['error'] as { code: string }).code).toBe('RENDER_UNAVAILABLE');
  });
});
