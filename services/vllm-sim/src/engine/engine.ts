import { type EngineHasher, type EngineRequestExtras, type PyValue } from '@kvix/block-keys';
import type { BlockRemoved, BlockStored, KvEvent, MsgpackValue } from '@kvix/kv-events';
import { BlockPool, type EvictedBlock } from './block-pool.js';
import type { CpuTier } from './cpu-tier.js';
import { stepDurationMs, type LatencyModel } from './latency.js';

export interface EngineConfig {
  blockSize: number;
  numGpuBlocks: number;
  /** Continuous batching: most sequences running at once (vLLM --max-num-seqs). */
  maxNumSeqs: number;
  /** Prefill tokens per step (vLLM --max-num-batched-tokens); longer prompts prefill in chunks. */
  maxNumBatchedTokens: number;
  hasher: EngineHasher;
  cpu: CpuTier;
  latency: LatencyModel;
  /** Simulated time runs this many times faster than wall-clock time. */
  timeScale: number;
  /** Token ids the model "generates" (a range of ordinary vocabulary). */
  outputVocab: { from: number; to: number };
  /** LoRA adapter paths by name: vLLM >= 0.33 hashes the path with the name. */
  loraPaths?: ReadonlyMap<string, string>;
  /** vLLM's kv_cache_report_mode: full re-announces a request's prefix-cache hits as BlockStored. */
  reportMode?: 'default' | 'full';
}

export interface GenerationRequest {
  id: string;
  prompt: Uint32Array;
  maxTokens: number;
  loraName: string | null;
  loraId: number | null;
  cacheSalt: string | null;
  onFirstToken(info: { cachedTokens: number; queueMs: number; ttftMs: number }): void;
  /** A new token; `finishReason` is set on the last one, as vLLM's final RequestOutput carries it with the last token. */
  onToken(tokenId: number, finishReason: FinishReason | null): void;
  onFinish(result: GenerationResult): void;
}

export type FinishReason = 'length' | 'abort';

export interface GenerationResult {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  finishReason: FinishReason;
  ttftMs: number;
  e2eMs: number;
}

/** Counters and gauges the metrics endpoint reads. */
export interface EngineStats {
  running: number;
  waiting: number;
  kvUsage: number;
  cpuBlocksUsed: number;
  prefixQueries: number;
  prefixHits: number;
  externalQueries: number;
  externalHits: number;
  promptTokens: number;
  generationTokens: number;
  preemptions: number;
  finished: number;
  runningLoras: Set<string>;
  waitingLoras: Set<string>;
}

interface Seq {
  req: GenerationRequest;
  /** Prompt and generated tokens. */
  tokens: number[];
  blocks: number[];
  /** Full blocks whose hashes are cached (or were hits). */
  cachedBlocks: number;
  digests: Uint8Array[];
  /** Prompt tokens already computed (hits and prefill done so far). */
  computed: number;
  /** Prompt tokens loaded from CPU still to be paid for by the next prefill step. */
  cpuLoadPending: number;
  /** Prompt tokens found cached at the first admission (-1 before it). */
  cachedTokens: number;
  generated: number;
  arrivedSim: number;
  admittedSim: number;
  firstTokenSim: number;
  rng: number;
  extras: EngineRequestExtras;
  done: boolean;
}

type StepEvents = KvEvent[];

/**
 * One vLLM engine (one data-parallel rank): a scheduler over a GPU block pool with prefix
 * caching, continuous batching, chunked prefill and preemption, publishing the KV events each
 * step produces. Time is simulated (scaled), so benchmarks can run faster than real time.
 */
export class Engine {
  readonly pool: BlockPool;
  private readonly waiting: Seq[] = [];
  private readonly running: Seq[] = [];
  private readonly byId = new Map<string, Seq>();
  private timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  private stepping = false;
  private stopped = false;
  private readonly pendingBetweenSteps: { run(): void; cancel(): void }[] = [];
  private readonly realStart = performance.now();
  /**
   * Simulated time: advanced by each step's modeled duration, and brought up to scaled wall-clock
   * time when the engine has been idle. TTFTs and queue times are therefore exact functions of the
   * latency model and the arrivals, however late a timer fires.
   */
  private clock = 0;
  /** Multiplier on step durations (the "slow down" fault). */
  slowdown = 1;
  readonly stats: EngineStats = {
    running: 0,
    waiting: 0,
    kvUsage: 0,
    cpuBlocksUsed: 0,
    prefixQueries: 0,
    prefixHits: 0,
    externalQueries: 0,
    externalHits: 0,
    promptTokens: 0,
    generationTokens: 0,
    preemptions: 0,
    finished: 0,
    runningLoras: new Set(),
    waitingLoras: new Set(),
  };

