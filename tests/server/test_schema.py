"""The schema-driven Kafka codec (embedlog/server/_schema.py), checked four ways:

1. the `wire` vectors (ApiVersions framed requests and responses, kafka-format.md §9)
   reproduced byte for byte and read back, also through _protocol.parse_request;
2. a hypothesis strategy built from the schema files themselves, for every message and
   every valid version: decode(encode(x)) == x and encode(decode(encode(x))) == encode(x);
3. kafka-python 3.0.12's own JSON-driven codec as an independent implementation: what we
   encode it decodes to the same values, what it encodes we decode to the same values, and
   both produce the same bytes;
4. robustness: every truncation of a valid encoding, mangled tagged-field sections and
   random bytes raise DecodeError and nothing else; unknown tags are skipped.
"""
from __future__ import annotations

import importlib
import re
import struct
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedlog.server import _protocol as protocol
from embedlog.server._schema import DecodeError, Writer, message, schema_names

NAMES = schema_names()
SETTINGS = {"deadline": None, "database": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much]}

# ------------------------------------------------------------------ schema walking


def in_range(rng, v):
    return rng[0] <= v <= rng[1]


def versions(m):
    return range(m.valid[0], m.valid[1] + 1)


def active(fields, version):
    return [f for f in fields if in_range(f.versions, version)]


def is_tagged(f, version, flexible):
    return flexible and f.tag is not None and in_range(f.tagged, version)


def default_of(f, version):
    """What a decoder must produce for an absent tagged field."""
    if f.is_array:
        return None if f.default is None else []
    if f.fields is not None:
        if in_range(f.nullable, version):
            return None
        return {g.key: default_of(g, version) for g in active(f.fields, version)}
    return f.default


INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
UINT_BITS = {"uint16": 16, "uint32": 32}
TEXT = st.text(max_size=6) | st.sampled_from(["", "é", "ünïcødé", "日本語", "🦄x", "a" * 40])


def prim_strategy(item):
    if item in INT_BITS:
        b = INT_BITS[item]
        return st.integers(-(1 << (b - 1)), (1 << (b - 1)) - 1)
    if item in UINT_BITS:
        return st.integers(0, (1 << UINT_BITS[item]) - 1)
    if item == "bool":
        return st.booleans()
    if item == "float64":
        return st.floats(allow_nan=False)
    if item == "string":
        return TEXT
    if item in ("bytes", "records"):
        return st.binary(max_size=8) | st.binary(min_size=127, max_size=130)   # varint length 1 / 2 bytes
    if item == "uuid":
        return st.binary(min_size=16, max_size=16)
    raise AssertionError(item)


def field_strategy(f, version, flexible):
    nullable = in_range(f.nullable, version)
    if f.fields is not None:
        base = struct_strategy(f.fields, version, flexible)
    else:
        base = prim_strategy(f.item)
    s = st.lists(base, max_size=3) if f.is_array else base
    if nullable:
        s = st.none() | s
    if is_tagged(f, version, flexible):
        s = st.just(default_of(f, version)) | s
    return s


def struct_strategy(fields, version, flexible):
    return st.fixed_dictionaries({f.key: field_strategy(f, version, flexible)
                                  for f in active(fields, version)})


_STRATS = {}


def value_strategy(name, version):
    key = (name, version)
    if key not in _STRATS:
        m = message(name)
        _STRATS[key] = struct_strategy(m.fields, version, m.is_flexible(version))
    return _STRATS[key]


def norm(x):
    """Records come back as memoryviews of the input: compare them as bytes."""
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items()}
    if isinstance(x, list):
        return [norm(v) for v in x]
    if isinstance(x, (memoryview, bytearray)):
        return bytes(x)
    return x


# ------------------------------------------------------------------ 1. wire vectors


def frame(*parts):
    body = b"".join(parts)
    return struct.pack(">i", len(body)) + body


