import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts, nodeCli, waitFor } from '@kvix/test-support';
import { afterEach, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/kvix-indexer.js', import.meta.url));
const cli = nodeCli(BIN);
afterEach(() => cli.stopAll());
const run = cli.run;

describe('kvix-indexer command line', () => {
  it('documents its flags, refuses bad configuration in one line, and layers flags over env over file', async () => {
    const help = run(['--help']);
    expect(await help.exited).toBe(0);
    for (const flag of ['--grpc-port', '--render-url', '--endpoints-file', '--max-prompt-tokens', '--tokenizer-workers']) expect(help.output()).toContain(flag);

    const dir = mkdtempSync(join(tmpdir(), 'kvix-indexer-cli-'));
    writeFileSync(join(dir, 'bad.yaml'), 'tokenization:\n  workers: -1\ngrpc:\n  prot: 1\n');
    const bad = run(['--config', join(dir, 'bad.yaml')]);
    expect(await bad.exited).toBe(2);
    expect(bad.output().trim().split('\n')).toHaveLength(1);
    expect(bad.output()).toContain('tokenization.workers');
    expect(bad.output()).toContain('prot');

    writeFileSync(join(dir, 'ok.yaml'), 'grpc:\n  port: 7000\ntokenization:\n  maxPromptTokens: 1000\n  models:\n    my-model: { render: { url: "http://vllm:8000" } }\n');
    const printed = run(['--config', join(dir, 'ok.yaml'), '--render-url', 'http://render:8000', '--print-config'], { KVIX_GRPC_PORT: '7001', KVIX_MAX_PROMPT_TOKENS: '2000' });
    expect(await printed.exited).toBe(0);
    const config = JSON.parse(printed.output()) as { grpc: { port: number }; tokenization: { maxPromptTokens: number; default: unknown; models: Record<string, unknown> } };
    expect(config.grpc.port).toBe(7001);
    expect(config.tokenization.maxPromptTokens).toBe(2000);
    expect(config.tokenization.default).toMatchObject({ render: { url: 'http://render:8000' } });
    expect(Object.keys(config.tokenization.models)).toEqual(['my-model']);
  });

  it('serves until SIGTERM, then stops cleanly', async () => {
    const [http, grpc] = await freePorts(2);
    const proc = run(['--pod', '127.0.0.1:9', '--http-port', String(http), '--grpc-port', String(grpc), '--tokenizer-workers', '0']);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${http}/healthz`).catch(() => null))?.status === 200, 15_000, 'the indexer to listen');
    const scored = await fetch(`http://127.0.0.1:${http}/v1/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'Qwen/Qwen3-0.6B', prompt: 'hello world' }) });
    expect(scored.status).toBe(200);
    expect(await proc.stop('SIGTERM')).toBe(0);
    expect(proc.output()).toContain('indexer stopped');
  });
});
