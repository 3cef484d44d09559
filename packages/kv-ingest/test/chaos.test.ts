import { ceiling } from '@kvix/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import {
  agrees,
  Fleet,
  indexView,
  INDEX_BLOCK,
  MODEL,
  podState,
  postJson,
  Prng,
  restartsSeen,
  settle,
  simState,
  simView,
  startIngestion,
  type FleetPod,
  type Ingestion,
  type Mismatch,
  type PodSpec,
  type Prompt,
  type Rank,
} from './chaos-harness.js';

/**
 * A randomized, seeded chaos test of KV-event ingestion: simulated vLLM pods (small GPU pools so
 * blocks are evicted all the time; CPU offload by vLLM's connector and by LMCache in-process and
 * multiprocess; an SGLang pod; engine blocks of 32 and 24 tokens; data parallelism; a LoRA adapter;
 * both event layouts and both hash encodings) serve bursts of
 * prompts sharing prefixes, while a seeded schedule drops event batches, slows engines down,
 * refuses requests, restarts engines and publishers, kills pods and starts them again on the same
 * ports, and takes pods out of the endpoints file and puts them back; the ingestor's queues and
 * socket buffers are sometimes small enough to overflow. After every phase the test
 * waits until the ingestor says it is done with what every pod published, then compares, prompt
 * by prompt and tier by tier, the index's prefix on every pod with the pod's own /sim/prefix.
 *
 * KVIX_CHAOS_SEEDS   seeds to run, e.g. "7" or "1,5,9" or "1..20" (default 1,2)
 * KVIX_CHAOS_PHASES  phases per seed (default 8: the CI run, ~10 s; 15 or more to hunt bugs)
 * KVIX_CHAOS_BURST   requests per burst (default 32)
 * KVIX_CHAOS_PROBES  prompts compared per phase (default 24; every prompt at the end)
 * KVIX_CHAOS_VERBOSE print each phase's plan and a summary per seed
 *
 * A publisher restart over a kept cache looks exactly like an engine restart on the wire (the
 * sequence starts over), so the ingestor clears the pod while the engine still holds blocks it
 * will never announce again. Until that pod's cache is reset, the index may only hold less than
 * the pod (never more); a reset_prefix_cache (or an engine restart) makes it exact again.
 */

const SEEDS = parseSeeds(process.env['KVIX_CHAOS_SEEDS'] ?? '1,2');
const PHASES = Number(process.env['KVIX_CHAOS_PHASES'] ?? 8);
const BURST = Number(process.env['KVIX_CHAOS_BURST'] ?? 32);
const PROBES = Number(process.env['KVIX_CHAOS_PROBES'] ?? 24);
const VERBOSE = process.env['KVIX_CHAOS_VERBOSE'] !== undefined;
const TIME_SCALE = 100;

const LORA = 'sql-lora';
const SPECS: PodSpec[] = [
  { name: 'plain', sim: { numGpuBlocksOverride: 40, kvEventsLayout: 'array' } },
  { name: 'big-blocks', sim: { numGpuBlocksOverride: 24, blockSize: 32, prefixCachingHashAlgo: 'xxhash' } },
  // Not a multiple of the index's block (hybrid models get such sizes): blocks straddle request blocks.
  { name: 'odd-blocks', sim: { numGpuBlocksOverride: 28, blockSize: 24, prefixCachingHashAlgo: 'sha256_cbor' } },
  { name: 'offload', sim: { numGpuBlocksOverride: 32, kvOffload: 'offloading-connector', numCpuBlocks: 48 } },
  // LMCache chunks as large as the routing block, as the spec advises a deployment to configure
  // them: a partial last chunk of a larger chunk size holds request blocks LMCache cannot serve to
  // a longer prompt, which the index cannot tell. Both tiers are compared; their union is not:
  // LMCache serves a chunk only when it holds every chunk before it (its lookup starts at token 0),
  // so a chunk it keeps after evicting an earlier one that the GPU still holds is useless to the
  // pod, while the index's any-tier run, block by block, counts it.
  // In-process LMCache (through vLLM's connector): a chunk stored past chunks LMCache already holds
  // comes with parent 0, resolved through the pod's own GPU events; LMCache announces no removals,
  // so its CPU pool is big enough never to evict here (the index would keep what it evicts until
  // the TTL: an accepted staleness, not something a comparison can check).
  { name: 'lmcache', sim: { numGpuBlocksOverride: 32, kvOffload: 'lmcache', lmcacheMode: 'inproc', numCpuBlocks: 4000, lmcacheChunkSize: 16 }, checked: ['gpu', 'cpu'], endpoint: { lmcache: 'inproc' } },
  // The LMCache multiprocess server: real parents, "CPU" removals of what it evicts.
  { name: 'lmcache-mp', sim: { numGpuBlocksOverride: 32, kvOffload: 'lmcache', lmcacheMode: 'mp', numCpuBlocks: 40, lmcacheChunkSize: 16 }, checked: ['gpu', 'cpu'], endpoint: { lmcache: 'mp' } },
  // SGLang: its map layout, signed hashes, no KV-cache groups, sglang:* metrics.
  { name: 'sglang', sim: { numGpuBlocksOverride: 40, engine: 'sglang' }, endpoint: { engine: 'sglang' } },
  { name: 'dp2', sim: { numGpuBlocksOverride: 40, dataParallelSize: 2 } },
  { name: 'lora', sim: { numGpuBlocksOverride: 48, loraModules: [`${LORA}=/adapters/${LORA}`], kvEventsIntHashes: false }, lora: LORA },
];