def test_apiversions_request_vectors(vectors):
    for name in ("apiversions_v0_request_framed", "apiversions_v3_request_framed"):
        vec = vectors["wire"][name]
        inp = vec["inputs"]
        v, hv = inp["api_version"], inp["request_header_version"]
        header = {"request_api_key": inp["api_key"], "request_api_version": v,
                  "correlation_id": inp["correlation_id"], "client_id": inp["client_id"]}
        body = {k: inp[k] for k in ("client_software_name", "client_software_version") if k in inp}
        req = message("ApiVersionsRequest")
        assert hv == protocol.request_header_version(18, v)
        wire = frame(message("RequestHeader").to_bytes(header, hv), req.to_bytes(body, v))
        assert wire.hex() == vec["hex"], name

        raw = bytes.fromhex(vec["hex"])
        assert struct.unpack(">i", raw[:4])[0] == len(raw) - 4
        got_header, pos = message("RequestHeader").decode(raw, hv, pos=4, whole=False)
        assert got_header == header
        got_body, end = req.decode(raw, v, pos=pos)
        assert end == len(raw)
        assert got_body == {**req.defaults(v), **body}

        parsed = protocol.parse_request(raw[4:])
        assert parsed.error is None
        assert (parsed.api_key, parsed.version, parsed.correlation_id, parsed.client_id) == \
            (18, v, inp["correlation_id"], inp["client_id"])
        assert parsed.size == len(raw) - 4
        assert norm(parsed.body) == got_body
        # and from a memoryview, as the server hands frames over
        assert norm(protocol.parse_request(memoryview(raw)[4:]).body) == got_body


@pytest.mark.parametrize("name", ["apiversions_v3_response_framed",
                                  "apiversions_unsupported_version_v0_response_framed"])
def test_apiversions_response_vectors(vectors, name):
    vec = vectors["wire"][name]
    inp = vec["inputs"]
    v = inp.get("encoding_version", 3)
    hv = inp.get("response_header_version", 0)
    resp = message("ApiVersionsResponse")
    body = {"error_code": inp["error_code"],
            "api_keys": [{"api_key": a, "min_version": lo, "max_version": hi} for a, lo, hi in inp["api_keys"]]}
    if "throttle_time_ms" in inp:
        body["throttle_time_ms"] = inp["throttle_time_ms"]
    wire = frame(message("ResponseHeader").to_bytes({"correlation_id": inp["correlation_id"]}, hv),
                 resp.to_bytes(body, v))
    assert wire.hex() == vec["hex"]

    raw = bytes.fromhex(vec["hex"])
    head, pos = message("ResponseHeader").decode(raw, hv, pos=4, whole=False)
    assert head == {"correlation_id": inp["correlation_id"]}
    got, _ = resp.decode(raw, v, pos=pos)
    assert got == {**resp.defaults(v), **body}

    # the same bytes through _protocol.encode_response (ApiVersions: header v0 even when flexible)
    req = protocol.Request(18, v, inp["correlation_id"], "x", {}, None, 0)
    assert b"".join(bytes(p) for p in protocol.encode_response(req, body)).hex() == vec["hex"]


def test_apiversions_unsupported_version_answer():
    """A version beyond the schema: the answer is ApiVersions v0 with UNSUPPORTED_VERSION
    (the vector's shape) and our own range for key 18."""
    hdr = message("RequestHeader").to_bytes({"request_api_key": 18, "request_api_version": 99,
                                              "correlation_id": 3, "client_id": "c"}, 2)
    req = protocol.parse_request(hdr)                 # a newer client's flexible header
    assert req.body is None and req.error
    raw = b"".join(bytes(p) for p in protocol.error_response(req, protocol.UNSUPPORTED_VERSION))
    assert struct.unpack(">i", raw[:4])[0] == len(raw) - 4
    assert raw[4:8] == (3).to_bytes(4, "big")
    body, _ = message("ApiVersionsResponse").decode(raw, 0, pos=8)
    assert body == {"error_code": 35, "api_keys": [{"api_key": 18, "min_version": protocol.APIS[18][1],
                                                      "max_version": protocol.APIS[18][2]}]}


