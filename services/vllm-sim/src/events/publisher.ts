import { encodeEventBatch, encodeSeq, MsgpackWriter, REPLAY_END_SEQ, type KvEvent } from '@kvix/kv-events';
import type { Logger } from 'pino';
import { Publisher, Router } from 'zeromq';
import type { WireProfile } from '../config.js';
import { isBindEndpoint, offsetEndpointPort, type KvEventsConfig } from './kv-events-config.js';
import { encodeOptionsFor, toWire } from './wire.js';

export interface PublisherOptions {
  config: KvEventsConfig;
  /** This engine's data-parallel rank: ports are offset by it and every batch carries it. */
  rank: number;
  topic: string;
  /** 'map' = vLLM ≥ 0.26 events; 'array' = vLLM ≤ 0.23 positional events. */
  layout: 'array' | 'map';
  /** VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES: ints (default) or raw digests. */
  intHashes: boolean;
  /** The engine and version whose wire format is published (default vLLM 0.34). */
  wire?: WireProfile;
  logger: Logger;
  /**
   * The interface a wildcard endpoint (`tcp://*:port`) binds: the pod's --host, so a simulator on
   * loopback publishes on loopback only (vLLM binds every interface; a deployment passes --host 0.0.0.0).
   */
  bindHost?: string;
  /** Be a CURVE client of the collector it connects to (centralized mode): this keypair, that server key. */
  curve?: { publicKey: string; secretKey: string; serverKey: string } | undefined;
}

/** `tcp://*:port` on a specific interface; other endpoints (and wildcard hosts) as given. */
export function bindAddress(endpoint: string, host: string | undefined): string {
  if (host === undefined || host === '0.0.0.0' || host === '::' || host === '*' || !endpoint.startsWith('tcp://*:')) return endpoint;
  const iface = host === 'localhost' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `tcp://${iface}:${endpoint.slice('tcp://*:'.length)}`;
}

export interface PublisherStats {
  /** The seq the next batch will get. */
  nextSeq: bigint;
  published: number;
  /** Batches a fault kept off the wire (they stay replayable). */
  dropped: number;
  /** Batches refused because the send queue was full (max_queue_size). */
  queueOverflows: number;
  replays: number;
  buffered: number;
}

const utf8 = new TextEncoder();

/**
 * How long a closed socket may go on sending what it had begun. Not 0: a socket closed with
 * linger 0 stops its pipes mid-message, and when a peer then drops the connection while libzmq's
 * I/O thread holds the first frames of a multi-frame message (a 5-frame replay reply, a 3-frame
 * batch), libzmq 4.3.5 aborts the process ("Resource temporarily unavailable",
 * session_base.cpp:233, from clean_pipes). The churn soak in test/hostile reproduced it within
 * seconds with the replay socket at 0 and never with 100 ms. A restart rebinds after it
 * (bindWithRetry waits for the port).
 */
const CLOSE_LINGER_MS = 100;
const DEFAULT_WIRE: WireProfile = { engine: 'vllm', taggedHashes: true, v034: true };

/**
 * vLLM's ZmqEventPublisher: PUB socket (bind or connect by vLLM's rule), frames
 * [topic, seq (8 B big-endian), msgpack EventBatch], an optional ROUTER replay socket serving the
 * last `buffer_steps` batches, one ordered send loop.
 */
export class EventPublisher {
  readonly endpoint: string;
  readonly replayEndpoint: string | null;
  private readonly bindEndpoint: string;
  private readonly replayBindEndpoint: string | null;
  private pub: Publisher | null = null;
  private router: Router | null = null;
  private seq = 0n;
  private readonly buffer: { seq: bigint; payload: Uint8Array }[] = [];
  private readonly queue: Uint8Array[][] = [];
  private sending = false;
  private closed = false;
  /** Between restart() and the new sockets being up: batches are numbered and kept, and sent after. */
  private restarting = false;
  /** close() was called: a restart under way does not bring the sockets back. */
  private shutDown = false;
  /** Restarts run one after the other (two at once would bind the same ports twice). */
  private restarts: Promise<void> = Promise.resolve();
  private pendingRestarts = 0;
  private readonly writer = new MsgpackWriter(64 * 1024);
  private readonly topicBytes: Uint8Array;
  /** Fraction of batches kept off the wire (fault injection). */
  dropFraction = 0;
  readonly stats: PublisherStats = { nextSeq: 0n, published: 0, dropped: 0, queueOverflows: 0, replays: 0, buffered: 0 };

