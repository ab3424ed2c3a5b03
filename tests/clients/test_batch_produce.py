"""Producer.produce_batch(): the same records as produce() one by one, one report per call,
and bad input that writes nothing (issue #17)."""
import os
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch

import embedlog
from embedlog import OFFSET_INVALID, KafkaError, KafkaException, Producer
from embedlog.admin import AdminClient, NewTopic


def make_topic(conf, name, partitions, config=None):
    a = AdminClient(conf)
    a.create_topics([NewTopic(name, partitions, config=config or {})])[name].result()
    a.close()


def read_all(logdir, topic):
    """{partition: [(offset, timestamp, key, value, headers)]}"""
    with embedlog.open(logdir) as log:
        t = log.topic(topic)
        return {p: [tuple(r) for r in t.partition(p).read(0, max_bytes=1 << 30)]
                for p in range(t.num_partitions)}


records = st.lists(st.tuples(
    st.binary(min_size=1, max_size=12),                        # key (murmur2 decides the partition)
    st.one_of(st.none(), st.binary(max_size=300)),             # value, tombstones included
    st.integers(1, 2**41),                                      # CreateTime
    st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=8))),
                                  max_size=3))), min_size=1, max_size=60)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=records, codec=st.sampled_from(["none", "lz4", "zstd"]), parts=st.integers(1, 3),
       explicit=st.booleans(), small=st.booleans())
def test_produce_batch_writes_what_produce_one_by_one_writes(tmp_path_factory, recs, codec, parts, explicit, small):
    """small: batches of at most ~900 bytes, so a call is cut into many (its columns are
    joined and encoded batch by batch, at offsets into the whole call's lengths)."""
    base = tmp_path_factory.mktemp("eq")
    out = []
    for how in ("one", "batch"):
        logdir = str(base / how)
        conf = {"bootstrap.servers": f"file://{logdir}"}
        make_topic(conf, "t", parts, {"max.message.bytes": "1000"} if small else None)
        p = Producer({**conf, "compression.type": codec, "linger.ms": 0})
        keys = [r[0] for r in recs]
        values = [r[1] for r in recs]
        stamps = [r[2] for r in recs]
        hdrs = [r[3] for r in recs]
        part = parts - 1 if explicit else None
        if how == "one":
            for k, v, ts, h in recs:
                p.produce("t", v, k, timestamp=ts, headers=h, **({"partition": part} if explicit else {}))
        else:
            assert p.produce_batch("t", values, keys=keys, partition=part, headers=hdrs, timestamps=stamps) == len(recs)
        assert p.flush(10) == 0
        p.close()
        out.append(read_all(logdir, "t"))
    assert out[0] == out[1]
    assert sum(map(len, out[1].values())) == len(recs)


def test_one_report_per_call_with_offsets_in_input_order(conf, logdir):
    make_topic(conf, "t", 4)
    p = Producer({**conf, "acks": "all", "enable.idempotence": True})
    p.produce("t", b"first", b"k-0")                          # queued: goes before the batch
    reports = []
    keys = [b"k-%d" % i for i in range(500)]
    values = [b"v%d" % i for i in range(500)]
    p.produce_batch("t", values, keys=keys, on_delivery=lambda err, r: reports.append((err, r)))
    assert p.flush(10) == 0
    assert len(reports) == 1
    err, r = reports[0]
    assert err is None and r.error() is None and len(r) == 500 and r.topic() == "t"
    offsets, partitions = r.offsets(), r.partitions()
    assert sorted(p for p, _b, _l in r.batches()) == sorted(set(partitions))
    with embedlog.open(logdir) as log:
        for i in range(500):
            rec = log.partition("t", partitions[i]).read(offsets[i], max_records=1)[0]
            assert (rec.offset, rec.key, rec.value) == (offsets[i], keys[i], values[i])
        # the record produce() queued first is before the batch's records of its partition
        first = log.partition("t", partitions[0]).read(0, max_records=1)[0]
        assert first.value == b"first"
    p.close()


