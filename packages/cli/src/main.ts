import { BlockKeysError } from '@kvix/block-keys';
import { Command, CommanderError } from 'commander';
import { registerBench } from './commands/bench.js';
import { registerDecode } from './commands/decode.js';
import { registerEngineHash } from './commands/engine-hash.js';
import { registerKeys } from './commands/keys.js';
import { registerSim } from './commands/sim.js';
import { registerStack } from './commands/stack.js';
import { EXIT_BAD_INPUT, EXIT_FAILURE, UsageError, oneLine } from './io.js';
import { VERSION } from './version.js';

const program = new Command('kvix')
  .description('kvix: KV-cache-aware routing for vLLM fleets. Debugging and local tooling.')
  .version(VERSION)
  .exitOverride();

registerKeys(program);
registerEngineHash(program);
registerDecode(program);
registerBench(program);
registerStack(program);
// The simulator's flags live in its package: load it only for `kvix sim` and for help.
const wantsHelp = process.argv.includes('--help') || process.argv.includes('-h') || process.argv[2] === 'help' || process.argv.length <= 2;
if (process.argv[2] === 'sim' || wantsHelp) await registerSim(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version exit 0; unknown options or commands are bad input.
    process.exitCode = err.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
  } else if (err instanceof UsageError) {
    process.stderr.write(`${oneLine(err.message)}\n`);
    process.exitCode = EXIT_BAD_INPUT;
  } else if (err instanceof BlockKeysError) {
    // The library does not know which command asked; UsageErrors already name it.
    process.stderr.write(`${process.argv[2] ?? 'kvix'}: ${oneLine(err.message)}\n`);
    process.exitCode = EXIT_BAD_INPUT;
  } else {
    process.stderr.write(`kvix: internal error: ${oneLine(err instanceof Error ? (err.stack ?? err.message) : String(err))}\n`);
    process.exitCode = EXIT_FAILURE;
  }
}