function parseSeeds(text: string): number[] {
  const range = /^(\d+)\.\.(\d+)$/.exec(text.trim());
  if (range) return Array.from({ length: Number(range[2]) - Number(range[1]) + 1 }, (_, i) => Number(range[1]) + i);
  return text.split(',').map((s) => Number(s.trim()));
}

type When = 'before' | 'during' | 'after';
type Action =
  | { kind: 'drop'; rank: Rank; fraction: number }
  | { kind: 'slowdown'; rank: Rank; factor: number }
  | { kind: 'refuse'; rank: Rank; fraction: number }
  | { kind: 'restartEngine'; rank: Rank }
  | { kind: 'restartPublisher'; rank: Rank }
  | { kind: 'resetCache'; rank: Rank }
  | { kind: 'unlist'; pod: FleetPod }
  | { kind: 'relist'; pod: FleetPod }
  | { kind: 'kill'; pod: FleetPod }
  | { kind: 'revive'; pod: FleetPod };

interface Planned {
  when: When;
  /** For 'during': launched after this many requests of the burst. */
  at: number;
  action: Action;
}

function describeAction(a: Action): string {
  const target = 'rank' in a ? a.rank.id : a.pod.spec.name;
  const detail = a.kind === 'drop' || a.kind === 'refuse' ? ` ${a.fraction.toFixed(2)}` : a.kind === 'slowdown' ? ` x${a.factor}` : '';
  return `${a.kind}(${target}${detail})`;
}

class ChaosRun {
  readonly rng: Prng;
  fleet!: Fleet;
  ing!: Ingestion;
  readonly prompts: Prompt[] = [];
  private readonly promptKeys = new Set<string>();
  private families: number[][] = [];
  /** Ranks whose engine holds blocks its current publisher never announced (see the file comment). */
  readonly tainted = new Set<string>();
  /** Ranks whose restart the ingestor must notice before the phase is quiet: restarts seen before it. */
  readonly restartPending = new Map<string, number>();
  readonly faults = new Map<string, { drop: number; slowdown: number; refuse: number }>();
  readonly history: string[] = [];
  readonly counts = { requests: 0, refused: 0, failed: 0, compared: 0, actions: 0 };

  constructor(readonly seed: number) {
    this.rng = new Prng(seed);
  }

  async start(): Promise<void> {
    this.fleet = await Fleet.start(SPECS, TIME_SCALE);
    // Tight queues and socket buffers make overflows (backlog dropped, recovered by replay) part of the run.
    const config = { workers: this.rng.pick([1, 2, 4]), maxQueuePerPod: this.rng.pick([4, 32, 10_000]), receiveHighWaterMark: this.rng.pick([16, 100_000]) };
    this.note(`ingestion ${JSON.stringify(config)}`);
    this.ing = await startIngestion(this.fleet.endpointsFile, config);
    await this.ing.ingestor.whenReady();
    for (const r of this.fleet.ranks) this.faults.set(r.id, { drop: 0, slowdown: 1, refuse: 0 });
    // Prefix families, some extending others, so pods share chains at several depths.
    const tokens = (n: number): number[] => Array.from({ length: n }, () => this.rng.int(100, 60_000));
    for (let f = 0; f < 8; f++) {
      const base = f >= 4 && this.rng.chance(0.6) ? this.families[this.rng.int(0, f - 1)]! : [];
      this.families.push([...base, ...tokens(16 * this.rng.int(1, 6) + (this.rng.chance(0.3) ? this.rng.int(1, 15) : 0))]);
    }
  }

