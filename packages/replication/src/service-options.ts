import type { Binding } from '@kvix/service-kit';
import { Option, type Command } from 'commander';
import { INDEX_REPLICATION_MODES } from './settings.js';

/** Replication settings from the environment and flags, under a service's `replication` section. */
export const REPLICATION_ENV_BINDINGS: Readonly<Record<string, Binding>> = {
  KVIX_NATS_URL: { path: 'replication.natsUrl' },
  KVIX_REPLICA_ID: { path: 'replication.replicaId' },
  KVIX_REPLICATE_INDEX: { path: 'replication.index' },
  KVIX_NATS_TLS_CA: { path: 'replication.natsTls.caFile' },
  KVIX_NATS_TLS_CERT: { path: 'replication.natsTls.certFile' },
  KVIX_NATS_TLS_KEY: { path: 'replication.natsTls.keyFile' },
  KVIX_NATS_CREDS_FILE: { path: 'replication.natsAuth.credsFile' },
  KVIX_NATS_NKEY_SEED_FILE: { path: 'replication.natsAuth.nkeySeedFile' },
  KVIX_NATS_TOKEN_FILE: { path: 'replication.natsAuth.tokenFile' },
};

export const REPLICATION_FLAG_BINDINGS: Readonly<Record<string, string>> = {
  natsUrl: 'replication.natsUrl',
  replicaId: 'replication.replicaId',
  replicateIndex: 'replication.index',
  natsTlsCa: 'replication.natsTls.caFile',
  natsTlsCert: 'replication.natsTls.certFile',
  natsTlsKey: 'replication.natsTls.keyFile',
  natsCredsFile: 'replication.natsAuth.credsFile',
  natsNkeySeedFile: 'replication.natsAuth.nkeySeedFile',
  natsTokenFile: 'replication.natsAuth.tokenFile',
};

export function addReplicationOptions(cmd: Command): Command {
  return cmd
    .option('--nats-url <url>', 'NATS server(s) for active-active replication, comma-separated (KVIX_NATS_URL)')
    .option('--replica-id <id>', 'this replica\'s name among its peers (KVIX_REPLICA_ID; default hostname-pid)')
    .option('--nats-tls-ca <file>', 'speak TLS to NATS, verifying the server against this CA (PEM; a tls:// URL asks for TLS with the system roots)')
    .option('--nats-tls-cert <file>', 'client certificate for NATS servers that verify clients (with --nats-tls-key)')
    .option('--nats-tls-key <file>', 'key of --nats-tls-cert')
    .option('--nats-creds-file <file>', 'authenticate to NATS with this .creds file (JWT and nkey seed)')
    .option('--nats-nkey-seed-file <file>', 'authenticate to NATS with the nkey seed in this file')
    .option('--nats-token-file <file>', 'authenticate to NATS with the token in this file')
    .addOption(
      new Option('--replicate-index <mode>', 'publish: ingest pods and publish the index stream; follow: take the index from the stream; off (KVIX_REPLICATE_INDEX)').choices([...INDEX_REPLICATION_MODES]),
    );
}
