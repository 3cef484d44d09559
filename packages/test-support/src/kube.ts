import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { freePorts, waitFor } from './ports.js';
import { spawnProcess, type ManagedProcess } from './processes.js';
import { repoRoot } from './vectors.js';

const run = promisify(execFile);

/**
 * A real kube-apiserver backed by a real etcd, private to one test file, on loopback. Built from the
 * Go module proxy by scripts/k8s/build.sh (cached outside the repository); no kubelet, scheduler or
 * controller-manager: pods stay Pending until a test patches their status, which is exactly the
 * control discovery tests need.
 */
export interface KubeApiServer {
  /** https://127.0.0.1:<port> */
  readonly url: string;
  /** A kubeconfig (CA + bearer token of a system:masters user) for clients under test and kubectl. */
  readonly kubeconfig: string;
  readonly token: string;
  readonly binDir: string;
  /** The etcd client URL (tests compact it to provoke 410 Gone). */
  readonly etcdUrl: string;
  /** Runs kubectl against this server; rejects with its output on a non-zero exit. */
  kubectl(args: readonly string[], input?: string): Promise<string>;
  /** Runs helm (KUBECONFIG set to this server). */
  helm(args: readonly string[]): Promise<string>;
  /** Applies every *.yaml of a directory and waits until the CRDs among them are served. */
  applyCrds(dir: string): Promise<void>;
  /** Compacts etcd up to its current revision: every older resourceVersion is gone. Returns the revision. */
  compactEtcd(): Promise<number>;
  /** A kubeconfig authenticating as a service account (a token from the TokenRequest API): RBAC applies to it. */
  serviceAccountKubeconfig(namespace: string, name: string): Promise<string>;
  stop(): Promise<void>;
}

export interface KubeApiServerOptions {
  /** Extra kube-apiserver flags, e.g. ["--watch-cache-sizes=pods#0"]. */
  extraArgs?: readonly string[];
}

class MissingKubePartError extends Error {}

/**
 * The directory of etcd, kube-apiserver, kubectl and helm, building them first when the cache does
 * not have them (a no-op in a second: scripts/install-prerequisites.sh builds them before the tests). A missing Go toolchain
 * or a failed build is an error, never a skipped test.
 */
export function kubeBinDir(): string {
  const script = join(repoRoot(), 'scripts/k8s/build.sh');
  try {
    return execFileSync(script, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 60 * 60 * 1000 }).trim().split('\n').at(-1)!;
  } catch (err) {
    throw new MissingKubePartError(`scripts/k8s/build.sh failed (kube-apiserver and etcd are built from the Go module proxy; needs go): ${(err as Error).message}`);
  }
}

/**
 * The Gateway API Inference Extension CRDs (v1.5.0), which the project may not vendor:
 * $KVIX_GAIE_CRDS, else ../shared/k8s/gaie-crds-v1.5.0 beside the repository. In CI their absence
 * fails; elsewhere the returned `missing` message says what to point the variable at.
 */
export function gaieCrdsDir(): { dir: string; missing: null } | { dir: null; missing: string } {
  const candidates = [process.env['KVIX_GAIE_CRDS'], resolve(repoRoot(), '../shared/k8s/gaie-crds-v1.5.0')].filter((d): d is string => typeof d === 'string' && d !== '');
  for (const dir of candidates) {
    if (existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.yaml'))) return { dir, missing: null };
  }
  const missing = `the Gateway API Inference Extension v1.5.0 CRDs are not available: set KVIX_GAIE_CRDS to a directory holding GAIE's release CRD files (inference.networking.k8s.io_inferencepools.yaml, inference.networking.x-k8s.io_inferencemodelrewrites.yaml, …; from https://github.com/kubernetes-sigs/gateway-api-inference-extension/releases/tag/v1.5.0 manifests.yaml split per CRD, or config/crd/bases of that tag), or place them in ${resolve(repoRoot(), '../shared/k8s/gaie-crds-v1.5.0')}`;
  if (process.env['CI']) throw new MissingKubePartError(`${missing} (CI requires them)`);
  return { dir: null, missing };
}

/** The Gateway API CRDs (Gateway, HTTPRoute, …), fetched by scripts/k8s/build.sh from the Go module proxy into its cache. */
export function gatewayApiCrdsDir(binDir: string): string {
  const dir = join(dirname(binDir), 'crds', 'gateway-api');
  if (!existsSync(dir)) throw new MissingKubePartError(`${dir} is missing: scripts/k8s/build.sh fetches the Gateway API CRDs`);
  return dir;
}

/** The Prometheus Operator's CRDs (ServiceMonitor, …), fetched by scripts/k8s/build.sh from the Go module proxy into its cache. */
export function prometheusOperatorCrdsDir(binDir: string): string {
  const dir = join(dirname(binDir), 'crds', 'prometheus-operator');
  if (!existsSync(dir)) throw new MissingKubePartError(`${dir} is missing: scripts/k8s/build.sh fetches the Prometheus Operator CRDs`);
  return dir;
}

function openssl(args: readonly string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new MissingKubePartError(`openssl ${args[0]} failed (the test API server's certificates are made with openssl): ${(err as Error).message}`);
  }
}

