import { parseArgs } from 'node:util';
import { checkPortsFree, PortConflictError, PortInUseError } from '@kvix/service-kit';
import { EnvoySim } from './envoy-sim.js';
import { EnvoySimError } from './errors.js';
import type { EnvoySimOptions } from './options.js';
import type { ExtProcRetryOn } from './processor-failure.js';

const USAGE = `kvix-envoy-sim: an HTTP front that behaves like Envoy running deploy/envoy/envoy.yaml (ext_proc + the pool's
override_host policy; ORIGINAL_DST without a pool), for where no Envoy can run

  --ext-proc <host:port,...>      ext_proc servers (kvix's EPP: port 9002), round robin  [required]
  --http-host <addr>              listen address                                        [127.0.0.1]
  --http-port <n>                 listen port                                           [8080]
  --message-timeout-ms <n>        processor silence before 504                          [10000]
  --chunk-size <bytes>            body chunk size sent to the processor                 [16384]
  --subset <ip:port,...>          send this subset hint (envoy.lb.subset_hint) with every request
  --default-upstream <host:port,...>  the pool: the processor's envoy.lb list is walked over it, and requests
                                  it did not route go to it round robin (without it: ORIGINAL_DST)
  --upstream-retries <n>          endpoints tried after one refuses or resets before answering  [2]
  --failure-mode-allow            skip a failing processor instead of answering 500/504 (FailOpen)
  --ext-proc-retry-on <list>      retry a stream on another host after: connect-failure, reset,
                                  unavailable ('' for none)                             [connect-failure,unavailable]
  --ext-proc-num-retries <n>      retries per stream                                    [one per other host]
  --ext-proc-ejection-ms <n>      how long a host is skipped after a failed connect or reset  [5000]
  --ext-proc-tls-ca <file>        speak TLS to the ext_proc servers, verifying them against this CA (PEM)
  --ext-proc-tls-cert <file>      client certificate for ext_proc servers that require mutual TLS
  --ext-proc-tls-key <file>       key of --ext-proc-tls-cert
  --ext-proc-tls-server-name <n>  the name the servers' certificate carries (default: the host dialled)
  --log                           one JSON line per request on stdout
`;

const list = (v: string | undefined) =>
  v === undefined
    ? undefined
    : v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'ext-proc': { type: 'string' },
      'http-host': { type: 'string' },
      'http-port': { type: 'string' },
      // Deprecated names (before the --<listener>-host/-port convention, docs/CONVENTIONS.md).
      host: { type: 'string' },
      port: { type: 'string' },
      'message-timeout-ms': { type: 'string' },
      'chunk-size': { type: 'string' },
      subset: { type: 'string' },
      'default-upstream': { type: 'string' },
      'upstream-retries': { type: 'string' },
      'failure-mode-allow': { type: 'boolean' },
      'ext-proc-retry-on': { type: 'string' },
      'ext-proc-num-retries': { type: 'string' },
      'ext-proc-ejection-ms': { type: 'string' },
      'ext-proc-tls-ca': { type: 'string' },
      'ext-proc-tls-cert': { type: 'string' },
      'ext-proc-tls-key': { type: 'string' },
      'ext-proc-tls-server-name': { type: 'string' },
      log: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  for (const old of ['host', 'port'] as const) if (values[old] !== undefined) process.stderr.write(`kvix-envoy-sim: --${old} is deprecated; use --http-${old}\n`);
  const number = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const options: EnvoySimOptions = {
    extProcTargets: list(values['ext-proc']) ?? [],
    host: values['http-host'] ?? values.host,
    port: number(values['http-port'] ?? values.port) ?? 8080,
    messageTimeoutMs: number(values['message-timeout-ms']),
    chunkSize: number(values['chunk-size']),
    defaultUpstream: list(values['default-upstream']),
    upstreamRetries: number(values['upstream-retries']),
    failureModeAllow: values['failure-mode-allow'] ?? false,
    extProcRetryOn: list(values['ext-proc-retry-on']) as ExtProcRetryOn[] | undefined,
    extProcNumRetries: number(values['ext-proc-num-retries']),
    extProcEjectionMs: number(values['ext-proc-ejection-ms']),
    ...extProcTlsOf(values),
    ...(values.subset ? { metadataContext: { 'envoy.lb.subset_hint': { 'x-gateway-destination-endpoint-subset': values.subset.split(',') } } } : {}),
  };
  await checkPortsFree([{ name: 'listener', flag: '--http-port', host: options.host ?? '127.0.0.1', port: options.port ?? 0 }]);
  const sim = await EnvoySim.start(options);
  if (values.log) sim.on('exchange', (report) => process.stdout.write(`${JSON.stringify(report)}\n`));
  process.stderr.write(`kvix-envoy-sim listening on ${sim.url}, ext_proc at ${options.extProcTargets?.join(', ')}\n`);
  const stop = () => void sim.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  const message = err instanceof EnvoySimError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  // One line (docs/CONVENTIONS.md): bad flags and options exit 2; a failure to start exits 1.
  const usage = err instanceof EnvoySimError ? err.code === 'INVALID_OPTIONS' : (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
  const inUse = err instanceof PortInUseError || err instanceof PortConflictError || (err as { code?: string }).code === 'EADDRINUSE';
  process.stderr.write(`kvix-envoy-sim: ${message.replace(/\s*\n\s*/g, ' ')}${usage ? ' (see --help)' : ''}\n`);
  process.exit(usage || inUse ? 2 : 1);
});

/** --ext-proc-tls-* into the TLS setting (none of them: plaintext). */
function extProcTlsOf(values: { 'ext-proc-tls-ca'?: string | undefined; 'ext-proc-tls-cert'?: string | undefined; 'ext-proc-tls-key'?: string | undefined; 'ext-proc-tls-server-name'?: string | undefined }): Pick<EnvoySimOptions, 'extProcTls'> {
  const tls = { caFile: values['ext-proc-tls-ca'], certFile: values['ext-proc-tls-cert'], keyFile: values['ext-proc-tls-key'], serverName: values['ext-proc-tls-server-name'] };
  if (Object.values(tls).every((v) => v === undefined)) return {};
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) throw new EnvoySimError('INVALID_OPTIONS', '--ext-proc-tls-cert and --ext-proc-tls-key go together');
  return { extProcTls: tls };
}
