"""confluent-kafka (librdkafka) against `embedlog serve`: the producer (idempotent, lz4),
consumer groups, offsets, seeks, timestamps, the AdminClient; and the same records seen
byte for byte by the in-process API."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import embedlog

ck = pytest.importorskip("confluent_kafka", reason="confluent-kafka is a test extra: pip install -e '.[test]'")
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (AdminClient, ConfigResource, NewPartitions, NewTopic,  # noqa: E402
                                   ResourceType)

QUIET = {"log_level": 3}


def _admin(bs):
    return AdminClient({"bootstrap.servers": bs, **QUIET})


def _create(bs, name, partitions=3, config=None):
    admin = _admin(bs)            # keep the handle alive until the future is done
    fs = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])
    fs[name].result(10)


def _produce(bs, topic, n, **conf):
    p = Producer({"bootstrap.servers": bs, "linger.ms": 5, **QUIET, **conf})
    errors = []
    delivered = []

    def dr(err, msg):
        (errors if err else delivered).append(err or (msg.partition(), msg.offset()))
    for i in range(n):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"%d" % i)], timestamp=1_700_000_000_000 + i,
                  on_delivery=dr)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors[:3]
    return delivered


def _consume(c, n, timeout=30):
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        for m in c.consume(500, 0.5):
            assert m.error() is None, m.error()
            out.append(m)
    return out


def test_idempotent_lz4_produce_is_read_in_process_byte_identical(embedlog_broker):
    bs = embedlog_broker.bootstrap
    _create(bs, "orders", 3)
    delivered = _produce(bs, "orders", 3000, **{"enable.idempotence": True, "compression.type": "lz4"})
    assert len(delivered) == 3000
    assert len(set(delivered)) == 3000                        # no offset given twice
    with embedlog.open(embedlog_broker.path) as log:
        total = 0
        for p in range(3):
            part = log.partition("orders", p)
            recs = part.read(0, max_bytes=1 << 30)
            total += len(recs)
            assert [r.offset for r in recs] == list(range(len(recs)))
            raw = part.read_raw(0, max_bytes=1 << 30)
            hdr = embedlog.parse_header(raw)
            assert hdr.compression == 3                        # stored as librdkafka built it: lz4
            assert hdr.producer_id >= 0 and hdr.base_sequence == 0
        assert total == 3000
        # murmur2 placement: librdkafka's default partitioner for keyed messages is
        # consistent_random (CRC32), so check only that every key sits in one partition.
        keys = {}
        for p in range(3):
            for r in log.partition("orders", p).read(0, max_bytes=1 << 30):
                assert keys.setdefault(r.key, p) == p
                assert r.value == b"v" + r.key[1:]
                assert list(r.headers) == [("h", r.key[1:])]
                assert r.timestamp == 1_700_000_000_000 + int(r.key[1:])


def test_in_process_records_fetched_over_the_wire_byte_identical(embedlog_broker, embedlog):
    topic = embedlog.create_topic("inproc", partitions=1)
    topic.append([b"a", b"bb", None], keys=[b"1", None, b"3"], partition=0, headers=[[("x", b"y")], [], []])
    stored = embedlog.partition("inproc", 0).read_raw(0)
    c = Consumer({"bootstrap.servers": embedlog_broker.bootstrap, "group.id": "g-inproc",
                  "auto.offset.reset": "earliest", **QUIET})
    c.assign([TopicPartition("inproc", 0, 0)])
    got = _consume(c, 3)
    c.close()
    assert [(m.key(), m.value(), m.offset()) for m in got] == [(b"1", b"a", 0), (None, b"bb", 1), (b"3", None, 2)]
    assert got[0].headers() == [("x", b"y")]
    # And the bytes a Kafka client fetches are the stored bytes (kafka-python decodes them).
    from kafka.record.default_records import DefaultRecordBatch
    batch = DefaultRecordBatch(stored)
    assert batch.validate_crc()
    assert [r.value for r in batch] == [b"a", b"bb", None]


def test_group_commit_committed_seek_watermarks_offsets_for_times(embedlog_broker):
    bs = embedlog_broker.bootstrap
    _create(bs, "events", 2)
    _produce(bs, "events", 400)
    c = Consumer({"bootstrap.servers": bs, "group.id": "g1", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, **QUIET})
    c.subscribe(["events"])
    msgs = _consume(c, 400)
    assert len(msgs) == 400
    assert {m.partition() for m in msgs} == {0, 1}
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition("events", 0), TopicPartition("events", 1)], timeout=10)
    lows_highs = [c.get_watermark_offsets(TopicPartition("events", p), timeout=10) for p in (0, 1)]
    assert [tp.offset for tp in committed] == [h for _l, h in lows_highs]
    assert sum(h for _l, h in lows_highs) == 400 and all(lo == 0 for lo, _h in lows_highs)
    # offsets_for_times: the first record at or after the timestamp
    ts = 1_700_000_000_000 + 200
    found = c.offsets_for_times([TopicPartition("events", p, ts) for p in (0, 1)], timeout=10)
    for tp in found:
        assert tp.error is None
        recs = [m for m in msgs if m.partition() == tp.partition]
        expect = min(m.offset() for m in recs if m.timestamp()[1] >= ts)
        assert tp.offset == expect
    # seek back and re-read
    part0 = [m for m in msgs if m.partition() == 0]
    c.seek(TopicPartition("events", 0, 5))
    again = []
    deadline = time.time() + 10
    while not again and time.time() < deadline:
        again = [m for m in c.consume(10, 0.5) if m.partition() == 0]
    assert again and again[0].offset() == 5 and again[0].value() == part0[5].value()
    c.close()
    # the in-process API sees the same committed offsets
    with embedlog.open(embedlog_broker.path) as log:
        lag = {(r["topic"], r["partition"]): r for r in log.consumer_lag("g1")}
        assert lag[("events", 0)]["committed"] == lows_highs[0][1]
        assert all(r["lag"] == 0 for r in lag.values())


def test_admin_create_describe_alter_partitions_delete_groups(embedlog_broker):
    bs = embedlog_broker.bootstrap
    a = _admin(bs)
    fs = a.create_topics([NewTopic("adm", 2, 1, config={"retention.ms": "3600000"}),
                          NewTopic("bad/name", 1, 1)])
    fs["adm"].result(10)
    with pytest.raises(KafkaException) as ei:
        fs["bad/name"].result(10)
    assert ei.value.args[0].code() == ck.KafkaError.TOPIC_EXCEPTION
    with pytest.raises(KafkaException) as ei:
        a.create_topics([NewTopic("adm", 2, 1)])["adm"].result(10)
    assert ei.value.args[0].code() == ck.KafkaError.TOPIC_ALREADY_EXISTS
    md = a.list_topics(timeout=10)
    assert len(md.topics["adm"].partitions) == 2
    res = ConfigResource(ResourceType.TOPIC, "adm")
    cfg = a.describe_configs([res])[res].result(10)
    assert cfg["retention.ms"].value == "3600000" and not cfg["retention.ms"].is_default
    assert cfg["cleanup.policy"].value == "delete" and cfg["cleanup.policy"].is_default
    # incremental alter
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
    res2 = ConfigResource(ResourceType.TOPIC, "adm", incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res2])[res2].result(10)
    with embedlog.open(embedlog_broker.path) as log:
        assert log.topic("adm").config["retention.ms"] == 7200000
    # bad config value is refused with INVALID_CONFIG and changes nothing
    res3 = ConfigResource(ResourceType.TOPIC, "adm", incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as ei:
        a.incremental_alter_configs([res3])[res3].result(10)
    assert ei.value.args[0].code() == ck.KafkaError.INVALID_CONFIG
    a.create_partitions([NewPartitions("adm", 4)])["adm"].result(10)
    with pytest.raises(KafkaException):
        a.create_partitions([NewPartitions("adm", 3)])["adm"].result(10)
    with embedlog.open(embedlog_broker.path) as log:
        assert log.topic("adm").num_partitions == 4
    # groups: a committed group shows in list/describe
    _produce(bs, "adm", 10)
    c = Consumer({"bootstrap.servers": bs, "group.id": "gadm", "auto.offset.reset": "earliest", **QUIET})
    c.subscribe(["adm"])
    _consume(c, 10)
    groups = a.list_consumer_groups().result(10)
    assert "gadm" in {g.group_id for g in groups.valid}
    desc = a.describe_consumer_groups(["gadm"])["gadm"].result(10)
    assert len(desc.members) == 1
    assigned = {(tp.topic, tp.partition) for tp in desc.members[0].assignment.topic_partitions}
    assert assigned == {("adm", p) for p in range(4)}
    c.close()
    a.delete_topics(["adm"])["adm"].result(10)
    with embedlog.open(embedlog_broker.path) as log:
        assert "adm" not in log.topics()


CONSUMER = textwrap.dedent("""
    import json, sys, time
    from confluent_kafka import Consumer
    bs, group, out = sys.argv[1], sys.argv[2], sys.argv[3]
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "log_level": 3,
                  "enable.auto.commit": False})
    c.subscribe(["work"])
    with open(out, "a") as f:
        while True:
            for m in c.consume(100, 0.2):
                if m.error() is None:
                    f.write(json.dumps([m.partition(), m.offset()]) + "\\n")
            f.flush()
            try:
                c.commit(asynchronous=False)
            except Exception:
                pass
            f.write(json.dumps(["assignment", sorted(tp.partition for tp in c.assignment())]) + "\\n")
