"""`embedlog serve` under hostile and heavy clients, over raw sockets (issue #13):

- a fuzzed stream of frames on one connection (valid ApiVersions/Metadata/Produce mixed
  with truncated bodies, wrong/negative/oversized sizes, unknown API keys and versions,
  garbage and well-formed unknown tagged fields) never kills the server, is answered in
  order where the header parses, writes no partial batch, and closes only that connection;
- corrupted record batches at Produce v3 and v9 are refused per partition, nothing is
  written, and the next valid batch lands at the next offset;
- 1,000 idle connections plus 64 busy ones are served at once;
- a long-polling fetch, a client that never reads, and one that never finishes its frame
  do not stall a normal client;
- close() during a long poll answers it promptly and releases the directory's files.
"""
import os
import resource
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embedlog as el
from embedlog.server import _protocol as P
from embedlog.server._schema import DecodeError, message
from embedlog.storage._records import encode_batch

LIMIT = 1 << 16                    # max_request_bytes of the fuzzed server
TIMEOUT = 10.0


# ---------------------------------------------------------------- raw protocol helpers

def header(api_key, version, corr, client_id=b"robust", tags=b"\x00"):
    """Request header v1, or v2 (with `tags` as its tagged-field section) where Kafka's
    rule says so: a flexible version of a known API."""
    known = api_key in P._KAFKA_NAMES()
    hv = P.request_header_version(api_key, version) if known else 1
    h = (api_key.to_bytes(2, "big", signed=True) + version.to_bytes(2, "big", signed=True)
         + corr.to_bytes(4, "big", signed=True) + len(client_id).to_bytes(2, "big") + client_id)
    return h + tags if hv == 2 else h


def body_bytes(api_key, version, fields) -> bytes:
    req = P.schema_for(api_key, "Request")
    full = req.defaults(version)
    full.update(fields)
    return req.to_bytes(full, version)


def framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def exact(sock, n) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed by the server after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_frame(sock) -> bytes:
    size = int.from_bytes(exact(sock, 4), "big", signed=True)
    assert 4 <= size <= 64 << 20, size
    return exact(sock, size)


def decode_response(api_key, version, data: bytes) -> dict:
    hv = P.response_header_version(api_key, version)
    _, pos = message("ResponseHeader").decode(data, hv, whole=False)
    body, _ = P.schema_for(api_key, "Response").decode(data, version, pos)
    return body


def corr_of(data: bytes) -> int:
    return int.from_bytes(data[:4], "big", signed=True)


def closed_by_server(sock, timeout=5.0) -> bool:
    """True when the server closes its end (EOF or reset) within `timeout`; any bytes
    that arrive meanwhile are discarded."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def connect(port, timeout=TIMEOUT):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


API_VERSIONS_V3 = {"client_software_name": "robust", "client_software_version": "1.0"}


def check_api_versions(data: bytes, corr: int):
    assert corr_of(data) == corr
    body, _ = message("ApiVersionsResponse").decode(data, 3, 4)      # response header v0, always
    assert body["error_code"] == 0
    got = {k["api_key"]: (k["min_version"], k["max_version"]) for k in body["api_keys"]}
    assert got == {k: (lo, hi) for k, (_n, lo, hi) in P.APIS.items()}


def api_versions_roundtrip(sock, corr=4242):
    sock.sendall(framed(header(18, 3, corr) + body_bytes(18, 3, API_VERSIONS_V3)))
    check_api_versions(read_frame(sock), corr)


def produce_fields(topic, batch, partition=0, acks=1):
    return {"transactional_id": None, "acks": acks, "timeout_ms": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": partition, "records": batch}]}]}


def fetch_fields(topic, offset, wait=0, min_bytes=1, max_bytes=1 << 20, partition=0):
    return {"replica_id": -1, "max_wait_ms": wait, "min_bytes": min_bytes, "max_bytes": max_bytes,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [{"partition": partition, "fetch_offset": offset,
                                                        "partition_max_bytes": max_bytes}]}]}


def watch_loop(srv) -> list:
    """Collect what the server's event loop reports as unhandled (an exception that
    escaped a connection's task is a bug even when the server survives it)."""
    seen = []
    ready = threading.Event()

    def install():
        srv._loop.set_exception_handler(lambda loop, ctx: seen.append(ctx))
        ready.set()
    srv._loop.call_soon_threadsafe(install)
    assert ready.wait(5)
    return seen