def test_request_header_client_id_never_compact():
    h = {"request_api_key": 3, "request_api_version": 12, "correlation_id": 7, "client_id": "ab"}
    assert message("RequestHeader").to_bytes(h, 2).hex() == "0003000c00000007" + "00026162" + "00"
    assert message("RequestHeader").to_bytes({**h, "client_id": None}, 2).hex() == "0003000c00000007ffff00"
    assert message("RequestHeader").decode(bytes.fromhex("0003000c00000007ffff00"), 2)[0] == {**h, "client_id": None}


# ------------------------------------------------------------------ 2. schema-driven round trip


def walk(fields):
    for f in fields:
        yield f
        if f.fields is not None:
            yield from walk(f.fields)


def test_keys_are_snake_case_of_the_schema_names():
    for name in NAMES:
        m = message(name)
        for fields in [m.fields] + [f.fields for f in walk(m.fields) if f.fields is not None]:
            keys = [f.key for f in fields]
            for f in fields:
                assert f.key == re.sub(r"(?<!^)(?=[A-Z])", "_", f.name).lower(), (name, f.name)
                assert re.fullmatch(r"[a-z][a-z0-9_]*", f.key)
            # the same key twice is allowed only for fields in disjoint versions
            for k in set(keys):
                same = [f.versions for f in fields if f.key == k]
                assert len(same) == 1 or all(a[1] < b[0] for a, b in zip(sorted(same), sorted(same)[1:])), (name, k)


def test_tags_are_ints():
    """BrokerHeartbeatRequest.json spells its one tag as a string ("tag": "0")."""
    for name in NAMES:
        for f in walk(message(name).fields):
            assert f.tag is None or type(f.tag) is int, (name, f.name)
    m = message("BrokerHeartbeatRequest")
    body = {"broker_id": 0, "broker_epoch": 0, "current_metadata_offset": 0, "want_fence": False,
            "want_shut_down": False, "offline_log_dirs": [bytes(range(16))]}
    b = m.to_bytes(body, 1)
    assert b == bytes(22) + bytes([1, 0, 17, 2]) + bytes(range(16))     # 1 tag: 0, 17 bytes
    assert m.decode(b, 1)[0]["offline_log_dirs"] == [bytes(range(16))]


def test_primitive_edges():
    m = message("ConsumerGroupHeartbeatResponse")         # Assignment: a nullable struct (KIP-893)
    base = m.defaults(0)
    assert base["assignment"] is None
    null = m.to_bytes(base, 0)
    assert null[-2:] == b"\xff\x00"                        # -1, then the top-level tag section
    present = m.to_bytes({**base, "assignment": {"topic_partitions": []}}, 0)
    assert present[-4:] == b"\x01\x01\x00\x00"            # 1, empty compact array, its tags, top tags
    assert m.decode(present, 0)[0]["assignment"] == {"topic_partitions": []}
    # a bool is any non-zero byte (MetadataRequest v4: null topics, AllowAutoTopicCreation)
    md = message("MetadataRequest")
    assert md.decode(b"\xff\xff\xff\xff\x02", 4)[0] == {"topics": None, "allow_auto_topic_creation": True}
    assert md.decode(b"\xff\xff\xff\xff\x00", 4)[0]["allow_auto_topic_creation"] is False
    assert md.to_bytes({"topics": None, "allow_auto_topic_creation": 5}, 4) == b"\xff\xff\xff\xff\x01"
    # classic lengths: -1 is null only where nullable; other negatives are errors
    fc = message("FindCoordinatorRequest")
    assert fc.decode(b"\x00\x01a", 0)[0] == {"key": "a"}
    for bad in (b"\xff\xff", b"\xff\xfe", b"\x00\x02\xff\xfe"):        # null, -2, invalid UTF-8
        with pytest.raises(DecodeError):
            fc.decode(bad, 0)
    pr = message("ProduceRequest")                          # TransactionalId: nullable string from v3
    assert pr.decode(b"\xff\xff" + bytes(10), 3)[0]["transactional_id"] is None
    with pytest.raises(DecodeError):
        pr.decode(b"\xff\xfe" + bytes(10), 3)
    with pytest.raises(DecodeError):                        # compact: 0 = null, not allowed for topics
        message("MetadataResponse").decode(bytes(4) + b"\x00", 12)




