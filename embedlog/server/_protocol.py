"""The API table as served, request/response headers, error codes, and the generic
error answer for an API or version embedlog does not serve (kafka-format.md §8.3-§8.7).

Versions: the top of each range is Kafka's newest in the vendored schemas where the
semantics are implemented, so clients negotiate their newest (flexible) versions.
Produce is advertised from 0 (librdkafka <= 2.11.0 enables compression only if the
range contains v0: its issue #4956) but v0-v2 carry old message formats, which are
answered per partition with UNSUPPORTED_FOR_MESSAGE_FORMAT; Fetch starts at 4 (the
first version that carries RecordBatch v2).
"""
from __future__ import annotations

import functools
import os

from ._schema import DecodeError, Message, Writer, message

# api key -> (schema base name, min served, max served)
APIS = {
    0: ("Produce", 0, 11),
    1: ("Fetch", 4, 17),
    2: ("ListOffsets", 1, 10),
    3: ("Metadata", 0, 12),
    8: ("OffsetCommit", 0, 9),
    9: ("OffsetFetch", 0, 9),
    10: ("FindCoordinator", 0, 6),
    11: ("JoinGroup", 0, 9),
    12: ("Heartbeat", 0, 4),
    13: ("LeaveGroup", 0, 5),
    14: ("SyncGroup", 0, 5),
    15: ("DescribeGroups", 0, 5),
    16: ("ListGroups", 0, 5),
    18: ("ApiVersions", 0, 4),
    19: ("CreateTopics", 0, 7),
    20: ("DeleteTopics", 0, 6),
    21: ("DeleteRecords", 0, 2),
    22: ("InitProducerId", 0, 5),
    32: ("DescribeConfigs", 0, 4),
    33: ("AlterConfigs", 0, 2),
    37: ("CreatePartitions", 0, 3),
    42: ("DeleteGroups", 0, 2),
    44: ("IncrementalAlterConfigs", 0, 1),
    47: ("OffsetDelete", 0, 0),
    60: ("DescribeCluster", 0, 1),
}

# Kafka's error codes (clients/.../protocol/Errors.java), the ones answered here.
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_FETCH_SIZE = 4
NOT_LEADER_OR_FOLLOWER = 6
MESSAGE_TOO_LARGE = 10
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
INVALID_TOPIC_EXCEPTION = 17
RECORD_LIST_TOO_LARGE = 18
NOT_ENOUGH_REPLICAS = 19
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
INVALID_REQUIRED_ACKS = 21
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
INVALID_COMMIT_OFFSET_SIZE = 28
TOPIC_AUTHORIZATION_FAILED = 29
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_CONFIG = 40
INVALID_REQUEST = 42
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
KAFKA_STORAGE_ERROR = 56
UNKNOWN_SERVER_ERROR = -1
GROUP_ID_NOT_FOUND = 69
FETCH_SESSION_ID_NOT_FOUND = 70
GROUP_NOT_EMPTY = 68
MEMBER_ID_REQUIRED = 79
GROUP_SUBSCRIBED_TO_TOPIC = 86
INVALID_RECORD = 87
UNKNOWN_TOPIC_ID = 100


@functools.lru_cache(maxsize=None)
def schema_for(api_key: int, kind: str) -> Message | None:
    """The Request/Response schema of any API key Kafka defines (not only the served)."""
    name = _KAFKA_NAMES().get(api_key)
    return None if name is None else message(name + kind)


@functools.lru_cache(maxsize=None)
def _KAFKA_NAMES() -> dict[int, str]:
    from ._schema import HERE, load_json
    out = {}
    for fn in os.listdir(HERE):
        if fn.endswith("Request.json") and fn != "RequestHeader.json":
            spec = load_json(fn[:-5])
            out[spec["apiKey"]] = fn[:-len("Request.json")]
    return out


def request_header_version(api_key: int, version: int) -> int:
    req = schema_for(api_key, "Request")
    if req is None or not req.is_flexible(version):
        return 1
    return 2


def response_header_version(api_key: int, version: int) -> int:
    if api_key == 18:            # ApiVersions: always v0, so any client can read it
        return 0
    resp = schema_for(api_key, "Response")
    return 1 if resp is not None and resp.is_flexible(version) else 0


