/**
 * Issue 16: each gateway connection could buffer 32 MiB with no connection limit (8 partial 30 MiB
 * bodies held 153 MB and were never freed), and a slow body stayed open ~300 s.
 */
import { connect, type Socket } from 'node:net';
import { ceiling, waitFor } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../support/cleanups.js';
import { chat, send, startSim, startStack, type Stack } from '../support/stack.js';

const cleanups = cleanupsAfterEach();

async function gateway(limits: Record<string, unknown>): Promise<Stack> {
  const sim = await startSim();
  cleanups.push(() => sim.pod.stop());
  const s = await startStack('gateway', [sim], { gateway: { host: '127.0.0.1', port: 0, ...limits } });
  cleanups.push(() => s.stop());
  return s;
}

function open(base: string): Promise<Socket> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => resolve(socket));
    socket.once('error', reject);
    cleanups.push(async () => void socket.destroy());
  });
}

/** Everything the server sends until it closes the connection. */
function untilClosed(socket: Socket): Promise<string> {
  let text = '';
  socket.on('data', (b: Buffer) => (text += b.toString()));
  socket.on('error', () => undefined);
  return new Promise((resolve) => socket.once('close', () => resolve(text)));
}

const head = (base: string, length: number): string => `POST /v1/chat/completions HTTP/1.1\r\nhost: ${new URL(base).host}\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n`;

describe('the gateway under hostile bodies', () => {
  it('refuses a body declared larger than its limit without reading it, and closes the connection', async () => {
    const { base } = await gateway({});
    const socket = await open(base);
    const closed = untilClosed(socket);
    // 100 MB declared (the default limit is 4 MiB); only the headers and a few bytes are ever sent.
    socket.write(`${head(base, 100 * 1024 * 1024)}{"model":`);
    const answer = await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 413/);
    expect(answer).toContain('BODY_TOO_LARGE');
  });

  it('closes a connection whose body does not arrive within the body timeout', async () => {
    // Scaled for the machine's load: the follow-up request must not meet them; the stalled one always does.
    const { base } = await gateway({ headersTimeoutMs: ceiling(500), bodyTimeoutMs: ceiling(1000) });
    const socket = await open(base);
    const closed = untilClosed(socket);
    socket.write(`${head(base, 1000)}{"model":"`);
    // Nothing more is sent: the gateway must give up (Node's default was 300 s), answering 408.
    const answer = await closed;
    expect(answer === '' || /^HTTP\/1\.1 408/.test(answer)).toBe(true);
    expect((await send(base, '/v1/chat/completions', chat('still routing?'))).status).toBe(200);
  });

  it('holds at most maxBufferedBytes of bodies across connections, answering 503 beyond', async () => {
    // Timeouts far beyond the test (scaled for the machine's load): the holders must not be cut off meanwhile.
    const { base } = await gateway({ maxBodyBytes: 512 * 1024, maxBufferedBytes: 1024 * 1024, headersTimeoutMs: ceiling(120_000), bodyTimeoutMs: ceiling(120_000) });
    // Two slow clients each hold 450 KiB of a body they never finish.
    const filler = 'x'.repeat(450 * 1024);
    const hold = async (): Promise<{ socket: Socket; answered: boolean }> => {
      const holder = { socket: await open(base), answered: false };
      holder.socket.on('data', () => (holder.answered = true));
      holder.socket.on('close', () => (holder.answered = true));
      holder.socket.write(`${head(base, 500 * 1024)}${filler}`);
      return holder;
    };
    const holders = [await hold(), await hold()];
    // The third request's body does not fit in what is left: 503. Its 200 KiB are not JSON, so when
    // the gateway does take them in (before it holds both partial bodies: the sockets' writes arrive
    // when they arrive) it answers 400 at once instead of routing a long prompt. When its bytes and a
    // holder's interleave, the holder may be the one refused: that holder is replaced, so the
    // gateway ends up holding both partial bodies whatever the order.
    const third = (): Promise<Awaited<ReturnType<typeof send>>> => send(base, '/v1/chat/completions', `{${'x'.repeat(200 * 1024)}`);
    const seen: number[] = [];
    let replaced = 0;
    const refused = await waitFor(async () => {
      for (let i = 0; i < holders.length; i++) {
        if (!holders[i]!.answered) continue;
        holders[i]!.socket.destroy();
        holders[i] = await hold();
        replaced++;
      }
      const answer = await third();
      seen.push(answer.status);
      return answer.status === 503 ? answer : undefined;
    }, 20_000, () => `a request refused while two partial bodies are held (answers so far: ${seen.join(', ')}; holders replaced: ${replaced})`);
    expect(refused.json).toMatchObject({ error: { code: 'OVERLOADED' } });
    // Once they go, the same body is taken in again (and refused for what it is), and routing goes on.
    for (const h of holders) h.socket.destroy();
    await waitFor(async () => (await third()).status === 400, 20_000, 'a 200 KiB body taken in once the holders have gone');
    expect((await send(base, '/v1/chat/completions', chat('still routing?'))).status).toBe(200);
  });

  it('accepts at most maxConnections connections at once', async () => {
    const { base } = await gateway({ maxConnections: 2 });
    const kept = await Promise.all([open(base), open(base)]);
    // Node closes a connection beyond the limit as soon as it is accepted.
    const extra = await open(base);
    const closed = untilClosed(extra);
    extra.write(`GET /health HTTP/1.1\r\nhost: x\r\n\r\n`);
    expect(await closed).toBe('');
    for (const s of kept) s.destroy();
    await waitFor(async () => (await fetch(`${base}/health`)).status === 200, 20_000, 'a connection accepted once the others have gone');
  });
});