@pytest.fixture
def server(tmp_path):
    path = tmp_path / "log"
    with el.open(path) as log:
        log.create_topic("t", 1)
    srv = el.serve(path, port=0, max_request_bytes=LIMIT)
    srv.loop_errors = watch_loop(srv)
    try:
        yield srv
    finally:
        srv.close()


# ---------------------------------------------------------------- 1. a fuzzed stream of frames

SERVED = sorted(P.APIS)
UNSERVED_KNOWN = [4, 17, 23, 36, 50, 68, 70, 75]         # in Kafka's schemas, not served here
UNKNOWN = [88, 999, 9999, 32767, -1, -32768]              # no such API at all


class Frame:
    """One request of the stream and what its answer must be: `check(data)` validates
    the answered bytes (None: no answer is due)."""

    def __init__(self, payload: bytes, check=None, what=""):
        self.payload, self.check, self.what = payload, check, what

    def __repr__(self):
        return f"<{self.what} {len(self.payload)}B>"


class Ledger:
    """The values the server said it stored on topic t, in offset order."""

    def __init__(self):
        self.values = []


@st.composite
def answered_frame(draw, corr, ledger):
    """A frame whose header parses: it must be answered, in order, with that corr id."""
    kind = draw(st.sampled_from(["api_versions", "metadata", "produce", "produce_flipped", "truncated",
                                 "unsupported_key", "unsupported_version", "garbage_tags", "unknown_tags"]))

    if kind == "api_versions":
        v = draw(st.integers(0, 3))
        payload = header(18, v, corr) + body_bytes(18, v, API_VERSIONS_V3 if v >= 3 else {})

        def check(data):
            assert corr_of(data) == corr
            body, _ = message("ApiVersionsResponse").decode(data, v, 4)
            assert body["error_code"] == 0 and len(body["api_keys"]) == len(P.APIS)
        return Frame(payload, check, f"ApiVersions v{v}")

    if kind == "metadata":
        v = draw(st.integers(1, 12))
        topics = None if draw(st.booleans()) else [{"name": "t", "topic_id": bytes(16)}]
        payload = header(3, v, corr) + body_bytes(3, v, {"topics": topics, "allow_auto_topic_creation": False})

        def check(data):
            assert corr_of(data) == corr
            body = decode_response(3, v, data)
            t = [x for x in body["topics"] if x["name"] == "t"]
            assert len(t) == 1 and t[0]["error_code"] == 0 and len(t[0]["partitions"]) == 1
            assert body["brokers"][0]["node_id"] == 0
        return Frame(payload, check, f"Metadata v{v}")

    if kind in ("produce", "produce_flipped"):
        v = draw(st.integers(3, 11))
        value = b"v%d" % corr
        batch = bytearray(el.build_batch([value]))
        pos = None
        if kind == "produce_flipped":
            pos = draw(st.integers(0, len(batch) - 1))
            batch[pos] ^= draw(st.integers(1, 255))
        payload = header(0, v, corr) + body_bytes(0, v, produce_fields("t", bytes(batch)))

        def check(data):
            assert corr_of(data) == corr
            body = decode_response(0, v, data)
            pr = body["responses"][0]["partition_responses"][0]
            code = pr["error_code"]
            if pos is None:
                assert code == 0, pr
            elif pos == 16:
                assert code == P.UNSUPPORTED_FOR_MESSAGE_FORMAT, pr      # magic != 2
            elif 8 <= pos < 12 or pos >= 17:
                assert code == P.CORRUPT_MESSAGE, pr                     # length, CRC or CRC-covered
            # bytes 0-7 (base offset) and 12-15 (leader epoch) are the broker's to set
            if code == 0:
                assert pr["base_offset"] == len(ledger.values), (pr, len(ledger.values))
                ledger.values.append(value)
            else:
                assert pr["base_offset"] == -1
        return Frame(payload, check, f"Produce v{v} flip@{pos}")

    if kind == "truncated":
        api, v = draw(st.sampled_from([(18, 3)] + [(3, x) for x in range(1, 13)]
                                      + [(0, x) for x in range(3, 12)]))
        if api == 18:
            full = body_bytes(18, 3, API_VERSIONS_V3)
        elif api == 3:
            full = body_bytes(3, v, {"topics": [{"name": "t", "topic_id": bytes(16)}]})
        else:
            full = body_bytes(0, v, produce_fields("t", el.build_batch([b"never"])))
        cut = draw(st.integers(0, len(full) - 1))
        payload = header(api, v, corr) + full[:cut]

        def check(data):
            assert corr_of(data) == corr
            if api == 18:                  # KIP-511 style: v0, INVALID_REQUEST, our range
                body, _ = message("ApiVersionsResponse").decode(data, 0, 4)
                assert body["error_code"] == P.INVALID_REQUEST
            else:                          # the API's own error answer, nothing done
                body = decode_response(api, v, data)
                assert body.get("topics", body.get("responses")) == []
        return Frame(payload, check, f"truncated api {api} v{v} at {cut}")

    if kind == "unsupported_key":
        key = draw(st.sampled_from(UNSERVED_KNOWN + UNKNOWN))
        v = draw(st.integers(-1, 5))
        payload = header(key, v, corr) + draw(st.binary(max_size=16))
        schema = P.schema_for(key, "Response") if key in P._KAFKA_NAMES() else None

        def check(data):
            assert corr_of(data) == corr
            if schema is not None and schema.valid[0] <= v <= schema.valid[1]:
                body = decode_response(key, v, data)
                assert body.get("error_code", P.UNSUPPORTED_VERSION) == P.UNSUPPORTED_VERSION, body
            else:                          # no schema to answer in: correlation id + int16 error
                assert len(data) == 6 and int.from_bytes(data[4:6], "big") == P.UNSUPPORTED_VERSION
        return Frame(payload, check, f"unserved api {key} v{v}")

    if kind == "unsupported_version":
        key = draw(st.sampled_from(SERVED))
        _n, lo, hi = P.APIS[key]
        v = draw(st.sampled_from([lo - 1, -1, -32768, hi + 1, hi + 2, hi + 7, 32767]))
        payload = header(key, v, corr) + draw(st.binary(max_size=16))
        schema = P.schema_for(key, "Response")

        def check(data):
            assert corr_of(data) == corr
            if key == 18:                  # KIP-511: a v0 answer with our ApiVersions range
                body, _ = message("ApiVersionsResponse").decode(data, 0, 4)
                assert body["error_code"] == P.UNSUPPORTED_VERSION
                assert body["api_keys"] == [{"api_key": 18, "min_version": lo, "max_version": hi}]
            elif schema.valid[0] <= v <= schema.valid[1]:
                # Fetch v0-3, ListOffsets v0: Kafka has the version, embedlog does not serve
                # it; that response has no top-level error code, so it comes back empty.
                body = decode_response(key, v, data)
                assert body.get("error_code", P.UNSUPPORTED_VERSION) == P.UNSUPPORTED_VERSION
                assert body.get("responses", body.get("topics")) == []
            else:
                assert len(data) == 6 and int.from_bytes(data[4:6], "big") == P.UNSUPPORTED_VERSION
        return Frame(payload, check, f"api {key} at unserved v{v}")

    # flexible requests with their top-level tagged-field section replaced
    api, v = draw(st.sampled_from([(18, 3), (18, 4)] + [(3, x) for x in range(9, 13)]))
    fields = API_VERSIONS_V3 if api == 18 else {"topics": [{"name": "t", "topic_id": bytes(16)}],
                                                "allow_auto_topic_creation": False}
    good = body_bytes(api, v, fields)
    assert good.endswith(b"\x00")
    if kind == "garbage_tags":
        tags = draw(st.binary(min_size=1, max_size=24))
        htags = b"\x00"
    else:                                  # well-formed unknown tags: must be skipped
        def section(entries):
            out = bytearray([len(entries)])
            for tag, data in entries:
                out += _uvarint(tag) + _uvarint(len(data)) + data
            return bytes(out)
        entries = draw(st.lists(st.tuples(st.integers(100, 1 << 20), st.binary(max_size=40)),
                                max_size=4, unique_by=lambda e: e[0]))
        tags = section(sorted(entries))
        hentries = draw(st.lists(st.tuples(st.integers(0, 1 << 20), st.binary(max_size=40)),
                                 max_size=3, unique_by=lambda e: e[0]))
        htags = section(sorted(hentries))
    body = good[:-1] + tags
    payload = header(api, v, corr, tags=htags) + body
    try:                                   # the codec decides what should parse; the server must agree
        message(P.APIS[api][0] + "Request").decode(body, v, whole=False)
        parses = True
    except DecodeError:
        parses = False
    assert parses or kind == "garbage_tags"

    def check(data):
        assert corr_of(data) == corr
        if api == 18:
            code = int.from_bytes(data[4:6], "big", signed=True)
            assert code == (0 if parses else P.INVALID_REQUEST)
            message("ApiVersionsResponse").decode(data, v if parses else 0, 4)
        else:
            body = decode_response(3, v, data)
            assert [t["name"] for t in body["topics"]] == (["t"] if parses else [])
    return Frame(payload, check, f"{kind} api {api} v{v} parses={parses}")


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# The last frame may end the connection: the server must close it (`closes`), or it may
# answer or not (`drain`: we end our side and wait for the server's close).
TERMINALS = ["none", "negative", "tiny", "oversize", "header_cut", "size_small", "size_big", "header_garbage"]


