#!/usr/bin/env python3
"""Independent reference for kvix's block-key fixtures, written from ../shared/spec/block-keys.md.

It uses CPython's own pickle (protocol 5), cbor2 (canonical), hashlib and the xxhash package, so
the TypeScript implementation is checked against the real serializers rather than against itself.

    pip install cbor2 xxhash
    python3 tools/vectors/generate_block_key_fixtures.py > packages/block-keys/test/fixtures/generated.json
"""
import hashlib
import json
import pickle
import random

import cbor2
import xxhash

MASK64 = (1 << 64) - 1


# ---- vLLM engine hashes -------------------------------------------------------------------------
def serialize(algo, value):
    if algo in ("sha256", "xxhash"):
        return pickle.dumps(value, protocol=5)
    return cbor2.dumps(value, canonical=True)


def digest(algo, data):
    if algo in ("xxhash", "xxhash_cbor"):
        return xxhash.xxh3_128_digest(data)
    return hashlib.sha256(data).digest()


def engine_extra_keys(algo, block, block_size, lora_name, lora_int_id, salt, mm):
    keys = []
    if algo == "sha256_cbor_64bit":
        if lora_int_id is not None:
            keys.append(lora_int_id)
    elif lora_name is not None:
        keys.append(lora_name)
    start, end = block * block_size, (block + 1) * block_size
    for item in sorted(mm or [], key=lambda m: m["offset"]):
        if item["offset"] < end and item["offset"] + item["length"] > start:
            keys.append((item["identifier"], item["offset"] - start))
    if block == 0 and salt:
        keys.append(salt)
    return tuple(keys) if keys else None


def engine_case(case_id, algo, seed, block_size, tokens, lora_name=None, lora_int_id=None, salt=None, mm=None):
    none = digest(algo, serialize(algo, seed))
    parent = none
    digests, wires = [], []
    for b in range(len(tokens) // block_size):
        chunk = tuple(tokens[b * block_size:(b + 1) * block_size])
        extra = engine_extra_keys(algo, b, block_size, lora_name, lora_int_id, salt, mm)
        chain = int.from_bytes(parent, "big") & MASK64 if algo == "sha256_cbor_64bit" else parent
        d = digest(algo, serialize(algo, (chain, chunk, extra)))
        digests.append(d.hex())
        wires.append(str(int.from_bytes(d, "big") & MASK64))
        parent = d
    return {
        "id": case_id, "algorithm": algo, "seed": seed, "blockSize": block_size, "tokens": tokens,
        "loraName": lora_name, "loraIntId": lora_int_id, "cacheSalt": salt, "mm": mm,
        "noneHashHex": none.hex(), "digests": digests, "blockHashes": wires,
    }


# ---- request keys ---------------------------------------------------------------------------------
def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & MASK64
    return h


def cbor_fnv_block(parent, tokens, extras):
    extra = None if not extras else [{"Hash": e} for e in extras]
    return fnv1a64(cbor2.dumps([parent, list(tokens), extra], canonical=True))


def xxh64_block(parent, tokens, extras):
    data = parent.to_bytes(8, "little") + b"".join(t.to_bytes(4, "little") for t in tokens)
    for e in extras or []:
        raw = e.encode()
        data += len(raw).to_bytes(8, "little") + raw
    return xxhash.xxh64_intdigest(data, seed=0)


def request_case(case_id, algo, seed, block_size, model, tokens, extras=None, parent=None):
    if algo == "cbor-fnv":
        init = fnv1a64(seed.encode())
        root = fnv1a64(cbor2.dumps([init, None, model], canonical=True))
        block = cbor_fnv_block
    else:
        init = xxhash.xxh64_intdigest(seed.encode(), seed=0)
        root = xxh64_block(init, [], [model])
        block = xxh64_block
    prev = parent if parent else root
    keys = []
    for b in range(len(tokens) // block_size):
        ex = extras[b] if extras and b < len(extras) else None
        prev = block(prev, tokens[b * block_size:(b + 1) * block_size], ex)
        keys.append(str(prev))
    return {
        "id": case_id, "algorithm": algo, "seed": seed, "blockSize": block_size, "model": model,
        "tokens": tokens, "extraKeys": extras, "parent": None if parent is None else str(parent),
        "root": str(root), "keys": keys,
    }


def main():
    rnd = random.Random(20261121)

    def toks(n, hi=152000):
        return [rnd.randrange(hi) for _ in range(n)]

    boundary = [0, 23, 24, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 1, 2, 3, 4, 5, 6]
    engine = []
    for algo in ("sha256", "sha256_cbor", "xxhash", "xxhash_cbor"):
        engine.append(engine_case(f"{algo}-lora-mm-salt", algo, "42", 16, toks(64), lora_name="sql-lora",
                                  salt="tenant-a", mm=[{"identifier": "img-b", "offset": 40, "length": 10},
                                                       {"identifier": "img-a", "offset": 3, "length": 30}]))
        engine.append(engine_case(f"{algo}-four-extras", algo, "0", 8, toks(24), lora_name="a" * 300,
                                  salt="s", mm=[{"identifier": "m1", "offset": 1, "length": 2},
                                                {"identifier": "m2", "offset": 4, "length": 2}]))
        engine.append(engine_case(f"{algo}-boundaries", algo, "", 16, boundary))
        engine.append(engine_case(f"{algo}-unicode-seed-bs64", algo, "种子-é", 64, toks(130)))
    engine.append(engine_case("sha256_cbor_64bit-mm-salt", "sha256_cbor_64bit", "7", 16, toks(48), lora_int_id=3,
                              salt="x", mm=[{"identifier": "im", "offset": 10, "length": 12}]))
    engine.append(engine_case("sha256-negative-long-offsets", "sha256", "1", 4, toks(40),
                              mm=[{"identifier": "long", "offset": 0, "length": 40}]))

    requests = []
    for algo in ("cbor-fnv", "xxh64"):
        requests.append(request_case(f"{algo}-plain", algo, "", 16, "test-model", list(range(1, 33))))
        requests.append(request_case(f"{algo}-seeded-bs64", algo, "42", 64, "Qwen/Qwen3-32B", toks(200)))
        requests.append(request_case(f"{algo}-extras", algo, "7", 8, "m", toks(40),
                                     extras=[["img-1"], None, ["img-1", "img-2"], None, ["salt"]]))
        requests.append(request_case(f"{algo}-parent", algo, "", 4, "m", toks(12), parent=1234567890123456789))
        requests.append(request_case(f"{algo}-big-tokens", algo, "", 4, "m", boundary))
        requests.append(request_case(f"{algo}-unicode", algo, "é", 16, "模型/名字", toks(33)))
    json.dump({"engineHashes": engine, "requestKeys": requests}, fp=__import__("sys").stdout, indent=1)


if __name__ == "__main__":
    main()
