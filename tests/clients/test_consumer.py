"""Consumer: confluent-kafka's API, offsets, groups within one process."""
import time

import pytest

import embedlog
from embedlog import (OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, Consumer, KafkaError, KafkaException,
                      Producer, TopicPartition)
from embedlog.admin import AdminClient, NewTopic


def produce(conf, topic, values, keys=None, partitions=1, **extra):
    admin = AdminClient(conf)
    if topic not in admin.list_topics().topics:
        admin.create_topics([NewTopic(topic, partitions)])[topic].result()
    admin.close()
    p = Producer({**conf, **extra})
    for i, v in enumerate(values):
        p.produce(topic, value=v, key=None if keys is None else keys[i])
    assert p.flush() == 0
    p.close()


def settle(consumers, done, timeout=10.0):
    """Poll every consumer until done() holds: members learn of a rebalance at their
    next group check (every few ms inside poll), not instantly. Returns the records
    polled on the way."""
    deadline = time.monotonic() + timeout
    polled = []
    while not done():
        assert time.monotonic() < deadline, "the group did not settle"
        for c in consumers:
            m = c.poll(0.01)
            if m is not None and m.error() is None:
                polled.append(m)
    return polled


def drain(c, expect, timeout=10.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m)
    return got


def test_subscribe_poll_commit_and_resume_from_committed(conf):
    values = [b"v%d" % i for i in range(50)]
    produce(conf, "t", values)
    c = Consumer({**conf, "group.id": "g", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["t"])
    got = drain(c, 20)
    assert [m.value() for m in got] == values[:20]
    assert [m.offset() for m in got] == list(range(20))
    assert got[0].topic() == "t" and got[0].partition() == 0 and got[0].error() is None
    assert got[0].timestamp()[0] == embedlog.TIMESTAMP_CREATE_TIME and got[0].headers() is None
    committed = c.commit(message=got[-1], asynchronous=False)
    assert committed[0].offset == 20                      # a committed offset is the next to read
    c.close()
    c2 = Consumer({**conf, "group.id": "g", "auto.offset.reset": "earliest"})
    c2.subscribe(["t"])
    rest = drain(c2, 30)
    assert [m.value() for m in rest] == values[20:]
    assert c2.committed([TopicPartition("t", 0)])[0].offset == 20
    c2.close()                                            # auto-commit on close
    c3 = Consumer({**conf, "group.id": "g"})
    assert c3.committed([TopicPartition("t", 0)])[0].offset == 50
    c3.close()


def test_committed_offsets_are_records_in_consumer_offsets(conf, logdir):
    produce(conf, "t", [b"x"] * 3)
    c = Consumer({**conf, "group.id": "g1"})
    c.commit(offsets=[TopicPartition("t", 0, 2, "meta")], asynchronous=False)
    c.close()
    from embedlog.storage._offsets import decode_key, decode_value
    with embedlog.open(logdir) as log:
        recs = log.partition("__consumer_offsets", 0).read(0)
        assert log.topic("__consumer_offsets").config["cleanup.policy"] == "compact"
    assert decode_key(recs[-1].key) == ("g1", "t", 0)
    offset, meta, ts = decode_value(recs[-1].value)
    assert (offset, meta) == (2, "meta") and ts > 0
    assert recs[-1].key[:2] == b"\x00\x01" and recs[-1].value[:2] == b"\x00\x03"   # Kafka's versions


@pytest.mark.parametrize("reset,expect", [("earliest", 0), ("smallest", 0), ("latest", 10), ("largest", 10)])
def test_auto_offset_reset(conf, reset, expect):
    produce(conf, "t", [b"x"] * 10)
    c = Consumer({**conf, "group.id": "r", "auto.offset.reset": reset})
    c.assign([TopicPartition("t", 0)])
    m = c.poll(0.2)
    if expect == 10:
        assert m is None
        assert c.position([TopicPartition("t", 0)])[0].offset == 10
    else:
        assert m.offset() == 0
    c.close()


def test_auto_offset_reset_error(conf):
    produce(conf, "t", [b"x"] * 3)
    c = Consumer({**conf, "group.id": "e", "auto.offset.reset": "error"})
    c.assign([TopicPartition("t", 0)])
    m = c.poll(1.0)
    assert m is not None and m.error() is not None and m.error().code() == KafkaError._AUTO_OFFSET_RESET
    assert c.poll(0.05) is None                            # nothing fetched until a seek
    c.seek(TopicPartition("t", 0, 1))
    assert c.poll(1.0).offset() == 1
    c.close()


def test_partition_eof_events(conf):
    produce(conf, "t", [b"a", b"b"])
    c = Consumer({**conf, "group.id": "g", "auto.offset.reset": "earliest", "enable.partition.eof": True})
    c.assign([TopicPartition("t", 0)])
    assert [c.poll(1).value() for _ in range(2)] == [b"a", b"b"]
    eof = c.poll(1)
    assert eof.error().code() == KafkaError._PARTITION_EOF and eof.offset() == 2 and eof.partition() == 0
    assert c.poll(0.05) is None                            # reported once
    produce(conf, "t", [b"c"])
    assert c.poll(2).value() == b"c"
    assert c.poll(1).error().code() == KafkaError._PARTITION_EOF
    c.close()


def test_consume_batches_and_seek_pause_resume(conf):
    values = [b"%d" % i for i in range(100)]
    produce(conf, "t", values)
    c = Consumer({**conf, "group.id": "g", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
    msgs = c.consume(num_messages=30, timeout=2)
    assert [m.value() for m in msgs] == values[:30]
    assert c.position([TopicPartition("t", 0)])[0].offset == 30
    c.seek(TopicPartition("t", 0, 90))
    assert [m.offset() for m in c.consume(100, timeout=2)] == list(range(90, 100))
    c.seek(TopicPartition("t", 0, 10))
    c.pause([TopicPartition("t", 0)])
    assert c.poll(0.1) is None
    c.resume([TopicPartition("t", 0)])
    assert c.poll(1).offset() == 10
    c.seek(TopicPartition("t", 0, OFFSET_END))
    assert c.poll(0.05) is None
    with pytest.raises(KafkaException):
        c.seek(TopicPartition("t", 5, 0))                 # not assigned
    with pytest.raises(ValueError):
        c.consume(num_messages=0)
    c.close()


def test_watermarks_and_offsets_for_times(conf):
    admin = AdminClient(conf)
    admin.create_topics([NewTopic("t", 1)])["t"].result()
    p = Producer(conf)
    base = 1_700_000_000_000
    for i in range(20):
        p.produce("t", value=b"%d" % i, timestamp=base + 100 * i)
    p.flush()
    c = Consumer({**conf, "group.id": "g"})
    assert c.get_watermark_offsets(TopicPartition("t", 0)) == (0, 20)
    res = c.offsets_for_times([TopicPartition("t", 0, base + 550), TopicPartition("t", 0, base + 10**9)])
    assert res[0].offset == 6 and res[1].offset == OFFSET_END
    md = c.list_topics()
    assert "t" in md.topics and list(md.topics["t"].partitions) == [0]
    c.close()


def test_regex_subscription(conf):
    for name in ("orders.eu", "orders.us", "other"):
        produce(conf, name, [name.encode()])
    c = Consumer({**conf, "group.id": "rx", "auto.offset.reset": "earliest"})
    c.subscribe(["^orders\\..*"])
    got = drain(c, 2)
    assert sorted(m.value() for m in got) == [b"orders.eu", b"orders.us"]
    assert sorted(tp.topic for tp in c.assignment()) == ["orders.eu", "orders.us"]
    c.close()


def test_two_consumers_in_one_process_split_partitions_and_rebalance_on_close(conf):
    produce(conf, "t", [b"%d" % i for i in range(60)], keys=[b"%d" % i for i in range(60)], partitions=6)
    events = {"a": [], "b": []}

    def cbs(name):
        return dict(on_assign=lambda c, ps: events[name].append(("assign", sorted(tp.partition for tp in ps))),
                    on_revoke=lambda c, ps: events[name].append(("revoke", sorted(tp.partition for tp in ps))))
    a = Consumer({**conf, "group.id": "split", "auto.offset.reset": "earliest", "client.id": "a"})
    b = Consumer({**conf, "group.id": "split", "auto.offset.reset": "earliest", "client.id": "b"})
    a.subscribe(["t"], **cbs("a"))
    b.subscribe(["t"], **cbs("b"))
    settle([a, b], lambda: len(a.assignment()) == len(b.assignment()) == 3)
    pa = {tp.partition for tp in a.assignment()}
    pb = {tp.partition for tp in b.assignment()}
    assert pa | pb == set(range(6)) and not pa & pb and len(pa) == len(pb) == 3
    assert pa in ({0, 1, 2}, {3, 4, 5})                   # range: contiguous halves
    b.close()
    deadline = time.monotonic() + 10
    while {tp.partition for tp in a.assignment()} != set(range(6)) and time.monotonic() < deadline:
        a.poll(0.05)
    assert {tp.partition for tp in a.assignment()} == set(range(6))
    assert events["a"][-1] == ("assign", list(range(6)))
    assert ("revoke", sorted(pa)) in events["a"]
    a.close()


def test_roundrobin_assignor(conf):
    produce(conf, "t", [b"x"], partitions=4)
    cs = [Consumer({**conf, "group.id": "rr", "partition.assignment.strategy": "roundrobin"}) for _ in range(2)]
    for c in cs:
        c.subscribe(["t"])
    settle(cs, lambda: all(len(c.assignment()) == 2 for c in cs))
    parts = sorted(sorted(tp.partition for tp in c.assignment()) for c in cs)
    assert parts == [[0, 2], [1, 3]]
    for c in cs:
        c.close()


def test_commit_while_a_rebalance_is_prepared_is_accepted_and_a_stale_one_rejected(conf):
    produce(conf, "t", [b"x"] * 10, partitions=2)
    a = Consumer({**conf, "group.id": "fence", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    a.subscribe(["t"])
    a.poll(0.2)
    assert len(a.assignment()) == 2
    b = Consumer({**conf, "group.id": "fence", "enable.auto.commit": False})
    b.subscribe(["t"])                   # a new generation; `a` has not noticed yet
    assert b.assignment() == []          # what moves to b waits for a's revocation (#20)
    # a still holds both partitions: its commit is accepted, as Kafka's coordinator accepts
    # one while the rebalance is being prepared
    a.commit(offsets=[TopicPartition("t", 0, 5), TopicPartition("t", 1, 5)], asynchronous=False)
    assert [tp.offset for tp in b.committed([TopicPartition("t", 0), TopicPartition("t", 1)])] == [5, 5]
    settle([a, b], lambda: len(a.assignment()) == len(b.assignment()) == 1)   # one partition each
    mine = a.assignment()[0]
    assert len(a.assignment()) == 1
    a.commit(offsets=[TopicPartition(mine.topic, mine.partition, 3)], asynchronous=False)
    other = 1 - mine.partition
    with pytest.raises(KafkaException):  # b's now: rejected, b's offset untouched
        a.commit(offsets=[TopicPartition("t", other, 3)], asynchronous=False)
    assert b.committed([TopicPartition("t", other)])[0].offset == 5
    a.close()
    b.close()


def test_async_commit_reports_through_on_commit(conf):
    produce(conf, "t", [b"x"] * 5)
    results = []
    c = Consumer({**conf, "group.id": "oc", "auto.offset.reset": "earliest",
                  "on_commit": lambda err, parts: results.append((err, [(p.topic, p.offset) for p in parts]))})
    c.subscribe(["t"])
    m = drain(c, 5)[-1]
    assert c.commit(message=m) is None
    c.poll(0.01)
    time.sleep(0.01)
    c.poll(0.01)
    assert (None, [("t", 5)]) in results
    c.close()


def test_auto_commit_interval(conf):
    produce(conf, "t", [b"x"] * 5)
    c = Consumer({**conf, "group.id": "ac", "auto.offset.reset": "earliest", "auto.commit.interval.ms": 50})
    c.subscribe(["t"])
    drain(c, 5)
    deadline = time.monotonic() + 5
    while c.committed([TopicPartition("t", 0)])[0].offset != 5 and time.monotonic() < deadline:
        c.poll(0.06)
    assert c.committed([TopicPartition("t", 0)])[0].offset == 5
    c.close()


def test_lag(conf, logdir):
    produce(conf, "t", [b"x"] * 10, partitions=2, keys=[b"%d" % i for i in range(10)])
    c = Consumer({**conf, "group.id": "lag", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition("t", 0), TopicPartition("t", 1)])
    c.commit(offsets=[TopicPartition("t", 0, 1)], asynchronous=False)
    rows = c.lag()
    ends = {tp.partition: end for tp, end, _lag in rows}
    assert ends[0] >= 1 and ends[1] >= 1 and ends[0] + ends[1] == 10
    assert rows[0][2] == ends[0] - 1
    assert rows[1][0].offset == OFFSET_INVALID and rows[1][2] == ends[1]
    c.close()
    with embedlog.open(logdir) as log:
        table = log.consumer_lag("lag")
    assert [(r["partition"], r["committed"], r["lag"]) for r in table] == \
        [(0, 1, ends[0] - 1), (1, None, ends[1])]


def test_bad_input(conf):
    with pytest.raises(embedlog.ConfigError, match="did you mean 'group.id'"):
        Consumer({**conf, "group.idd": "x"})
    with pytest.raises(embedlog.ConfigError, match="auto.offset.reset"):
        Consumer({**conf, "auto.offset.reset": "middle"})
    c = Consumer(conf)                                    # no group.id: assign() only
    with pytest.raises(KafkaException, match="group.id"):
        c.subscribe(["t"])
    with pytest.raises(KafkaException):
        c.assign([TopicPartition("missing", 0)])
    c2 = Consumer({**conf, "group.id": "g"})
    with pytest.raises(KafkaException):
        c2.commit(offsets=[TopicPartition("t", 0, -5)], asynchronous=False)
    c.close()
    c2.close()
    with pytest.raises(RuntimeError):
        c.poll(0)
    with pytest.raises(TypeError):
        TopicPartition(5, 0)


def test_a_consumer_of_several_partitions_sleeps_until_an_append(conf, logdir, monkeypatch):
    """With several partitions the consumer sleeps on the directory's futex word (bumped
    by every append) instead of polling each partition every few milliseconds."""
    import threading
    from embedlog.storage._partition import Partition
    produce(conf, "t", [b"x"], partitions=3, partitioner="random")
    c = Consumer({**conf, "group.id": "w", "auto.offset.reset": "latest", "enable.auto.commit": False})
    c.assign([TopicPartition("t", p) for p in range(3)])
    assert c.poll(0.05) is None                         # positions resolved, nothing new
    checks = []
    real = Partition.high_watermark.fget
    monkeypatch.setattr(Partition, "high_watermark", property(lambda self: checks.append(1) or real(self)))

    def later():
        time.sleep(0.3)
        with embedlog.open(logdir) as log:              # another handle, as another process would
            log.partition("t", 2).append_records([b"wake"])
    threading.Thread(target=later).start()
    m = c.poll(30)
    assert m is not None and m.value() == b"wake" and m.partition() == 2
    assert len(checks) < 40, f"{len(checks)} watermark checks while waiting: polling, not sleeping"
    c.close()


def test_cooperative_sticky_moves_only_what_it_must(conf):
    produce(conf, "t", [b"%d" % i for i in range(60)], keys=[b"%d" % i for i in range(60)], partitions=6)
    events = {"a": [], "b": []}

    def cbs(name):
        return dict(on_assign=lambda c, ps: events[name].append(("assign", sorted(tp.partition for tp in ps))),
                    on_revoke=lambda c, ps: events[name].append(("revoke", sorted(tp.partition for tp in ps))))
    strategy = {"partition.assignment.strategy": "cooperative-sticky", "auto.offset.reset": "earliest"}
    a = Consumer({**conf, "group.id": "coop", "client.id": "a", **strategy})
    a.subscribe(["t"], **cbs("a"))
    settle([a], lambda: len(a.assignment()) == 6)
    got_a = drain(a, 10)                                      # a is part-way through its partitions
    b = Consumer({**conf, "group.id": "coop", "client.id": "b", **strategy})
    b.subscribe(["t"], **cbs("b"))
    got_a += settle([a, b], lambda: len(a.assignment()) == 3 and len(b.assignment()) == 3)
    kept = sorted(tp.partition for tp in a.assignment())
    moved = sorted(set(range(6)) - set(kept))
    assert events["a"] == [("assign", list(range(6))), ("revoke", moved)]   # only the moved ones
    assert events["b"] == [("assign", moved)]
    # Together they still read every record exactly once from where a had committed/stopped.
    rest = drain(a, 1000, timeout=1.0) + drain(b, 1000, timeout=1.0)
    seen = [(m.partition(), m.offset()) for m in got_a + rest]
    assert len(seen) == len(set(seen)) == 60
    a.close()
    b.close()
