#!/usr/bin/env node
// `npm start` (after the build): the whole stack on one machine with embedded defaults — simulated
// vLLM pods, KV-event ingestion and index, the endpoint picker as gateway and ext_proc server.
// `kvix stack --help` lists the knobs; docs/tour.md walks through it.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const kvix = fileURLToPath(new URL('../packages/cli/bin/kvix.js', import.meta.url));
const child = spawn(process.execPath, [kvix, 'stack', ...process.argv.slice(2)], { stdio: 'inherit' });
// Ctrl-C reaches the child through the terminal's process group; a SIGTERM to npm is passed on.
process.on('SIGTERM', () => child.kill('SIGTERM'));
process.on('SIGINT', () => undefined);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
