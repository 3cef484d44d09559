#!/usr/bin/env python3
"""Parses deploy/envoy/envoy.yaml as Envoy's own Bootstrap message, the way Envoy loads it.

Envoy's API protos (bootstrap plus every extension the file names in a typed_config) are compiled
with protoc, and the YAML goes through protobuf's JSON mapping with `Any` resolution: a misspelt
field, an unknown enum value or a wrong type URL fails. This cannot run Envoy's own validation
rules (protoc-gen-validate constraints) nor start it; it checks structure, names and types.

    pip install grpcio-tools pyyaml
    python3 tools/vectors/check_envoy_config.py -I /path/to/data-plane-api -I /path/to/xds -I /path/to/protoc-gen-validate
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "envoy" / "envoy.yaml"
WELL_KNOWN = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
PROTOS = [
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto",
    "envoy/extensions/filters/http/header_to_metadata/v3/header_to_metadata.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-I", dest="includes", action="append", required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *(f"-I{i}" for i in args.includes), f"-I{WELL_KNOWN}",
                        "--include_imports", f"--descriptor_set_out={out}", *PROTOS], check=True)
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(Path(out).read_bytes())

    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    bootstrap_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("envoy.config.bootstrap.v3.Bootstrap"))
    config = yaml.safe_load(CONFIG.read_text())
    bootstrap = json_format.ParseDict(config, bootstrap_cls(), descriptor_pool=pool)
    print(f"{CONFIG.relative_to(ROOT)} parses as envoy.config.bootstrap.v3.Bootstrap "
          f"({len(bootstrap.static_resources.listeners)} listener(s), {len(bootstrap.static_resources.clusters)} cluster(s))")


if __name__ == "__main__":
    main()
