// Runs one Node arm of the index-peers benchmark in a process of its own (its heap figure is its own).
// Usage: node --expose-gc worker.js <kvix|naive> <workload file>
import { runNodeArm, type NodeArm } from './node-arms.js';

const arm = process.argv[2] as NodeArm;
const result = await runNodeArm(arm, process.argv[3]!);
process.stdout.write(`${JSON.stringify(result)}\n`);
