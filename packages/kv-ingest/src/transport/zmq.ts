import { encodeReplayRequest, EventDecodeError, parseEventMessage, parseReplayReply } from '@kvix/kv-events';
import { Dealer, Subscriber } from 'zeromq';
import type { IncomingBatch, ReplayClient } from '../stream/pod-stream.js';

export interface SubscriberHandlers {
  message(message: IncomingBatch): void;
  /** A message that is not [topic, seq, payload] with an 8-byte seq. */
  malformed(error: EventDecodeError): void;
  connected(): void;
  disconnected(): void;
  /** A retry after the connection was lost or refused. */
  reconnecting(): void;
}

export interface SubscriberOptions {
  topicPrefix: string;
  receiveHighWaterMark: number;
  reconnectIntervalMs: number;
  reconnectMaxIntervalMs: number;
  /** Be a CURVE server (bind mode): this secret key, publishers admitted by the ZAP handler of `zapDomain`. */
  curve?: { secretKey: string; zapDomain: string };
}

/**
 * A SUB socket: dials one pod (per-pod mode) or binds for many (centralized mode). ZeroMQ
 * reconnects by itself, backing off from reconnectIntervalMs to reconnectMaxIntervalMs; a
 * malformed message is reported and the socket keeps receiving.
 */
export class EventSubscriber {
  private readonly socket: Subscriber;
  private closed = false;

  constructor(
    readonly endpoint: string,
    private readonly mode: 'connect' | 'bind',
    options: SubscriberOptions,
    private readonly handlers: SubscriberHandlers,
  ) {
    this.socket = new Subscriber({
      receiveHighWaterMark: options.receiveHighWaterMark,
      reconnectInterval: options.reconnectIntervalMs,
      reconnectMaxInterval: options.reconnectMaxIntervalMs,
      linger: 0,
      ...(options.curve ? { curveServer: true, curveSecretKey: options.curve.secretKey, zapDomain: options.curve.zapDomain } : {}),
    });
    this.socket.subscribe(options.topicPrefix);
  }

  async start(): Promise<void> {
    // Watch first, or the events of the first connection go unseen.
    void this.watchConnection();
    if (this.mode === 'bind') await this.socket.bind(this.endpoint);
    else this.socket.connect(this.endpoint);
    void this.receive();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }

  private async receive(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        let parsed;
        try {
          parsed = parseEventMessage(frames);
        } catch (err) {
          if (err instanceof EventDecodeError) {
            this.handlers.malformed(err);
            continue;
          }
          throw err;
        }
        this.handlers.message(parsed);
      }
    } catch (err) {
      // Closing the socket ends the iteration with an error; anything else is unexpected.
      if (!this.closed) throw err;
    }
  }

  private async watchConnection(): Promise<void> {
    try {
      for await (const event of this.socket.events) {
        if (event.type === 'connect' || event.type === 'accept') this.handlers.connected();
        else if (event.type === 'disconnect') this.handlers.disconnected();
        else if (event.type === 'connect:retry') this.handlers.reconnecting();
      }
    } catch {
      // The observer ends with the socket.
    }
  }
}

export interface ReplayOptions {
  /** Longest wait for the next reply frame before the attempt fails. */
  idleTimeoutMs: number;
  /** Longest a whole replay may take. */
  totalTimeoutMs: number;
}

/** A DEALER per replay: ["", start_seq] out; replies until the end marker. */
export class ZmqReplayClient implements ReplayClient {
  constructor(
    readonly endpoint: string,
    private readonly options: ReplayOptions,
  ) {}

  async fetch(from: bigint): Promise<IncomingBatch[]> {
    // A short linger, not 0: a 2-frame request cut mid-message by close, with the connection then
    // dropping, makes libzmq 4.3.5 abort (session_base.cpp:233; see vllm-sim's publisher).
    const dealer = new Dealer({ linger: 100, receiveTimeout: this.options.idleTimeoutMs, sendTimeout: this.options.idleTimeoutMs });
    dealer.connect(this.endpoint);
    const deadline = Date.now() + this.options.totalTimeoutMs;
    const out: IncomingBatch[] = [];
    try {
      await dealer.send(encodeReplayRequest(from));
      for (;;) {
        if (Date.now() > deadline) throw new Error(`replay from ${from} took longer than ${this.options.totalTimeoutMs} ms`);
        let frames: Buffer[];
        try {
          frames = await dealer.receive();
        } catch (err) {
          if ((err as { code?: string }).code === 'EAGAIN') throw new Error(`no replay reply within ${this.options.idleTimeoutMs} ms from ${this.endpoint}`, { cause: err });
          throw err;
        }
        const reply = parseReplayReply(frames);
        if (reply.end) return out;
        out.push({ seq: reply.seq, topic: reply.topic ?? '', payload: reply.payload });
      }
    } finally {
      dealer.close();
    }
  }
}
