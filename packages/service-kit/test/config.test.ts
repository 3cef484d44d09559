import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, collectArg, envLayer, flagLayer, integerArg, resolveConfig } from '../src/index.js';

const Schema = z
  .object({
    logLevel: z.enum(['info', 'debug']).default('info'),
    http: z.object({ host: z.string().default('0.0.0.0'), port: z.number().int().default(9100) }).strict().default({ host: '0.0.0.0', port: 9100 }),
    pods: z.array(z.string()).default([]),
  })
  .strict();

function file(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'kvix-kit-')), 'config.yaml');
  writeFileSync(path, text);
  return path;
}

describe('layered configuration', () => {
  it('applies defaults < file < environment < flags, merging nested sections key by key', () => {
    const path = file('logLevel: debug\nhttp:\n  host: 127.0.0.1\n  port: 1000\npods: [a, b]\n');
    const env = envLayer({ KVIX_HTTP_PORT: '2000', KVIX_PODS: 'c, d' }, { KVIX_HTTP_PORT: { path: 'http.port', as: 'number' }, KVIX_PODS: { path: 'pods', as: 'list' } });
    const config = resolveConfig('test', Schema, { file: path, env, flags: { http: { port: 3000 } } });
    expect(config).toEqual({ logLevel: 'debug', http: { host: '127.0.0.1', port: 3000 }, pods: ['c', 'd'] });
    expect(resolveConfig('test', Schema, {})).toEqual({ logLevel: 'info', http: { host: '0.0.0.0', port: 9100 }, pods: [] });
  });

  it('names every offending key, including unknown ones', () => {
    const path = file('logLevel: loud\nhttp:\n  prot: 1\n');
    const err = (() => {
      try {
        resolveConfig('kv-events', Schema, { file: path });
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('no error');
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('invalid kv-events configuration');
    expect(err.message).toContain('logLevel:');
    expect(err.message).toMatch(/http: Unrecognized key.*prot/);
  });

  it('rejects unreadable files, bad YAML, non-mapping documents and bad environment values clearly', () => {
    expect(() => resolveConfig('t', Schema, { file: '/nonexistent/kvix.yaml' })).toThrow(/cannot read config file \/nonexistent\/kvix.yaml/);
    expect(() => resolveConfig('t', Schema, { file: file('http: [unclosed\n') })).toThrow(/not valid YAML/);
    expect(() => resolveConfig('t', Schema, { file: file('- a\n- b\n') })).toThrow(/mapping at the top level/);
    expect(() => envLayer({ P: 'eighty' }, { P: { path: 'http.port', as: 'number' } })).toThrow(/P must be a number, got "eighty"/);
    expect(() => envLayer({ B: 'maybe' }, { B: { path: 'x', as: 'boolean' } })).toThrow(/B must be a boolean/);
    expect(envLayer({ B: 'off', E: '' }, { B: { path: 'a.b', as: 'boolean' }, E: { path: 'e' } })).toEqual({ a: { b: false } });
  });

  it('takes only flags the user typed, so help-text defaults never override the file', () => {
    const cmd = new Command().exitOverride().option('--http-port <port>', 'port', integerArg, 9100).option('--pod <addr>', 'pods', collectArg).option('--log-level <l>', 'level', 'info');
    cmd.parse(['--pod', 'a,b', '--pod', 'c', '--log-level', 'debug'], { from: 'user' });
    expect(flagLayer(cmd, { httpPort: 'http.port', pod: 'pods', logLevel: 'logLevel' })).toEqual({ pods: ['a', 'b', 'c'], logLevel: 'debug' });
    expect(() => new Command().exitOverride().configureOutput({ writeErr: () => undefined }).option('--n <n>', 'n', integerArg).parse(['--n', '1.5'], { from: 'user' })).toThrow(/expected an integer, got "1.5"/);
  });
});