@st.composite
def terminal_frame(draw, corr):
    kind = draw(st.sampled_from(TERMINALS))
    valid = header(3, 12, corr) + body_bytes(3, 12, {"topics": None, "allow_auto_topic_creation": False})
    if kind == "none":
        return kind, b"", None
    if kind == "negative":
        return kind, draw(st.integers(-(1 << 31), -1)).to_bytes(4, "big", signed=True) + valid, "closes"
    if kind == "tiny":
        n = draw(st.integers(0, 7))
        return kind, n.to_bytes(4, "big") + valid[:n], "closes"
    if kind == "oversize":
        n = draw(st.integers(LIMIT + 1, (1 << 31) - 1))
        return kind, n.to_bytes(4, "big") + valid, "closes"
    if kind == "header_cut":          # a size that ends inside the header (client id or tags)
        api, v = draw(st.sampled_from([(18, 0), (18, 3), (3, 1), (3, 12)]))
        h = header(api, v, corr)
        return kind, framed(h[:draw(st.integers(8, len(h) - 1))]), "closes"
    if kind == "size_small":          # the rest of the frame reads as the next one
        return kind, draw(st.integers(8, len(valid) - 1)).to_bytes(4, "big") + valid, "drain"
    if kind == "size_big":            # the frame never completes
        return kind, (len(valid) + draw(st.integers(1, 4096))).to_bytes(4, "big") + valid, "silent"
    h = header(3, 12, corr, tags=draw(st.binary(min_size=1, max_size=12)))
    return kind, framed(h + body_bytes(3, 12, {"topics": None})), "drain"


