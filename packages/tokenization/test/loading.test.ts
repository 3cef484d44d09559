import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalTokenizer, TokenizationError, resolveTokenizer } from '../src/index.js';
import { fixture, qwen3, qwen3ConfigPath, qwen3TokenizerPath } from './fixtures.js';

async function codeOfAsync(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof TokenizationError) return err.code;
    throw err;
  }
  return undefined;
}

let root: string;

async function modelDir(name: string, files: { config?: boolean; tokenizer?: boolean; extra?: Record<string, string> } = {}): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  if (files.tokenizer ?? true) await copyFile(qwen3TokenizerPath, join(dir, 'tokenizer.json'));
  if (files.config ?? true) await copyFile(qwen3ConfigPath, join(dir, 'tokenizer_config.json'));
  for (const [path, text] of Object.entries(files.extra ?? {})) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'kvix-tokenization-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('loading a tokenizer from a directory', () => {
  it('tokenizes and renders chats exactly as the bundled copy of the same files', async () => {
    const tok = await LocalTokenizer.fromDirectory(await modelDir('full'));
    const c = fixture.chat.find((x) => x.id === 'tools-and-tool-calls')!;
    expect(tok.encodeChat(c.messages, c.options)).toEqual(c.ids);
    for (const e of fixture.encode) expect(tok.encode(e.text)).toEqual(e.ids);
    expect(tok.eosTokenId).toBe(fixture.tokenizer.eosTokenId);
    expect(tok.modelName).toBe(join(root, 'full'));
  });

  it('takes the model name from the options when given', async () => {
    const tok = await LocalTokenizer.fromDirectory(await modelDir('named'), { modelName: 'served-name' });
    expect(tok.modelName).toBe('served-name');
  });

  it('works without tokenizer_config.json, but then has no chat template or EOS', async () => {
    const tok = await LocalTokenizer.fromDirectory(await modelDir('bare', { config: false }));
    expect(tok.encode('Hello, world!')).toEqual(qwen3.encode('Hello, world!'));
    expect(tok.eosTokenId).toBeNull();
    expect(tok.maxModelLen).toBe(131072);
    expect(() => tok.renderChat([{ role: 'user', content: 'hi' }])).toThrow(expect.objectContaining({ code: 'NO_CHAT_TEMPLATE' }));
  });

  it('prefers chat_template.jinja beside the config over the config’s own template', async () => {
    const dir = await modelDir('jinja-file', { extra: { 'chat_template.jinja': 'FILE:{{ messages[0].content }}\n' } });
    const tok = await LocalTokenizer.fromDirectory(dir);
    expect(tok.renderChat([{ role: 'user', content: 'hi' }])).toBe('FILE:hi');
  });

  it('offers additional_chat_templates/<name>.jinja by name', async () => {
    const dir = await modelDir('extra-templates', {
      extra: {
        'chat_template.jinja': 'DEFAULT:{{ messages[0].content }}',
        'additional_chat_templates/tool_use.jinja': 'TOOLS:{{ messages[0].content }}',
        'additional_chat_templates/terse.jinja': 'TERSE:{{ messages[0].content }}',
      },
    });
    const tok = await LocalTokenizer.fromDirectory(dir);
    const hi = [{ role: 'user', content: 'hi' }];
    expect(tok.renderChat(hi)).toBe('DEFAULT:hi');
    expect(tok.renderChat(hi, { tools: [] })).toBe('TOOLS:hi');
    expect(tok.renderChat(hi, { chatTemplate: 'terse' })).toBe('TERSE:hi');
  });

  it('reports a missing tokenizer.json or directory as FILE_NOT_FOUND', async () => {
    expect(await codeOfAsync(LocalTokenizer.fromDirectory(await modelDir('no-tokenizer', { tokenizer: false })))).toBe('FILE_NOT_FOUND');
    expect(await codeOfAsync(LocalTokenizer.fromDirectory(join(root, 'does-not-exist')))).toBe('FILE_NOT_FOUND');
  });

  it('reports unreadable JSON as INVALID_TOKENIZER', async () => {
    const broken = await modelDir('broken-config', { config: false, extra: { 'tokenizer_config.json': '{ not json' } });
    expect(await codeOfAsync(LocalTokenizer.fromDirectory(broken))).toBe('INVALID_TOKENIZER');
    const notObject = await modelDir('array-tokenizer', { tokenizer: false, extra: { 'tokenizer.json': '[1, 2]' } });
    expect(await codeOfAsync(LocalTokenizer.fromDirectory(notObject))).toBe('INVALID_TOKENIZER');
  });
});

describe('bundled tokenizers', () => {
  it('serves every Qwen3 model name from the one shipped tokenizer', async () => {
    const names = LocalTokenizer.bundledNames();
    expect(names).toEqual(expect.arrayContaining(['Qwen/Qwen3-0.6B', 'Qwen/Qwen3-8B', 'Qwen/Qwen3-32B', 'Qwen/Qwen3-30B-A3B']));
    const big = await LocalTokenizer.bundled('Qwen/Qwen3-32B');
    expect(big.modelName).toBe('Qwen/Qwen3-32B');
    expect(big.encodeChat(fixture.chat[0]!.messages)).toEqual(fixture.chat[0]!.ids);
  });

  it('matches bundled names case-insensitively and reports the canonical spelling', async () => {
    const tok = await LocalTokenizer.bundled('qwen/qwen3-8b');
    expect(tok.modelName).toBe('Qwen/Qwen3-8B');
  });

  it('lists the bundled names when asked for one it does not have', async () => {
    const err = await LocalTokenizer.bundled('meta-llama/Llama-3.1-8B-Instruct').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenizationError);
    expect(err).toMatchObject({ code: 'UNKNOWN_BUNDLED_TOKENIZER', message: expect.stringContaining('Qwen/Qwen3-0.6B') });
  });
});

describe('resolving a tokenizer from configuration', () => {
  it('resolves a bundled name', async () => {
    expect((await resolveTokenizer('Qwen/Qwen3-4B')).modelName).toBe('Qwen/Qwen3-4B');
  });

  it('resolves a directory path', async () => {
    const dir = await modelDir('resolved');
    const tok = await resolveTokenizer(dir);
    expect(tok.modelName).toBe(dir);
    expect(tok.encode('hi there')).toEqual(qwen3.encode('hi there'));
  });

  it('says which of name or path was wrong', async () => {
    expect(await codeOfAsync(resolveTokenizer('some-org/unknown-model'))).toBe('UNKNOWN_BUNDLED_TOKENIZER');
    expect(await codeOfAsync(resolveTokenizer('./no/such/dir'))).toBe('FILE_NOT_FOUND');
    expect(await codeOfAsync(resolveTokenizer(join(root, 'missing')))).toBe('FILE_NOT_FOUND');
    expect(await codeOfAsync(resolveTokenizer(qwen3TokenizerPath))).toBe('INVALID_TOKENIZER');
    expect(await codeOfAsync(resolveTokenizer(''))).toBe('INVALID_REQUEST');
  });
});
