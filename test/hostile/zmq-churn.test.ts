import { fileURLToPath } from 'node:url';
import { ceiling, spawnProcess } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('./support/zmq-churn.ts', import.meta.url));
/** CI-sized by default; KVIX_SOAK_SECONDS=600 for a longer soak. */
const SECONDS = Number(process.env['KVIX_SOAK_SECONDS'] ?? 30);

describe('ZeroMQ socket churn', () => {
  it(
    'publishers restarting, subscribers and replay clients coming and going, never abort the process',
    async () => {
      const child = spawnProcess(process.execPath, ['--experimental-strip-types', '--no-warnings', SCRIPT], { env: { ...process.env, KVIX_SOAK_SECONDS: String(SECONDS) } });
      const exit = await child.exited;
      const output = child.output();
      // libzmq's own words when a socket is used from two threads (e.g. "Assertion failed: ... pipe.cpp").
      expect(output).not.toMatch(/Assertion failed/);
      expect(exit, output).toBe(0);
      const counts = JSON.parse(/SURVIVED (\{.*\})/.exec(output)![1]!) as Record<string, number>;
      // The churn really ran: restarts happened while data and replays flowed.
      expect(counts['restarts']).toBeGreaterThan(10);
      expect(counts['received']).toBeGreaterThan(0);
      expect(counts['replayedBatches']).toBeGreaterThan(0);
      expect(counts['centralReceived']).toBeGreaterThan(0);
    },
    // The churn runs for SECONDS of wall-clock time whatever the load; starting and stopping take the rest.
    SECONDS * 1000 + ceiling(60_000),
  );
});