/** A CA, a serving certificate for 127.0.0.1 and a service-account signing key pair. */
function makeCertificates(dir: string): void {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=kvix-test-ca'], dir);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=kube-apiserver'], dir);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext'], dir);
  openssl(['genrsa', '-out', 'sa.key', '2048'], dir);
  openssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
}

function kubeconfigYaml(url: string, caFile: string, user: string, token: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: test`,
    `  cluster: { server: "${url}", certificate-authority: "${caFile}" }`,
    'users:',
    `- name: ${user}`,
    `  user: { token: "${token}" }`,
    'contexts:',
    `- name: test`,
    `  context: { cluster: test, user: ${user}, namespace: default }`,
    'current-context: test',
    '',
  ].join('\n');
}

/** Starts etcd and kube-apiserver on free loopback ports; ready (/readyz) when this resolves (~5 s). */
export async function startKubeApiServer(options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const binDir = kubeBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'kvix-kube-'));
  makeCertificates(dir);
  const token = `kvix-${Math.random().toString(36).slice(2)}`;
  writeFileSync(join(dir, 'tokens.csv'), `${token},kvix-admin,kvix-admin,"system:masters"\n`);
  const [etcdPort, peerPort, apiPort] = (await freePorts(3)) as [number, number, number];
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const procs: ManagedProcess[] = [];
  const stop = async (): Promise<void> => {
    for (const p of procs.reverse()) await p.stop('SIGTERM', 5000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const etcd = spawnProcess(join(binDir, 'etcd'), [
      '--name=kvix-test',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=kvix-test=http://127.0.0.1:${peerPort}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    procs.push(etcd);
    await waitFor(async () => {
      if (etcd.child.exitCode !== null) throw new Error(`etcd exited: ${etcd.output().slice(-600)}`);
      return (await fetch(`${etcdUrl}/health`).then((r) => r.ok).catch(() => false)) || undefined;
    }, 60_000, 'etcd health');

    const url = `https://127.0.0.1:${apiPort}`;
    const apiserver = spawnProcess(join(binDir, 'kube-apiserver'), [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--cert-dir=${dir}`,
      `--tls-cert-file=${join(dir, 'server.crt')}`,
      `--tls-private-key-file=${join(dir, 'server.key')}`,
      `--client-ca-file=${join(dir, 'ca.crt')}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      '--authorization-mode=RBAC',
      '--endpoint-reconciler-type=none',
      // No controller-manager creates each namespace's default ServiceAccount.
      '--disable-admission-plugins=ServiceAccount',
      '--service-cluster-ip-range=10.96.0.0/16',
      '--profiling=false',
      ...(options.extraArgs ?? []),
    ]);
    procs.push(apiserver);
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, kubeconfigYaml(url, join(dir, 'ca.crt'), 'kvix-admin', token));
    const ca = join(dir, 'ca.crt');
    await waitFor(async () => {
      if (apiserver.child.exitCode !== null) throw new Error(`kube-apiserver exited: ${apiserver.output().slice(-1200)}`);
      // curl-free readiness: kubectl speaks TLS with our CA.
      const out = await run(join(binDir, 'kubectl'), ['--kubeconfig', kubeconfig, 'get', '--raw', '/readyz'], { timeout: 10_000 }).then((r) => r.stdout, () => '');
      return out.trim() === 'ok' || undefined;
    }, 120_000, 'kube-apiserver /readyz');

    const env = { ...process.env, KUBECONFIG: kubeconfig, HELM_CACHE_HOME: join(dir, 'helm-cache'), HELM_CONFIG_HOME: join(dir, 'helm-config'), HELM_DATA_HOME: join(dir, 'helm-data') };
    const exec = async (bin: string, args: readonly string[], input?: string): Promise<string> => {
      const child = execFile(join(binDir, bin), [...args], { env, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 });
      child.stdin!.end(input ?? '');
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      const code = await new Promise<number | null>((res) => child.on('close', res));
      if (code !== 0) throw new Error(`${bin} ${args.join(' ')} exited ${code}: ${stderr || stdout}`);
      return stdout;
    };
    const kubectl = (args: readonly string[], input?: string): Promise<string> => exec('kubectl', ['--kubeconfig', kubeconfig, ...args], input);
    return {
      url,
      kubeconfig,
      token,
      binDir,
      etcdUrl,
      kubectl,
      helm: (args) => exec('helm', args),
      async applyCrds(crdDir) {
        await kubectl(['apply', '--server-side', '-f', crdDir]);
        // The directory may hold other objects too (Gateway API ships a ValidatingAdmissionPolicy).
        await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
      },
      async compactEtcd() {
        const range = (await (await fetch(`${etcdUrl}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/').toString('base64') }) })).json()) as { header: { revision: string } };
        const revision = Number(range.header.revision);
        const res = await fetch(`${etcdUrl}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision: String(revision), physical: true }) });
        if (!res.ok) throw new Error(`etcd compaction failed: ${res.status} ${await res.text()}`);
        return revision;
      },
      async serviceAccountKubeconfig(namespace, name) {
        const saToken = (await kubectl(['create', 'token', name, '-n', namespace, '--duration=1h'])).trim();
        const file = join(dir, `kubeconfig-${namespace}-${name}`);
        writeFileSync(file, kubeconfigYaml(url, ca, 'service-account', saToken).replace('namespace: default', `namespace: ${namespace}`));
        return file;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