def test_every_schema_compiles_every_version():
    assert len(NAMES) > 150
    n = 0
    for name in NAMES:
        m = message(name)
        for v in versions(m):
            d = m.defaults(v)
            b = m.to_bytes(d, v)
            assert norm(m.decode(b, v)[0]) == norm(d), (name, v)
            n += 1
    assert n > 600


def check_roundtrip(m, v, value):
    b = m.to_bytes(value, v)
    got, end = m.decode(b, v)
    assert end == len(b)
    assert norm(got) == norm(value), (m.name, v)
    assert m.to_bytes(got, v) == b, (m.name, v)
    # from a memoryview and at an offset, as the server decodes
    got2, end2 = m.decode(memoryview(b"\x00\x01" + b + b"\x02"), v, pos=2, whole=False)
    assert end2 == len(b) + 2 and norm(got2) == norm(value)
    return b


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15, **SETTINGS)
@given(data=st.data())
def test_roundtrip_every_version(name, data):
    """Each example draws one value for every valid version of the message."""
    m = message(name)
    for v in versions(m):
        check_roundtrip(m, v, data.draw(value_strategy(name, v), label=f"v{v}"))


def test_large_records_are_not_copied():
    m = message("ProduceRequest")
    big = bytes(range(256)) * 40           # past Writer.BIG: handed on as its own part
    body = {"acks": -1, "timeout_ms": 1000, "transactional_id": None,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": big}]}]}
    for v in (3, 9, 11):
        parts = m.encode(body, v).finish()
        assert any(p is big for p in parts)
        b = m.to_bytes(body, v)
        got, _ = m.decode(memoryview(b), v)          # a view of the request, as the server hands it
        rec = got["topic_data"][0]["partition_data"][0]["records"]
        assert isinstance(rec, memoryview) and rec.obj is b and rec == big
    # records as several buffers (a fetch response's stored bytes)
    f = message("FetchResponse")
    d = f.defaults(12)
    part = {"partition_index": 0, "error_code": 0, "high_watermark": 5, "last_stable_offset": 5,
            "log_start_offset": 0, "aborted_transactions": None, "preferred_read_replica": -1,
            "records": [b"abc", big, b"xyz"]}
    d["responses"] = [{"topic": "t", "partitions": [part]}]
    w = Writer()
    f.encode(d, 12, w)
    parts = w.finish()
    assert any(p is big for p in parts)
    got, _ = f.decode(b"".join(bytes(p) for p in parts), 12)
    assert bytes(got["responses"][0]["partitions"][0]["records"]) == b"abc" + big + b"xyz"


# ------------------------------------------------------------------ 3. kafka-python cross-check

KP_MODULES = ("kafka.protocol.producer", "kafka.protocol.consumer", "kafka.protocol.metadata",
              "kafka.protocol.admin")
KP_APIS = ["Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch", "FindCoordinator",
           "JoinGroup", "SyncGroup", "Heartbeat", "LeaveGroup", "ApiVersions", "CreateTopics", "DescribeConfigs"]
KP_NAMES = [a + k for a in KP_APIS for k in ("Request", "Response")]


def kp_class(name):
    pytest.importorskip("kafka")
    for mod in KP_MODULES:
        cls = getattr(importlib.import_module(mod), name, None)
        if cls is not None:
            return cls
    pytest.skip(f"kafka-python has no {name}")


def kp_versions(name):
    """Versions both schemas define (kafka-python reports min 0 but its JSON may start later;
    its newer versions add fields our vendored schemas do not have)."""
    cls = kp_class(name)
    m = message(name)
    lo_kp = int(re.match(r"\d+", cls.json["validVersions"]).group())
    lo = max(m.valid[0], lo_kp)
    return range(lo, min(m.valid[1], cls.max_version) + 1)


def kp_field(kstruct, f):
    """kafka-python's field for ours: its names are snake_case of the JSON names too, except
    where it patches the schema (MetadataResponse's *AuthorizedOperations -> authorized_operations)."""
    fields = kstruct.fields
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", f.name).lower()
    if name in fields:
        return fields[name]
    cands = [k for k in fields if f.key.endswith("_" + k)]
    assert len(cands) == 1, (f.name, list(fields))
    return fields[cands[0]]


def is_bitfield(kf):
    return getattr(kf, "_type_str", None) == "bitfield"


def bits_of(i):
    return {b for b in range(32) if (i & 0xFFFFFFFF) >> b & 1} if i != -(1 << 31) else None


def int_of(bits):
    if bits is None:
        bits = {31}
    i = sum(1 << b for b in bits)
    return i - (1 << 32) if i >= 1 << 31 else i


def to_kp_value(kf, f, v, version, flexible):
    if f.fields is not None:
        if v is None:
            return None
        if f.is_array:
            return [to_kp_struct(kf, kf.data_class, f.fields, x, version, flexible) for x in v]
        return to_kp_struct(kf, kf.data_class, f.fields, v, version, flexible)
    if f.item == "uuid":
        conv = lambda x: uuid.UUID(bytes=bytes(x))
    elif is_bitfield(kf):
        conv = bits_of
    else:
        conv = lambda x: x
    if f.is_array:
        return None if v is None else [conv(x) for x in v]
    return None if v is None and f.item != "uuid" else conv(v)


def to_kp_struct(kstruct, cls, fields, value, version, flexible, **kw):
    kwargs = {}
    for f in active(fields, version):
        v = value[f.key]
        if is_tagged(f, version, flexible) and norm(v) == norm(default_of(f, version)):
            continue                    # absent: kafka-python's default (None for structs) applies
        kf = kp_field(kstruct, f)
        kwargs[kf.name] = to_kp_value(kf, f, v, version, flexible)
    return cls(**kwargs, **kw)


def from_kp_value(kf, f, v, version, flexible):
    if f.fields is not None:
        if v is None:
            return default_of(f, version) if is_tagged(f, version, flexible) else None
        if f.is_array:
            return [from_kp_struct(kf, f.fields, x, version, flexible) for x in v]
        return from_kp_struct(kf, f.fields, v, version, flexible)
    if f.item == "uuid":
        conv = lambda x: bytes(16) if x is None else x.bytes
    elif is_bitfield(kf):
        conv = int_of
    else:
        conv = norm
    if f.is_array:
        return None if v is None else [conv(x) for x in v]
    if v is None and f.item != "uuid" and not is_bitfield(kf):
        return None
    return conv(v)


def from_kp_struct(kstruct, fields, obj, version, flexible):
    out = {}
    for f in active(fields, version):
        kf = kp_field(kstruct, f)
        out[f.key] = from_kp_value(kf, f, getattr(obj, kf.name), version, flexible)
    return out


def kp_encode(name, v, value):
    cls = kp_class(name)
    m = message(name)
    obj = to_kp_struct(cls._struct, cls[v], m.fields, value, v, m.is_flexible(v))
    return bytes(obj.encode(version=v))


def kp_decode(name, v, data):
    cls = kp_class(name)
    m = message(name)
    if name == "ApiVersionsResponse":
        # kafka-python's ApiVersionsResponse.decode reads any body with a non-zero error code
        # as v0 (the client side of KIP-511's fallback); its codec proper is the base decode
        from kafka.protocol.api_message import ApiMessage
        obj = ApiMessage.__dict__["decode"].__func__(cls[v], data)
    else:
        obj = cls[v].decode(data)
    return from_kp_struct(cls._struct, m.fields, obj, v, m.is_flexible(v))


def kp_value_strategy(name, v):
    s = value_strategy(name, v)
    if name == "MetadataRequest" and v == 0:
        # kafka-python's MetadataRequest.encode turns v0's topics=None into [] (v0 has no null)
        s = s.filter(lambda d: d["topics"] is not None)
    return s


@pytest.mark.parametrize("name", KP_NAMES)
def test_kafka_python_knows_versions(name):
    vs = kp_versions(name)
    m = message(name)
    assert len(vs) >= 4 or m.valid[1] - m.valid[0] < 6
    assert any(m.is_flexible(v) for v in vs), name


@pytest.mark.parametrize("name", KP_NAMES)
@settings(max_examples=15, **SETTINGS)
@given(data=st.data())
def test_kafka_python_agrees(name, data):
    m = message(name)
    for v in kp_versions(name):
        value = norm(data.draw(kp_value_strategy(name, v), label=f"v{v}"))
        ours = m.to_bytes(value, v)
        assert kp_decode(name, v, ours) == value, (name, v, "kafka-python reading our bytes")
        theirs = kp_encode(name, v, value)
        assert norm(m.decode(theirs, v)[0]) == value, (name, v, "we reading kafka-python's bytes")
        assert theirs == ours, (name, v)


def test_kafka_python_fixed_examples():
    """A few hand-written values, so a disagreement is readable without hypothesis."""
    cases = [
        ("MetadataRequest", 12, {"topics": [{"topic_id": bytes(16), "name": "t"}],
                                 "allow_auto_topic_creation": True,
                                 "include_topic_authorized_operations": False}),
        ("ApiVersionsResponse", 3, {"error_code": 0, "api_keys": [{"api_key": 0, "min_version": 0,
                                                                   "max_version": 11}],
                                    "throttle_time_ms": 0, "supported_features": [],
                                    "finalized_features_epoch": 7, "finalized_features": [],
                                    "zk_migration_ready": True}),
    ]
    for name, v, value in cases:
        m = message(name)
        value = {**m.defaults(v), **value}
        assert kp_decode(name, v, m.to_bytes(value, v)) == value
        assert kp_encode(name, v, value) == m.to_bytes(value, v)


# ------------------------------------------------------------------ 4. decoder robustness

ROBUST = sorted(set(KP_NAMES) | {"RequestHeader", "ResponseHeader", "ConsumerGroupHeartbeatResponse",
                                 "DescribeTopicPartitionsResponse", "AlterClientQuotasRequest",
                                 "DescribeQuorumResponse", "FetchSnapshotResponse"})


@pytest.mark.parametrize("name", ROBUST)
@settings(max_examples=3, **SETTINGS)
@given(data=st.data())
def test_every_truncation_raises_decode_error(name, data):
    m = message(name)
    v = data.draw(st.sampled_from(list(versions(m))), label="version")
    b = m.to_bytes(data.draw(value_strategy(name, v), label="value"), v)
    for cut in range(len(b)):
        for buf in (b[:cut], memoryview(b)[:cut]):
            with pytest.raises(DecodeError):
                m.decode(buf, v)
            with pytest.raises(DecodeError):
                m.decode(buf, v, whole=False)
    with pytest.raises(DecodeError):
        m.decode(b + b"\x00", v)                     # whole=True: bytes left over
    assert m.decode(b + b"\x00", v, whole=False)[1] == len(b)


@pytest.mark.parametrize("name", ROBUST)
@settings(max_examples=10, **SETTINGS)
@given(data=st.data())
def test_mangled_bytes_raise_only_decode_error(name, data):
    m = message(name)
    v = data.draw(st.sampled_from(list(versions(m))), label="version")
    b = bytearray(m.to_bytes(data.draw(value_strategy(name, v), label="value"), v))
    if b:
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            i = data.draw(st.integers(0, len(b) - 1), label="at")
            b[i] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, b[i] ^ 0x40]), label="byte")
    try:
        m.decode(bytes(b), v)
    except DecodeError:
        pass


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=3, **SETTINGS)
@given(data=st.data())
def test_random_bytes_raise_only_decode_error(name, data):
    m = message(name)
    v = data.draw(st.sampled_from(list(versions(m))), label="version")
    buf = data.draw(st.binary(max_size=40) | st.binary(max_size=12).map(lambda x: b"\xff" * 8 + x), label="buf")
    try:
        m.decode(buf, v)
    except DecodeError:
        pass