  constructor(private readonly options: PublisherOptions) {
    this.endpoint = offsetEndpointPort(options.config.endpoint, options.rank);
    this.replayEndpoint = options.config.replay_endpoint === null ? null : offsetEndpointPort(options.config.replay_endpoint, options.rank);
    this.bindEndpoint = bindAddress(this.endpoint, options.bindHost);
    this.replayBindEndpoint = this.replayEndpoint === null ? null : bindAddress(this.replayEndpoint, options.bindHost);
    this.topicBytes = utf8.encode(options.topic);
  }

  get enabled(): boolean {
    return this.options.config.enable_kv_cache_events && this.options.config.publisher === 'zmq';
  }

  async start(): Promise<void> {
    if (!this.enabled) return;
    const curve = this.options.curve;
    const pub = new Publisher({ sendHighWaterMark: this.options.config.hwm, linger: CLOSE_LINGER_MS, ...(curve ? { curvePublicKey: curve.publicKey, curveSecretKey: curve.secretKey, curveServerKey: curve.serverKey } : {}) });
    if (isBindEndpoint(this.endpoint)) await bindWithRetry(pub, this.bindEndpoint);
    else pub.connect(this.endpoint);
    this.pub = pub;
    if (this.replayEndpoint !== null) {
      // A full replay plus its end marker must fit, as in vLLM.
      const router = new Router({ sendHighWaterMark: 2 * (this.options.config.buffer_steps + 1), linger: CLOSE_LINGER_MS });
      await bindWithRetry(router, this.replayBindEndpoint!);
      this.router = router;
      void this.serveReplays(router);
    }
    this.options.logger.info({ endpoint: this.bindEndpoint, replay: this.replayBindEndpoint, topic: this.options.topic, rank: this.options.rank }, 'kv event publisher started');
  }

  /** One engine step's events as one batch, with the next sequence number. */
  publish(events: readonly KvEvent[]): void {
    if (!this.enabled || (this.closed && !this.restarting) || this.shutDown || events.length === 0) return;
    const seq = this.seq++;
    this.stats.nextSeq = this.seq;
    const wire = this.options.wire ?? DEFAULT_WIRE;
    const onWire = toWire(events, wire);
    const batch = {
      ts: Date.now() / 1000,
      // SGLang sends ints only (signed).
      events: this.options.intHashes || wire.engine === 'sglang' ? onWire.map(withoutDigests) : onWire,
      dataParallelRank: this.options.rank,
    };
    const payload = encodeEventBatch(batch, { ...encodeOptionsFor(wire, this.options.layout), writer: this.writer }).slice();
    this.buffer.push({ seq, payload });
    if (this.buffer.length > this.options.config.buffer_steps) this.buffer.shift();
    this.stats.buffered = this.buffer.length;
    if (this.dropFraction > 0 && Math.random() < this.dropFraction) {
      this.stats.dropped++;
      return;
    }
    if (this.queue.length >= this.options.config.max_queue_size) {
      this.stats.queueOverflows++;
      return;
    }
    this.queue.push([this.topicBytes, encodeSeq(seq), payload]);
    void this.drain();
  }

  /**
   * Publisher restart: sequence back to 0, replay buffer empty, sockets rebound. The new sequence
   * starts at once: an engine keeps stepping while the sockets are rebound, and its batches are
   * numbered, kept for replay and sent once the new socket is up (dropping them would leave
   * blocks the engine holds announced nowhere, not even in the replay buffer).
   */
  restart(atStart?: () => void): Promise<void> {
    // The first starts the new sequence at once (see restartNow); later ones wait their turn.
    const run = (): Promise<void> => this.restartNow(atStart);
    const next = this.pendingRestarts > 0 ? this.restarts.then(run) : run();
    this.pendingRestarts++;
    this.restarts = next.catch(() => undefined).then(() => {
      this.pendingRestarts--;
    });
    return next;
  }