  constructor(
    private readonly config: EngineConfig,
    private readonly publish: (events: StepEvents) => void,
    private readonly observeTtft: (seconds: number, model: string | null) => void = () => {},
  ) {
    this.pool = new BlockPool(config.numGpuBlocks);
  }

  /** Simulated milliseconds since the engine started. */
  simNow(): number {
    return this.clock;
  }

  private wallSim(): number {
    return (performance.now() - this.realStart) * this.config.timeScale;
  }

  /** Tokens one sequence can ever hold (the whole GPU pool). */
  get capacityTokens(): number {
    return this.config.numGpuBlocks * this.config.blockSize;
  }

  submit(req: GenerationRequest): void {
    if (this.stopped) throw new Error('engine stopped');
    if (req.prompt.length + req.maxTokens > this.capacityTokens) {
      // It could never be scheduled, and would block every request behind it.
      throw new RangeError(`request needs ${req.prompt.length + req.maxTokens} tokens of KV cache; the engine holds ${this.capacityTokens}`);
    }
    const extras: EngineRequestExtras = { loraName: req.loraName, loraPath: this.loraPath(req.loraName), cacheSalt: req.cacheSalt };
    if (this.config.hasher.algorithm === 'sha256_cbor_64bit') {
      extras.loraName = null;
      extras.loraIntId = req.loraId;
    }
    const seq: Seq = {
      req,
      tokens: Array.from(req.prompt),
      blocks: [],
      cachedBlocks: 0,
      digests: [],
      computed: 0,
      cpuLoadPending: 0,
      cachedTokens: -1,
      generated: 0,
      arrivedSim: this.idle && !this.stepping ? (this.clock = Math.max(this.clock, this.wallSim())) : this.clock,
      admittedSim: 0,
      firstTokenSim: 0,
      rng: seedFrom(req.prompt),
      extras,
      done: false,
    };
    this.byId.set(req.id, seq);
    this.waiting.push(seq);
    this.refreshGauges();
    this.kick();
  }

  private loraPath(name: string | null): string | null {
    return name === null ? null : (this.config.loraPaths?.get(name) ?? name);
  }

  /** Client went away: stop generating and free its blocks. */
  abort(id: string): void {
    const seq = this.byId.get(id);
    if (!seq || seq.done) return;
    this.finish(seq, 'abort');
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    this.refreshGauges();
  }

  get idle(): boolean {
    return this.running.length === 0 && this.waiting.length === 0;
  }

  /**
   * How many leading blocks of a prompt this engine holds, per tier, from its own cache: the
   * ground truth index tests compare against. Inspects without touching recency.
   */
  cachedPrefix(tokens: Uint32Array, loraName: string | null, loraId: number | null, cacheSalt: string | null): { blockSize: number; gpuBlocks: number; cpuBlocks: number; anyTierBlocks: number } {
    const B = this.config.blockSize;
    const extras: EngineRequestExtras = this.config.hasher.algorithm === 'sha256_cbor_64bit' ? { loraIntId: loraId, cacheSalt } : { loraName, loraPath: this.loraPath(loraName), cacheSalt };
    const digests = this.config.hasher.hashBlocks(tokens, extras).digests;
    const cpu = this.config.cpu;
    let lmcacheBlocks = 0;
    if (cpu.mode === 'lmcache') {
      const { keys, lengths } = cpu.chunkKeysFor(tokens, loraName);
      lmcacheBlocks = Math.floor(cpu.cachedPrefixTokens(keys, lengths, false) / B);
    }
    const inGpu = (b: number): boolean => this.pool.lookup(hex(digests[b]!)) >= 0;
    const inCpu = (b: number): boolean => (cpu.mode === 'lmcache' ? b < lmcacheBlocks : cpu.peekBlock(hex(digests[b]!)));
    const run = (held: (b: number) => boolean): number => {
      let n = 0;
      while (n < digests.length && held(n)) n++;
      return n;
    };
    return { blockSize: B, gpuBlocks: run(inGpu), cpuBlocks: run(inCpu), anyTierBlocks: run((b) => inGpu(b) || inCpu(b)) };
  }