def stored_values(path) -> list:
    with el.open(path) as log:
        return [r.value for r in log.partition("t", 0).read(0, max_records=100000)]


def test_fuzzed_streams_are_answered_in_order_and_never_kill_the_server(server):
    ledger = Ledger()
    bystander = connect(server.port)              # lives across every example: never closed on us
    api_versions_roundtrip(bystander, corr=1)
    examples = []

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def run(data):
        n = data.draw(st.integers(0, 8), label="answered frames")
        frames = [data.draw(answered_frame(corr, ledger), label=f"frame {corr}") for corr in range(1, n + 1)]
        tkind, tail, ending = data.draw(terminal_frame(n + 1), label="last frame")
        examples.append((n, tkind))
        # Start from what is stored (equal to the ledger unless an earlier example failed,
        # which would otherwise confuse hypothesis's shrinking with stale expectations).
        ledger.values = stored_values(server.path)
        with connect(server.port) as s:
            s.sendall(b"".join(framed(f.payload) for f in frames) + tail)
            for f in frames:                       # every answer, in request order
                f.check(read_frame(s))
            if ending == "closes":
                assert closed_by_server(s), f"{tkind}: the server left the connection open"
            elif ending == "silent":               # nothing may come: the frame is incomplete
                s.settimeout(0.2)
                with pytest.raises(socket.timeout):
                    s.recv(1)
                s.shutdown(socket.SHUT_WR)
                assert closed_by_server(s)
            elif ending == "drain":
                s.shutdown(socket.SHUT_WR)
                assert closed_by_server(s), f"{tkind}: no close after our end of stream"
            else:
                s.sendall(framed(header(18, 3, 777) + body_bytes(18, 3, API_VERSIONS_V3)))
                check_api_versions(read_frame(s), 777)   # the valid-only stream stays open
        # the others are unharmed: a fresh connection and the long-lived one
        with connect(server.port) as fresh:
            api_versions_roundtrip(fresh, corr=len(examples))
        api_versions_roundtrip(bystander, corr=len(examples))
        # nothing partial: the partition holds exactly the batches answered as stored
        assert stored_values(server.path) == ledger.values
        assert server._thread.is_alive()

    run()
    bystander.close()
    assert not server.loop_errors, [c.get("message") + ": " + repr(c.get("exception"))
                                    for c in server.loop_errors[:3]]
    assert server.broker.stats["errors"] == 0                 # no handler failed
    assert server.broker.stats["bad_frames"] > 0              # and the bad ones were seen as such
    kinds = {k for _n, k in examples}
    assert len(examples) >= 100 and kinds == set(TERMINALS), (len(examples), kinds)


