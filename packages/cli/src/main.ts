import { BlockKeysError } from '@kvix/block-keys';
// The command-line convention alone: the CLI's debugging commands start without a service's dependencies.
import { applyCommandLineConvention, commanderExitCode } from '@kvix/service-kit/command-line';
import { Command, CommanderError } from 'commander';
import { registerBench } from './commands/bench.js';
import { registerDecode } from './commands/decode.js';
import { registerEngineHash } from './commands/engine-hash.js';
import { registerKeys } from './commands/keys.js';
import { registerSim } from './commands/sim.js';
import { registerStack } from './commands/stack.js';
import { EXIT_BAD_INPUT, EXIT_FAILURE, UsageError, oneLine } from './io.js';
import { VERSION } from './version.js';

const program = new Command('kvix').description('kvix: KV-cache-aware routing for vLLM fleets. Debugging and local tooling.').version(VERSION);

registerKeys(program);
registerEngineHash(program);
registerDecode(program);
registerBench(program);
registerStack(program);
// The simulator's flags live in its package: load it only for `kvix sim` and for help.
const wantsHelp = process.argv.includes('--help') || process.argv.includes('-h') || process.argv[2] === 'help' || process.argv.length <= 2;
if (process.argv[2] === 'sim' || wantsHelp) await registerSim(program);
// After every command is registered: commander does not pass these settings on to added commands.
applyCommandLineConvention(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version exit 0; unknown options, bad values or commands are bad input (one line, printed already).
    process.exitCode = commanderExitCode(err);
  } else if (err instanceof UsageError) {
    process.stderr.write(`${oneLine(err.message)}\n`);
    process.exitCode = EXIT_BAD_INPUT;
  } else if (err instanceof BlockKeysError) {
    // The library does not know which command asked; UsageErrors already name it.
    process.stderr.write(`${process.argv[2] ?? 'kvix'}: ${oneLine(err.message)}\n`);
    process.exitCode = EXIT_BAD_INPUT;
  } else {
    // One line; the stack only on request (it is for a bug report, not for the user).
    const debug = process.env['KVIX_DEBUG'] === '1';
    const text = err instanceof Error ? (debug ? (err.stack ?? err.message) : err.message) : String(err);
    process.stderr.write(`kvix: internal error: ${oneLine(text)}${debug ? '' : ' (KVIX_DEBUG=1 shows where)'}\n`);
    process.exitCode = EXIT_FAILURE;
  }
}