  /**
   * vLLM's reset_prefix_cache, run between engine steps as vLLM runs utility calls: the GPU prefix
   * cache empties only when no request holds blocks (`resetRunning` first preempts every running
   * request back to the queue, to be recomputed); the CPU tier survives unless `resetExternal`,
   * which fails (but still resets the GPU) when there is no CPU tier, as vLLM's does without a
   * connector. AllBlocksCleared is announced when the GPU cache was reset.
   */
  resetPrefixCache(options: { resetRunning?: boolean; resetExternal?: boolean } = {}): Promise<boolean> {
    return this.betweenSteps(() => {
      if (options.resetRunning) for (const seq of [...this.running].reverse()) this.preempt(seq);
      let success = this.pool.allFree();
      if (success) {
        this.pool.resetCache();
        this.publish([{ type: 'AllBlocksCleared' }]);
      }
      if (options.resetExternal) {
        if (this.config.cpu.enabled) this.config.cpu.clear();
        else success = false;
      }
      if (options.resetRunning) {
        this.refreshGauges();
        this.kick();
      }
      return success;
    });
  }

  /** The LMCache MP server restarted: every chunk it held is removed in one resync event. */
  restartLmcacheServer(): Promise<void> {
    return this.betweenSteps(() => {
      const events: (BlockStored | BlockRemoved)[] = [];
      this.config.cpu.restartLmcacheServer(events);
      if (events.length > 0) this.publish(events);
    });
  }

  /** Runs `fn` now, or right after the step in flight (whose sequences it must not change mid-step). */
  private betweenSteps<T>(fn: () => T): Promise<T> {
    if (!this.stepping) return Promise.resolve(fn());
    return new Promise((resolve, reject) =>
      this.pendingBetweenSteps.push({
        run: () => {
          try {
            resolve(fn());
          } catch (err) {
            reject(err as Error);
          }
        },
        cancel: () => reject(new Error('engine stopped')),
      }),
    );
  }

  /** An engine restart: everything cached is gone and nothing is announced (the publisher restarts too). */
  forgetEverything(): void {
    // A step under way belongs to the engine that is gone: what it would announce (evictions made
    // at admission, blocks it computed) must not reach the restarted engine's stream.
    if (this.timer) clearTimeoutOrImmediate(this.timer);
    this.timer = null;
    this.stepping = false;
    for (const seq of [...this.running, ...this.waiting]) this.finish(seq, 'abort');
    this.running.length = 0;
    this.waiting.length = 0;
    this.pool.resetCache();
    this.config.cpu.clear();
    this.refreshGauges();
    // Work that waited for the step's end runs against the restarted engine.
    for (const task of this.pendingBetweenSteps.splice(0)) task.run();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeoutOrImmediate(this.timer);
    this.timer = null;
    for (const seq of [...this.running, ...this.waiting]) this.finish(seq, 'abort');
    this.running.length = 0;
    this.waiting.length = 0;
    for (const task of this.pendingBetweenSteps.splice(0)) task.cancel();
  }

  // ---- the step loop -------------------------------------------------------------------------

  private kick(): void {
    if (this.stepping || this.timer !== null || this.stopped) return;
    this.timer = setImmediate(() => {
      this.timer = null;
      this.step();
    });
  }

  private step(): void {
    if (this.stopped) return;
    this.stepping = true;
    const events: StepEvents = [];
    const startReal = performance.now();
    this.admit(events);

    // Work of this step: prefill chunks of newly admitted sequences, one token for the others.
    let budget = this.config.maxNumBatchedTokens;
    let prefillTokens = 0;
    let cpuLoaded = 0;
    const prefilling: Seq[] = [];
    const decoding: Seq[] = [];
    for (const seq of this.running) {
      const promptLen = seq.req.prompt.length;
      if (seq.computed < promptLen) {
        if (budget <= 0) continue;
        const chunk = Math.min(promptLen - seq.computed, budget);
        budget -= chunk;
        prefillTokens += chunk;
        cpuLoaded += seq.cpuLoadPending;
        seq.cpuLoadPending = 0;
        prefilling.push(seq);
        (seq as Seq & { chunk: number }).chunk = chunk;
      } else {
        decoding.push(seq);
      }
    }
    if (prefilling.length === 0 && decoding.length === 0) {
      this.stepping = false;
      if (events.length > 0) this.publish(events);
      return;
    }
    const durationSim = stepDurationMs(this.config.latency, { prefillTokens, cpuLoadedTokens: cpuLoaded, decodeSeqs: decoding.length }, this.slowdown);
    const durationReal = durationSim / this.config.timeScale;
    const finishStep = (): void => {
      this.timer = null;
      if (this.stopped) return;
      this.clock += durationSim;
      this.completeStep(prefilling, decoding, events);
      this.stepping = false;
      if (events.length > 0) this.publish(events);
      for (const task of this.pendingBetweenSteps.splice(0)) task.run();
      this.refreshGauges();
      if (!this.idle) this.kick();
    };
    const remaining = durationReal - (performance.now() - startReal);
    // Timers fire late by ~1 ms: below that, catch up immediately so simulated time stays honest.
    this.timer = remaining >= 1 ? setTimeout(finishStep, remaining) : setImmediate(finishStep);
  }