def uv(n):
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tags(*items):
    return uv(len(items)) + b"".join(uv(t) + uv(len(d)) + d for t, d in items)


# ApiVersionsResponse v3: error_code, api_keys (one entry, own empty tag section), throttle_time_ms,
# then the top-level tag section; tag 1 is FinalizedFeaturesEpoch (int64), tag 3 ZkMigrationReady (bool)
AV_PREFIX = bytes.fromhex("0000" "02" "0012" "0000" "0004" "00" "00000000")


def test_tagged_fields_known_and_unknown():
    m = message("ApiVersionsResponse")
    base = m.decode(AV_PREFIX + b"\x00", 3)[0]
    assert base["finalized_features_epoch"] == -1 and base["zk_migration_ready"] is False
    # an unknown tag (9, 5 bytes) between known ones is skipped; the known ones decode
    got = m.decode(AV_PREFIX + tags((1, struct.pack(">q", 42)), (3, b"\x01"), (9, b"hello")), 3)[0]
    assert got == {**base, "finalized_features_epoch": 42, "zk_migration_ready": True}
    # only unknown tags, one with a multi-byte tag number and size
    got = m.decode(AV_PREFIX + tags((5, b""), (300, b"z" * 200)), 3)[0]
    assert got == base
    # unknown tags inside an array element's own tag section
    elem = bytes.fromhex("0012" "0000" "0004") + tags((77, b"\x01\x02"))
    got = m.decode(bytes.fromhex("0000" "02") + elem + bytes.fromhex("00000000") + b"\x00", 3)[0]
    assert got == base
    # the request header v2 skips unknown tags too
    h = bytes.fromhex("0012000300000001" "0001" "61") + tags((0, b"\x09\x09"))
    assert message("RequestHeader").decode(h, 2)[0]["client_id"] == "a"


