/**
 * Throwaway certificates for TLS tests, made at run time with the openssl CLI (no private key is
 * ever committed): a CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a
 * second CA that signed nothing of ours, to check that a wrong CA is refused.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA unrelated to the others. */
  otherCaCert: string;
  /** A client certificate signed by the other CA. */
  otherClientCert: string;
  otherClientKey: string;
  dispose(): void;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new Error(`openssl ${args[0]} failed (openssl is needed to make test certificates; .ci/run installs it): ${(err as Error).message}`, { cause: err });
  }
}

function ca(dir: string, name: string): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.pem`], dir);
}

function leaf(dir: string, name: string, caName: string, usage: 'serverAuth' | 'clientAuth'): void {
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
  writeFileSync(join(dir, `${name}.ext`), `basicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n`);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'kvix-pki-'));
  ca(dir, 'ca');
  ca(dir, 'other-ca');
  leaf(dir, 'server', 'ca', 'serverAuth');
  leaf(dir, 'client', 'ca', 'clientAuth');
  leaf(dir, 'other-client', 'other-ca', 'clientAuth');
  const at = (f: string): string => join(dir, f);
  return {
    dir,
    caCert: at('ca.pem'),
    serverCert: at('server.pem'),
    serverKey: at('server.key'),
    clientCert: at('client.pem'),
    clientKey: at('client.key'),
    otherCaCert: at('other-ca.pem'),
    otherClientCert: at('other-client.pem'),
    otherClientKey: at('other-client.key'),
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