  private admit(events: StepEvents): void {
    while (this.waiting.length > 0 && this.running.length < this.config.maxNumSeqs) {
      const seq = this.waiting[0]!;
      if (!this.allocatePrompt(seq, events)) break; // head-of-line: wait for blocks to free up
      this.waiting.shift();
      seq.admittedSim = this.simNow();
      this.running.push(seq);
    }
  }

  /** Prefix hits (GPU, then CPU), then blocks for the rest of the prompt. */
  private allocatePrompt(seq: Seq, events: StepEvents): boolean {
    const B = this.config.blockSize;
    const prompt = seq.req.prompt;
    const fullBlocks = Math.floor(prompt.length / B);
    if (seq.digests.length < fullBlocks) {
      seq.digests = this.config.hasher.hashBlocks(prompt, seq.extras).digests;
    }
    // vLLM always recomputes at least the last prompt token.
    const maxHitBlocks = Math.floor((prompt.length - 1) / B);
    const hits: number[] = [];
    for (let b = 0; b < Math.min(fullBlocks, maxHitBlocks); b++) {
      const block = this.pool.lookup(hex(seq.digests[b]!));
      if (block < 0) break;
      hits.push(block);
    }
    let loaded = 0;
    const cpu = this.config.cpu;
    if (cpu.mode === 'offloading-connector') {
      for (let b = hits.length; b < Math.min(fullBlocks, maxHitBlocks) && cpu.holdsBlock(hex(seq.digests[b]!)); b++) loaded++;
    } else if (cpu.mode === 'lmcache') {
      const { keys, lengths } = cpu.chunkKeysFor(prompt, seq.req.loraName);
      const held = cpu.cachedPrefixTokens(keys, lengths);
      loaded = Math.max(0, Math.min(Math.floor(held / B), maxHitBlocks) - hits.length);
    }
    const needed = Math.ceil(prompt.length / B) - hits.length;
    for (const b of hits) this.pool.touch(b);
    if (this.config.reportMode === 'full' && hits.length > 0) this.reannounce(seq, hits.length, events);
    const evicted: EvictedBlock[] = [];
    const fresh = this.pool.allocate(needed, evicted);
    if (fresh === null) {
      this.pool.release(hits);
      return false;
    }
    this.emitEvictions(evicted, events);
    seq.blocks = [...hits, ...fresh];
    seq.cachedBlocks = hits.length;
    seq.computed = (hits.length + loaded) * B;
    seq.cpuLoadPending = loaded * B;
    // vLLM records a request's cached tokens at its first scheduling; a preempted request's recompute keeps them.
    if (seq.cachedTokens < 0) seq.cachedTokens = seq.computed;
    this.stats.prefixQueries += prompt.length;
    this.stats.prefixHits += hits.length * B;
    if (cpu.enabled) {
      this.stats.externalQueries += prompt.length - hits.length * B;
      this.stats.externalHits += loaded * B;
    }
    this.stats.promptTokens += prompt.length;
    return true;
  }

  private emitEvictions(evicted: readonly EvictedBlock[], events: StepEvents): void {
    if (evicted.length === 0) return;
    // Offloading: the CPU copy is announced before the GPU copy goes, so no consumer sees a gap.
    this.config.cpu.onGpuEvicted(evicted, events as (BlockStored | BlockRemoved)[]);
    for (const e of evicted) events.push({ type: 'BlockRemoved', blockHashes: BigUint64Array.of(e.wire), blockHashDigests: [e.digest], medium: 'GPU', groupIdx: 0 });
  }

