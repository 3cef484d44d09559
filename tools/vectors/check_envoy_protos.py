#!/usr/bin/env python3
"""Checks kvix's trimmed Envoy protos (proto/envoy/**) against Envoy's own definitions.

Both trees are compiled with protoc; every message, field and enum value kvix declares must exist
upstream with the same full name, number, type, label and referenced type. Upstream fields kvix
leaves out are listed, not failed. Needs an Envoy API checkout and its annotation dependencies
(envoyproxy/data-plane-api or envoy's api/ directory, cncf/xds for udpa/ and xds/,
bufbuild/protoc-gen-validate for validate/), passed as include directories:

    pip install grpcio-tools
    python3 tools/vectors/check_envoy_protos.py -I /path/to/data-plane-api -I /path/to/xds -I /path/to/protoc-gen-validate
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
ENTRY = "envoy/service/ext_proc/v3/external_processor.proto"
WELL_KNOWN = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")


def compile_set(includes):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        args = [sys.executable, "-m", "grpc_tools.protoc", *(f"-I{i}" for i in includes), f"-I{WELL_KNOWN}",
                "--include_imports", f"--descriptor_set_out={out}", ENTRY]
        subprocess.run(args, check=True)
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(Path(out).read_bytes())
        return fds


def index(fds):
    messages, enums = {}, {}

    def walk(prefix, msg):
        name = f"{prefix}.{msg.name}"
        messages[name] = msg
        for nested in msg.nested_type:
            walk(name, nested)
        for enum in msg.enum_type:
            enums[f"{name}.{enum.name}"] = enum

    for f in fds.file:
        for msg in f.message_type:
            walk(f".{f.package}", msg)
        for enum in f.enum_type:
            enums[f".{f.package}.{enum.name}"] = enum
    return messages, enums


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-I", dest="includes", action="append", required=True)
    args = parser.parse_args()

    ours_m, ours_e = index(compile_set([str(ROOT / "proto")]))
    theirs_m, theirs_e = index(compile_set(args.includes))
    errors, dropped, checked = [], [], 0

    for name, msg in sorted(ours_m.items()):
        if not name.startswith(".envoy."):
            continue
        up = theirs_m.get(name)
        if up is None:
            errors.append(f"{name}: no such message upstream")
            continue
        up_fields = {f.name: f for f in up.field}
        for f in msg.field:
            u = up_fields.get(f.name)
            checked += 1
            if u is None:
                errors.append(f"{name}.{f.name}: no such field upstream")
            elif (f.number, f.type, f.label, f.type_name) != (u.number, u.type, u.label, u.type_name):
                errors.append(f"{name}.{f.name}: ours {f.number}/{f.type}/{f.label}/{f.type_name}, "
                              f"upstream {u.number}/{u.type}/{u.label}/{u.type_name}")
        for f in msg.field:
            u = up_fields.get(f.name)
            if u is not None and f.HasField("oneof_index") != u.HasField("oneof_index"):
                errors.append(f"{name}.{f.name}: oneof membership differs")
        names = {f.name for f in msg.field}
        dropped += [f"{name}.{u.name} = {u.number}" for u in up.field if u.name not in names]

    for name, enum in sorted(ours_e.items()):
        if not name.startswith(".envoy."):
            continue
        up = theirs_e.get(name)
        if up is None:
            errors.append(f"{name}: no such enum upstream")
            continue
        up_values = {v.name: v.number for v in up.value}
        for v in enum.value:
            checked += 1
            if up_values.get(v.name) != v.number:
                errors.append(f"{name}.{v.name} = {v.number}: upstream {up_values.get(v.name)}")

    print(f"checked {checked} fields and enum values")
    for d in dropped:
        print(f"  left out (upstream only): {d}")
    for e in errors:
        print(f"MISMATCH {e}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
