import { encodeEventBatch, type DecodedBatch } from '@kvix/kv-events';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { PodStream, type IncomingBatch, type ReplayClient, type StreamOptions } from '../src/index.js';

const logger = pino({ level: 'silent' });

/** Batch `seq` as an engine would publish it: one BlockRemoved of hash seq (easy to trace). */
function message(seq: number): IncomingBatch {
  return {
    seq: BigInt(seq),
    topic: 'kv@10.0.0.1:8000@m',
    payload: encodeEventBatch({ ts: 1, dataParallelRank: 0, events: [{ type: 'BlockRemoved', blockHashes: BigUint64Array.of(BigInt(seq)), medium: 'GPU', groupIdx: null }] }),
  };
}

/** An engine's replay buffer: the last `size` batches it published. */
class Buffer implements ReplayClient {
  published: number[] = [];
  fetches: bigint[] = [];
  failuresLeft = 0;
  constructor(private readonly size = 1000) {}
  publish(...seqs: number[]): void {
    this.published.push(...seqs);
  }
  async fetch(from: bigint): Promise<IncomingBatch[]> {
    this.fetches.push(from);
    if (this.failuresLeft > 0) {
      this.failuresLeft--;
      throw new Error('replay timed out');
    }
    return this.published.slice(-this.size).filter((s) => BigInt(s) >= from).map(message);
  }
}

function setup(options: Partial<StreamOptions> & { replay?: ReplayClient | null } = {}) {
  const applied: number[] = [];
  const clears: string[] = [];
  let unknownParentAt: number | null = null;
  const counts = { gaps: 0, resets: 0, duplicates: 0, lost: 0n, overflows: 0 };
  const replays: string[] = [];
  let now = 0;
  const stream = new PodStream(
    'pod-a',
    {
      maxQueue: 100,
      replay: options.replay === undefined ? new Buffer() : options.replay,
      replayAttempts: 3,
      replayBackoffMs: 1,
      replayCooldownMs: 10_000,
      unknownParentCooldownMs: 60_000,
      now: () => now,
      ...options,
    },
    {
      apply: async (batch: DecodedBatch, m: IncomingBatch) => {
        expect(batch.events).toHaveLength(1);
        applied.push(Number(m.seq));
        const needsReplay = unknownParentAt !== null && Number(m.seq) === unknownParentAt;
        if (needsReplay) unknownParentAt = null;
        return { needsReplay };
      },
      clear: async (reason) => {
        clears.push(reason);
        applied.length = 0;
      },
    },
    {
      gap: () => counts.gaps++,
      reset: () => counts.resets++,
      duplicate: () => counts.duplicates++,
      lost: (_pod, n) => (counts.lost += n),
      overflow: () => counts.overflows++,
      replay: (_pod, reason, outcome) => replays.push(`${reason}:${outcome}`),
    },
    logger,
  );
  const feed = async (...seqs: number[]): Promise<void> => {
    for (const s of seqs) stream.push(message(s));
    await stream.drain();
  };
  return {
    stream,
    applied,
    clears,
    counts,
    replays,
    feed,
    unknownParentOn: (seq: number) => (unknownParentAt = seq),
    advance: (ms: number) => (now += ms),
  };
}

