import type { ListenerSpec } from '@kvix/service-kit';
import type { SimConfig } from './config.js';
import { isBindEndpoint, offsetEndpointPort } from './events/kv-events-config.js';
import { bindAddress } from './events/publisher.js';

/** The flags that move each of a pod's ports, for messages (`kvix sim` names its base-port flags). */
export interface ListenerFlags {
  http: string;
  events: string;
  replay: string;
}

export const POD_FLAGS: ListenerFlags = { http: '--port', events: '--kv-events-config endpoint', replay: '--kv-events-config replay_endpoint' };

function tcpListener(name: string, flag: string, endpoint: string, host: string): ListenerSpec | null {
  const m = /^tcp:\/\/(.+):(\d+)$/.exec(bindAddress(endpoint, host));
  if (!m) return null;
  const h = m[1] === '*' ? '0.0.0.0' : m[1]!.replace(/^\[(.*)\]$/, '$1');
  return { name, flag, host: h, port: Number(m[2]) };
}

/**
 * Every TCP port a pod binds (each rank's HTTP port, KV-event PUB and replay ROUTER when bound
 * here), so they can be checked before the pod starts.
 */
export function podListeners(config: SimConfig, flags: ListenerFlags = POD_FLAGS, label = 'pod'): ListenerSpec[] {
  const out: ListenerSpec[] = [];
  const events = config.kvEvents.enable_kv_cache_events && config.kvEvents.publisher === 'zmq';
  for (let rank = 0; rank < config.dataParallelSize; rank++) {
    const who = config.dataParallelSize > 1 ? `${label} rank ${rank}` : label;
    if (config.port !== 0) out.push({ name: `${who} HTTP`, flag: flags.http, host: config.host, port: config.port + rank });
    if (!events) continue;
    const endpoint = offsetEndpointPort(config.kvEvents.endpoint, rank);
    if (isBindEndpoint(endpoint)) {
      const l = tcpListener(`${who} KV events`, flags.events, endpoint, config.host);
      if (l) out.push(l);
    }
    if (config.kvEvents.replay_endpoint !== null) {
      const l = tcpListener(`${who} replay`, flags.replay, offsetEndpointPort(config.kvEvents.replay_endpoint, rank), config.host);
      if (l) out.push(l);
    }
  }
  return out;
}
