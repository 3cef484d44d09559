#!/usr/bin/env python3
"""Golden wire encodings of Envoy ext_proc messages, for @kvix/proto's tests.

The bytes are assembled by hand here (tag = field_number << 3 | wire_type, varints, length
prefixes), with the field numbers written out below from Envoy's own definitions
(api/envoy/service/ext_proc/v3/external_processor.proto, api/envoy/config/core/v3/base.proto,
api/envoy/type/v3/http_status.proto, api/envoy/extensions/filters/http/ext_proc/v3/processing_mode.proto),
not from kvix's trimmed copies, so a wrong field number in proto/envoy/** fails the test. The
google.protobuf.Struct payloads are serialized by Google's own protobuf runtime (struct_pb2), and
every assembled message is re-parsed by protoc's raw decoder as a sanity check.

    pip install protobuf grpcio-tools
    python3 tools/vectors/generate_ext_proc_vectors.py
"""
import json
import subprocess
import sys
from pathlib import Path

from google.protobuf import struct_pb2

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "proto" / "test" / "fixtures" / "ext-proc-golden.json"

VARINT, LEN = 0, 2

# ---- Envoy's field numbers ------------------------------------------------------------------------
# envoy.service.ext_proc.v3.ProcessingRequest
PREQ_REQUEST_HEADERS, PREQ_RESPONSE_HEADERS, PREQ_REQUEST_BODY, PREQ_RESPONSE_BODY = 2, 3, 4, 5
PREQ_REQUEST_TRAILERS, PREQ_RESPONSE_TRAILERS = 6, 7
PREQ_METADATA_CONTEXT, PREQ_ATTRIBUTES, PREQ_OBSERVABILITY_MODE, PREQ_PROTOCOL_CONFIG = 8, 9, 10, 11
# envoy.service.ext_proc.v3.ProcessingResponse
PRES_REQUEST_HEADERS, PRES_RESPONSE_HEADERS, PRES_REQUEST_BODY, PRES_RESPONSE_BODY = 1, 2, 3, 4
PRES_REQUEST_TRAILERS, PRES_RESPONSE_TRAILERS, PRES_IMMEDIATE_RESPONSE = 5, 6, 7
PRES_DYNAMIC_METADATA, PRES_MODE_OVERRIDE, PRES_OVERRIDE_MESSAGE_TIMEOUT = 8, 9, 10
# ProtocolConfiguration
PC_REQUEST_BODY_MODE, PC_RESPONSE_BODY_MODE, PC_SEND_BODY_WITHOUT_WAITING = 1, 2, 3
# HttpHeaders, HttpBody, HttpTrailers
HH_HEADERS, HH_END_OF_STREAM = 1, 3
HB_BODY, HB_END_OF_STREAM = 1, 2
HT_TRAILERS = 1
# HeadersResponse / BodyResponse (response=1), TrailersResponse (header_mutation=1)
HR_RESPONSE = BR_RESPONSE = 1
TR_HEADER_MUTATION = 1
# CommonResponse
CR_STATUS, CR_HEADER_MUTATION, CR_BODY_MUTATION, CR_TRAILERS, CR_CLEAR_ROUTE_CACHE = 1, 2, 3, 4, 5
CONTINUE_AND_REPLACE = 1
# ImmediateResponse, GrpcStatus
IR_STATUS, IR_HEADERS, IR_BODY, IR_GRPC_STATUS, IR_DETAILS = 1, 2, 3, 4, 5
GS_STATUS = 1
# HeaderMutation
HM_SET_HEADERS, HM_REMOVE_HEADERS = 1, 2
# StreamedBodyResponse, BodyMutation
SBR_BODY, SBR_END_OF_STREAM = 1, 2
BM_BODY, BM_CLEAR_BODY, BM_STREAMED_RESPONSE = 1, 2, 3
# envoy.config.core.v3
HV_KEY, HV_VALUE, HV_RAW_VALUE = 1, 2, 3
HVO_HEADER, HVO_APPEND, HVO_APPEND_ACTION, HVO_KEEP_EMPTY_VALUE = 1, 2, 3, 4
OVERWRITE_IF_EXISTS_OR_ADD = 2
HMAP_HEADERS = 1
MD_FILTER_METADATA = 1
# envoy.type.v3.HttpStatus
HS_CODE = 1
# envoy.extensions.filters.http.ext_proc.v3.ProcessingMode
PM_REQUEST_HEADER_MODE, PM_RESPONSE_HEADER_MODE, PM_REQUEST_BODY_MODE, PM_RESPONSE_BODY_MODE = 1, 2, 3, 4
PM_REQUEST_TRAILER_MODE, PM_RESPONSE_TRAILER_MODE = 5, 6
SEND, SKIP = 1, 2
FULL_DUPLEX_STREAMED = 4
# google.protobuf.Duration, map entries
DUR_SECONDS, DUR_NANOS = 1, 2
MAP_KEY, MAP_VALUE = 1, 2