# ---------------------------------------------------------------- 2. corrupted record batches

def _crc_fixed(batch: bytearray) -> bytes:
    from embedlog.storage._hotpath import crc32c
    batch[17:21] = crc32c(bytes(batch[21:])).to_bytes(4, "big")
    return bytes(batch)


def _corruptions():
    good = el.build_batch([b"good-1", b"good-2"])

    def flip(pos, mask=0x01):
        b = bytearray(good)
        b[pos] ^= mask
        return bytes(b)
    longer = bytearray(good)
    longer[8:12] = (int.from_bytes(good[8:12], "big") + 5).to_bytes(4, "big")
    shorter = bytearray(good)
    shorter[8:12] = (int.from_bytes(good[8:12], "big") - 5).to_bytes(4, "big")
    count = bytearray(encode_batch([b"c1", b"c2"], last_offset_delta=5))
    control = encode_batch([b"ctl"], extra_attributes=0x20)
    return [
        ("crc field", flip(18), P.CORRUPT_MESSAGE),
        ("attributes", flip(22), P.CORRUPT_MESSAGE),
        ("record value byte", flip(len(good) - 3), P.CORRUPT_MESSAGE),
        ("records count", flip(60), P.CORRUPT_MESSAGE),
        ("batch length past the end", bytes(longer), P.CORRUPT_MESSAGE),
        ("batch length short", bytes(shorter), P.CORRUPT_MESSAGE),
        ("truncated batch", good[:-3], P.CORRUPT_MESSAGE),
        ("header only", good[:61], P.CORRUPT_MESSAGE),
        ("shorter than a header", good[:40], P.CORRUPT_MESSAGE),
        ("magic 1", flip(16, 0x03), P.UNSUPPORTED_FOR_MESSAGE_FORMAT),
        ("magic 0", flip(16, 0x02), P.UNSUPPORTED_FOR_MESSAGE_FORMAT),
        ("lastOffsetDelta disagrees (valid CRC)", _crc_fixed(count), P.CORRUPT_MESSAGE),
        ("control batch from a client (valid CRC)", _crc_fixed(bytearray(control)), P.CORRUPT_MESSAGE),
        ("valid then corrupt in one request", good + flip(len(good) - 3), P.CORRUPT_MESSAGE),
        ("valid then trailing bytes", good + b"\x00" * 20, P.CORRUPT_MESSAGE),
        ("empty records", b"", P.CORRUPT_MESSAGE),
        ("null records", None, P.CORRUPT_MESSAGE),
    ]


@pytest.mark.parametrize("version", [3, 9])
def test_corrupt_batches_are_refused_per_partition_and_nothing_is_written(tmp_path, version):
    path = tmp_path / "log"
    with el.open(path) as log:
        log.create_topic("c", 2)
    with el.serve(path, port=0) as srv, connect(srv.port) as s:
        errors = watch_loop(srv)
        corr = 0
        expected = {0: [], 1: []}

        def produce(parts: dict, acks=-1):
            nonlocal corr
            corr += 1
            fields = {"transactional_id": None, "acks": acks, "timeout_ms": 5000, "topic_data": [
                {"name": "c", "partition_data": [{"index": p, "records": r} for p, r in parts.items()]}]}
            s.sendall(framed(header(0, version, corr) + body_bytes(0, version, fields)))
            data = read_frame(s)
            assert corr_of(data) == corr
            body = decode_response(0, version, data)
            return {pr["index"]: pr for pr in body["responses"][0]["partition_responses"]}

        for i, (what, records, code) in enumerate(_corruptions()):
            ok = el.build_batch([b"side-%d" % i])
            got = produce({0: records, 1: ok})     # partition 1 of the same request is valid
            assert got[0]["error_code"] == code, (what, got[0])
            assert got[0]["base_offset"] == -1, what
            assert got[1]["error_code"] == 0 and got[1]["base_offset"] == len(expected[1]), (what, got[1])
            expected[1].append(b"side-%d" % i)
            with el.open(path) as log:             # in-process: nothing of the bad batch landed
                assert log.partition("c", 0).high_watermark == 0, what
                assert [r.value for r in log.partition("c", 1).read(0)] == expected[1], what
        got = produce({0: el.build_batch([b"after-1", b"after-2"])})
        assert got[0]["error_code"] == 0 and got[0]["base_offset"] == 0
        got = produce({0: el.build_batch([b"after-3"])}, acks=1)
        assert got[0]["error_code"] == 0 and got[0]["base_offset"] == 2
        with el.open(path) as log:
            assert [(r.offset, r.value) for r in log.partition("c", 0).read(0)] == \
                [(0, b"after-1"), (1, b"after-2"), (2, b"after-3")]
        assert srv.broker.stats["errors"] == 0 and not errors


