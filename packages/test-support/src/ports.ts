import { createServer, type Server } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';

/**
 * A TCP port free on 127.0.0.1 right now, below the ephemeral range (tests bind it soon after). Not
 * the OS's pick for port 0: that comes from the ephemeral range, where any outgoing connection of a
 * parallel test may take it between our check and the bind (CI saw EADDRINUSE from exactly that).
 */
export function freePort(): Promise<number> {
  return freePortRange(1);
}

/** Binds `port` on 127.0.0.1 (resolves the server) or rejects when it is taken. */
function hold(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
}

// Below Linux's ephemeral range (32768+): the OS never hands these out for port 0 or for outgoing
// connections, so a range found free stays free unless another test picks the same one.
const RANGE_LOW = 20_000;
const RANGE_HIGH = 32_000;

/**
 * Ports this process has handed out: free when checked, but a test binds them only later, so a
 * later pick must not return them again (a test's single ports and its ranges collided: CI saw a
 * gateway port inside the KV-event replay range picked after it). Forgotten once half the range is
 * given, by then long bound or released.
 */
const given = new Set<number>();

function overlapsGiven(base: number, count: number): boolean {
  for (let i = 0; i < count; i++) if (given.has(base + i)) return true;
  return false;
}

function give(base: number, count: number): void {
  if (given.size + count > (RANGE_HIGH - RANGE_LOW) / 2) given.clear();
  for (let i = 0; i < count; i++) given.add(base + i);
}

/**
 * The first of `count` consecutive ports free right now, for services that derive ports from a
 * base (pod i on base + i, replay on event port + 100).
 */
export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = RANGE_LOW + Math.floor(Math.random() * (RANGE_HIGH - RANGE_LOW - count));
    if (overlapsGiven(base, count)) continue;
    const held: Server[] = [];
    try {
      for (let i = 0; i < count; i++) held.push(await hold(base + i));
      give(base, count);
      return base;
    } catch {
      // taken: try another base
    } finally {
      await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
    }
  }
  throw new Error(`no ${count} consecutive free ports between ${RANGE_LOW} and ${RANGE_HIGH}`);
}

/** Several distinct free ports. */
export async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

/**
 * How much longer than on an idle machine a test may wait before calling something hung: waits are
 * ceilings, never budgets (a loaded 2-core machine or a CPU hog beside the suite slows everything).
 * KVIX_TEST_CEILING_SCALE sets it (default 4), raised to the machine's load per core when that is
 * higher, read when the ceiling is taken (vitest.shared.ts applies the same rule to vitest's timeouts).
 */
export const CEILING_SCALE = Number(process.env['KVIX_TEST_CEILING_SCALE'] ?? '') || 4;

function scaleNow(): number {
  return Math.min(30, Math.max(CEILING_SCALE, Math.ceil(loadavg()[0]! / availableParallelism())));
}

/** A ceiling of `ms` on an idle machine, scaled for this one now (for per-test timeouts and deadlines). */
export function ceiling(ms: number): number {
  return ms * scaleNow();
}

/**
 * Polls until `check` returns a value other than undefined/false. `timeoutMs` is what it would take
 * at most on an idle machine: the wait gives up only after that, scaled (see ceiling). `what` may be
 * a function, read when the wait gives up (a process's output so far, say).
 */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 10_000, what: string | (() => string) = 'condition'): Promise<Exclude<T, false | undefined>> {
  const limit = ceiling(timeoutMs);
  const deadline = Date.now() + limit;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v as Exclude<T, false | undefined>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`gave up after ${limit} ms (${timeoutMs} ms on an idle machine, scaled for its load) waiting for ${typeof what === 'function' ? what() : what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
