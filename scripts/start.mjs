#!/usr/bin/env node
// `npm start`: what runs locally at this stage of kvix. The full local stack (simulated vLLM pods,
// ingestion, index, gateway) replaces this as those services land.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const kvix = fileURLToPath(new URL('../packages/cli/bin/kvix.js', import.meta.url));
const run = (args, input) => spawnSync(process.execPath, [kvix, ...args], { input, encoding: 'utf8' });

const tokens = Array.from({ length: 64 }, (_, i) => 1000 + i);
const keys = run(['keys'], JSON.stringify({ tokens, blockSize: 16, seed: '', model: 'Qwen/Qwen3-8B' }));
const hashes = run(['engine-hash'], JSON.stringify({ algorithm: 'sha256', seed: '0', blockSize: 16, tokens }));
const decoded = run(['decode'], '93cb41da556e414800009181a474797065b0416c6c426c6f636b73436c656172656400');
for (const r of [keys, hashes, decoded]) {
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(1);
  }
}

process.stdout.write(`kvix is built. The kvix CLI works now:

  request keys for a 64-token prompt (what the index stores):
    ${keys.stdout.trim()}
  vLLM's own block hashes for it (sha256, PYTHONHASHSEED=0; what engines publish):
    ${hashes.stdout.trim().slice(0, 160)}…
  a decoded KV-event batch:
    ${decoded.stdout.trim()}

Try:
  npx kvix keys --tokens 1,2,3,4,5,6,7,8 --block-size 4 --model my-model
  npx kvix engine-hash --tokens 1,2,3,4,5,6,7,8 --block-size 4 --seed 0
  npx kvix decode --help
`);
