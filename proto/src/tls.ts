/** gRPC credentials from PEM files: TLS for kvix's gRPC servers and clients, mutual when asked. */
import { readFileSync } from 'node:fs';
import { credentials, ServerCredentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';

export interface GrpcServerTls {
  certFile: string;
  keyFile: string;
  /** Clients must present a certificate this CA signed (mutual TLS). */
  clientCaFile?: string | undefined;
}

export interface GrpcClientTls {
  /** CA the server's certificate must chain to (default: the system's roots). */
  caFile?: string | undefined;
  /** This client's certificate and key, for servers that require mutual TLS. */
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /** The name the server's certificate must carry, when it differs from the host dialled. */
  serverName?: string | undefined;
}

/** A TLS file that cannot be read: a configuration mistake, named with its path. */
export class TlsFileError extends Error {
  override readonly name = 'TlsFileError';
  readonly code = 'INVALID_CONFIG';
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsFileError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

/** Plaintext without `tls`; TLS with it, requiring client certificates when it names a client CA. */
export function grpcServerCredentials(tls: GrpcServerTls | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  const ca = tls.clientCaFile === undefined ? null : read(tls.clientCaFile, 'TLS client CA');
  return ServerCredentials.createSsl(ca, [{ cert_chain: read(tls.certFile, 'TLS certificate'), private_key: read(tls.keyFile, 'TLS key') }], ca !== null);
}

/** Plaintext without `tls`; TLS with it (and a client certificate when given). */
export function grpcChannelCredentials(tls: GrpcClientTls | undefined): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  const ca = tls.caFile === undefined ? null : read(tls.caFile, 'TLS CA');
  const key = tls.keyFile === undefined ? null : read(tls.keyFile, 'TLS client key');
  const cert = tls.certFile === undefined ? null : read(tls.certFile, 'TLS client certificate');
  return credentials.createSsl(ca, key, cert);
}

/** Channel options a client TLS setting needs (the expected server name). */
export function grpcChannelOptions(tls: GrpcClientTls | undefined): ChannelOptions {
  return tls?.serverName === undefined ? {} : { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName };
}
