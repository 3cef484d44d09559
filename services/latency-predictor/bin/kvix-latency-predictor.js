#!/usr/bin/env node
// Committed launcher: npm links workspace bins at install time, before `npm run build` creates dist/.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('kvix-latency-predictor: not built yet; run `npm run build` at the repository root first\n');
  process.exit(1);
}
await import(entry.href);
