"""Kafka's answers byte by byte, with a raw client built on the schema codec: idempotent
sequences, acks=0, Fetch's long poll, min/max bytes (KIP-74), ListOffsets, old formats."""
import socket
import subprocess
import sys
import time

import pytest

import embedlog
import embedlog as el  # the `embedlog` fixture shadows the module inside tests
from embedlog.server._schema import message

PID = 123456789


class Raw:
    """One connection speaking the protocol through the schema files."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.corr = 0

    def send(self, name, version, body, api_key):
        req = message(name + "Request")
        self.corr += 1
        hv = 2 if req.is_flexible(version) else 1
        frame = message("RequestHeader").to_bytes({"request_api_key": api_key, "request_api_version": version,
                                                   "correlation_id": self.corr, "client_id": "raw"}, hv)
        full = req.defaults(version)
        full.update(body)
        frame += req.to_bytes(full, version)
        self.sock.sendall(len(frame).to_bytes(4, "big") + frame)
        return self.corr

    def recv(self, name, version, api_key):
        size = int.from_bytes(self._exact(4), "big")
        data = self._exact(size)
        resp = message(name + "Response")
        hv = 1 if resp.is_flexible(version) and api_key != 18 else 0
        hdr, pos = message("ResponseHeader").decode(data, hv, whole=False)
        body, _ = resp.decode(data, version, pos)
        return hdr["correlation_id"], body

    def call(self, name, version, body, api_key):
        corr = self.send(name, version, body, api_key)
        got, resp = self.recv(name, version, api_key)
        assert got == corr
        return resp

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf


def produce(raw, topic, batch, version=9, acks=-1, partition=0):
    resp = raw.call("Produce", version, {"acks": acks, "timeout_ms": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": partition, "records": batch}]}]}, 0)
    return resp["responses"][0]["partition_responses"][0]


def fetch_body(topic, offset, wait=0, min_bytes=1, max_bytes=1 << 20, part_max=1 << 20):
    return {"max_wait_ms": wait, "min_bytes": min_bytes, "max_bytes": max_bytes, "isolation_level": 0,
            "topics": [{"topic": topic, "partitions": [{"partition": 0, "fetch_offset": offset,
                                                        "partition_max_bytes": part_max}]}]}


@pytest.fixture
def raw(embedlog_broker, embedlog):
    embedlog.create_topic("t", partitions=1)
    r = Raw(embedlog_broker.port)
    yield r
    r.sock.close()


def test_idempotent_sequences_duplicates_and_gaps(raw, embedlog):
    b0 = el.build_batch([b"a", b"b"], producer_id=PID, producer_epoch=0, base_sequence=0)
    b1 = el.build_batch([b"c"], producer_id=PID, producer_epoch=0, base_sequence=2)
    assert produce(raw, "t", b0)["error_code"] == 0
    r = produce(raw, "t", b0)                            # a retry: Kafka answers with the stored offset
    assert (r["error_code"], r["base_offset"]) == (0, 0)
    assert produce(raw, "t", b1)["base_offset"] == 2
    gap = el.build_batch([b"d"], producer_id=PID, producer_epoch=0, base_sequence=7)
    assert produce(raw, "t", gap)["error_code"] == 45     # OUT_OF_ORDER_SEQUENCE_NUMBER
    newer = el.build_batch([b"e"], producer_id=PID, producer_epoch=1, base_sequence=0)
    assert produce(raw, "t", newer)["error_code"] == 0
    fenced = el.build_batch([b"f"], producer_id=PID, producer_epoch=0, base_sequence=3)
    assert produce(raw, "t", fenced)["error_code"] == 47  # INVALID_PRODUCER_EPOCH
    assert [r.value for r in embedlog.partition("t", 0).read(0)] == [b"a", b"b", b"c", b"e"]


def test_init_producer_id_and_epoch_bump(raw):
    r = raw.call("InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                       "producer_id": -1, "producer_epoch": -1}, 22)
    assert r["error_code"] == 0 and r["producer_id"] >= 0 and r["producer_epoch"] == 0
    r2 = raw.call("InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                        "producer_id": r["producer_id"], "producer_epoch": 0}, 22)
    assert (r2["producer_id"], r2["producer_epoch"]) == (r["producer_id"], 1)     # KIP-360 bump
    r3 = raw.call("InitProducerId", 4, {"transactional_id": "tx", "transaction_timeout_ms": 60000}, 22)
    assert r3["error_code"] != 0                                                   # transactions: not served


def test_acks_zero_gets_no_answer_but_is_stored(raw, embedlog):
    raw.send("Produce", 9, {"acks": 0, "timeout_ms": 1000, "topic_data": [
        {"name": "t", "partition_data": [{"index": 0, "records": el.build_batch([b"z"])}]}]}, 0)
    r = raw.call("ApiVersions", 3, {"client_software_name": "raw", "client_software_version": "1"}, 18)
    assert r["error_code"] == 0                    # the next answer on the wire is this one
    assert [x.value for x in embedlog.partition("t", 0).read(0)] == [b"z"]


def test_old_message_formats_are_refused_per_partition(raw, embedlog):
    legacy = bytearray(el.build_batch([b"x"]))
    legacy[16] = 1                                  # magic 1
    r = produce(raw, "t", bytes(legacy), version=3)
    assert r["error_code"] == 43                    # UNSUPPORTED_FOR_MESSAGE_FORMAT
    r = produce(raw, "t", el.build_batch([b"x"])[:-3], version=3)
    assert r["error_code"] == 2                     # CORRUPT_MESSAGE
    assert embedlog.partition("t", 0).high_watermark == 0


def test_fetch_long_poll_is_woken_by_another_process(raw, embedlog_broker):
    code = ("import embedlog, time, sys; time.sleep(0.5); "
            "log = embedlog.open(sys.argv[1]); log.topic('t').append([b'late'], partition=0); log.close()")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code, str(embedlog_broker.path)], cwd="/")
    r = raw.call("Fetch", 11, fetch_body("t", 0, wait=20000), 1)
    waited = time.monotonic() - t0
    proc.wait(10)
    part = r["responses"][0]["partitions"][0]
    assert part["error_code"] == 0 and part["high_watermark"] == 1
    assert b"late" in bytes(part["records"])
    assert waited < 10, waited                     # woken by the append, not by max_wait_ms


def test_fetch_waits_max_wait_when_empty_and_kip74(raw, embedlog):
    t0 = time.monotonic()
    r = raw.call("Fetch", 11, fetch_body("t", 0, wait=300), 1)
    assert time.monotonic() - t0 >= 0.25
    assert not r["responses"][0]["partitions"][0]["records"]
    big = [b"x" * 5000] * 4
    for v in big:
        embedlog.topic("t").append([v], partition=0)
    one = len(embedlog.partition("t", 0).read_raw(0, max_bytes=1))
    # max_bytes below one batch: the first batch still comes (KIP-74), whole
    r = raw.call("Fetch", 11, fetch_body("t", 0, max_bytes=10, part_max=10), 1)
    assert len(r["responses"][0]["partitions"][0]["records"]) == one
    # partition_max_bytes of two batches: exactly two
    r = raw.call("Fetch", 11, fetch_body("t", 0, part_max=2 * one), 1)
    assert len(r["responses"][0]["partitions"][0]["records"]) == 2 * one
    # min_bytes above what exists: waits, then answers with what there is
    t0 = time.monotonic()
    r = raw.call("Fetch", 11, fetch_body("t", 0, wait=300, min_bytes=1 << 20), 1)
    assert time.monotonic() - t0 >= 0.25
    assert len(r["responses"][0]["partitions"][0]["records"]) == 4 * one
    # out of range
    r = raw.call("Fetch", 11, fetch_body("t", 99), 1)
    assert r["responses"][0]["partitions"][0]["error_code"] == 1


def test_list_offsets_earliest_latest_time_and_max_timestamp(raw, embedlog):
    embedlog.topic("t").append([b"a", b"b", b"c"], partition=0, timestamps=[1000, 5000, 3000])
    embedlog.partition("t", 0).delete_records(1)

    def lo(ts, version=7):
        r = raw.call("ListOffsets", version, {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": "t", "partitions": [{"partition_index": 0, "timestamp": ts}]}]}, 2)
        p = r["topics"][0]["partitions"][0]
        return p["error_code"], p["offset"], p["timestamp"]
    assert lo(-2)[:2] == (0, 1)
    assert lo(-1)[:2] == (0, 3)
    assert lo(4000) == (0, 1, 5000)
    assert lo(6000)[1] == -1
    assert lo(-3) == (0, 1, 5000)
    assert lo(-1, version=1)[:2] == (0, 3)


def test_unknown_topic_without_auto_create(embedlog_dir):
    with embedlog.serve(embedlog_dir, port=0, auto_create_topics=False) as srv:
        r = Raw(srv.port)
        md = r.call("Metadata", 12, {"topics": [{"name": "nope", "topic_id": bytes(16)}],
                                     "allow_auto_topic_creation": True}, 3)
        assert md["topics"][0]["error_code"] == 3
        p = produce(r, "nope", el.build_batch([b"x"]))
        assert p["error_code"] == 3
        md = r.call("Metadata", 12, {"topics": [{"name": "../etc", "topic_id": bytes(16)}]}, 3)
        assert md["topics"][0]["error_code"] == 17                     # INVALID_TOPIC_EXCEPTION
        r.sock.close()
    with embedlog.open(embedlog_dir) as log:
        assert log.topics() == [] or "nope" not in log.topics()


@pytest.mark.parametrize("version", [10, 11, 12])
def test_metadata_by_unknown_topic_id_is_answered_at_every_version(raw, version):
    md = raw.call("Metadata", version, {"topics": [{"name": None, "topic_id": b"\x01" * 16}]}, 3)
    (t,) = md["topics"]
    assert t["error_code"] == 100                                  # UNKNOWN_TOPIC_ID
    assert t["name"] == ("" if version < 12 else None)             # null is only allowed from v12


def test_internal_topic_cannot_be_deleted_over_the_wire(raw, embedlog):
    embedlog.create_topic("gone", partitions=1)
    with el.Consumer({"bootstrap.servers": embedlog.path, "group.id": "g"}) as c:
        c.commit(offsets=[el.TopicPartition("t", 0, 0)], asynchronous=False)
    resp = raw.call("DeleteTopics", 5, {"topic_names": ["__consumer_offsets", "gone"], "timeout_ms": 1000}, 20)
    codes = {r["name"]: r["error_code"] for r in resp["responses"]}
    assert codes == {"__consumer_offsets": 17, "gone": 0}
    assert "internal" in resp["responses"][0]["error_message"]
    assert "__consumer_offsets" in embedlog.topics() and "gone" not in embedlog.topics()
    md = raw.call("Metadata", 12, {"topics": [{"name": "__consumer_offsets", "topic_id": bytes(16)}]}, 3)
    assert md["topics"][0]["is_internal"] is True


def test_partition_counts_above_the_limit_are_refused_before_any_folder(embedlog_dir):
    with embedlog.serve(embedlog_dir, port=0, max_partitions=8) as srv:
        r = Raw(srv.port)
        body = {"topics": [{"name": "huge", "num_partitions": 2**31 - 1, "replication_factor": 1,
                            "assignments": [], "configs": []},
                           {"name": "ok", "num_partitions": 8, "replication_factor": 1,
                            "assignments": [], "configs": []}], "timeout_ms": 1000}
        res = {t["name"]: t for t in r.call("CreateTopics", 7, body, 19)["topics"]}
        assert res["huge"]["error_code"] == 37 and "limit of 8" in res["huge"]["error_message"]
        assert res["ok"]["error_code"] == 0
        grow = r.call("CreatePartitions", 3, {"topics": [{"name": "ok", "count": 9, "assignments": None}],
                                              "timeout_ms": 1000, "validate_only": False}, 37)
        assert grow["results"][0]["error_code"] == 37
        r.sock.close()
    with embedlog.open(embedlog_dir) as log:
        assert "huge" not in log.topics() and log.topic("ok").num_partitions == 8


def test_idle_connections_are_closed_and_busy_ones_kept(embedlog_dir):
    with embedlog.serve(embedlog_dir, port=0, idle_timeout_ms=300) as srv:
        idle, talking = Raw(srv.port), Raw(srv.port)
        stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        stalled.sendall(b"\x00\x00\x00\x40")                        # a frame header, then nothing
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            talking.call("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"}, 18)
            time.sleep(0.05)
        with pytest.raises(ConnectionError):
            idle.call("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"}, 18)
        assert stalled.recv(1) == b""                                 # closed by the server
        assert srv.broker.stats["idle_closed"] >= 2
        for s in (idle.sock, talking.sock, stalled):
            s.close()
