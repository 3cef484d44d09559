"""A foreign KV-event publisher for kvix's tests: vLLM 0.34's and SGLang 0.5's event structs,
declared here as those projects declare them (field order, defaults, tags), encoded by msgspec and
published over a real ZeroMQ PUB socket, as their ZMQ publishers do.

Reads one JSON document on stdin:
  {"mode": "encode", "engine": "vllm"|"sglang", "batches": [batch, ...]}
      prints one line per batch: the msgpack payload as hex (to check the structs against vectors);
  {"mode": "publish", "engine": ..., "endpoint": "tcp://127.0.0.1:PORT", "topic": "...",
   "first_seq": N, "batches": [batch, ...]}
      binds, waits for a subscriber, sends [topic, seq (8 bytes BE), payload] per batch from seq N,
      prints "published <count>" and exits.
A batch is {"ts": float, "rank": int|null, "events": [{"type": "BlockStored", <snake_case fields>}, ...]};
hashes are decimal strings (unsigned 64-bit; SGLang's are sent as the signed int64 it uses).
"""

import json
import struct
import sys
import time
from typing import Any, Optional, Union

import msgspec
import zmq


class Vllm:
    """vLLM 0.34 (vllm/distributed/kv_events.py): tagged map events, an array_like batch."""

    class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
        ts: float
        events: list[Any]
        data_parallel_rank: Optional[int] = None

    class KVCacheEvent(msgspec.Struct, array_like=False, omit_defaults=True, gc=False, tag=True):
        pass

    class BlockStored(KVCacheEvent, tag="BlockStored"):
        block_hashes: list[Union[int, bytes]]
        parent_block_hash: Optional[Union[int, bytes]]
        token_ids: list[int]
        block_size: int
        lora_id: Optional[int]
        medium: Optional[str]
        lora_name: Optional[str]
        extra_keys: Optional[list[Optional[tuple[Any, ...]]]] = None
        group_idx: Optional[int] = None
        kv_cache_spec_kind: Optional[str] = None
        kv_cache_spec_sliding_window: Optional[int] = None
        locality: Optional[str] = None
        ownership: Optional[str] = None
        session_id: Optional[str] = None
        lookahead_token_ids: Optional[list[list[int]]] = None

    class BlockRemoved(KVCacheEvent, tag="BlockRemoved"):
        block_hashes: list[Union[int, bytes]]
        medium: Optional[str]
        group_idx: Optional[int] = None
        locality: Optional[str] = None
        ownership: Optional[str] = None

    class AllBlocksCleared(KVCacheEvent, tag="AllBlocksCleared"):
        pass

    signed = False


class Sglang:
    """SGLang 0.5 (sglang/srt/disaggregation/kv_events.py): same transport, its own fields."""

    class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
        ts: float
        events: list[Any]
        attn_dp_rank: Optional[int] = None

    class KVCacheEvent(msgspec.Struct, array_like=False, omit_defaults=True, gc=False, tag=True):
        pass

    class BlockStored(KVCacheEvent, tag="BlockStored"):
        block_hashes: list[int]
        parent_block_hash: Optional[int]
        token_ids: list[int]
        block_size: int
        lora_id: Optional[int]
        medium: Optional[str]
        cache_salt: Optional[str] = None
        session_id: Optional[str] = None
        lora_name: Optional[str] = None

    class BlockRemoved(KVCacheEvent, tag="BlockRemoved"):
        block_hashes: list[int]
        medium: Optional[str]

    class AllBlocksCleared(KVCacheEvent, tag="AllBlocksCleared"):
        pass

    signed = True


def to_hash(value: Any, signed: bool) -> Any:
    if value is None:
        return None
    v = int(value)
    if signed and v >= 1 << 63:
        v -= 1 << 64
    return v


def build_event(engine: Any, ev: dict) -> Any:
    kind = ev["type"]
    fields = {k: v for k, v in ev.items() if k != "type"}
    if "block_hashes" in fields:
        fields["block_hashes"] = [to_hash(h, engine.signed) for h in fields["block_hashes"]]
    if "parent_block_hash" in fields:
        fields["parent_block_hash"] = to_hash(fields["parent_block_hash"], engine.signed)
    if fields.get("extra_keys") is not None:
        fields["extra_keys"] = [None if k is None else tuple(tuple(x) if isinstance(x, list) else x for x in k) for k in fields["extra_keys"]]
    return getattr(engine, kind)(**fields)


def encode_batches(engine: Any, batches: list) -> list:
    encoder = msgspec.msgpack.Encoder()
    out = []
    for b in batches:
        events = [build_event(engine, e) for e in b["events"]]
        out.append(encoder.encode(engine.EventBatch(ts=b["ts"], events=events, **({} if b.get("rank") is None else {("attn_dp_rank" if engine is Sglang else "data_parallel_rank"): b["rank"]}))))
    return out


def main() -> None:
    doc = json.load(sys.stdin)
    engine = Sglang if doc.get("engine") == "sglang" else Vllm
    payloads = encode_batches(engine, doc["batches"])
    if doc["mode"] == "encode":
        for p in payloads:
            print(p.hex())
        return
    ctx = zmq.Context()
    # XPUB: a PUB that also tells when a subscriber arrives, so nothing is sent to nobody.
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.bind(doc["endpoint"])
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    if not poller.poll(30_000):
        print("no subscriber within 30 s", file=sys.stderr)
        sys.exit(3)
    sock.recv()
    topic = doc["topic"].encode()
    seq = int(doc.get("first_seq", 0))
    for p in payloads:
        sock.send_multipart([topic, struct.pack(">Q", seq), p])
        seq += 1
    time.sleep(0.2)
    print(f"published {len(payloads)}", flush=True)
    sock.close()
    ctx.term()


if __name__ == "__main__":
    main()
