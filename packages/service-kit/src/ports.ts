import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';

/** One TCP port a process is about to listen on, and the flag a user changes it with. */
export interface ListenerSpec {
  /** What listens, for messages: "gateway", "ext_proc", "KV events of pod-1". */
  name: string;
  /** The flag (or config key) that sets the port, e.g. "--gateway-port". */
  flag: string;
  host: string;
  /** 0 (any free port) is never checked. */
  port: number;
  /** What to do instead, when not "stop that or pass <flag> <another port>". */
  hint?: string;
}

/**
 * A port another process holds. The message is the one line a user needs: the port, the flag that
 * moves it, and who holds it.
 */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
  readonly code = 'PORT_IN_USE';
  constructor(
    readonly listener: ListenerSpec,
    readonly holder: string | null,
  ) {
    super(`port ${listener.port} (${listener.name}, ${listener.flag}) is in use${holder ? ` by ${holder}` : ''}; ${listener.hint ?? `stop that or pass ${listener.flag} <another port>`}`);
  }
}

/** Two listeners of one process configured on the same port. */
export class PortConflictError extends Error {
  override readonly name = 'PortConflictError';
  readonly code = 'PORT_CONFLICT';
}

/**
 * Checks every listener's port before anything starts, so a taken port is one clear line instead of
 * a half-started process (or a child restarted forever). Resolves when all are free.
 */
export async function checkPortsFree(listeners: readonly ListenerSpec[]): Promise<void> {
  const seen = new Map<number, ListenerSpec>();
  for (const l of listeners) {
    if (l.port === 0) continue;
    const other = seen.get(l.port);
    if (other) throw new PortConflictError(`port ${l.port} is given to both ${other.name} (${other.flag}) and ${l.name} (${l.flag}); give one of them another port`);
    seen.set(l.port, l);
  }
  for (const l of listeners) {
    if (l.port === 0) continue;
    const error = await tryBind(l.host, l.port);
    if (error === null) continue;
    if (error.code === 'EADDRINUSE') throw new PortInUseError(l, describePortHolder(l.port));
    if (error.code === 'EACCES') throw new PortInUseError(l, 'nobody, but binding it needs privileges (ports below 1024)');
    if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN') {
      throw new PortConflictError(`${l.name}: cannot listen on ${l.host}:${l.port}: ${l.host} is not an address of this machine (set the host that goes with ${l.flag})`);
    }
    throw error;
  }
}

function tryBind(host: string, port: number): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    // exclusive: a cluster primary's shared handle must not make a taken port look free.
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(null)));
  });
}

/**
 * Which process listens on a TCP port, as "pid 1234 (node …/kvix-epp.js)", read from /proc (Linux;
 * only processes this user may inspect). Null when it cannot be told.
 */
export function describePortHolder(port: number): string | null {
  try {
    const inodes = listeningInodes(port);
    if (inodes.size === 0) return null;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        let link: string;
        try {
          link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          continue;
        }
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m && inodes.has(m[1]!)) return `pid ${pid} (${commandLine(pid)})`;
      }
    }
    return null;
  } catch {
    return null;
  }
}

function listeningInodes(port: number): Set<string> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // local_address is addr:PORT in hex; state 0A is LISTEN; the inode is column 9.
      if (cols.length > 9 && cols[1]!.endsWith(`:${hex}`) && cols[3] === '0A') inodes.add(cols[9]!);
    }
  }
  return inodes;
}

function commandLine(pid: string): string {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
    // The program and its script by file name (`node kvix-epp.js --gateway-port 8080`), the rest as typed.
    const shown = args.map((a, i) => (i <= 1 && a.includes('/') ? a.slice(a.lastIndexOf('/') + 1) : a)).join(' ');
    return shown.length > 120 ? `${shown.slice(0, 117)}…` : shown || 'unknown';
  } catch {
    return 'unknown';
  }
}
