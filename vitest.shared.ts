import { availableParallelism, loadavg } from 'node:os';

/**
 * Test ceilings, not budgets. Every kvix test awaits the event or probe it needs (the project rule);
 * these timeouts only stop a test that hangs. They are generous because a loaded 2-core machine
 * (CI, a shared host, a CPU hog beside the suite) can make a healthy test take minutes: the scale is
 * KVIX_TEST_CEILING_SCALE (default 4), or the machine's load per core when that is higher (a host
 * at load 50 on 2 cores runs every process ~25 times slower). @kvix/test-support's waitFor and
 * ceiling() use the same rule.
 */
export const CEILING_SCALE = Math.min(30, Math.max(Number(process.env['KVIX_TEST_CEILING_SCALE'] ?? '') || 4, Math.ceil(loadavg()[0]! / availableParallelism())));

/**
 * vitest's testTimeout and hookTimeout (`baseMs` on an idle machine, times the scale), and
 * expect.poll's (vitest's own default, 1 s, is a budget a loaded machine misses).
 */
export function testCeilings(baseMs = 30_000): { testTimeout: number; hookTimeout: number; expect: { poll: { timeout: number; interval: number } } } {
  return { testTimeout: baseMs * CEILING_SCALE, hookTimeout: baseMs * CEILING_SCALE, expect: { poll: { timeout: 5_000 * CEILING_SCALE, interval: 20 } } };
}
