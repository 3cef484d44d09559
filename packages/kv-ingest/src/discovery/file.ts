import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { parseEndpointsDocument, type EntryDefaults } from './endpoints-file.js';
import type { DiscoverySource, PodTarget } from './types.js';

const MAX_FILE_BYTES = 1024 * 1024;

export interface FileDiscoveryOptions {
  path: string;
  defaults: EntryDefaults;
  /** Per-pod mode (true) or centralized mode (pods connect to us; no event endpoints to dial). */
  eventsByPod: boolean;
  /** Also re-check the file this often, for filesystems whose change notifications are unreliable. */
  pollIntervalMs: number;
  logger: Logger;
}

/**
 * Pods from a YAML/JSON endpoints file, reloaded when it changes. Writers should replace the file
 * by an atomic rename (write a temporary file, rename it over): the directory is watched, so the
 * new file is seen whatever happened to the old inode. A file that fails to parse keeps the last
 * good snapshot; a malformed entry is skipped with a logged reason.
 */
export class FileDiscovery implements DiscoverySource {
  readonly name = 'file';
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private lastSignature = '';
  private lastText: string | null = null;
  private onSnapshot: ((targets: readonly PodTarget[]) => void) | null = null;
  /** Reloads in flight are serialised so snapshots arrive in file order. */
  private reloading: Promise<void> = Promise.resolve();

  constructor(private readonly options: FileDiscoveryOptions) {}

  async start(onSnapshot: (targets: readonly PodTarget[]) => void): Promise<void> {
    this.onSnapshot = onSnapshot;
    await this.reload(true);
    const file = basename(this.options.path);
    try {
      this.watcher = watch(dirname(this.options.path), { persistent: false }, (_event, name) => {
        if (name === null || name.toString() === file) this.schedule();
      });
      this.watcher.on('error', (err) => this.options.logger.warn({ err: err.message, path: this.options.path }, 'endpoints file watcher failed; polling only'));
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message, path: this.options.path }, 'cannot watch the endpoints directory; polling only');
    }
    this.poller = setInterval(() => this.schedule(), this.options.pollIntervalMs);
    this.poller.unref();
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    this.watcher = null;
    if (this.poller) clearInterval(this.poller);
    if (this.debounce) clearTimeout(this.debounce);
    this.onSnapshot = null;
    await this.reloading;
  }

  private schedule(): void {
    if (this.debounce) return;
    // A rename produces several notifications in a row: read once they settle.
    this.debounce = setTimeout(() => {
      this.debounce = null;
      this.reloading = this.reloading.then(() => this.reload(false)).catch(() => undefined);
    }, 50);
  }

  private async reload(initial: boolean): Promise<void> {
    const { path, logger } = this.options;
    let text: string;
    try {
      const info = await stat(path);
      if (info.size > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
      const signature = `${info.ino}:${info.size}:${info.mtimeMs}`;
      if (!initial && signature === this.lastSignature) return;
      this.lastSignature = signature;
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (initial) throw new Error(`cannot read endpoints file ${path}: ${(err as Error).message}`, { cause: err });
      logger.warn({ path, err: (err as Error).message }, 'endpoints file unreadable; keeping the last good list');
      return;
    }
    if (!initial && text === this.lastText) return;
    try {
      const { targets, problems } = parseEndpointsDocument(parseYaml(text), this.options.defaults, this.options.eventsByPod);
      for (const problem of problems) logger.warn({ path, problem }, 'endpoints file entry skipped');
      this.lastText = text;
      logger.info({ path, pods: targets.length, skipped: problems.length }, initial ? 'endpoints file loaded' : 'endpoints file reloaded');
      this.onSnapshot?.(targets);
    } catch (err) {
      if (initial) throw new Error(`invalid endpoints file ${path}: ${(err as Error).message}`, { cause: err });
      logger.warn({ path, err: (err as Error).message }, 'endpoints file invalid; keeping the last good list');
    }
  }
}
