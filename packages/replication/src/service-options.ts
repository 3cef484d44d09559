import type { Binding } from '@kvix/service-kit';
import { Option, type Command } from 'commander';
import { INDEX_REPLICATION_MODES } from './settings.js';

/** Replication settings from the environment and flags, under a service's `replication` section. */
export const REPLICATION_ENV_BINDINGS: Readonly<Record<string, Binding>> = {
  KVIX_NATS_URL: { path: 'replication.natsUrl' },
  KVIX_REPLICA_ID: { path: 'replication.replicaId' },
  KVIX_REPLICATE_INDEX: { path: 'replication.index' },
};

export const REPLICATION_FLAG_BINDINGS: Readonly<Record<string, string>> = {
  natsUrl: 'replication.natsUrl',
  replicaId: 'replication.replicaId',
  replicateIndex: 'replication.index',
};

export function addReplicationOptions(cmd: Command): Command {
  return cmd
    .option('--nats-url <url>', 'NATS server(s) for active-active replication, comma-separated (KVIX_NATS_URL)')
    .option('--replica-id <id>', 'this replica\'s name among its peers (KVIX_REPLICA_ID; default hostname-pid)')
    .addOption(
      new Option('--replicate-index <mode>', 'publish: ingest pods and publish the index stream; follow: take the index from the stream; off (KVIX_REPLICATE_INDEX)').choices([...INDEX_REPLICATION_MODES]),
    );
}