""")


@pytest.mark.slow
def test_group_of_three_with_a_member_killed(embedlog_broker, tmp_path):
    bs = embedlog_broker.bootstrap
    _create(bs, "work", 6)
    script = tmp_path / "consumer.py"
    script.write_text(CONSUMER)
    outs = [tmp_path / f"c{i}.jsonl" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, str(script), bs, "gw", str(o)]) for o in outs]
    try:
        def last_assignments():
            res = []
            for o in outs:
                lines = o.read_text().splitlines() if o.exists() else []
                a = [json.loads(x)[1] for x in lines if x.startswith('["assignment"')]
                res.append(a[-1] if a else None)
            return res

        deadline = time.time() + 60
        while time.time() < deadline:
            a = last_assignments()
            if all(x for x in a) and sorted(sum(a, [])) == list(range(6)):
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"three members never split the 6 partitions: {last_assignments()}")
        _produce(bs, "work", 600)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        _produce(bs, "work", 600)
        deadline = time.time() + 60
        while time.time() < deadline:
            a = last_assignments()[1:]
            seen = set()
            for o in outs:
                for x in o.read_text().splitlines():
                    v = json.loads(x)
                    if v[0] != "assignment":
                        seen.add(tuple(v))
            if all(x for x in a) and sorted(sum(a, [])) == list(range(6)) and len(seen) == 1200:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"survivors did not take over: {last_assignments()}, {len(seen)} of 1200 records seen")
        with embedlog.open(embedlog_broker.path) as log:
            total = sum(log.partition("work", p).high_watermark for p in range(6))
            assert total == 1200
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(10)


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "roundrobin"])
def test_two_members_rebalance_with_librdkafka_assignors(embedlog_broker, strategy):
    """Members join one by one and leave; each partition has exactly one owner at every
    generation, and the incremental protocol moves only what must move."""
    bs = embedlog_broker.bootstrap
    _create(bs, "rb", 4)
    conf = {"bootstrap.servers": bs, "group.id": f"g-{strategy}", "auto.offset.reset": "earliest",
            "partition.assignment.strategy": strategy, "heartbeat.interval.ms": 200,
            "session.timeout.ms": 6000, **QUIET}
    events = []

    def tracker(name):
        def on_assign(c, parts):
            events.append((name, "assign", sorted(p.partition for p in parts)))

        def on_revoke(c, parts):
            events.append((name, "revoke", sorted(p.partition for p in parts)))
        return {"on_assign": on_assign, "on_revoke": on_revoke}

    a = Consumer(conf)
    a.subscribe(["rb"], **tracker("a"))

    def spin(consumers, until, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for c in consumers:
                c.poll(0.05)
            if until():
                return True
        return False

    assert spin([a], lambda: len(a.assignment()) == 4)
    b = Consumer(conf)
    b.subscribe(["rb"], **tracker("b"))

    def split():
        pa = {tp.partition for tp in a.assignment()}
        pb = {tp.partition for tp in b.assignment()}
        return len(pa) == 2 and len(pb) == 2 and not pa & pb
    assert spin([a, b], split), (a.assignment(), b.assignment(), events)
    if strategy == "cooperative-sticky":
        # incremental: a was never asked to give up all four at once
        assert ("a", "revoke", [0, 1, 2, 3]) not in events
    b.close()
    assert spin([a], lambda: len(a.assignment()) == 4), events
    a.close()