@pytest.mark.parametrize("section", [
    tags((3, b"\x01"), (1, struct.pack(">q", 1))),            # out of order
    tags((1, struct.pack(">q", 1)), (1, struct.pack(">q", 2))),  # repeated
    tags((9, b"a"), (4, b"b")),                              # unknown, out of order
    uv(1) + uv(9) + uv(5) + b"abc",                          # size past the end
    uv(1) + uv(1) + uv(1000000) + b"\x00" * 8,               # size far past the end
    uv(2) + uv(9) + uv(1) + b"a",                            # fewer tags than counted
    uv(1) + uv(1) + uv(4) + b"\x00" * 4,                     # known int64 in a 4-byte tag
    uv(1) + uv(1) + uv(9) + b"\x00" * 9,                     # known int64 in a 9-byte tag
    uv(1) + uv(3) + uv(0),                                   # known bool in an empty tag
    uv(1) + b"\x80\x80\x80\x80\x80\x01" + uv(0),               # tag varint longer than 5 bytes
    uv(1) + uv(9),                                           # no size
    b"\x80",                                                 # truncated count
    b"",                                                     # no section at all
])
def test_garbage_tag_sections_raise_decode_error(section):
    with pytest.raises(DecodeError):
        message("ApiVersionsResponse").decode(AV_PREFIX + section, 3)


