/**
 * Issue 16: one 170-byte chat request with its own looping chat_template stopped all routing on
 * the gateway and the ext_proc path. Refused by default now (vLLM's rule); trusted, it renders
 * on a thread of its own under the tokenization deadline while other requests are answered.
 */
import { ceiling, waitFor } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../support/cleanups.js';
import { chat, FRONTS, MODEL, send, startSim, startStack, type Sim, type Stack } from '../support/stack.js';
import { ISSUE_TEMPLATE, LOOPING_TEMPLATE, metric, track } from './support.js';

const cleanups = cleanupsAfterEach();

async function fleet(n: number): Promise<Sim[]> {
  const sims: Sim[] = [];
  for (let i = 0; i < n; i++) {
    const s = await startSim();
    sims.push(s);
    cleanups.push(() => s.pod.stop());
  }
  return sims;
}

async function stack(front: (typeof FRONTS)[number], sims: Sim[], extra: Record<string, unknown> = {}): Promise<Stack> {
  const s = await startStack(front, sims, extra);
  cleanups.push(() => s.stop());
  return s;
}

const hostile = (template: string): Record<string, unknown> => ({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'hi' }], chat_template: template });

describe.each(FRONTS)('a request bringing its own chat template, through the %s', (front) => {
  it("is refused with 400 and vLLM's words by default, and routing goes on", async () => {
    const { base } = await stack(front, await fleet(2));
    for (const body of [hostile(ISSUE_TEMPLATE), { ...hostile(ISSUE_TEMPLATE), chat_template: undefined, chat_template_kwargs: { chat_template: ISSUE_TEMPLATE } }]) {
      const refused = await send(base, '/v1/chat/completions', body);
      expect(refused.status).toBe(400);
      expect(refused.text).toContain('--trust-request-chat-template');
    }
    expect((await send(base, '/v1/chat/completions', chat('Where is parcel 7?'))).status).toBe(200);
  });

  it('when trusted, renders under the deadline while other requests are answered, then is routed on the other scorers', async () => {
    const sims = await fleet(2);
    // The deadline is what ends the looping render: scaled for the machine's load, so the others are
    // answered well before it. (Past Envoy's 30 s message_timeout, on a very loaded machine, Envoy
    // fails open and the pod refuses the request all the same; the EPP's deadline still fires.)
    const { base, metrics } = await stack(front, sims, { tokenization: { workers: 1, trustRequestChatTemplate: true, timeoutMs: ceiling(1500) } });
    const looping = track(send(base, '/v1/chat/completions', hostile(LOOPING_TEMPLATE)));
    for (let i = 0; i < 5; i++) {
      const answer = await send(base, '/v1/chat/completions', chat(`Where is parcel ${i}?`));
      expect(answer.status).toBe(200);
    }
    expect(looping.settled).toBe(false);
    const outcome = await looping.result;
    expect(outcome.status).toBe('fulfilled');
    // Routed without prefix scores; the pod (which does not trust request templates, as vLLM by default) refuses it.
    expect((outcome as PromiseFulfilledResult<Awaited<ReturnType<typeof send>>>).value.status).toBe(400);
    await waitFor(async () => {
      const text = await (await fetch(`${metrics}/metrics`)).text();
      return metric(text, 'kvix_epp_prefix_scorer_errors_total{code="DEADLINE_EXCEEDED"}') >= 1 && metric(text, 'kvix_tokenization_errors_total{source="local",code="DEADLINE_EXCEEDED"}') >= 1;
    }, 10_000, 'the deadline counted by the scorer and the tokenizer');
    // The issue's own request fails at once when trusted: range() refuses 30 M items, as Jinja2's sandbox does.
    expect((await send(base, '/v1/chat/completions', hostile(ISSUE_TEMPLATE))).status).toBe(400);
  });
});