def test_kafka_python_decodes_what_produce_batch_wrote(conf, logdir):
    make_topic(conf, "t", 1)
    p = Producer({**conf, "compression.type": "gzip"})
    values = [os.urandom(50) for _ in range(3000)]
    p.produce_batch("t", values, keys=[b"%d" % i for i in range(3000)], headers=[[("n", b"%d" % i)] for i in range(3000)])
    p.close()
    seen = []
    for seg in sorted(f for f in os.listdir(os.path.join(logdir, "t-0")) if f.endswith(".log")):
        with open(os.path.join(logdir, "t-0", seg), "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            size = int.from_bytes(data[pos + 8:pos + 12], "big") + 12
            batch = DefaultRecordBatch(data[pos:pos + size])
            assert batch.validate_crc()
            seen.extend((r.offset, r.key, r.value, r.headers) for r in batch)
            pos += size
    assert seen == [(i, b"%d" % i, values[i], [("n", b"%d" % i)]) for i in range(3000)]


def test_every_kind_of_item_in_split_batches_reads_back(conf, logdir):
    """str, bytearray, a memoryview of 4-byte items (len() counts 4 items in 16 bytes), None
    keys and values, over batches cut at 2,000 bytes, with timestamps and headers."""
    make_topic(conf, "t", 1, {"max.message.bytes": "2000"})
    p = Producer(conf)
    n = 400
    kinds = [lambda i: b"b%d" % i, lambda i: "s%d" % i, lambda i: bytearray(b"ba%d" % i),
             lambda i: memoryview(array("i", [i, i + 1, i + 2, i + 3])), lambda i: None]
    values = [kinds[i % 5](i) for i in range(n)]
    keys = [kinds[(i // 5) % 5](i) for i in range(n)]
    stamps = [1_000_000 + (i * 7919) % 1000 for i in range(n)]
    hdrs = [[("h", b"%d" % i)] if i % 3 else None for i in range(n)]
    reports = []
    p.produce_batch("t", values, keys=keys, timestamps=stamps, headers=hdrs, on_delivery=lambda e, r: reports.append(r))
    assert p.flush(10) == 0
    p.close()
    assert len(reports[0].batches()) > 5 and reports[0].error() is None

    def as_stored(x):
        return x.encode() if isinstance(x, str) else None if x is None else bytes(x)
    got = read_all(logdir, "t")[0]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in got] == [
        (i, stamps[i], as_stored(keys[i]), as_stored(values[i]), (("h", b"%d" % i),) if i % 3 else ())
        for i in range(n)]


def test_header_bytes_count_toward_message_max_bytes(conf, logdir):
    """The record's encoded header section (2,007 bytes here) counts, as librdkafka counts
    the serialized headers."""
    make_topic(conf, "t", 1)
    p = Producer({**conf, "message.max.bytes": 5000})
    with pytest.raises(KafkaException) as e:
        p.produce_batch("t", [b"v" * 10, b"v" * 4000], headers=[None, [("big", b"x" * 2000)]])
    assert "record 1 of 6007 bytes exceeds message.max.bytes=5000" in str(e.value)
    p.close()
    assert read_all(logdir, "t") == {0: []}


def test_large_batch_is_split_under_the_size_limit(conf, logdir):
    make_topic(conf, "t", 1, {"max.message.bytes": "20000"})
    p = Producer(conf)
    values = [os.urandom(100) for _ in range(2000)]
    reports = []
    p.produce_batch("t", values, partition=0, on_delivery=lambda e, r: reports.append(r))
    p.flush(10)
    assert len(reports[0].batches()) > 10
    assert reports[0].offsets() == list(range(2000))
    assert [r[3] for r in read_all(logdir, "t")[0]] == values
    p.close()


@pytest.mark.parametrize("kwargs, error, words", [
    ({"values": b"abc"}, TypeError, "values must be a sequence"),
    ({"values": [b"a", 7]}, TypeError, "record 301: value"),
    ({"values": [b"a"], "keys": [b"a", b"b"]}, ValueError, "302 keys for 301 values"),
    ({"values": [b"a"], "partition": 9}, KafkaException, "not 9"),
    ({"values": [b"a"], "partition": "0"}, TypeError, "partition must be an int"),
    ({"values": [b"a", b"b"], "timestamps": [1, -1]}, TypeError, "record 301: timestamp"),
    ({"values": [b"a"], "headers": [7]}, TypeError, "record 300: headers"),
    ({"values": [b"a"], "headers": [[("k", 5)]]}, TypeError, "value must be bytes"),
    ({"values": [b"a", b"x" * 1_100_000]}, KafkaException, "record 301 of 1100003 bytes"),
])
def test_bad_input_raises_and_writes_nothing(conf, logdir, kwargs, error, words):
    make_topic(conf, "t", 3)
    p = Producer(conf)
    # the bad record comes after many good ones, keyed over every partition
    good = 300
    kw = dict(kwargs)
    bad_values = kw.pop("values")
    values = [b"ok"] * good + list(bad_values) if isinstance(bad_values, list) else bad_values
    for name in ("keys", "timestamps", "headers"):
        if name in kw:
            fill = {"keys": b"k", "timestamps": 1, "headers": None}[name]
            kw[name] = [fill] * good + kw[name]
    if "keys" not in kw and "partition" not in kw and isinstance(values, list):
        kw["keys"] = [b"%d" % i for i in range(len(values))]
    with pytest.raises(error) as e:
        p.produce_batch("t", values, **kw)
    assert words in str(e.value)
    p.close()
    assert read_all(logdir, "t") == {0: [], 1: [], 2: []}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_failed_append_is_reported_once(conf, logdir):
    make_topic(conf, "t", 1, {"min.insync.replicas": "2"})
    p = Producer({**conf, "acks": "all", "retries": 0})
    reports = []
    p.produce_batch("t", [b"a", b"b"], on_delivery=lambda e, r: reports.append((e, r)))
    p.flush(10)
    (err, r), = reports
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS and r.error() is err
    assert r.offsets() == [OFFSET_INVALID, OFFSET_INVALID]
    with pytest.raises(KafkaException):
        p.produce_batch("t", [b"a"])                 # no callback: raised
    p.close()
    assert read_all(logdir, "t") == {0: []}