describe('a pod\'s event stream', () => {
  it('applies batches in sequence order and drops a repeated seq', async () => {
    const t = setup();
    await t.feed(0, 1, 2, 2, 3);
    expect(t.applied).toEqual([0, 1, 2, 3]);
    expect(t.counts.duplicates).toBe(1);
  });

  it('replays a gap from last + 1, then carries on with live batches', async () => {
    const buffer = new Buffer();
    const t = setup({ replay: buffer });
    buffer.publish(0, 1, 2, 3, 4, 5);
    await t.feed(0, 1, 4, 5);
    expect(t.applied).toEqual([0, 1, 2, 3, 4, 5]);
    expect(buffer.fetches).toEqual([2n]);
    expect(t.counts.gaps).toBe(1);
    expect(t.replays).toEqual(['gap:complete']);
  });

  it('recovers batches lost at the end of a burst once the pod goes quiet, and drops their late live copies', async () => {
    const buffer = new Buffer();
    const t = setup({ replay: buffer });
    buffer.publish(0, 1, 2, 3, 4);
    await t.feed(0, 1, 2); // 3 and 4 lost on the way; nothing later reveals the gap
    t.stream.requestTailCheck();
    await t.stream.drain();
    expect(t.applied).toEqual([0, 1, 2, 3, 4]);
    expect(buffer.fetches).toEqual([3n]);
    expect(t.replays).toEqual(['tail:complete']);
    // Copies of 3 and 4 still on the way are duplicates, not an engine restart.
    await t.feed(3, 4);
    expect(t.counts).toMatchObject({ resets: 0, duplicates: 2 });
    expect(t.clears).toEqual([]);
    buffer.publish(5);
    await t.feed(5);
    expect(t.applied).toEqual([0, 1, 2, 3, 4, 5]);
    // A restart is still a restart.
    buffer.published = [0];
    await t.feed(0);
    expect(t.clears).toEqual(['reset']);
  });

  it('leaves a quiet pod alone when its replay buffer holds nothing newer', async () => {
    const buffer = new Buffer();
    const t = setup({ replay: buffer });
    buffer.publish(0, 1);
    await t.feed(0, 1);
    t.stream.requestTailCheck();
    await t.stream.drain();
    expect(t.applied).toEqual([0, 1]);
    expect(t.replays).toEqual([]);
    expect(t.counts.gaps).toBe(0);
  });

  it('replays from 0 when its first message is not seq 0 (joined a running engine)', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2, 3);
    const t = setup({ replay: buffer });
    await t.feed(3, 4);
    expect(t.applied).toEqual([0, 1, 2, 3, 4]);
    expect(buffer.fetches).toEqual([0n]);
  });

  it('replays an idle engine\'s history at startup, before any live message', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2);
    const t = setup({ replay: buffer });
    t.stream.requestBootstrap();
    await t.stream.drain();
    await t.stream.bootstrapped;
    expect(t.applied).toEqual([0, 1, 2]);
    await t.feed(3);
    expect(t.applied).toEqual([0, 1, 2, 3]);
  });

  it('clears the pod and replays from 0 when the sequence goes back (engine restart)', async () => {
    const buffer = new Buffer();
    const t = setup({ replay: buffer });
    buffer.publish(0, 1, 2, 3);
    await t.feed(0, 1, 2, 3);
    buffer.published = [0, 1]; // the restarted engine's new history
    await t.feed(1);
    expect(t.clears).toEqual(['reset']);
    expect(t.applied).toEqual([0, 1]);
    expect(t.counts.resets).toBe(1);
  });

  it('applies live batches that arrived during a replay after it, never before', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2, 3, 4, 5, 6);
    let release!: () => void;
    const slow: ReplayClient = {
      fetch: async (from) => {
        await new Promise<void>((r) => (release = r));
        return buffer.fetch(from);
      },
    };
    const t = setup({ replay: slow });
    t.stream.push(message(0));
    t.stream.push(message(3)); // gap: replays 1..
    const draining = t.stream.drain();
    await new Promise((r) => setTimeout(r, 5));
    t.stream.push(message(4)); // live, during the replay
    t.stream.push(message(7));
    expect(t.applied).toEqual([0]);
    release();
    await draining;
    await t.stream.drain();
    // 4 came back in the replay and again live: applied once, in order.
    expect(t.applied.slice(0, 7)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(t.applied.filter((s) => s === 4)).toHaveLength(1);
  });

  it('retries a failing replay with backoff, then accepts the gap and counts what was lost', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2, 3, 4);
    buffer.failuresLeft = 3;
    const t = setup({ replay: buffer });
    await t.feed(0, 3);
    expect(buffer.fetches).toEqual([1n, 1n, 1n]);
    expect(t.applied).toEqual([0, 3]);
    expect(t.counts.lost).toBe(2n);
    expect(t.replays).toEqual(['gap:failed']);
    // In the cooldown, further gaps are not replayed.
    await t.feed(5);
    expect(buffer.fetches).toHaveLength(3);
    t.advance(20_000);
    await t.feed(7);
    expect(buffer.fetches).toHaveLength(4);
  });

  it('counts a partial replay when the buffer no longer reaches back far enough', async () => {
    const buffer = new Buffer(3);
    buffer.publish(0, 1, 2, 3, 4, 5, 6);
    const t = setup({ replay: buffer });
    await t.feed(0, 6);
    expect(t.applied).toEqual([0, 4, 5, 6]);
    expect(t.counts.lost).toBe(3n);
    expect(t.replays).toEqual(['gap:partial']);
  });

  it('drops its backlog when the queue overflows and recovers it by replay', async () => {
    const buffer = new Buffer();
    const t = setup({ replay: buffer, maxQueue: 3 });
    buffer.publish(0, 1, 2, 3, 4, 5, 6);
    await t.feed(0);
    for (const s of [1, 2, 3, 4]) t.stream.push(message(s)); // the 4th push overflows
    expect(t.counts.overflows).toBe(1);
    expect(t.stream.queued).toBe(0);
    await t.feed(5, 6);
    expect(t.applied).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('clears the pod on overflow when it cannot replay, then starts over', async () => {
    const t = setup({ replay: null, maxQueue: 2 });
    await t.feed(0);
    for (const s of [1, 2, 3]) t.stream.push(message(s));
    await t.feed(4, 5);
    expect(t.clears).toEqual(['overflow']);
    expect(t.applied).toEqual([4, 5]);
    // 1–3 were dropped; 0 was applied before the clear, not lost on the way.
    expect(t.counts.lost).toBe(3n);
  });

  it('counts each batch lost to repeated overflows once, however far the sequence has got', async () => {
    const t = setup({ replay: null, maxQueue: 2 });
    for (let s = 0; s < 1000; s++) await t.feed(s);
    for (const s of [1000, 1001, 1002]) t.stream.push(message(s)); // overflow: 3 dropped
    await t.feed(1003);
    for (const s of [1004, 1005, 1006]) t.stream.push(message(s)); // again: 3 dropped
    await t.feed(1008); // and 1007 never arrived
    expect(t.clears).toEqual(['overflow', 'overflow']);
    expect(t.applied).toEqual([1008]);
    expect(t.counts.lost).toBe(7n);
  });

  it('rebuilds the pod from a replay when the applier meets an unknown parent, if the buffer covers it', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2);
    const t = setup({ replay: buffer });
    t.unknownParentOn(2);
    await t.feed(0, 1, 2);
    expect(t.clears).toEqual(['rebuild']);
    expect(t.applied).toEqual([0, 1, 2]);
    expect(t.replays).toContain('unknown_parent:complete');
  });

  it('does not rebuild when the replay buffer starts after what it applied (it would lose data)', async () => {
    const buffer = new Buffer(2);
    buffer.publish(0, 1, 2, 3);
    const t = setup({ replay: buffer });
    t.unknownParentOn(3);
    await t.feed(0, 1, 2, 3);
    expect(t.clears).toEqual([]);
    expect(t.replays).toContain('unknown_parent:skipped');
  });

  it('after a reconnection, treats an engine whose buffer ends below what it applied as restarted', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2, 3, 4);
    const t = setup({ replay: buffer });
    await t.feed(0, 1, 2, 3, 4);
    buffer.published = [0, 1]; // restarted while we were disconnected; its first batches never reached us
    t.stream.requestVerification();
    await t.stream.drain();
    expect(t.clears).toEqual(['reset']);
    expect(t.applied).toEqual([0, 1]);
    expect(t.counts.resets).toBe(1);
  });

  it('after a reconnection to a restarted engine, drops what the old engine sent that was still queued', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2, 3, 4, 5);
    const t = setup({ replay: buffer });
    await t.feed(0, 1, 2);
    // Batches 3–5 arrived before the connection dropped and wait in the queue; the engine restarted
    // and has published nothing since.
    for (const s of [3, 4, 5]) t.stream.push(message(s));
    buffer.published = [];
    t.stream.requestVerification();
    await t.stream.drain();
    expect(t.clears).toEqual(['reset']);
    expect(t.applied).toEqual([]);
    expect(t.stream.state().lastSeq).toBeNull();
    await t.feed(0);
    expect(t.applied).toEqual([0]);
  });

  it('after a reconnection whose buffer it rebuilds from, drops what was queued from before it', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2, 3, 4, 5);
    const t = setup({ replay: buffer });
    await t.feed(0, 1, 2);
    for (const s of [3, 4, 5]) t.stream.push(message(s));
    // A new engine that already published past the old one's last queued batch... or the same one:
    // either way the buffer is the truth, and the queued batches are stale or already in it.
    buffer.published = [0, 1, 2, 3];
    t.stream.requestVerification();
    await t.stream.drain();
    expect(t.applied).toEqual([0, 1, 2, 3]);
    expect(t.stream.state().lastSeq).toBe('3');
  });

  it('after a reconnection, only fills the gap of an engine whose history outgrew its buffer', async () => {
    const buffer = new Buffer(3);
    buffer.publish(0, 1, 2, 3, 4, 5, 6);
    const t = setup({ replay: buffer });
    await t.feed(0, 1, 2, 3, 4);
    t.stream.requestVerification();
    await t.stream.drain();
    expect(t.clears).toEqual([]);
    expect(t.applied).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('after a reconnection, rebuilds (losing nothing) when the buffer covers everything applied', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2);
    const t = setup({ replay: buffer });
    await t.feed(0, 1, 2);
    buffer.published = [0, 1, 2]; // same range, maybe a new engine: it cannot be told, so rebuild
    t.stream.requestVerification();
    await t.stream.drain();
    expect(t.clears).toEqual(['rebuild']);
    expect(t.applied).toEqual([0, 1, 2]);
  });

  it('starts over from the replay buffer when the index lost what was applied, counting what the buffer no longer holds', async () => {
    const buffer = new Buffer(3);
    buffer.publish(0, 1, 2, 3, 4);
    const t = setup({ replay: buffer });
    await t.feed(0, 1, 2, 3, 4);
    t.stream.requestRebuild();
    expect(t.stream.hasWork).toBe(true);
    await t.stream.drain();
    expect(t.clears).toEqual(['rebuild']);
    expect(t.applied).toEqual([2, 3, 4]);
    expect(t.counts.lost).toBe(2n);
    expect(t.replays).toEqual(['index_reset:partial']);
    await t.feed(5);
    expect(t.applied).toEqual([2, 3, 4, 5]);
  });

  it('keeps a rebuild pending when it fails (the backend went away again) and runs it on the next drain', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1);
    const applied: number[] = [];
    let clearFailures = 1;
    const s = new PodStream(
      'p',
      { maxQueue: 10, replay: buffer, replayAttempts: 1, replayBackoffMs: 0, replayCooldownMs: 0, unknownParentCooldownMs: 0 },
      {
        apply: async (_b, m) => (applied.push(Number(m.seq)), { needsReplay: false }),
        clear: async () => {
          if (clearFailures-- > 0) throw new Error('BACKEND_UNAVAILABLE');
          applied.length = 0;
        },
      },
      {},
      logger,
    );
    s.push(message(0));
    s.push(message(1));
    await s.drain();
    s.requestRebuild();
    await expect(s.drain()).rejects.toThrow('BACKEND_UNAVAILABLE');
    s.markFailed();
    await s.drain();
    expect(applied).toEqual([0, 1]);
    expect(buffer.fetches).toEqual([0n]);
    expect(s.hasWork).toBe(false);
  });

  it('skips a malformed payload and keeps the stream going', async () => {
    const decodeErrors: string[] = [];
    const t = setup();
    const s = new PodStream('p', { maxQueue: 10, replay: null, replayAttempts: 1, replayBackoffMs: 0, replayCooldownMs: 0, unknownParentCooldownMs: 0 }, { apply: async () => ({ needsReplay: false }), clear: async () => undefined }, { decodeError: (_p, e) => decodeErrors.push(e.code) }, logger);
    s.push({ seq: 0n, topic: '', payload: new Uint8Array([0x93, 0xcb]) });
    s.push(message(1));
    await s.drain();
    expect(decodeErrors).toEqual(['TRUNCATED']);
    expect(s.state().lastSeq).toBe('1');
    expect(t.applied).toEqual([]);
  });

  it('applies nothing after close, not even the rest of a replay, and lets the batch in flight finish first', async () => {
    const buffer = new Buffer();
    buffer.publish(0, 1, 2);
    const applied: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inApply = new Promise<void>((r) => (entered = r));
    const stream = new PodStream(
      'pod-a',
      { maxQueue: 100, replay: buffer, replayAttempts: 1, replayBackoffMs: 1, replayCooldownMs: 0, unknownParentCooldownMs: 0 },
      {
        apply: async (_batch, m) => {
          applied.push(Number(m.seq));
          entered();
          await gate;
          return { needsReplay: false };
        },
        clear: async () => undefined,
      },
      {},
      logger,
    );
    // The startup replay brings batches 0–2; the pod is removed while batch 0 is being applied.
    stream.requestBootstrap();
    const draining = stream.drain();
    await inApply;
    stream.close();
    let settled = false;
    const done = stream.whenApplied().then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    release();
    await done;
    await draining;
    expect(applied).toEqual([0]);
  });

  it('runs a chore between batches, in the pod\'s own order', async () => {
    const t = setup({ replay: null });
    const order: string[] = [];
    await t.feed(0);
    t.stream.requestChore(async () => void order.push(`chore after ${t.applied.join(',')}`));
    expect(t.stream.hasWork).toBe(true);
    await t.feed(1);
    expect(order).toEqual(['chore after 0']);
    expect(t.applied).toEqual([0, 1]);
  });

  describe('sanity of sequence numbers (issue 16 item 3)', () => {
    function at(seq: bigint): IncomingBatch {
      return { ...message(7), seq };
    }

    it('counts nothing lost when the first batch it sees has seq 2^63 (no replay)', async () => {
      const t = setup({ replay: null });
      t.stream.push(at(1n << 63n));
      await t.stream.drain();
      expect(t.counts.lost).toBe(0n);
      expect(t.stream.state().lastSeq).toBe((1n << 63n).toString());
    });

    it('treats a jump beyond the window as a restart, not 2^63 lost batches', async () => {
      const t = setup({ replay: null });
      await t.feed(0, 1, 2);
      t.stream.push(at((1n << 64n) - 2n));
      await t.stream.drain();
      expect(t.counts.lost).toBe(0n);
      expect(t.counts.resets).toBe(1);
      expect(t.clears).toEqual(['reset']);
      // It goes on from the new sequence.
      t.stream.push(at((1n << 64n) - 1n));
      await t.stream.drain();
      expect(t.counts.lost).toBe(0n);
      expect(t.counts.gaps).toBe(0);
    });

    it('replays a restart after a jump beyond the window and counts nothing lost', async () => {
      const buffer = new Buffer();
      const t = setup({ replay: buffer, maxSeqJump: 100 });
      buffer.publish(0, 1, 2);
      await t.feed(0, 1, 2);
      buffer.published = [5000, 5001];
      await t.feed(5001);
      expect(t.counts.resets).toBe(1);
      expect(t.counts.lost).toBe(0n);
      expect(t.applied).toEqual([5000, 5001]);
    });

    it("takes a publisher numbering from 1 (llm-d's simulator) without a phantom lost batch", async () => {
      const plain = setup({ replay: null });
      await plain.feed(1, 2, 3);
      expect(plain.counts.lost).toBe(0n);
      const buffer = new Buffer();
      buffer.publish(1, 2, 3);
      const replayed = setup({ replay: buffer });
      replayed.stream.requestBootstrap();
      await replayed.stream.drain();
      await replayed.feed(4);
      expect(replayed.applied).toEqual([1, 2, 3, 4]);
      expect(replayed.counts.lost).toBe(0n);
      // Its restart starts at 1 again.
      buffer.published = [1];
      await replayed.feed(1);
      expect(replayed.counts.resets).toBe(1);
      expect(replayed.counts.lost).toBe(0n);
    });

    it('does not count a first seq above 0 as lost when it joins a publisher late', async () => {
      const t = setup({ replay: null });
      await t.feed(40, 41);
      expect(t.counts.lost).toBe(0n);
      expect(t.applied).toEqual([40, 41]);
    });
  });
});
