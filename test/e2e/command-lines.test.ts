import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { freePort, repoRoot, spawnProcess } from '@kvix/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Every binary a user runs, with the flag that sets its (first) listening port (docs/CONVENTIONS.md).
const BINARIES: { bin: string; args: string[]; portFlag: string }[] = [
  { bin: 'kvix-epp', args: ['--pod', '127.0.0.1:1'], portFlag: '--gateway-port' },
  { bin: 'kvix-indexer', args: ['--pod', '127.0.0.1:1'], portFlag: '--http-port' },
  { bin: 'kvix-kv-events', args: ['--pod', '127.0.0.1:1'], portFlag: '--http-port' },
  { bin: 'kvix-latency-predictor', args: [], portFlag: '--http-port' },
  { bin: 'kvix-envoy-sim', args: ['--ext-proc', '127.0.0.1:1'], portFlag: '--http-port' },
  { bin: 'vllm-sim', args: [], portFlag: '--port' },
  { bin: 'kvix', args: ['sim'], portFlag: '--base-port' },
];

const run = (bin: string, args: string[]) => spawnProcess(process.execPath, [join(repoRoot(), 'node_modules', '.bin', bin), ...args]);

let held: Server;
let port: number;
beforeAll(async () => {
  port = await freePort();
  held = createServer();
  await new Promise<void>((resolve) => held.listen(port, '127.0.0.1', resolve));
});
afterAll(() => new Promise<void>((resolve) => held.close(() => resolve())));

describe('one command-line surface', () => {
  it('every binary answers an unknown flag with exit 2 and one line naming itself', async () => {
    const results = await Promise.all(BINARIES.map(async ({ bin, args }) => {
      const p = run(bin, [...args, '--no-such-flag']);
      return { bin, exit: await p.exited, output: p.output() };
    }));
    for (const r of results) {
      expect(r.exit, `${r.bin}: ${r.output}`).toBe(2);
      expect(r.output.trimEnd().split('\n'), r.bin).toHaveLength(1);
      expect(r.output, r.bin).toMatch(new RegExp(`^${r.bin === 'kvix' ? 'kvix sim' : r.bin}: unknown option '--no-such-flag'`, 'i'));
    }
  });

  it('every binary checks its port before starting: exit 2, one line naming the port, its flag and who holds it', async () => {
    const results = await Promise.all(BINARIES.map(async ({ bin, args, portFlag }) => {
      const p = run(bin, [...args, portFlag, String(port)]);
      return { bin, portFlag, exit: await p.exited, output: p.output() };
    }));
    for (const r of results) {
      expect(r.exit, `${r.bin}: ${r.output}`).toBe(2);
      expect(r.output.trimEnd().split('\n'), r.bin).toHaveLength(1);
      expect(r.output, r.bin).toMatch(new RegExp(`port ${port} \\(.*${r.portFlag}\\) is in use by pid ${process.pid} `));
    }
  });
});
