import { CommanderError, Option, type Command } from 'commander';

/** Exit code of a command line the program cannot run with (bad flag, bad value, taken port). */
export const EXIT_USAGE = 2;

function fullName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Commander's messages on one line: "error: unknown option '--x'\n(Did you mean --y?)". */
function oneLineError(text: string): string {
  return text
    .replace(/^error:\s*/i, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
}

/**
 * kvix's command-line convention on a command and its subcommands: a bad flag or value is one
 * line on stderr naming the program, and exit code 2 (`--help` and `--version` exit 0).
 * Commands added later must call this again (commander does not pass settings on to them).
 */
export function applyCommandLineConvention(cmd: Command): Command {
  cmd.exitOverride();
  cmd.configureOutput({ outputError: (text, write) => write(`${fullName(cmd)}: ${oneLineError(text)} (see --help)\n`) });
  cmd.showSuggestionAfterError(true);
  for (const sub of cmd.commands) applyCommandLineConvention(sub);
  return cmd;
}

/** The exit code for an error commander threw (after printing its line): 0 for help/version, else 2. */
export function commanderExitCode(err: CommanderError): number {
  return err.exitCode === 0 ? 0 : EXIT_USAGE;
}

/**
 * Parses the command line under the convention: exits 0 after --help/--version, 2 with one line
 * for a bad flag or value.
 */
export function parseCommandLine(program: Command, argv: readonly string[] = process.argv): Command {
  applyCommandLineConvention(program);
  try {
    program.parse(argv as string[]);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(commanderExitCode(err));
    throw err;
  }
  return program;
}

/**
 * Keeps an old flag name working: hidden from --help, one warning line when used. Bind its
 * attribute (commander's camelCase of the old name) to the same configuration path as the new flag.
 */
export function addDeprecatedAlias(cmd: Command, flags: string, replacement: string, parse?: (value: string) => unknown): Command {
  const option = new Option(flags, `deprecated: use ${replacement}`).hideHelp();
  if (parse) option.argParser((value: string) => parse(value));
  cmd.addOption(option);
  cmd.on(`option:${option.name()}`, () => {
    process.stderr.write(`${fullName(cmd)}: ${option.long ?? flags} is deprecated; use ${replacement}\n`);
  });
  return cmd;
}