  /** `atStart` runs as the new sequence starts (an engine restart forgets its cache right then). */
  private async restartNow(atStart?: () => void): Promise<void> {
    atStart?.();
    this.seq = 0n;
    this.stats.nextSeq = 0n;
    this.buffer.length = 0;
    this.queue.length = 0;
    this.stats.buffered = 0;
    this.restarting = true;
    try {
      await this.closeSockets();
      if (this.shutDown) return;
      this.closed = false;
      await this.start();
      // Closed while the new sockets were being bound: they go too.
      if (this.shutDown) await this.closeSockets();
    } finally {
      this.restarting = false;
    }
    void this.drain();
    this.options.logger.info({ endpoint: this.endpoint }, 'kv event publisher restarted (seq back to 0)');
  }

  async close(): Promise<void> {
    this.shutDown = true;
    this.closed = true;
    await this.closeSockets();
  }

  private async closeSockets(): Promise<void> {
    this.closed = true;
    const pub = this.pub;
    const router = this.router;
    this.pub = null;
    this.router = null;
    // Let an in-flight send finish before the socket goes away.
    while (this.sending) await new Promise((r) => setTimeout(r, 1));
    // Closed, never unbound first: zeromq.js runs unbind() on a libuv worker thread while this
    // thread keeps polling the socket (the replay loop's pending receive), and libzmq sockets are
    // not thread-safe — under replay traffic that aborted the process within seconds
    // ("Assertion failed: _state == term_ack_sent || _state == term_req_sent2", pipe.cpp:355; the
    // churn soak in test/hostile reproduces it). close() runs on this thread and releases the
    // ports shortly after; bindWithRetry covers the gap.
    pub?.close();
    router?.close();
  }

  private async drain(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0 && this.pub !== null) {
        const frames = this.queue.shift()!;
        // PUB never blocks: past the high-water mark ZeroMQ drops, and the gap shows in seq.
        await this.pub.send(frames);
        this.stats.published++;
      }
    } catch (err) {
      if (!this.closed) this.options.logger.warn({ err: (err as Error).message }, 'kv event send failed');
    } finally {
      this.sending = false;
    }
  }

  private async serveReplays(router: Router): Promise<void> {
    try {
      for await (const frames of router) {
        if (frames.length !== 3 || frames[2]!.length !== 8) {
          this.options.logger.warn({ frames: frames.length }, 'invalid replay request');
          continue;
        }
        const [client] = frames as [Buffer, Buffer, Buffer];
        const start = frames[2]!.readBigUInt64BE(0);
        this.stats.replays++;
        const empty = Buffer.alloc(0);
        for (const item of this.buffer.slice()) {
          if (item.seq >= start) await router.send([client, empty, this.topicBytes, encodeSeq(item.seq), item.payload]);
        }
        await router.send([client, empty, empty, encodeSeq(REPLAY_END_SEQ), empty]);
      }
    } catch (err) {
      if (!this.closed) this.options.logger.warn({ err: (err as Error).message }, 'replay socket failed');
    }
  }
}

function withoutDigests(ev: KvEvent): KvEvent {
  if (ev.type === 'AllBlocksCleared') return ev;
  if (ev.type === 'BlockStored') {
    const { blockHashDigests: _d, parentBlockHashDigest: _p, ...rest } = ev;
    return rest;
  }
  const { blockHashDigests: _d, ...rest } = ev;
  return rest;
}

/**
 * ZeroMQ releases a port on its I/O thread after close/unbind returns, so binding it again at
 * once (a simulated engine restart) can meet EADDRINUSE for a few milliseconds.
 */
async function bindWithRetry(socket: { bind(endpoint: string): Promise<void> }, endpoint: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await socket.bind(endpoint);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== 'EADDRINUSE' || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
