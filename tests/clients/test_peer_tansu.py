"""Smoke test of the real-peer infrastructure: confluent-kafka (librdkafka) against the Tansu
broker (tests/peers.py). If this fails, the peer setup is broken, not embedlog: every wire
test that compares embedlog serve with a real broker starts from here."""
import time
import uuid

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

N = 1000
PARTITIONS = 3


def _create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10).values():
        fut.result(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:             # metadata shows every partition
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} never showed {partitions} partitions")


def test_idempotent_lz4_produce_then_group_consume_with_commits(tansu_broker):
    bs = tansu_broker.bootstrap
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    _create_topic(bs, topic, PARTITIONS)

    # produce: idempotent (acks=all implied), lz4 batches, keyed across the partitions
    delivered, errors = {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[msg.value()] = (msg.partition(), msg.offset())

    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "compression.type": "lz4",
                  "linger.ms": 5})
    values = [b"v-%04d" % i for i in range(N)]
    for i, v in enumerate(values):
        p.produce(topic, value=v, key=b"k-%d" % (i % 17), on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(15) == 0
    assert not errors, errors[:5]
    assert sorted(delivered) == values
    ends = {}
    for part, off in delivered.values():
        ends[part] = max(ends.get(part, -1), off + 1)
    assert len(ends) == PARTITIONS, ends           # keys spread over every partition

    # consume in a group, committing synchronously after each message batch
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    c.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 20
    try:
        while len(seen) < N and time.monotonic() < deadline:
            msgs = c.consume(num_messages=500, timeout=1.0)
            good = []
            for m in msgs:
                if m.error() is not None:
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    continue
                good.append(m)
            if good:
                seen.extend(m.value() for m in good)
                c.commit(asynchronous=False)
        assert len(seen) == N, f"consumed {len(seen)} of {N} within the deadline"
        assert sorted(seen) == values                   # every value, exactly once
        committed = c.committed([TopicPartition(topic, part) for part in range(PARTITIONS)], timeout=10)
    finally:
        c.close()
    got = {tp.partition: tp.offset for tp in committed}
    assert got == ends, (got, ends)

    # a fresh member of the group resumes from the commits: nothing more to read
    c2 = Consumer({"bootstrap.servers": bs, "group.id": group, "auto.offset.reset": "earliest",
                   "enable.auto.commit": False})
    try:
        again = c2.committed([TopicPartition(topic, part) for part in range(PARTITIONS)], timeout=10)
        assert {tp.partition: tp.offset for tp in again} == ends
    finally:
        c2.close()
