import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addDeprecatedAlias, applyCommandLineConvention, commanderExitCode, integerArg } from '../src/index.js';

function run(build: (cmd: Command) => void, argv: string[]): { exit: number | null; err: string; opts: Record<string, unknown> } {
  const cmd = new Command('kvix-test');
  build(cmd);
  applyCommandLineConvention(cmd);
  let err = '';
  const capture = (c: Command): void => {
    c.configureOutput({ ...c.configureOutput(), writeErr: (s) => (err += s), writeOut: () => undefined });
    c.commands.forEach(capture);
  };
  capture(cmd);
  try {
    cmd.parse(argv, { from: 'user' });
    return { exit: null, err, opts: cmd.opts() };
  } catch (e) {
    return { exit: commanderExitCode(e as never), err, opts: cmd.opts() };
  }
}

describe('the command-line convention', () => {
  it('answers an unknown flag with one line naming the program, and exit 2', () => {
    const r = run((c) => c.option('--gateway-port <port>', 'port', integerArg), ['--gatway-port', '1']);
    expect(r.exit).toBe(2);
    expect(r.err).toBe("kvix-test: unknown option '--gatway-port' (Did you mean --gateway-port?) (see --help)\n");
  });

  it('answers a bad value the same way', () => {
    const r = run((c) => c.option('--gateway-port <port>', 'port', integerArg), ['--gateway-port', 'x']);
    expect(r.exit).toBe(2);
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/^kvix-test: option '--gateway-port <port>' argument 'x' is invalid\. expected an integer/);
  });

  it('applies to subcommands, named with their parent', () => {
    const r = run((c) => c.command('keys').option('--block-size <n>'), ['keys', '--blok-size', '2']);
    expect(r.exit).toBe(2);
    expect(r.err).toMatch(/^kvix-test keys: unknown option '--blok-size'/);
  });

  it('exits 0 for --help', () => {
    expect(run((c) => c.option('--x'), ['--help']).exit).toBe(0);
  });

  it('keeps a renamed flag working, hidden, with one warning line', () => {
    const warnings: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (warnings.push(s), true)) as typeof process.stderr.write;
    try {
      const r = run((c) => {
        c.option('--http-port <port>', 'port', integerArg);
        addDeprecatedAlias(c, '--port <port>', '--http-port', integerArg);
      }, ['--port', '8000']);
      expect(r.exit).toBeNull();
      expect(r.opts['port']).toBe(8000);
    } finally {
      process.stderr.write = write;
    }
    expect(warnings).toEqual(['kvix-test: --port is deprecated; use --http-port\n']);
    const help = new Command('kvix-test');
    addDeprecatedAlias(help, '--port <port>', '--http-port');
    expect(help.helpInformation()).not.toContain('--port');
  });
});
