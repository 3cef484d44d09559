import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';

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

/**
 * Runs each simulated pod (or router replica, or NATS) as its own process and restarts one that
 * dies, after a pause — what a Kubernetes ReplicaSet does for a deleted pod, so "kill a pod
 * mid-traffic" can be tried locally.
 */
export class PodSupervisor {
  private readonly children = new Map<string, { child: ChildProcess | null; info: PodProcess; timer: NodeJS.Timeout | null }>();
  private stopping = false;

  constructor(
    private readonly simBin: string,
    private readonly restartDelayMs: number,
    private readonly onEvent: (message: string) => void,
  ) {}

  start(spec: PodSpec): PodProcess {
    const info: PodProcess = { spec, pid: null, restarts: 0 };
    this.children.set(spec.name, { child: null, info, timer: null });
    this.launch(spec.name);
    return info;
  }

  pods(): PodProcess[] {
    return [...this.children.values()].map((c) => c.info);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.children.values()].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.timer) clearTimeout(c.timer);
            const child = c.child;
            if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
            const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
            child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }

  private launch(name: string): void {
    const entry = this.children.get(name)!;
    const { spec } = entry.info;
    const log = openSync(spec.logFile, 'a');
    const child = spec.exec ? spawn(spec.exec, spec.args, { stdio: ['ignore', log, log] }) : spawn(process.execPath, [spec.script ?? this.simBin, ...spec.args], { stdio: ['ignore', log, log] });
    closeSync(log);
    entry.child = child;
    entry.info.pid = child.pid ?? null;
    child.once('exit', (code, signal) => {
      entry.info.pid = null;
      if (this.stopping) return;
      this.onEvent(`${name} (port ${spec.port}) exited (${signal ?? `code ${code}`}); restarting it in ${this.restartDelayMs / 1000} s, as a ReplicaSet would`);
      entry.timer = setTimeout(() => {
        entry.timer = null;
        entry.info.restarts++;
        this.launch(name);
        this.onEvent(`${name} restarted (pid ${entry.info.pid})`);
      }, this.restartDelayMs);
    });
  }
}
