import { spawn, type ChildProcess } from 'node:child_process';
import { ceiling } from './ports.js';

export interface ManagedProcess {
  readonly child: ChildProcess;
  /** Everything written to stdout and stderr so far (for assertions and failure messages). */
  output(): string;
  /** Resolves with the exit code (or the signal name) once the process ends. */
  readonly exited: Promise<number | string>;
  /** Sends a signal and waits for the exit; SIGKILL after `graceMs` (an idle machine's figure, scaled like every ceiling). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
}

/** Runs a process whose output is kept, and which is killed if the test forgets to stop it. */
export function spawnProcess(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; processGroup?: boolean } = {}): ManagedProcess {
  // processGroup: the child leads a group of its own, so a test can press "Ctrl-C" as a terminal does
  // (a SIGINT to every process of the group: process.kill(-pid, 'SIGINT')).
  const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: options.processGroup === true });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const killOnExit = (): void => {
    if (options.processGroup === true && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
        return;
      } catch {
        // the group is gone
      }
    }
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  void exited.then(() => process.off('exit', killOnExit));
  return {
    child,
    output: () => out,
    exited,
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), ceiling(graceMs));
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

/** A Node.js command-line entry point started per test, with everything it started stopped after. */
export interface NodeCli {
  run(args: readonly string[], env?: NodeJS.ProcessEnv): ManagedProcess;
  /** Kills every process `run` started (call it from afterEach). */
  stopAll(): Promise<void>;
}

/**
 * Runs `bin` with the test's environment minus the developer's own KVIX_* settings, so a test sees
 * only the variables it sets itself.
 */
export function nodeCli(bin: string): NodeCli {
  const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KVIX_')));
  const started: ManagedProcess[] = [];
  return {
    run(args, env = {}) {
      const p = spawnProcess(process.execPath, [bin, ...args], { env: { ...cleanEnv, ...env } });
      started.push(p);
      return p;
    },
    async stopAll() {
      for (const p of started.splice(0)) await p.stop('SIGKILL');
    },
  };
}