  async stop(): Promise<void> {
    await this.ing?.stop();
    await this.fleet?.stop();
  }

  private note(line: string): void {
    this.history.push(line);
    if (VERBOSE) console.info(`[seed ${this.seed}] ${line}`);
  }

  private alive(pod: FleetPod): boolean {
    return pod.sim !== null;
  }

  // ---- workload --------------------------------------------------------------------------------

  private newPrompt(): { prompt: Prompt; rank: Rank } {
    const live = this.fleet.ranks.filter((r) => this.alive(r.pod));
    if (this.prompts.length > 0 && this.rng.chance(0.25)) {
      // A repeat: prefix hits (GPU or CPU) rather than new blocks.
      const prompt = this.rng.pick(this.prompts);
      const ranks = prompt.lora === null ? live : live.filter((r) => r.pod.spec.lora === prompt.lora);
      if (ranks.length > 0) return { prompt, rank: this.rng.pick(ranks) };
    }
    const family = this.rng.pick(this.families);
    const suffix = Array.from({ length: 16 * this.rng.int(0, 5) + this.rng.int(1, 15) }, () => this.rng.int(100, 60_000));
    const tokens = [...family, ...suffix];
    const rank = this.rng.pick(live);
    const lora = rank.pod.spec.lora !== undefined && this.rng.chance(0.5) ? rank.pod.spec.lora : null;
    return { prompt: { tokens, lora }, rank };
  }

  private remember(prompt: Prompt): void {
    const key = `${prompt.lora ?? ''}|${prompt.tokens.join(',')}`;
    if (this.promptKeys.has(key)) return;
    this.promptKeys.add(key);
    this.prompts.push(prompt);
  }

  private async send(rank: Rank, prompt: Prompt, maxTokens: number): Promise<void> {
    this.counts.requests++;
    try {
      const { status, json } = await postJson(`${rank.http}/v1/completions`, { model: prompt.lora ?? MODEL, prompt: prompt.tokens, max_tokens: maxTokens });
      if (status === 503) this.counts.refused++;
      else if (status !== 200) throw new Error(`completion on ${rank.id} answered ${status}: ${JSON.stringify(json)}`);
    } catch (err) {
      // A pod killed mid-burst drops its connections; anything else is a test or simulator bug.
      if ((err as Error).message.startsWith('completion on')) throw err;
      this.counts.failed++;
    }
  }