# ---------------------------------------------------------------- 3. many connections

IDLE, BUSY, ROUNDS = 1000, 64, 10


def _need_fds(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return soft
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f"needs {n} file descriptors (client and server ends in this process); "
                    f"RLIMIT_NOFILE hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    return soft


def test_a_thousand_idle_and_64_busy_connections(tmp_path):
    # both ends of every connection live in this process, plus the log's files
    old_soft = _need_fds(2 * (IDLE + BUSY) + 512)
    path = tmp_path / "log"
    with el.open(path) as log:
        log.create_topic("busy", 4)
    srv = el.serve(path, port=0)
    errors = watch_loop(srv)
    idle = []
    try:
        for _ in range(IDLE):
            idle.append(connect(srv.port, timeout=30))
        deadline = time.monotonic() + 20
        while len(srv.broker._conns) < IDLE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(srv.broker._conns) >= IDLE          # accepted and held by the server, not in a backlog

        failures, done = [], []

        def busy(i):
            try:
                with connect(srv.port, timeout=30) as s:
                    for r in range(ROUNDS):
                        c = r * 3
                        s.sendall(framed(header(18, 3, c + 1) + body_bytes(18, 3, API_VERSIONS_V3)))
                        check_api_versions(read_frame(s), c + 1)
                        s.sendall(framed(header(3, 12, c + 2) + body_bytes(3, 12, {
                            "topics": [{"name": "busy", "topic_id": bytes(16)}]})))
                        data = read_frame(s)
                        assert corr_of(data) == c + 2
                        assert len(decode_response(3, 12, data)["topics"][0]["partitions"]) == 4
                        batch = el.build_batch([b"%d-%d" % (i, r)])
                        s.sendall(framed(header(0, 9, c + 3) + body_bytes(0, 9, produce_fields(
                            "busy", batch, partition=i % 4))))
                        data = read_frame(s)
                        assert corr_of(data) == c + 3
                        pr = decode_response(0, 9, data)["responses"][0]["partition_responses"][0]
                        assert pr["error_code"] == 0 and pr["base_offset"] >= 0, pr
                done.append(i)
            except Exception as e:                       # noqa: BLE001 - reported below
                failures.append((i, repr(e)))

        threads = [threading.Thread(target=busy, args=(i,), daemon=True) for i in range(BUSY)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, failures[:5]
        assert sorted(done) == list(range(BUSY))
        # (that every acknowledged record is stored is the next test's: it is not, yet)

        # every idle connection still answers (all asked at once, then all read)
        for n, s in enumerate(idle):
            s.sendall(framed(header(18, 3, n) + body_bytes(18, 3, API_VERSIONS_V3)))
        for n, s in enumerate(idle):
            check_api_versions(read_frame(s), n)
        assert not errors and srv.broker.stats["errors"] == 0
    finally:
        for s in idle:
            s.close()
        srv.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def test_concurrent_produces_and_fetches_lose_no_acknowledged_write(tmp_path):
    """Many connections producing to one partition while others fetch it: every record
    the server acknowledged is stored at the offset it answered, none lost."""
    path = tmp_path / "log"
    with el.open(path) as log:
        log.create_topic("race", 1)
    srv = el.serve(path, port=0)
    acked, failures = [], []
    stop = threading.Event()

    def producer(i):
        try:
            with connect(srv.port) as s:
                for r in range(10_000):
                    if stop.is_set():
                        return
                    value = b"%d-%d" % (i, r)
                    s.sendall(framed(header(0, 9, r) + body_bytes(0, 9, produce_fields(
                        "race", el.build_batch([value])))))
                    pr = decode_response(0, 9, read_frame(s))["responses"][0]["partition_responses"][0]
                    assert pr["error_code"] == 0, pr
                    acked.append((pr["base_offset"], value))
        except Exception as e:                           # noqa: BLE001 - reported below
            failures.append(repr(e))

    def fetcher():
        try:
            with connect(srv.port) as s:
                n = 0
                while not stop.is_set():
                    n += 1
                    s.sendall(framed(header(1, 11, n) + body_bytes(1, 11, fetch_fields("race", 0, max_bytes=1))))
                    assert corr_of(read_frame(s)) == n
        except Exception as e:                           # noqa: BLE001 - reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=producer, args=(i,), daemon=True) for i in range(32)]
    threads += [threading.Thread(target=fetcher, daemon=True) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 8
        lost = []
        while time.monotonic() < deadline and not lost and not failures:
            time.sleep(1.0)
            with el.open(path) as log:
                stored = {r.offset: r.value for r in log.partition("race", 0).read(0, max_records=1 << 20)}
            lost = [(o, v, stored.get(o)) for o, v in list(acked) if o in stored and stored[o] != v]
            if len({o for o, _v in acked}) != len(acked):
                lost.append("two acknowledged produces were given the same offset")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        srv.close()
    assert not failures, failures[:3]
    assert len(acked) > 1000
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:3]}"


# ---------------------------------------------------------------- 4. slow clients do not stall others

POLLERS = 100


def test_long_poll_a_client_that_never_reads_and_a_stalled_frame_do_not_block_others(tmp_path):
    path = tmp_path / "log"
    with el.open(path) as log:
        log.create_topic("t", 1)
        log.create_topic("quiet", 1)
        log.create_topic("big", 1)
        for _ in range(4):
            log.topic("big").append([b"x" * (256 << 10)], partition=0)
    srv = el.serve(path, port=0)
    errors = watch_loop(srv)
    socks = []
    try:
        # long polls that have nothing to wait for yet, more of them than the server's
        # worker threads (32 by default): a poll must wait on the event loop, not hold a thread
        pollers = []
        for _ in range(POLLERS):
            poller = connect(srv.port)
            socks.append(poller)
            pollers.append(poller)
            poller.sendall(framed(header(1, 11, 1) + body_bytes(1, 11, fetch_fields("quiet", 0, wait=30000))))

        # a client that asks for megabytes and never reads them, until the server stops reading it
        stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(stuck)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", srv.port))
        stuck.setblocking(False)
        req = framed(header(1, 11, 2) + body_bytes(1, 11, fetch_fields("big", 0, max_bytes=4 << 20)))
        pending = b""
        sent = 0
        blocked_since = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not pending:
                pending = req
            try:
                n = stuck.send(pending)
                pending = pending[n:]
                sent += n
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 1.0:
                    break
                time.sleep(0.02)
        assert blocked_since is not None, f"the server kept reading {sent} bytes of requests it cannot answer"

        # a frame that never completes
        stalled = connect(srv.port)
        socks.append(stalled)
        stalled.sendall((1000).to_bytes(4, "big") + b"\x00\x03\x00\x0c")

        # meanwhile a normal client produces and fetches with normal latency
        t0 = time.monotonic()
        with connect(srv.port, timeout=5) as c:
            api_versions_roundtrip(c, corr=1)
            for i in range(20):
                corr = 10 + 2 * i
                c.sendall(framed(header(0, 9, corr) + body_bytes(0, 9, produce_fields(
                    "t", el.build_batch([b"n%d" % i]), acks=-1))))
                data = read_frame(c)
                assert corr_of(data) == corr
                pr = decode_response(0, 9, data)["responses"][0]["partition_responses"][0]
                assert (pr["error_code"], pr["base_offset"]) == (0, i)
                c.sendall(framed(header(1, 11, corr + 1) + body_bytes(1, 11, fetch_fields("t", i))))
                data = read_frame(c)
                assert corr_of(data) == corr + 1
                part = decode_response(1, 11, data)["responses"][0]["partitions"][0]
                assert part["error_code"] == 0 and b"n%d" % i in bytes(part["records"])
            elapsed = time.monotonic() - t0
            assert elapsed < 5.0, f"a normal client took {elapsed:.1f}s next to slow ones"

            # the long polls are still waiting, and an append wakes them (not their 30 s max_wait)
            for poller in pollers:
                poller.settimeout(0.01)
                with pytest.raises(socket.timeout):
                    poller.recv(1)
            t1 = time.monotonic()
            c.sendall(framed(header(0, 9, 99) + body_bytes(0, 9, produce_fields(
                "quiet", el.build_batch([b"wake"])))))
            assert corr_of(read_frame(c)) == 99
        for poller in pollers:
            poller.settimeout(5)
            data = read_frame(poller)
            assert corr_of(data) == 1
            part = decode_response(1, 11, data)["responses"][0]["partitions"][0]
            assert part["high_watermark"] == 1 and b"wake" in bytes(part["records"])
        assert time.monotonic() - t1 < 5.0
        assert not errors and srv.broker.stats["errors"] == 0
    finally:
        for s in socks:
            s.close()
        srv.close()


# ---------------------------------------------------------------- 5. shutdown during a long poll

def _open_files_under(path) -> list:
    root = os.path.realpath(path)
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(root + os.sep) or target == root:
            out.append(target)
    with open("/proc/self/maps") as f:
        out += [line.split(None, 5)[-1].strip() for line in f if root + os.sep in line]
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open files")
def test_close_answers_a_long_poll_and_releases_the_directory(tmp_path):
    path = tmp_path / "log"
    with el.open(path) as log:
        log.create_topic("t", 1)
        log.topic("t").append([b"a", b"b", b"c"], partition=0)
    assert _open_files_under(path) == []
    srv = el.serve(path, port=0)
    port = srv.port
    poller = connect(port)
    idle = connect(port)
    partial = connect(port)
    try:
        api_versions_roundtrip(idle)
        partial.sendall((500).to_bytes(4, "big") + b"\x00\x12\x00\x03")
        poller.sendall(framed(header(1, 11, 5) + body_bytes(1, 11, fetch_fields("t", 3, wait=60000))))
        deadline = time.monotonic() + 5
        while not srv.broker._waiters and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.broker._waiters, "the fetch never started its long poll"

        t0 = time.monotonic()
        closer = threading.Thread(target=srv.close, daemon=True)
        closer.start()
        poller.settimeout(5)
        try:
            data = read_frame(poller)
        except ConnectionError:
            data = None                    # closing the connection is allowed too
        answered = time.monotonic() - t0
        assert answered < 5.0, f"the long poll was answered {answered:.1f}s after close()"
        if data is not None:
            assert corr_of(data) == 5
            part = decode_response(1, 11, data)["responses"][0]["partitions"][0]
            assert part["error_code"] == 0 and part["high_watermark"] == 3 and not part["records"]
        closer.join(10)
        assert not closer.is_alive(), "close() did not return"
        assert time.monotonic() - t0 < 8.0
        for s in (poller, idle, partial):
            assert closed_by_server(s, timeout=2)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        for s in (poller, idle, partial):
            s.close()
        srv.close()
    assert _open_files_under(path) == []
    with el.open(path) as log:                 # the directory reopens, its data intact
        assert [r.value for r in log.partition("t", 0).read(0)] == [b"a", b"b", b"c"]
        log.topic("t").append([b"d"], partition=0)
    with el.serve(path, port=0) as again, connect(again.port) as s:
        s.sendall(framed(header(1, 11, 6) + body_bytes(1, 11, fetch_fields("t", 3))))
        data = read_frame(s)
        part = decode_response(1, 11, data)["responses"][0]["partitions"][0]
        assert part["high_watermark"] == 4 and b"d" in bytes(part["records"])


# ---------------------------------------------------------------- 6. a handler's bug is answered

def test_a_body_that_does_not_encode_is_answered_and_the_connection_stays(server):
    """A handler that returns what its version cannot carry (here a null topic name,
    which Metadata v10 forbids) gets UNKNOWN_SERVER_ERROR's answer on that connection;
    before the fix the ValueError escaped the connection's task and dropped it unanswered."""
    async def broken(req, conn):
        return {"throttle_time_ms": 0, "brokers": [], "cluster_id": None, "controller_id": 0,
                "topics": [{"error_code": 0, "name": None, "topic_id": bytes(16), "is_internal": False,
                            "partitions": []}]}
    server.broker._handlers[3] = broken
    with connect(server.port) as s:
        s.sendall(framed(header(3, 10, 1) + body_bytes(3, 10, {"topics": None})))
        data = read_frame(s)
        assert corr_of(data) == 1
        assert decode_response(3, 10, data)["topics"] == []      # the error answer (no top-level code)
        api_versions_roundtrip(s, corr=2)                         # the same connection goes on
    assert server.broker.stats["errors"] == 1
    assert not server.loop_errors


def test_a_failing_acks0_produce_gets_no_answer(server):
    """acks=0: the client expects no response at all, not even an error one; an answer
    would be matched to its next request (kafka-python and Java drop the connection on a
    correlation id they did not send)."""
    def boom(body, version):
        raise TypeError("a bug in the produce path")
    server.broker.data.produce = boom
    with connect(server.port) as s:
        s.sendall(framed(header(0, 9, 1) + body_bytes(0, 9, produce_fields("t", el.build_batch([b"x"]), acks=0))))
        api_versions_roundtrip(s, corr=2)                         # the first answer on the wire is this one
    assert server.broker.stats["errors"] == 1