# ---- wire primitives ------------------------------------------------------------------------------
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire_type):
    return varint(field << 3 | wire_type)


def vfield(field, n):
    return tag(field, VARINT) + varint(n)


def lfield(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return tag(field, LEN) + varint(len(payload)) + payload


def struct_bytes(obj):
    s = struct_pb2.Struct()
    s.update(obj)
    return s.SerializeToString(deterministic=True)


def header_value(key, raw):
    return lfield(HV_KEY, key) + lfield(HV_RAW_VALUE, raw)


def header_option(key, raw, append_action=None):
    out = lfield(HVO_HEADER, header_value(key, raw))
    if append_action:
        out += vfield(HVO_APPEND_ACTION, append_action)
    return out


def filter_metadata_entry(namespace, obj):
    return lfield(MD_FILTER_METADATA, lfield(MAP_KEY, namespace) + lfield(MAP_VALUE, struct_bytes(obj)))


# ---- the cases (the TypeScript test builds the same messages) --------------------------------------
def cases():
    endpoint_list = "10.0.0.7:8000,10.0.0.8:8000"
    out = []

    # The EPP's body echo in FULL_DUPLEX_STREAMED mode, with the endpoint as dynamic metadata.
    body = '{"model":"m","prompt":"hello"}'
    streamed = lfield(SBR_BODY, body) + vfield(SBR_END_OF_STREAM, 1)
    common = lfield(CR_BODY_MUTATION, lfield(BM_STREAMED_RESPONSE, streamed))
    msg = lfield(PRES_REQUEST_BODY, lfield(BR_RESPONSE, common))
    msg += lfield(PRES_DYNAMIC_METADATA, struct_bytes({"envoy.lb": {"x-gateway-destination-endpoint": endpoint_list}}))
    out.append(("response-request-body-streamed", "ProcessingResponse", msg))

    # The deferred request_headers answer: route cache cleared, endpoint header set, one removed.
    mutation = lfield(HM_SET_HEADERS, header_option("x-gateway-destination-endpoint", endpoint_list, OVERWRITE_IF_EXISTS_OR_ADD))
    mutation += lfield(HM_SET_HEADERS, header_option("content-length", "30"))
    mutation += lfield(HM_REMOVE_HEADERS, "x-remove-me")
    common = lfield(CR_HEADER_MUTATION, mutation) + vfield(CR_CLEAR_ROUTE_CACHE, 1)
    msg = lfield(PRES_REQUEST_HEADERS, lfield(HR_RESPONSE, common))
    msg += lfield(PRES_DYNAMIC_METADATA, struct_bytes({"envoy.lb": {"x-gateway-destination-endpoint": endpoint_list}}))
    out.append(("response-request-headers", "ProcessingResponse", msg))

    # A local reply: 503 with a header, a body and details.
    headers = lfield(HM_SET_HEADERS, header_option("x-llm-d-request-dropped-reason", "rejected-saturated"))
    ir = lfield(IR_STATUS, vfield(HS_CODE, 503)) + lfield(IR_HEADERS, headers) + lfield(IR_BODY, "no endpoint")
    ir += lfield(IR_GRPC_STATUS, vfield(GS_STATUS, 14)) + lfield(IR_DETAILS, "no_eligible_endpoint")
    out.append(("response-immediate", "ProcessingResponse", lfield(PRES_IMMEDIATE_RESPONSE, ir)))

    # The response-side answers: a streamed chunk with CONTINUE_AND_REPLACE status, trailers, and a
    # mode override with a message-timeout override (exercises ProcessingMode and Duration numbers).
    streamed = lfield(SBR_BODY, "data: {}\n\n")
    common = vfield(CR_STATUS, CONTINUE_AND_REPLACE) + lfield(CR_BODY_MUTATION, lfield(BM_STREAMED_RESPONSE, streamed))
    out.append(("response-response-body", "ProcessingResponse", lfield(PRES_RESPONSE_BODY, lfield(BR_RESPONSE, common))))
    trailers = lfield(TR_HEADER_MUTATION, lfield(HM_SET_HEADERS, header_option("x-usage", "12")))
    out.append(("response-response-trailers", "ProcessingResponse", lfield(PRES_RESPONSE_TRAILERS, trailers)))
    mode = (vfield(PM_REQUEST_HEADER_MODE, SEND) + vfield(PM_RESPONSE_HEADER_MODE, SKIP)
            + vfield(PM_REQUEST_BODY_MODE, FULL_DUPLEX_STREAMED) + vfield(PM_RESPONSE_BODY_MODE, FULL_DUPLEX_STREAMED)
            + vfield(PM_REQUEST_TRAILER_MODE, SEND) + vfield(PM_RESPONSE_TRAILER_MODE, SEND))
    msg = lfield(PRES_RESPONSE_HEADERS, b"") + lfield(PRES_MODE_OVERRIDE, mode)
    msg += lfield(PRES_OVERRIDE_MESSAGE_TIMEOUT, vfield(DUR_SECONDS, 2) + vfield(DUR_NANOS, 500000000))
    out.append(("response-mode-override", "ProcessingResponse", msg))

    # What Envoy sends first: request headers (raw_value), the subset hint, the protocol config.
    hmap = b"".join(lfield(HMAP_HEADERS, header_value(k, v)) for k, v in [
        (":method", "POST"), (":path", "/v1/completions"), (":authority", "gw"), (":scheme", "http"),
        ("content-type", "application/json"),
    ])
    msg = lfield(PREQ_REQUEST_HEADERS, lfield(HH_HEADERS, hmap))
    msg += lfield(PREQ_METADATA_CONTEXT, filter_metadata_entry(
        "envoy.lb.subset_hint", {"x-gateway-destination-endpoint-subset": ["10.0.0.7:8000", "10.0.0.9:8000"]}))
    msg += lfield(PREQ_PROTOCOL_CONFIG, vfield(PC_REQUEST_BODY_MODE, FULL_DUPLEX_STREAMED) + vfield(PC_RESPONSE_BODY_MODE, FULL_DUPLEX_STREAMED))
    out.append(("request-request-headers", "ProcessingRequest", msg))

    # Body chunks both ways, response headers with the served endpoint, attributes, trailers.
    out.append(("request-request-body", "ProcessingRequest",
                lfield(PREQ_REQUEST_BODY, lfield(HB_BODY, '{"model":"m"}') + vfield(HB_END_OF_STREAM, 1))))
    hmap = lfield(HMAP_HEADERS, header_value(":status", "200")) + lfield(HMAP_HEADERS, header_value("content-type", "text/event-stream"))
    msg = lfield(PREQ_RESPONSE_HEADERS, lfield(HH_HEADERS, hmap))
    msg += lfield(PREQ_METADATA_CONTEXT, filter_metadata_entry("envoy.lb", {"x-gateway-destination-endpoint-served": "10.0.0.7:8000"}))
    msg += lfield(PREQ_ATTRIBUTES, lfield(MAP_KEY, "envoy.filters.http.ext_proc") + lfield(MAP_VALUE, struct_bytes({"upstream.address": "10.0.0.7:8000"})))
    out.append(("request-response-headers", "ProcessingRequest", msg))
    out.append(("request-response-body", "ProcessingRequest", lfield(PREQ_RESPONSE_BODY, lfield(HB_BODY, "data: [DONE]\n\n"))))
    out.append(("request-response-trailers", "ProcessingRequest",
                lfield(PREQ_RESPONSE_TRAILERS, lfield(HT_TRAILERS, lfield(HMAP_HEADERS, header_value("grpc-status", "0"))))))
    out.append(("request-observability", "ProcessingRequest",
                lfield(PREQ_REQUEST_TRAILERS, b"") + vfield(PREQ_OBSERVABILITY_MODE, 1)))
    return out


def check_with_protoc(data):
    # protoc parses the bytes as an unknown message: a framing mistake here would fail loudly.
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "--decode_raw"], input=data, check=True, capture_output=True)


def main():
    result = []
    for name, message, data in cases():
        check_with_protoc(data)
        result.append({"name": name, "message": message, "hex": data.hex()})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": "tools/vectors/generate_ext_proc_vectors.py", "cases": result}, indent=2) + "\n")
    print(f"wrote {len(result)} cases to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