def test_nested_tagged_struct_garbage():
    """FetchResponse v12's partitions carry tagged structs (DivergingEpoch = tag 0)."""
    f = message("FetchResponse")
    part = {"partition_index": 0, "error_code": 0, "high_watermark": 1, "last_stable_offset": 1,
            "log_start_offset": 0, "aborted_transactions": None, "preferred_read_replica": -1,
            "records": b"", "diverging_epoch": {"epoch": 5, "end_offset": 9}}
    body = {**f.defaults(12), "responses": [{"topic": "t", "partitions": [part]}]}
    b = f.to_bytes(body, 12)
    got = norm(f.decode(b, 12)[0]["responses"][0]["partitions"][0])
    assert got["diverging_epoch"] == {"epoch": 5, "end_offset": 9}
    assert got["current_leader"] == {"leader_id": -1, "leader_epoch": -1}     # absent: its defaults
    assert got["snapshot_id"] == {"end_offset": -1, "epoch": -1}
    # tag 0 = int32 epoch, int64 end offset, empty tag section: 13 bytes; claim 12
    i = b.index(bytes([1, 0, 13]) + struct.pack(">iq", 5, 9))
    bad = b[:i + 2] + bytes([12]) + b[i + 3:]
    with pytest.raises(DecodeError):
        f.decode(bad, 12)
