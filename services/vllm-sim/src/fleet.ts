import type { ListenerSpec } from '@kvix/service-kit';
import type { Logger } from 'pino';
import type { SimConfig } from './config.js';
import { writeEndpointsFile, type EndpointsFileEntry } from './endpoints-file.js';
import { podListeners } from './listeners.js';
import { SimPod, type RankEndpoint } from './pod.js';

export interface FleetOptions {
  pods: number;
  /** HTTP port of pod 0 rank 0; pod i rank r listens on basePort + i * dataParallelSize + r. */
  basePort: number;
  /** KV-event port of pod 0 rank 0, laid out the same way. */
  baseEventPort: number;
  /** Replay port of pod 0 rank 0, laid out the same way. */
  baseReplayPort: number;
  /** Write an endpoints file (kvix discovery's format) listing every pod. */
  writeEndpoints?: string;
}

/** What kvix's endpoints-file discovery reads: one entry per pod. */
function portOf(endpoint: string | null): number | null {
  if (endpoint === null) return null;
  const port = Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
  return Number.isInteger(port) ? port : null;
}

/** Several simulated pods in one process (for local use; deploy one pod per process). */
export class SimFleet {
  private constructor(
    readonly pods: SimPod[],
    private readonly logger: Logger,
  ) {}

  /** Pod i's configuration: its ports laid out from the fleet's bases. */
  static podConfig(base: SimConfig, options: FleetOptions, i: number): SimConfig {
    const dp = base.dataParallelSize;
    const kvEvents = {
      ...base.kvEvents,
      endpoint: base.kvEvents.endpoint.replace(/:\d+$/, `:${options.baseEventPort + i * dp}`),
      replay_endpoint: base.kvEvents.replay_endpoint === null ? null : base.kvEvents.replay_endpoint.replace(/:\d+$/, `:${options.baseReplayPort + i * dp}`),
    };
    return { ...base, port: options.basePort + i * dp, kvEvents };
  }

  /** Every port the fleet will bind, named by the `kvix sim` flag that moves it. */
  static listeners(base: SimConfig, options: FleetOptions): ListenerSpec[] {
    const flags = { http: '--base-port', events: '--base-event-port', replay: '--base-replay-port' };
    return Array.from({ length: options.pods }, (_, i) => podListeners(SimFleet.podConfig(base, options, i), flags, `pod ${i}`)).flat();
  }

  static async start(base: SimConfig, options: FleetOptions, logger: Logger): Promise<SimFleet> {
    const pods: SimPod[] = [];
    try {
      for (let i = 0; i < options.pods; i++) {
        pods.push(await SimPod.start(SimFleet.podConfig(base, options, i), logger.child({ pod: i })));
      }
    } catch (err) {
      await Promise.allSettled(pods.map((p) => p.stop()));
      throw err;
    }
    const fleet = new SimFleet(pods, logger);
    if (options.writeEndpoints) {
      try {
        await fleet.writeEndpointsFile(options.writeEndpoints);
      } catch (err) {
        // Pods left running would keep the process (and its ports) alive after the error.
        await Promise.allSettled(pods.map((p) => p.stop()));
        throw err;
      }
    }
    return fleet;
  }

  endpoints(): RankEndpoint[][] {
    return this.pods.map((p) => p.endpoints());
  }

  entries(): EndpointsFileEntry[] {
    return this.pods.map((pod, i) => {
      const rank0 = pod.endpoints()[0]!;
      return {
        name: `sim-${i}`,
        address: rank0.address,
        port: rank0.port,
        eventPort: portOf(rank0.eventEndpoint),
        replayPort: portOf(rank0.replayEndpoint),
        model: rank0.model,
        dataParallelSize: pod.config.dataParallelSize,
        engine: pod.config.engine,
        ...(pod.config.kvOffload === 'lmcache' ? { lmcache: pod.config.lmcacheMode } : {}),
        ...(pod.config.kvCacheReportMode === 'full' ? { kvCacheReportMode: 'full' as const } : {}),
      };
    });
  }

  async writeEndpointsFile(path: string): Promise<void> {
    writeEndpointsFile(path, this.entries());
    this.logger.info({ path, pods: this.pods.length }, 'endpoints file written');
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.pods.map((p) => p.stop()));
  }
}
