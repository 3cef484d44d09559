#!/usr/bin/env node
// `npm start`: build what is stale (turbo's cache skips the rest), saying what it compiles, then
// the whole stack on one machine with embedded defaults — simulated vLLM pods, KV-event ingestion
// and index, the endpoint picker as gateway and ext_proc server. `kvix stack --help` lists the
// knobs (`npm start -- --pods 5`); docs/tour.md walks through it.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const kvix = fileURLToPath(new URL('../packages/cli/bin/kvix.js', import.meta.url));
const say = (line) => process.stdout.write(`${line}\n`);

/**
 * turbo's own output, reduced to one line per package it compiles ("[build] compiling @kvix/kv-index…")
 * and anything a compiler says (errors). Cache hits are counted, not listed.
 */
function build() {
  return new Promise((resolve) => {
    const started = Date.now();
    const turbo = spawn(process.execPath, [fileURLToPath(new URL('../node_modules/turbo/bin/turbo', import.meta.url)), 'run', 'build', '--output-logs=new-only', '--log-order=stream', '--log-prefix=task'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1', FORCE_COLOR: '0', NO_COLOR: '1' },
    });
    let compiled = 0;
    let cached = 0;
    const failed = [];
    const onLine = (raw) => {
      // eslint-disable-next-line no-control-regex
      const line = raw.replace(/\x1b\[[0-9;]*m/g, '');
      const scope = /Running build in (\d+) packages/.exec(line);
      if (scope) {
        return say(`[build] checking ${scope[1]} packages (only what changed is compiled)…`);
      }
      const task = /^(\S+):build: (.*)$/.exec(line);
      if (!task) {
        if (/ERROR|error/.test(line) && !/^\s*$/.test(line)) say(`[build] ${line.trim()}`);
        return;
      }
      const [, pkg, text] = task;
      if (/^cache miss, executing/.test(text)) {
        compiled++;
        return say(`[build] compiling ${pkg}…`);
      }
      if (/^cache hit/.test(text)) {
        cached++;
        return;
      }
      // npm's own banner lines and blank lines say nothing; a compiler's do.
      if (text.trim() === '' || /^> /.test(text.trim())) return;
      if (/npm error/.test(text)) {
        if (!failed.includes(pkg)) failed.push(pkg);
        return;
      }
      say(`  ${pkg}: ${text}`);
    };
    createInterface({ input: turbo.stdout }).on('line', onLine);
    createInterface({ input: turbo.stderr }).on('line', onLine);
    turbo.on('exit', (code) => {
      const seconds = ((Date.now() - started) / 1000).toFixed(0);
      if (code === 0) say(`[build] done in ${seconds} s: ${compiled} compiled, ${cached} up to date`);
      else say(`[build] failed after ${seconds} s${failed.length ? ` in ${failed.join(', ')}` : ''} (npm run build shows everything)`);
      resolve(code ?? 1);
    });
  });
}

const built = await build();
if (built !== 0) process.exit(built);

const child = spawn(process.execPath, [kvix, 'stack', ...process.argv.slice(2)], { stdio: 'inherit' });
// Ctrl-C reaches the child through the terminal's process group; a SIGTERM to npm is passed on.
process.on('SIGTERM', () => child.kill('SIGTERM'));
process.on('SIGINT', () => undefined);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