  private completeStep(prefilling: Seq[], decoding: Seq[], events: StepEvents): void {
    const now = this.simNow();
    for (const seq of prefilling) {
      if (seq.done) continue;
      seq.computed += (seq as Seq & { chunk: number }).chunk;
      this.cacheFullBlocks(seq, events);
      if (seq.computed >= seq.req.prompt.length) {
        if (this.config.cpu.mode === 'lmcache') this.config.cpu.saveChunks(seq.req.prompt, seq.req.loraName, events as (BlockStored | BlockRemoved)[]);
        if (seq.firstTokenSim === 0) {
          // A preempted sequence prefills again; its first token was long since reported.
          seq.firstTokenSim = now;
          const ttftMs = now - seq.arrivedSim;
          seq.req.onFirstToken({ cachedTokens: seq.cachedTokens, queueMs: seq.admittedSim - seq.arrivedSim, ttftMs });
          this.observeTtft(ttftMs / 1000, seq.req.loraName);
        }
        this.emitToken(seq, events);
      }
    }
    for (const seq of decoding) {
      if (seq.done) continue;
      this.emitToken(seq, events);
    }
  }

  private emitToken(seq: Seq, events: StepEvents): void {
    const B = this.config.blockSize;
    // The new token's slot: a fresh block when it starts one.
    const position = seq.tokens.length;
    if (position % B === 0 && seq.blocks.length <= position / B) {
      const evicted: EvictedBlock[] = [];
      const block = this.pool.allocate(1, evicted);
      if (block === null) {
        this.preempt(seq);
        return;
      }
      this.emitEvictions(evicted, events);
      seq.blocks.push(block[0]!);
    }
    const { from, to } = this.config.outputVocab;
    seq.rng = xorshift(seq.rng);
    const token = from + (seq.rng % (to - from));
    seq.tokens.push(token);
    seq.generated++;
    this.stats.generationTokens++;
    const last = seq.generated >= seq.req.maxTokens;
    seq.req.onToken(token, last ? 'length' : null);
    if (seq.tokens.length % B === 0) this.cacheFullBlocks(seq, events);
    if (last) {
      this.finish(seq, 'length');
      this.running.splice(this.running.indexOf(seq), 1);
    }
  }

  /** kv_cache_report_mode "full": the request's prefix-cache hits announced again, from block 0 (parent None). */
  private reannounce(seq: Seq, blocks: number, events: StepEvents): void {
    const B = this.config.blockSize;
    const hasher = this.config.hasher;
    const extraKeys: (MsgpackValue[] | null)[] = [];
    for (let b = 0; b < blocks; b++) extraKeys.push(hasher.extraKeysForBlock(seq.extras, b) as MsgpackValue[] | null);
    events.push({
      type: 'BlockStored',
      blockHashes: BigUint64Array.from(seq.digests.slice(0, blocks), wireOf),
      blockHashDigests: seq.digests.slice(0, blocks),
      parentBlockHash: null,
      tokenIds: seq.req.prompt.slice(0, blocks * B),
      blockSize: B,
      loraId: seq.req.loraId,
      medium: 'GPU',
      loraName: seq.req.loraName,
      extraKeys: extraKeys.some((k) => k !== null) ? extraKeys : null,
      groupIdx: 0,
      kvCacheSpecKind: 'full_attention',
      kvCacheSpecSlidingWindow: null,
      cacheSalt: seq.req.cacheSalt,
    });
  }