  private async burst(n: number, during: Planned[]): Promise<void> {
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      // Faults land while requests keep arriving (a restart's window included).
      for (const p of during.filter((d) => d.at === i)) inflight.push(this.apply(p.action));
      if (this.fleet.ranks.every((r) => !this.alive(r.pod))) break;
      const { prompt, rank } = this.newPrompt();
      this.remember(prompt);
      inflight.push(this.send(rank, prompt, this.rng.int(1, 24)));
      if (this.rng.chance(0.4)) await new Promise((r) => setTimeout(r, this.rng.int(0, 4)));
    }
    await Promise.all(inflight);
  }

  // ---- faults ----------------------------------------------------------------------------------

  private async setFaults(rank: Rank, body: Record<string, unknown>): Promise<void> {
    if (!this.alive(rank.pod)) return;
    let answer: { status: number; json: unknown };
    try {
      answer = await postJson(`${rank.http}/sim/faults`, body);
    } catch (err) {
      // Killed by a fault running at the same time.
      if (!this.alive(rank.pod)) return;
      throw err;
    }
    if (answer.status !== 200) throw new Error(`/sim/faults on ${rank.id} answered ${answer.status}: ${JSON.stringify(answer.json)}\n${await this.report([], [rank.id])}`);
  }

  /** The ingestor must notice this rank's restart before the phase counts as quiet. */
  private async expectRestart(rank: Rank): Promise<void> {
    const state = podState(this.ing.ingestor, rank.id);
    if (!rank.pod.listed || state === undefined || state.stream.lastSeq === null) return;
    if (!this.restartPending.has(rank.id)) this.restartPending.set(rank.id, await restartsSeen(this.ing.registry, rank.id));
  }

  private async apply(a: Action): Promise<void> {
    this.counts.actions++;
    this.note(`  ${describeAction(a)}`);
    switch (a.kind) {
      case 'drop':
        this.faults.get(a.rank.id)!.drop = a.fraction;
        return this.setFaults(a.rank, { dropEventsFraction: a.fraction });
      case 'slowdown':
        this.faults.get(a.rank.id)!.slowdown = a.factor;
        return this.setFaults(a.rank, { slowdown: a.factor });
      case 'refuse':
        this.faults.get(a.rank.id)!.refuse = a.fraction;
        return this.setFaults(a.rank, { refuseFraction: a.fraction });
      case 'restartEngine':
        if (!this.alive(a.rank.pod)) return;
        await this.expectRestart(a.rank);
        await this.setFaults(a.rank, { restartEngine: true });
        this.tainted.delete(a.rank.id);
        return;
      case 'restartPublisher':
        if (!this.alive(a.rank.pod)) return;
        await this.expectRestart(a.rank);
        await this.setFaults(a.rank, { restartPublisher: true });
        this.tainted.add(a.rank.id);
        return;
      case 'resetCache': {
        if (!this.alive(a.rank.pod)) return;
        // Only succeeds with no request running, as in vLLM. AllBlocksCleared clears every tier of
        // the pod (the spec), so a CPU tier is reset with the GPU cache (reset_external).
        const external = a.rank.pod.config.kvOffload !== 'none' ? '?reset_external=true' : '';
        const answer = await postJson(`${a.rank.http}/reset_prefix_cache${external}`, {}).catch((err: Error) => {
          if (this.alive(a.rank.pod)) throw err;
          return { status: 0, json: null };
        });
        if ((answer.json as { success?: boolean } | null)?.success === true) this.tainted.delete(a.rank.id);
        return;
      }
      case 'unlist':
        a.pod.listed = false;
        this.fleet.writeEndpoints();
        for (const r of a.pod.ranks) this.restartPending.delete(r.id);
        return;
      case 'relist':
        a.pod.listed = true;
        this.fleet.writeEndpoints();
        return;
      case 'kill': {
        if (!this.alive(a.pod)) return;
        // Counted before the sockets close (that takes I/O turns); the pod takes no new request from now on.
        const counted = Promise.all(a.pod.ranks.map((r) => this.expectRestart(r)));
        const stopped = this.fleet.kill(a.pod);
        await counted;
        await stopped;
        return;
      }
      case 'revive':
        if (this.alive(a.pod)) return;
        await this.fleet.revive(a.pod);
        for (const r of a.pod.ranks) {
          this.tainted.delete(r.id);
          // A new process starts without faults.
          this.faults.set(r.id, { drop: 0, slowdown: 1, refuse: 0 });
        }
        return;
    }
  }

  /** One to three faults, each before, during or after the phase's burst. */
  private plan(): Planned[] {
    const out: Planned[] = [];
    const ranks = this.fleet.ranks;
    const whenever = (): { when: When; at: number } => {
      const when = this.rng.pick<When>(['before', 'during', 'during', 'after']);
      return { when, at: this.rng.int(0, BURST - 1) };
    };
    const count = this.rng.int(1, 3);
    for (let i = 0; i < count; i++) {
      const roll = this.rng.next();
      const rank = this.rng.pick(ranks);
      const f = this.faults.get(rank.id)!;
      if (roll < 0.22) out.push({ ...whenever(), action: { kind: 'drop', rank, fraction: f.drop > 0 ? 0 : 0.2 + 0.7 * this.rng.next() } });
      else if (roll < 0.3) out.push({ ...whenever(), action: { kind: 'slowdown', rank, factor: f.slowdown > 1 ? 1 : this.rng.int(2, 20) } });
      else if (roll < 0.36) out.push({ ...whenever(), action: { kind: 'refuse', rank, fraction: f.refuse > 0 ? 0 : 0.1 + 0.3 * this.rng.next() } });
      else if (roll < 0.5) out.push({ ...whenever(), action: { kind: 'restartEngine', rank } });
      else if (roll < 0.6) out.push({ ...whenever(), action: { kind: 'restartPublisher', rank } });
      else if (roll < 0.68) out.push({ when: 'after', at: 0, action: { kind: 'resetCache', rank } });
      else if (roll < 0.84) {
        const listed = this.fleet.pods.filter((p) => p.listed);
        const unlisted = this.fleet.pods.filter((p) => !p.listed);
        if (unlisted.length > 0 && (listed.length <= 2 || this.rng.chance(0.5))) out.push({ ...whenever(), action: { kind: 'relist', pod: this.rng.pick(unlisted) } });
        else out.push({ ...whenever(), action: { kind: 'unlist', pod: this.rng.pick(listed) } });
      } else {
        const pod = this.rng.pick(this.fleet.pods);
        const kill = whenever();
        if (kill.when === 'after') kill.when = 'before';
        out.push({ ...kill, action: { kind: 'kill', pod } });
        out.push({ when: 'after', at: 0, action: { kind: 'revive', pod } });
      }
    }
    // Tainted ranks are reset now and then, so they count fully again.
    for (const id of this.tainted) if (this.rng.chance(0.5)) out.push({ when: 'after', at: 0, action: { kind: 'resetCache', rank: ranks.find((r) => r.id === id)! } });
    return out;
  }

  async phase(n: number): Promise<void> {
    const planned = this.plan();
    this.note(`phase ${n}: ${planned.map((p) => `${p.when}${p.when === 'during' ? `@${p.at}` : ''} ${describeAction(p.action)}`).join(', ')}`);
    for (const p of planned.filter((x) => x.when === 'before')) await this.apply(p.action);
    await this.burst(BURST, planned.filter((x) => x.when === 'during'));
    for (const p of planned.filter((x) => x.when === 'after')) await this.apply(p.action);
    // Revive whatever is still down (a kill planned after its revive's slot).
    for (const pod of this.fleet.pods) if (!this.alive(pod)) await this.apply({ kind: 'revive', pod });
    await this.quiesce(`phase ${n}`);
    await this.compare(`phase ${n}`, this.rng.sample(this.prompts, PROBES));
  }

  /** Every fault off, every pod listed and clean, one more burst, then every prompt compared. */
  async finish(): Promise<void> {
    this.note('final: faults off, every pod listed, tainted ranks reset');
    for (const r of this.fleet.ranks) {
      this.faults.set(r.id, { drop: 0, slowdown: 1, refuse: 0 });
      await this.setFaults(r, { dropEventsFraction: 0, slowdown: 1, refuseFraction: 0 });
    }
    for (const pod of this.fleet.pods) if (!pod.listed) await this.apply({ kind: 'relist', pod });
    for (const id of [...this.tainted]) await this.apply({ kind: 'resetCache', rank: this.fleet.ranks.find((r) => r.id === id)! });
    await this.burst(BURST, []);
    await this.quiesce('final');
    await this.compare('final', this.prompts);
  }

  /** What the ingestor went through (from its metrics): replays by reason, resets, overflows, batches lost. */
  async recoveries(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    const sum = async (metric: string, key: (labels: Partial<Record<string, string | number>>) => string): Promise<void> => {
      for (const v of (await this.ing.registry.getSingleMetric(metric)!.get()).values) out[key(v.labels)] = (out[key(v.labels)] ?? 0) + v.value;
    };
    await sum('kvix_ingest_replays_total', (l) => `replay_${l['reason']}`);
    await sum('kvix_ingest_sequence_resets_total', () => 'resets');
    await sum('kvix_ingest_queue_overflows_total', () => 'overflows');
    await sum('kvix_ingest_lost_batches_total', () => 'lost');
    await sum('llm_d_epp_kv_cache_events_stores_skipped_total', (l) => `skipped_${l['reason']}`);
    return out;
  }

  // ---- quiescence and the oracle ---------------------------------------------------------------

  /** Why the ingestor is not done with a rank yet (null: it is). */
  private async pendingOn(rank: Rank): Promise<string | null> {
    const sim = await simState(rank);
    if (sim.running > 0 || sim.waiting > 0) return `engine busy (${sim.running} running, ${sim.waiting} waiting)`;
    const ingestor = this.ing.ingestor;
    if (!rank.pod.listed) {
      if (ingestor.hasPod(rank.id)) return 'still followed after leaving the endpoints file';
      const held = (await this.ing.index.podCounts()).find((c) => c.pod === rank.id)?.entries ?? 0;
      return held > 0 ? `${held} entries left after leaving the endpoints file` : null;
    }
    const state = podState(ingestor, rank.id);
    if (state === undefined) return 'not followed yet';
    const s = state.stream;
    if (s.busy || s.queued > 0) return `stream busy (phase ${s.phase}, ${s.queued} queued)`;
    const published = BigInt(sim.publisher.nextSeq);
    const want = published === 0n ? null : String(published - 1n);
    if (s.lastSeq !== want) return `applied up to ${s.lastSeq}, published up to ${want}`;
    const before = this.restartPending.get(rank.id);
    if (before !== undefined) {
      if ((await restartsSeen(this.ing.registry, rank.id)) <= before) return 'restart not noticed yet';
      this.restartPending.delete(rank.id);
    }
    return null;
  }

  async quiesce(label: string): Promise<void> {
    const waiting = new Map<string, string>();
    await settle(
      async () => {
        waiting.clear();
        for (const r of this.fleet.ranks) {
          const why = await this.pendingOn(r);
          if (why !== null) waiting.set(r.id, why);
        }
        return waiting.size === 0;
      },
      30_000,
      `${label}: ingestion to catch up`,
      async () => this.report([...waiting].map(([id, why]) => `${id}: ${why}`), [...waiting.keys()]),
    );
  }

  async compare(label: string, prompts: readonly Prompt[]): Promise<void> {
    const mismatches: Mismatch[] = [];
    for (const r of this.fleet.ranks) {
      if (!r.pod.listed) continue;
      const bound = this.tainted.has(r.id);
      for (const prompt of prompts) {
        const [index, sim] = [await indexView(this.ing, r, prompt), await simView(r, prompt)];
        this.counts.compared++;
        const views = r.pod.spec.checked ?? (['gpu', 'cpu', 'any'] as const);
        const ok = views.every((v) => agrees(index[v], sim[v], r.engineBlock, bound));
        if (!ok) mismatches.push({ pod: r.id, rank: r, prompt, promptIndex: this.prompts.indexOf(prompt), index, sim, bound });
      }
    }
    if (mismatches.length === 0) return;
    const pods = [...new Set(mismatches.map((m) => m.pod))];
    const lines = mismatches.slice(0, 12).map((m) => `${m.pod} prompt#${m.promptIndex} (${m.prompt.tokens.length} tokens${m.prompt.lora ? `, ${m.prompt.lora}` : ''}): index ${JSON.stringify(m.index)} (${INDEX_BLOCK}-token blocks) ${m.bound ? 'claims more than' : 'disagrees with'} pod ${JSON.stringify(m.sim)} (${m.rank.engineBlock}-token blocks)`);
    expect.fail(`${label}: ${mismatches.length} mismatches\n${await this.report(lines, pods)}`);
  }

  /** Seed, schedule so far, the pods' and the ingestor's state, and the ingestor's log about them. */
  private async report(findings: string[], pods: string[]): Promise<string> {
    const out = [`seed ${this.seed} (KVIX_CHAOS_SEEDS=${this.seed} KVIX_CHAOS_PHASES=${PHASES} to replay the schedule)`, ...findings, 'schedule:', ...this.history.map((h) => `  ${h}`)];
    const simLog = this.fleet.tape.about(null, 20);
    if (simLog.length > 0) out.push('simulators:', ...simLog.map((l) => `  ${l}`));
    for (const id of pods) {
      const rank = this.fleet.ranks.find((r) => r.id === id)!;
      const sim = this.alive(rank.pod) ? await simState(rank).catch((e: Error) => e.message) : 'down';
      out.push(`${id} (${rank.pod.spec.name}) tainted=${this.tainted.has(id)} sim=${JSON.stringify(sim)}`, `  ingestor: ${JSON.stringify(podState(this.ing.ingestor, id) ?? null)}`, ...this.ing.tape.about(id, 30).map((l) => `  ${l}`));
    }
    return out.join('\n');
  }
}

describe('KV-event ingestion under randomized faults', () => {
  let current: ChaosRun | null = null;
  afterEach(async () => {
    await current?.stop();
    current = null;
  });

  for (const seed of SEEDS) {
    it(`keeps the index equal to what every pod holds, phase after phase (seed ${seed})`, { timeout: ceiling(60_000 + PHASES * 20_000) }, async () => {
      const run = (current = new ChaosRun(seed));
      await run.start();
      for (let phase = 1; phase <= PHASES; phase++) await run.phase(phase);
      await run.finish();
      if (VERBOSE) console.info(`[seed ${seed}] ok: ${JSON.stringify(run.counts)}, ${run.prompts.length} prompts; ingestion: ${JSON.stringify(await run.recoveries())}`);
      // The run did what it claims: traffic was served and compared.
      expect(run.counts.compared).toBeGreaterThan(run.prompts.length);
    });
  }
});
