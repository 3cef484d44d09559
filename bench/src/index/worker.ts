// Runs one side of the index benchmark in a process of its own, so its heap figures are its own.
// Usage: node --expose-gc worker.js <json options>
import { runIndexSide, type IndexSideOptions } from './index-side.js';

const options = JSON.parse(process.argv[2] ?? '{}') as IndexSideOptions;
const result = await runIndexSide(options);
process.stdout.write(`${JSON.stringify(result)}\n`);