  /** Caches every computed full block not cached yet, as one BlockStored (vLLM's cache_full_blocks). */
  private cacheFullBlocks(seq: Seq, events: StepEvents): void {
    const B = this.config.blockSize;
    const computedTokens = seq.computed >= seq.req.prompt.length ? seq.tokens.length : seq.computed;
    const full = Math.floor(computedTokens / B);
    if (full <= seq.cachedBlocks) return;
    const from = seq.cachedBlocks;
    const hasher = this.config.hasher;
    // Prompt blocks were hashed at admission; decode blocks are hashed as they fill.
    if (seq.digests.length < full) {
      const last = seq.digests.length === 0 ? null : seq.digests[seq.digests.length - 1]!;
      const more = hasher.hashBlocks(seq.tokens.slice(0, full * B), seq.extras, seq.digests.length, last);
      seq.digests.push(...more.digests);
    }
    const hashes = new BigUint64Array(full - from);
    const extraKeys: (MsgpackValue[] | null)[] = [];
    for (let b = from; b < full; b++) {
      const digest = seq.digests[b]!;
      const wire = wireOf(digest);
      hashes[b - from] = wire;
      const keys = hasher.extraKeysForBlock(seq.extras, b);
      const blockTokens = Uint32Array.from(seq.tokens.slice(b * B, (b + 1) * B));
      this.pool.cache(seq.blocks[b]!, digest, wire, { tokens: blockTokens, parentWire: b === 0 ? null : wireOf(seq.digests[b - 1]!), loraName: seq.req.loraName, extraKeys: keys as unknown[] | null });
      extraKeys.push(keys === null ? null : (keys as PyValue[] as MsgpackValue[]));
    }
    const stored: BlockStored = {
      type: 'BlockStored',
      blockHashes: hashes,
      // Raw digests too, for engines run with VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0.
      blockHashDigests: seq.digests.slice(from, full),
      parentBlockHash: from === 0 ? null : wireOf(seq.digests[from - 1]!),
      tokenIds: Uint32Array.from(seq.tokens.slice(from * B, full * B)),
      blockSize: B,
      loraId: seq.req.loraId,
      medium: 'GPU',
      loraName: seq.req.loraName,
      extraKeys,
      groupIdx: 0,
      kvCacheSpecKind: 'full_attention',
      kvCacheSpecSlidingWindow: null,
      // SGLang's wire carries the salt on every event of the chain (vLLM's keeps it in extra_keys).
      cacheSalt: seq.req.cacheSalt,
    };
    if (from > 0) stored.parentBlockHashDigest = seq.digests[from - 1]!;
    events.push(stored);
    seq.cachedBlocks = full;
  }

  /** Out of blocks mid-decode: give this sequence's blocks back and recompute it later. */
  private preempt(seq: Seq): void {
    this.stats.preemptions++;
    this.running.splice(this.running.indexOf(seq), 1);
    this.pool.release([...seq.blocks].reverse());
    seq.blocks = [];
    seq.cachedBlocks = 0;
    seq.computed = 0;
    seq.cpuLoadPending = 0;
    // Recomputation covers the prompt and what was generated so far.
    seq.req = { ...seq.req, prompt: Uint32Array.from(seq.tokens), maxTokens: seq.req.maxTokens };
    seq.digests = [];
    this.waiting.unshift(seq);
  }

  private finish(seq: Seq, reason: FinishReason): void {
    if (seq.done) return;
    seq.done = true;
    // vLLM frees a request's blocks last-first, so its tail (least likely shared) is evicted first.
    this.pool.release([...seq.blocks].reverse());
    seq.blocks = [];
    this.byId.delete(seq.req.id);
    this.stats.finished++;
    const now = this.simNow();
    seq.req.onFinish({
      promptTokens: seq.tokens.length - seq.generated,
      completionTokens: seq.generated,
      cachedTokens: Math.max(0, seq.cachedTokens),
      finishReason: reason,
      ttftMs: seq.firstTokenSim > 0 ? seq.firstTokenSim - seq.arrivedSim : 0,
      e2eMs: now - seq.arrivedSim,
    });
  }

  private refreshGauges(): void {
    this.stats.running = this.running.length;
    this.stats.waiting = this.waiting.length;
    this.stats.kvUsage = this.pool.usage;
    this.stats.cpuBlocksUsed = this.config.cpu.usedBlocks;
    this.stats.runningLoras = new Set(this.running.map((s) => s.req.loraName).filter((n): n is string => n !== null));
    this.stats.waitingLoras = new Set(this.waiting.map((s) => s.req.loraName).filter((n): n is string => n !== null));
  }
}

function hex(digest: Uint8Array): string {
  return Buffer.from(digest).toString('hex');
}

function wireOf(digest: Uint8Array): bigint {
  return new DataView(digest.buffer, digest.byteOffset + digest.length - 8, 8).getBigUint64(0);
}

function seedFrom(prompt: Uint32Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < prompt.length; i++) h = Math.imul(h ^ prompt[i]!, 16777619);
  return h >>> 0 || 1;
}

function xorshift(x: number): number {
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}

function clearTimeoutOrImmediate(t: NodeJS.Timeout | NodeJS.Immediate): void {
  if ('hasRef' in t && 'refresh' in t) clearTimeout(t as NodeJS.Timeout);
  else clearImmediate(t as NodeJS.Immediate);
}
