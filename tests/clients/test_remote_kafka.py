"""The way off one machine (#14): with `bootstrap.servers` naming brokers, embedlog.Producer,
Consumer and AdminClient are confluent-kafka's against that cluster (embedlog/client/_remote.py).

The cluster is a real Kafka-protocol broker, Tansu (tests/peers.py, the `tansu_broker`
fixture). One producer program and one consumer-group program, written once as functions of
a conf dict, run against a log directory and against the broker; the records, their
partitions and the group's committed offsets and lag must come out the same.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import embedlog
from embedlog import (AdminClient, ConfigError, Consumer, KafkaError, KafkaException, NewPartitions, NewTopic,
                      OFFSET_BEGINNING, Producer, TopicPartition)
from embedlog.admin import ConsumerGroupTopicPartitions
from embedlog.storage._config import bootstrap_brokers

PARTITIONS = 4
KEYS = [f"customer-{i}" for i in range(64)]
FIRST, SECOND = 300, 90              # records of the first and the second producer run
SESSION = {"session.timeout.ms": 6000}   # Tansu: a new group's first join takes ~session/2


# ------------------------------------------------------------------ the programs (embedlog names only)

def producer_program(conf, topic, count, start=0, create=True, extra=None):
    """A seed script: create the topic, produce keyed records (every third with headers),
    delivery callback, flush. Returns (partition, offset, key) per delivery report."""
    if create:
        admin = AdminClient(conf)
        for future in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                                    replication_factor=1)]).values():
            future.result()
    producer = Producer({**conf, "acks": "all", "linger.ms": 5, **(extra or {})})
    delivered = []

    def on_delivery(err, msg):
        if err is not None:
            raise KafkaException(err)
        delivered.append((msg.partition(), msg.offset(), msg.key()))

    for i in range(start, start + count):
        headers = [("seq", str(i).encode()), ("source", b"seed")] if i % 3 == 0 else None
        producer.produce(topic, key=KEYS[i % len(KEYS)], value=f"order-{i}".encode(), headers=headers,
                         on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    return delivered


def consumer_program(conf, topic, group, count):
    """A consumer-group worker: subscribe, poll loop, synchronous commit, close."""
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, **SESSION})
    assignments = []

    def on_assign(c, partitions):
        assignments.append((c is consumer, all(isinstance(p, TopicPartition) for p in partitions),
                            sorted(p.partition for p in partitions)))

    consumer.subscribe([topic], on_assign=on_assign)
    records = []
    deadline = time.monotonic() + 30
    while len(records) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        records.append((msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers()))
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    consumer.close()
    return records, assignments, sorted((tp.partition, tp.offset) for tp in committed)


def lag_program(conf, topic, group):
    """Committed offsets (AdminClient) and lag (high watermark - committed) per partition."""
    admin = AdminClient(conf)
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])]
    result = admin.list_consumer_group_offsets(request)[group].result()
    committed = {tp.partition: tp.offset for tp in result.topic_partitions}
    probe = Consumer({**conf, "group.id": group})
    lag = {}
    for p, offset in sorted(committed.items()):
        low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        lag[p] = high - offset
    probe.close()
    return committed, lag


def run_all(conf, topic, group):
    first = producer_program(conf, topic, FIRST)
    records, assignments, committed = consumer_program(conf, topic, group, FIRST)
    # One record per batch: Tansu 0.6.0 answers ListOffsets(latest) with the last batch's base
    # offset + 1 (a Fetch reports the right high watermark), so the lag below is right only
    # when the last batch holds one record. Same conf for both targets; Kafka needs no such care.
    second = producer_program(conf, topic, SECOND, start=FIRST, create=False, extra={"batch.num.messages": 1})
    return {"delivered": first + second, "records": records, "assignments": assignments,
            "committed": committed, "lag": lag_program(conf, topic, group)}


@pytest.fixture(scope="module")
def cluster(tansu_broker):
    pytest.importorskip("confluent_kafka", reason="confluent-kafka (the kafka extra) is not installed")
    return {"bootstrap.servers": tansu_broker.bootstrap}


@pytest.fixture(scope="module")
def both(cluster, tmp_path_factory):
    """run_all against a log directory and against the broker: {"dir": ..., "kafka": ...}."""
    topic, group = f"orders-{uuid.uuid4().hex[:8]}", f"billing-{uuid.uuid4().hex[:8]}"
    local = {"bootstrap.servers": f"file://{tmp_path_factory.mktemp('remote')}/log"}
    return {"dir": run_all(local, topic, group), "kafka": run_all(cluster, topic, group)}


def by_position(records):
    return sorted(records, key=lambda r: (r[0], r[1]))


# ------------------------------------------------------------------ (1) same program, same records

def test_clients_for_brokers_are_confluent_kafkas(cluster):
    import confluent_kafka
    import confluent_kafka.admin
    pairs = [(Producer(cluster), confluent_kafka.Producer, embedlog.Producer),
             (Consumer({**cluster, "group.id": "g"}), confluent_kafka.Consumer, embedlog.Consumer),
             (AdminClient(cluster), confluent_kafka.admin.AdminClient, embedlog.AdminClient)]
    for client, theirs, ours in pairs:
        assert isinstance(client._client, theirs) and not isinstance(client, ours)
    pairs[1][0].close()


def test_same_program_same_records_in_same_partitions(both):
    local, kafka = both["dir"], both["kafka"]
    assert len(local["records"]) == len(kafka["records"]) == FIRST
    assert by_position(kafka["records"]) == by_position(local["records"])
    # keys and headers survived, and the keys are spread: a CRC32 placement would differ
    used = {r[0] for r in local["records"]}
    assert used == set(range(PARTITIONS))
    with_headers = [r for r in local["records"] if r[4] is not None]
    assert len(with_headers) == FIRST // 3 and with_headers[0][4][1] == ("source", b"seed")
    assert sorted(kafka["delivered"]) == sorted(local["delivered"])
    assert len(kafka["delivered"]) == FIRST + SECOND
    # on_assign got the proxy and embedlog's TopicPartitions, as with the directory
    assert kafka["assignments"] == local["assignments"] == [(True, True, list(range(PARTITIONS)))]


def test_keyed_placement_is_murmur2_unless_the_user_sets_a_partitioner(cluster):
    """Without `partitioner` the producer places keys as embedlog does (murmur2_random);
    a partitioner the user set is passed through (consistent_random: CRC32, elsewhere)."""
    from embedlog.storage._partitioner import partitions_for_keys
    keys = [k.encode() for k in KEYS]
    expected = dict(zip(keys, partitions_for_keys(keys, PARTITIONS)))
    topic = f"placement-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(cluster)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()

    def placement(extra):
        out = {}
        p = Producer({**cluster, **extra})
        for k in keys:
            p.produce(topic, b"x", k, on_delivery=lambda err, m: out.__setitem__(m.key(), m.partition()))
        assert p.flush(20) == 0
        return out

    assert placement({}) == expected
    crc = placement({"partitioner": "consistent_random"})
    assert len(crc) == len(keys) and crc != expected


# ------------------------------------------------------------------ (2) committed offsets and lag

def test_committed_offsets_and_lag_read_back_the_same(both):
    local, kafka = both["dir"], both["kafka"]
    per_partition = {p: sum(1 for r in local["records"] if r[0] == p) for p in range(PARTITIONS)}
    assert local["committed"] == kafka["committed"] == sorted(per_partition.items())
    committed, lag = kafka["lag"]
    assert (committed, lag) == local["lag"]
    assert committed == per_partition
    assert sum(lag.values()) == SECOND and min(lag.values()) > 0


# ------------------------------------------------------------------ (3) embedlog-only keys refused

@pytest.mark.parametrize("extra, key", [
    ({"embedlog.lock.timeout.ms": 100}, "embedlog.lock.timeout.ms"),
    ({"embedlog.num.partitions": 3}, "embedlog.num.partitions"),
    ({"log.retention.check.interval.ms": 0}, "log.retention.check.interval.ms"),
    ({"default.topic.config": {"embedlog.num.partitions": 3}}, "embedlog.num.partitions"),
    ({"partitioner": lambda key, n: 0}, "partitioner"),
])
@pytest.mark.parametrize("cls", [Producer, Consumer, AdminClient])
def test_embedlog_only_keys_are_refused_before_connecting(cls, extra, key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conf = {"bootstrap.servers": "127.0.0.1:1", "group.id": "g", **extra}   # nothing listens on port 1
    if cls is not Consumer:
        del conf["group.id"]
    start = time.monotonic()
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        cls(conf)
    assert time.monotonic() - start < 1.0
    assert "127.0.0.1:1" in str(info.value)
    assert os.listdir(tmp_path) == []          # and no directory named after the brokers


def test_embedlog_keys_stay_fine_for_a_directory(tmp_path):
    conf = {"bootstrap.servers": f"file://{tmp_path}/log", "embedlog.num.partitions": 3,
            "log.retention.check.interval.ms": 0}
    p = Producer(conf)
    assert isinstance(p, embedlog.Producer)
    p.close()
    # embedlog.path wins over bootstrap.servers, even when that names brokers
    p = Producer({"bootstrap.servers": "broker1:9092", "embedlog.path": str(tmp_path / "other")})
    assert isinstance(p, embedlog.Producer) and (tmp_path / "other").is_dir()
    p.close()


# ------------------------------------------------------------------ (4) embedlog's exception, from the broker

def test_broker_errors_are_embedlogs_kafka_exception(cluster):
    import confluent_kafka
    topic = f"exists-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(cluster)
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    futures = admin.create_topics([NewTopic(topic, 2, 1)])
    try:
        futures[topic].result(10)
    except embedlog.KafkaException as e:
        err = e.args[0]
        assert isinstance(err, embedlog.KafkaError)
        assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS and err == KafkaError.TOPIC_ALREADY_EXISTS
        assert err.name() == "TOPIC_ALREADY_EXISTS" and err.str()
        assert isinstance(e.__cause__, confluent_kafka.KafkaException)
        assert e.__cause__.args[0].code() == err.code() and e.__cause__.args[0].str() == err.str()
    else:
        pytest.fail("creating an existing topic did not raise")
    # a result object's fields are embedlog's too
    md = admin.list_topics(topic, timeout=10)
    assert sorted(md.topics[topic].partitions) == [0, 1]
    # create_partitions takes embedlog's NewPartitions (a wrong conversion is a TypeError);
    # Tansu 0.6.0 has no CreatePartitions: librdkafka's _UNSUPPORTED_FEATURE, a code embedlog's
    # own table has no name for, keeps confluent-kafka's name
    try:
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result(10)
    except embedlog.KafkaException as e:
        assert e.args[0].code() == confluent_kafka.KafkaError._UNSUPPORTED_FEATURE
        assert e.args[0].name() == "_UNSUPPORTED_FEATURE" and "CreatePartitions" in e.args[0].str()
    else:
        assert sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions) == [0, 1, 2]


@pytest.mark.parametrize("where", ["dir", "kafka"])
def test_commit_without_offsets_raises_the_same_exception(where, cluster, tmp_path):
    conf = cluster if where == "kafka" else {"bootstrap.servers": f"file://{tmp_path}/log"}
    consumer = Consumer({**conf, "group.id": f"empty-{uuid.uuid4().hex[:8]}"})
    with pytest.raises(KafkaException) as info:
        consumer.commit(asynchronous=False)
    assert info.value.args[0].code() == KafkaError._NO_OFFSET
    consumer.close()


def test_error_messages_and_returned_partitions_are_embedlogs(cluster):
    """A message carrying an error (here _PARTITION_EOF) holds embedlog's KafkaError, so
    `raise KafkaException(msg.error())` keeps its code; position() gives embedlog's
    TopicPartitions, which compare equal to the program's own."""
    topic = f"eof-{uuid.uuid4().hex[:8]}"
    producer_program(cluster, topic, 8)
    consumer = Consumer({**cluster, "group.id": f"eof-{uuid.uuid4().hex[:8]}", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    eof, seen, deadline = None, 0, time.monotonic() + 20
    while eof is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error():
            eof = msg
        elif msg is not None:
            seen += 1
    assert eof is not None and isinstance(eof.error(), embedlog.KafkaError)
    assert eof.error().code() == KafkaError._PARTITION_EOF
    with pytest.raises(embedlog.KafkaException) as info:
        raise KafkaException(eof.error())
    assert info.value.args[0].code() == KafkaError._PARTITION_EOF
    positions = consumer.position([TopicPartition(topic, eof.partition())])
    assert positions == [TopicPartition(topic, eof.partition())]
    # librdkafka's position is one past the last message consumed: at the EOF of a
    # partition that had records that is the EOF's offset; a partition that got none of
    # the 8 keyed records has consumed nothing, so its position may still be INVALID.
    expected = {eof.offset()} if eof.offset() > 0 else {0, embedlog.OFFSET_INVALID}
    assert isinstance(positions[0], embedlog.TopicPartition) and positions[0].offset in expected
    assert TopicPartition(topic, 0) in consumer.assignment()
    consumer.close()


# ------------------------------------------------------------------ (5) the detection table

@pytest.mark.parametrize("value, brokers", [
    ("localhost:9092", ["localhost:9092"]),
    ("broker1:9092,broker2:9092", ["broker1:9092", "broker2:9092"]),
    (" broker1:9092 , broker2:9093 ", ["broker1:9092", "broker2:9093"]),
    ("broker1:9092,", ["broker1:9092"]),
    ("PLAINTEXT://kafka-0.kafka.svc:9092", ["PLAINTEXT://kafka-0.kafka.svc:9092"]),
    ("sasl_ssl://b-1.msk.amazonaws.com:9096,SSL://b-2:9094", ["sasl_ssl://b-1.msk.amazonaws.com:9096",
                                                              "SSL://b-2:9094"]),
    ("10.0.0.7:9092", ["10.0.0.7:9092"]),
    ("[::1]:9092", ["[::1]:9092"]),
    ("backup:2024", ["backup:2024"]),            # looks like a broker: file:backup:2024 for a directory
    ("file:///var/lib/log", None),
    ("file:localhost:9092", None),
    ("file://localhost/var/lib/log", None),
    ("/var/lib/host:9092", None),
    ("./host:9092", None),
    ("../host:9092", None),
    ("~/host:9092", None),
    ("data", None),
    ("data/orders", None),
    ("kafka", None),                             # no port: a directory name
    ("a,b", None),
    ("my log", None),
    ("", None),
    (None, None),
])
def test_bootstrap_brokers_table(value, brokers):
    assert bootstrap_brokers(value) == brokers


@pytest.mark.parametrize("value, says", [
    ("tcp://broker:9092", "listener prefix 'tcp'"),
    ("http://broker:8080", "listener prefix 'http'"),
    ("broker1:9092,data", "'data' is not host:port"),
    ("broker:0", "between 1 and 65535"),
    ("broker:99999", "between 1 and 65535"),
])
def test_values_that_half_look_like_brokers_are_refused(value, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=says):
        bootstrap_brokers(value)
    with pytest.raises(ConfigError, match=says):
        Producer({"bootstrap.servers": value})
    assert os.listdir(tmp_path) == []


def test_an_existing_directory_stays_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bootstrap_brokers("host:9092") == ["host:9092"]
    with pytest.raises(ConfigError, match="names Kafka brokers"):
        embedlog.open("host:9092")
    assert os.listdir(tmp_path) == []
    log = embedlog.open("file:host:9092")          # the way to name such a directory
    log.close()
    assert (tmp_path / "host:9092").is_dir()
    assert bootstrap_brokers("host:9092") is None
    p = Producer({"bootstrap.servers": "host:9092"})
    assert isinstance(p, embedlog.Producer) and p._log.path == str(tmp_path / "host:9092")
    p.close()


# ------------------------------------------------------------------ (6) confluent-kafka missing

def test_missing_kafka_extra_is_a_clear_error(tmp_path):
    script = textwrap.dedent("""
        import os, sys
        sys.modules["confluent_kafka"] = None          # as if not installed
        import embedlog
        for make in (embedlog.Producer, embedlog.AdminClient,
                     lambda c: embedlog.Consumer({**c, "group.id": "g"})):
            try:
                make({"bootstrap.servers": "broker1:9092,broker2:9092"})
            except ImportError as e:
                print("ImportError:", e)
        p = embedlog.Producer({"bootstrap.servers": "file:log"})    # a directory still works
        p.produce("t", b"v"); p.flush(); p.close()
        print("entries:", sorted(os.listdir(".")))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    errors = [line for line in lines if line.startswith("ImportError:")]
    assert len(errors) == 3
    for line in errors:
        assert "pip install 'embedlog[kafka]'" in line and "broker1:9092,broker2:9092" in line
    assert lines[-1] == "entries: ['log']"
