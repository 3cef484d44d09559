import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';

export interface PodSpec {
  name: string;
  port: number;
  eventPort: number;
  replayPort: number;
  args: string[];
  logFile: string;
  /** Another program than the simulator (a Node script run with this Node, or an executable with `exec`). */
  script?: string;
  exec?: string;
}

export interface PodProcess {
  spec: PodSpec;
  pid: number | null;
  restarts: number;
}

/** How a child ended when the supervisor stopped it. */
export interface StopResult {
  name: string;
  /** Exit code, or the signal's name; null if it was not running. */
  exit: number | string | null;
  /** It ignored SIGTERM for the grace period and was killed. */
  killed: boolean;
}

/** An exit this soon after a start is a failure to start, not a crash of a running process. */
const QUICK_FAILURE_MS = 10_000;
const MAX_QUICK_FAILURES = 3;

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** The last non-empty line a process wrote to its log since `offset` (a JSON log line's msg/err if it is one). */
function lastLine(path: string, offset: number): string | null {
  let text: string;
  try {
    text = readFileSync(path).subarray(offset).toString('utf8');
  } catch {
    return null;
  }
  const line = text.trimEnd().split('\n').pop()?.trim();
  if (!line) return null;
  try {
    const doc = JSON.parse(line) as { msg?: unknown; err?: unknown };
    const shown = [doc.msg, doc.err].filter((x) => typeof x === 'string').join(': ');
    if (shown) return shown.slice(0, 300);
  } catch {
    // not a JSON line
  }
  return line.slice(0, 300);
}

/** How long an exit waits before it counts as a crash (a Ctrl-C may be on its way to the stack). */
const RESTART_SETTLE_MS = 200;

/**
 * Runs each simulated pod (or router replica, or NATS) as its own process and restarts one that
 * dies, after a pause — what a Kubernetes ReplicaSet does for a deleted pod, so "kill a pod
 * mid-traffic" can be tried locally.
 */
export class PodSupervisor {
  private readonly children = new Map<string, { child: ChildProcess | null; info: PodProcess; timer: NodeJS.Timeout | null; startedAt: number; quickFailures: number; logOffset: number }>();
  private stopping = false;

  constructor(
    private readonly simBin: string,
    private readonly restartDelayMs: number,
    private readonly onEvent: (message: string) => void,
  ) {}

  start(spec: PodSpec): PodProcess {
    const info: PodProcess = { spec, pid: null, restarts: 0 };
    this.children.set(spec.name, { child: null, info, timer: null, startedAt: 0, quickFailures: 0, logOffset: 0 });
    this.launch(spec.name);
    return info;
  }

  pods(): PodProcess[] {
    return [...this.children.values()].map((c) => c.info);
  }

  /**
   * From now on an exiting child is not restarted (call it as soon as a stop is decided: Ctrl-C
   * reaches the children too, and their exits must not read as crashes).
   */
  beginStop(): void {
    this.stopping = true;
    for (const c of this.children.values()) {
      if (c.timer) clearTimeout(c.timer);
      c.timer = null;
    }
  }

  /** Stops every child (SIGTERM, SIGKILL after 5 s) and says how each ended. */
  async stop(): Promise<StopResult[]> {
    this.beginStop();
    return Promise.all(
      [...this.children.values()].map(
        (c) =>
          new Promise<StopResult>((resolve) => {
            const child = c.child;
            const name = c.info.spec.name;
            if (!child) return resolve({ name, exit: null, killed: false });
            const ended = (): StopResult => ({ name, exit: child.exitCode ?? child.signalCode ?? null, killed });
            let killed = false;
            if (child.exitCode !== null || child.signalCode !== null) return resolve(ended());
            const kill = setTimeout(() => {
              killed = true;
              child.kill('SIGKILL');
            }, 5000);
            child.once('exit', () => {
              clearTimeout(kill);
              resolve(ended());
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }

  private launch(name: string): void {
    const entry = this.children.get(name)!;
    const { spec } = entry.info;
    entry.logOffset = sizeOf(spec.logFile);
    entry.startedAt = Date.now();
    const log = openSync(spec.logFile, 'a');
    const child = spec.exec ? spawn(spec.exec, spec.args, { stdio: ['ignore', log, log] }) : spawn(process.execPath, [spec.script ?? this.simBin, ...spec.args], { stdio: ['ignore', log, log] });
    closeSync(log);
    entry.child = child;
    entry.info.pid = child.pid ?? null;
    child.once('exit', (code, signal) => {
      entry.info.pid = null;
      if (this.stopping) return;
      // Ctrl-C reaches every process of the terminal at once: give the stack's own signal handler
      // a moment to say this is a stop before calling the exit a crash.
      setTimeout(() => {
        if (this.stopping) return;
        // A process that dies soon after starting says why in its last log line; one that keeps
        // doing so is left down (a restart loop hides the cause), as a CrashLoopBackOff would show.
        const quick = Date.now() - entry.startedAt < QUICK_FAILURE_MS;
        entry.quickFailures = quick ? entry.quickFailures + 1 : 0;
        const why = quick ? lastLine(spec.logFile, entry.logOffset) : null;
        const exit = signal ?? `code ${code}`;
        if (entry.quickFailures >= MAX_QUICK_FAILURES) {
          this.onEvent(`${name} (port ${spec.port}) exited (${exit}) ${entry.quickFailures} times in a row right after starting; not restarting it${why ? `: ${why}` : ''} (log: ${spec.logFile})`);
          return;
        }
        this.onEvent(`${name} (port ${spec.port}) exited (${exit})${why ? `: ${why}` : ''}; restarting it in ${this.restartDelayMs / 1000} s, as a ReplicaSet would (log: ${spec.logFile})`);
        entry.timer = setTimeout(() => {
          entry.timer = null;
          if (this.stopping) return;
          entry.info.restarts++;
          this.launch(name);
          this.onEvent(`${name} restarted (pid ${entry.info.pid})`);
        }, this.restartDelayMs);
      }, RESTART_SETTLE_MS);
    });
  }
}
