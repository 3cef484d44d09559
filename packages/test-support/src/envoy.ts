import { ENVOY_INSTALL_HINT, EnvoyError, EnvoyProcess, findEnvoy, localEnvoyConfig, readEnvoyConfig, type EnvoyConfig, type LocalEnvoyOptions, type StartEnvoyOptions } from '@kvix/envoy';

/**
 * The Envoy binary tests run: `KVIX_ENVOY_BIN`, else the repo's
 * `.venv-envoy`, else `envoy` on PATH. A missing Envoy fails the test with one line saying how to
 * install it (in CI and out of it): a test that needs the real part never skips.
 * @throws EnvoyError ENVOY_NOT_FOUND
 */
export function envoyBinary(): string {
  const found = findEnvoy();
  if (found) return found.path;
  const where = process.env.KVIX_ENVOY_BIN ? `KVIX_ENVOY_BIN=${process.env.KVIX_ENVOY_BIN} is not an executable` : 'Envoy is not installed';
  throw new EnvoyError('ENVOY_NOT_FOUND', `${where}: ${ENVOY_INSTALL_HINT}${process.env.CI ? ' (.ci/run installs it)' : ''}`);
}

/** Starts a real Envoy (a unique base id, admin on loopback, killed if the test process exits). */
export function startEnvoy(options: Omit<StartEnvoyOptions, 'bin'> & { bin?: string }): Promise<EnvoyProcess> {
  return EnvoyProcess.start({ ...options, bin: options.bin ?? envoyBinary() });
}

/**
 * The shipped `deploy/envoy/envoy.yaml`, pointed at local EPP replicas and pods, listener and
 * admin on loopback port 0 (read the ports back from the running Envoy). Only addresses change.
 */
export function shippedEnvoyConfig(options: LocalEnvoyOptions): EnvoyConfig {
  return localEnvoyConfig(options, readEnvoyConfig());
}

/** The shipped configuration, pointed at local processes, running. */
export function startShippedEnvoy(options: LocalEnvoyOptions & Omit<StartEnvoyOptions, 'config' | 'bin'>): Promise<EnvoyProcess> {
  const { extProc, pods, listen, admin, ...rest } = options;
  return startEnvoy({ ...rest, config: shippedEnvoyConfig({ extProc, pods, ...(listen ? { listen } : {}), ...(admin ? { admin } : {}) }) });
}