class Request:
    """A parsed request: header fields, the body dict (None if it did not parse), and
    why not."""

    __slots__ = ("api_key", "version", "correlation_id", "client_id", "body", "error", "size")

    def __init__(self, api_key, version, correlation_id, client_id, body, error, size):
        self.api_key = api_key
        self.version = version
        self.correlation_id = correlation_id
        self.client_id = client_id
        self.body = body
        self.error = error
        self.size = size


def parse_request(frame) -> Request:
    """Header and body of one frame (without its length). A header that does not parse
    raises DecodeError (the connection cannot be answered); a body that does not parse,
    or an API/version not served, comes back with .error set and .body None."""
    buf = memoryview(frame)
    if len(buf) < 8:
        raise DecodeError(f"request of {len(buf)} bytes is shorter than a request header")
    api_key = int.from_bytes(buf[0:2], "big", signed=True)
    version = int.from_bytes(buf[2:4], "big", signed=True)
    correlation_id = int.from_bytes(buf[4:8], "big", signed=True)
    hv = request_header_version(api_key, version) if api_key in _KAFKA_NAMES() else 1
    header, pos = message("RequestHeader").decode(buf, hv, whole=False)
    served = APIS.get(api_key)
    if served is None or not served[1] <= version <= served[2]:
        what = "API key" if served is None else "version"
        return Request(api_key, version, correlation_id, header.get("client_id"), None,
                       f"unsupported {what}: api key {api_key} version {version}", len(buf))
    try:
        # Bytes after the body are ignored, as Kafka's broker ignores them: librdkafka
        # 2.16's all-topics Metadata v12 carries three (01 00 00) after its tag section.
        body, _ = schema_for(api_key, "Request").decode(buf, version, pos, whole=False)
    except DecodeError as e:
        return Request(api_key, version, correlation_id, header.get("client_id"), None, str(e), len(buf))
    return Request(api_key, version, correlation_id, header.get("client_id"), body, None, len(buf))


def encode_response(req: Request, body: dict, version: int | None = None) -> list:
    """The framed response as a list of buffers (size, header, body parts)."""
    version = req.version if version is None else version
    w = Writer()
    w.buf += bytes(4)
    hv = response_header_version(req.api_key, version)
    message("ResponseHeader").encode({"correlation_id": req.correlation_id}, hv, w)
    schema_for(req.api_key, "Response").encode(body, version, w)
    parts = w.finish()
    size = w.size - 4
    parts[0][0:4] = size.to_bytes(4, "big")
    return parts


def _fill_errors(obj: dict, code: int, message_text: str | None):
    for key in list(obj):
        if key == "error_code":
            obj[key] = code
        elif key == "error_message" and message_text is not None:
            obj[key] = message_text


def error_response(req: Request, code: int, text: str | None = None) -> list | None:
    """Kafka's answer to a request that cannot be served: the response of that API at
    that version with every top-level error_code set (arrays empty), or, for a version
    outside the schema, ApiVersions-style `correlation id + int16 error`. None when the
    request is an acks=0 Produce, which gets no answer."""
    if req.api_key == 0 and req.body is not None and req.body.get("acks") == 0:
        return None              # the client expects nothing: an answer would desync it
    resp = schema_for(req.api_key, "Response")
    if req.api_key == 18:        # KIP-511: answer in v0 with our range for ApiVersions
        body = {"error_code": UNSUPPORTED_VERSION if req.body is None and code == UNSUPPORTED_VERSION else code,
                "api_keys": [{"api_key": 18, "min_version": APIS[18][1], "max_version": APIS[18][2]}]}
        return encode_response(req, body, version=0)
    if resp is None or not resp.valid[0] <= req.version <= resp.valid[1]:
        w = bytearray(4) + req.correlation_id.to_bytes(4, "big", signed=True) + code.to_bytes(2, "big", signed=True)
        w[0:4] = (len(w) - 4).to_bytes(4, "big")
        return [w]
    body = resp.defaults(req.version)
    _fill_errors(body, code, text)
    return encode_response(req, body)
