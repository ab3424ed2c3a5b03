"""Producer: confluent-kafka's API and Kafka's delivery semantics, on real files."""
import json
import threading

import pytest
from kafka.record.default_records import DefaultRecordBatch

import embedlog
from embedlog import KafkaError, KafkaException, Producer
from embedlog.storage import _failpoints


def read_all(logdir, topic, partition=0):
    with embedlog.open(logdir) as log:
        p = log.partition(topic, partition)
        return p.read(0, max_bytes=1 << 30)


def test_the_issue_program_runs_unchanged(tmp_path):
    """The program from issue #3, with only the import and bootstrap.servers changed."""
    orders = [{"customer_id": f"c{i % 13}", "amount": i} for i in range(3000)]
    failures = []
    delivered = []
    producer = Producer({
        'bootstrap.servers': f'file://{tmp_path}/orders-log',
        'acks': 'all',
        'enable.idempotence': True,
        'retries': 10,
        'max.in.flight.requests.per.connection': 5,
        'compression.type': 'lz4',
        'linger.ms': 5,
        'batch.size': 65536,
    })

    def delivery_callback(err, msg):
        if err:
            failures.append(err)
        delivered.append((msg.key(), msg.offset(), msg.partition()))
    for order in orders:
        producer.produce(topic='orders', key=order['customer_id'].encode(),
                         value=json.dumps(order).encode(), callback=delivery_callback)
        producer.poll(0)
    assert producer.flush() == 0
    assert failures == [] and len(delivered) == 3000
    assert len(producer) == 0
    records = read_all(str(tmp_path / "orders-log"), "orders")
    assert [json.loads(r.value) for r in records] == orders          # produce order kept
    assert sorted(o for _k, o, _p in delivered) == list(range(3000))  # offsets reported
    raw = embedlog.open(str(tmp_path / "orders-log")).partition("orders", 0).read_raw(0)
    h = embedlog.parse_header(raw)
    assert h.compression == 3 and h.producer_id >= 0 and h.base_sequence == 0


def test_delivery_reports_carry_offsets_and_fields(conf, logdir):
    p = Producer(conf)
    seen = []
    p.produce("t", value=b"v0", key=b"k", headers=[("h", b"1")], timestamp=1234,
              on_delivery=lambda e, m: seen.append((e, m.topic(), m.partition(), m.offset(), m.key(),
                                                    m.value(), m.headers(), m.timestamp())))
    p.produce("t", "text value", "text key", callback=lambda e, m: seen.append((e, m.offset(), m.value())))
    assert len(p) == 2
    assert p.flush() == 0
    assert seen[0] == (None, "t", 0, 0, b"k", b"v0", [("h", b"1")], (embedlog.TIMESTAMP_CREATE_TIME, 1234))
    assert seen[1] == (None, 1, b"text value")
    recs = read_all(logdir, "t")
    assert recs[0].headers == (("h", b"1"),) and recs[0].timestamp == 1234
    assert recs[1].key == b"text key"


def test_keyed_records_land_where_kafkas_java_client_puts_them(conf, logdir, vectors):
    admin = embedlog.AdminClient(conf)
    admin.create_topics([embedlog.NewTopic("k", 12)])["k"].result()
    p = Producer(conf)
    wanted = {}
    for v in vectors["partition_for_key"]:
        if v["num_partitions"] == 12:
            key = bytes.fromhex(v["key_hex"])
            wanted[key] = v["partition"]
            p.produce("k", value=b"x", key=key)
    assert len(wanted) >= 3
    p.flush()
    with embedlog.open(logdir) as log:
        for part in range(12):
            for r in log.partition("k", part).read(0):
                assert wanted[r.key] == part


def test_explicit_partition_wins_and_null_keys_stick_per_batch(conf, logdir):
    admin = embedlog.AdminClient(conf)
    admin.create_topics([embedlog.NewTopic("e", 4)])["e"].result()
    p = Producer({**conf, "linger.ms": 10000})
    for i in range(10):
        p.produce("e", value=b"n%d" % i)
    p.produce("e", value=b"explicit", key=b"whatever", partition=3)
    p.flush()
    with embedlog.open(logdir) as log:
        counts = [log.partition("e", i).log_end_offset for i in range(4)]
        assert [r.value for r in log.partition("e", 3).read(0)][-1] == b"explicit"
    assert sorted(counts)[-1] >= 10                    # the ten null-key records share a partition


def test_flush_honours_linger_and_batch_size(conf, logdir):
    p = Producer({**conf, "linger.ms": 60000, "batch.num.messages": 100})
    for i in range(250):
        p.produce("t", value=b"%d" % i)
    with embedlog.open(logdir) as log:
        # two full batches went out at once; the rest waits for linger or flush
        assert log.partition("t", 0).log_end_offset == 200
    assert p.flush() == 0
    assert len(read_all(logdir, "t")) == 250


def test_linger_sends_without_flush(conf, logdir):
    p = Producer({**conf, "linger.ms": 20})
    p.produce("t", value=b"x")
    with embedlog.open(logdir) as log:
        assert log.partition("t", 0).wait(0, timeout=10)
    p.close()


def test_buffer_error_when_the_local_queue_is_full(conf):
    p = Producer({**conf, "queue.buffering.max.messages": 10, "linger.ms": 60000})
    cb = lambda e, m: None  # noqa: E731  (reports pending until poll() serves them)
    for i in range(10):
        p.produce("t", value=b"x", on_delivery=cb)
    with pytest.raises(BufferError):
        p.produce("t", value=b"x", on_delivery=cb)
    assert p.flush() == 0                  # serves the reports and frees the queue
    served = []
    p.produce("t", value=b"x", on_delivery=lambda e, m: served.append(m.offset()))
    assert len(p) == 1
    assert p.flush() == 0 and served == [10] and len(p) == 0


def test_acks_levels(conf, logdir):
    for acks, expect_durable in (("0", False), ("1", False), ("all", True)):
        topic = f"acks{acks}"
        offsets = []
        p = Producer({**conf, "acks": acks})
        p.produce(topic, value=b"v", on_delivery=lambda e, m: offsets.append((e, m.offset())))
        p.flush()
        assert offsets[0][0] is None
        assert offsets[0][1] == (embedlog.OFFSET_INVALID if acks == "0" else 0)
        with embedlog.open(logdir) as log:
            part = log.partition(topic, 0)
            assert part.log_end_offset == 1
            if expect_durable:
                assert part.flushed_offset >= 1


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_codec_round_trips_and_kafka_python_reads_it(conf, logdir, codec):
    p = Producer({**conf, "compression.type": codec})
    values = [json.dumps({"i": i, "pad": "abc" * 30}).encode() for i in range(200)]
    for v in values:
        p.produce("c", value=v, key=b"k")
    p.flush()
    with embedlog.open(logdir) as log:
        part = log.partition("c", 0)
        assert [r.value for r in part.read(0, max_bytes=1 << 30)] == values
        raw = part.read_raw(0, 1 << 30)
    ids = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
    pos, got = 0, []
    while pos < len(raw):
        b = DefaultRecordBatch(bytearray(raw[pos:]))
        assert b.validate_crc() and b.compression_type == ids[codec]
        got += [r.value for r in b]
        pos += b.size_in_bytes
    assert got == values


def test_topic_compression_overrides_the_producer(conf, logdir):
    admin = embedlog.AdminClient(conf)
    admin.create_topics([embedlog.NewTopic("z", 1, config={"compression.type": "gzip"})])["z"].result()
    p = Producer({**conf, "compression.type": "lz4"})
    p.produce("z", value=b"a" * 1000)
    p.flush()
    with embedlog.open(logdir) as log:
        assert embedlog.parse_header(log.partition("z", 0).read_raw(0)).compression == 1


def test_idempotent_retry_is_stored_once(conf, logdir):
    """Force a retry: the first append lands, then fails as if its acknowledgement was
    lost; the producer retries the same batch (same producer id and sequence)."""
    p = Producer({**conf, "enable.idempotence": True, "retries": 3})
    p.produce("i", value=b"warmup")
    p.flush()
    _failpoints.arm("partition.after_publish", embedlog.LockTimeoutError("injected: ack lost"), times=1)
    try:
        reports = []
        for i in range(5):
            p.produce("i", value=b"r%d" % i, on_delivery=lambda e, m: reports.append((e, m.offset())))
        assert p.flush() == 0
    finally:
        _failpoints.disarm()
    assert [e for e, _o in reports] == [None] * 5
    assert [o for _e, o in reports] == [1, 2, 3, 4, 5]
    assert [r.value for r in read_all(logdir, "i")] == [b"warmup"] + [b"r%d" % i for i in range(5)]


def test_without_idempotence_a_retry_duplicates(conf, logdir):
    """The counterpart that proves the test above can fail: Kafka semantics without
    idempotence are at-least-once."""
    p = Producer({**conf, "retries": 3, "acks": 1})
    _failpoints.arm("partition.after_publish", embedlog.LockTimeoutError("injected: ack lost"), times=1)
    try:
        p.produce("d", value=b"once")
        p.flush()
    finally:
        _failpoints.disarm()
    assert [r.value for r in read_all(logdir, "d")] == [b"once", b"once"]


def test_sequence_errors_from_the_partition(tmp_path):
    with embedlog.open(tmp_path / "log") as log:
        part = log.create_topic("s").partition(0)
        mk = lambda seq, epoch=0: embedlog.build_batch([b"a", b"b"], producer_id=9, producer_epoch=epoch,  # noqa
                                                       base_sequence=seq)
        assert part.append(mk(0)).base_offset == 0
        assert part.append(mk(0)).base_offset == 0         # duplicate: stored offsets, not stored twice
        with pytest.raises(embedlog.EmbedlogError, match="expected 2"):
            part.append(mk(5))
        part.append(mk(2))
        with pytest.raises(embedlog.EmbedlogError, match="must start at sequence 0"):
            part.append(embedlog.build_batch([b"x"], producer_id=9, producer_epoch=1, base_sequence=3))
        part.append(embedlog.build_batch([b"x"], producer_id=9, producer_epoch=1, base_sequence=0))
        with pytest.raises(embedlog.EmbedlogError, match="older"):
            part.append(mk(4))
        assert part.log_end_offset == 5


def test_a_producer_shared_by_threads(conf, logdir):
    p = Producer(conf)
    errors = []

    def work(k):
        for i in range(500):
            p.produce("th", value=b"%d-%d" % (k, i), on_delivery=lambda e, m: e and errors.append(e))
            if i % 50 == 0:
                p.poll(0)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.flush() == 0 and errors == []
    vals = [r.value for r in read_all(logdir, "th")]
    assert len(vals) == 2000
    for k in range(4):
        mine = [v for v in vals if v.startswith(b"%d-" % k)]
        assert mine == [b"%d-%d" % (k, i) for i in range(500)]


@pytest.mark.parametrize("conf_extra,match", [
    ({"lingr.ms": 5}, "did you mean 'linger.ms'"),
    ({"acks": "most"}, "acks must be"),
    ({"linger.ms": "soon"}, "linger.ms"),
    ({"enable.idempotence": True, "acks": 1}, "acks=all"),
    ({"transactional.id": "t", "enable.idempotence": False}, "needs enable.idempotence"),
    ({"compression.type": "brotli"}, "compression.type"),
])
def test_bad_config(conf, conf_extra, match):
    with pytest.raises(embedlog.ConfigError, match=match):
        Producer({**conf, **conf_extra})


def test_missing_directory_setting():
    with pytest.raises(embedlog.ConfigError, match="bootstrap.servers"):
        Producer({"acks": 1})


def test_bad_produce_arguments(conf):
    p = Producer({**conf, "message.max.bytes": 1000})
    with pytest.raises(TypeError, match="value must be bytes"):
        p.produce("t", value=123)
    with pytest.raises(TypeError, match="key must be bytes"):
        p.produce("t", value=b"v", key=4.5)
    with pytest.raises(KafkaException) as e:
        p.produce("t", value=b"x" * 2000)
    assert e.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    with pytest.raises(KafkaException) as e:
        p.produce("t", value=b"x", partition=7)
    assert e.value.args[0].code() == KafkaError._UNKNOWN_PARTITION
    with pytest.raises(KafkaException) as e:
        p.produce("../etc", value=b"x")
    assert e.value.args[0].code() == KafkaError._UNKNOWN_TOPIC
    assert p.flush() == 0


def test_unknown_topic_without_auto_create(conf):
    p = Producer({**conf, "allow.auto.create.topics": False})
    with pytest.raises(KafkaException) as e:
        p.produce("nope", value=b"x")
    assert e.value.args[0].code() == KafkaError._UNKNOWN_TOPIC and "nope" in str(e.value.args[0])


def test_oversized_for_the_topic_is_reported_per_message(conf, logdir):
    admin = embedlog.AdminClient(conf)
    admin.create_topics([embedlog.NewTopic("small", 1, config={"max.message.bytes": 300})])["small"].result()
    p = Producer(conf)
    reports = []
    p.produce("small", value=b"x" * 400, on_delivery=lambda e, m: reports.append(e))
    p.produce("small", value=b"ok", on_delivery=lambda e, m: reports.append(e))
    p.flush()
    assert reports[0] is not None and reports[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert reports[1] is None
    assert [r.value for r in read_all(logdir, "small")] == [b"ok"]


def test_use_after_close(conf):
    p = Producer(conf)
    p.produce("t", value=b"x")
    assert p.close() == 0
    with pytest.raises(RuntimeError):
        p.produce("t", value=b"x")


def test_a_full_chunk_is_one_batch_not_one_plus_a_straggler(conf, logdir):
    """Regression: the send trigger (batch.size) sat above the largest batch, so every
    full chunk was split into a big batch and a one-record batch (and two fsyncs)."""
    p = Producer({**conf, "linger.ms": 60000})
    for i in range(20000):
        p.produce("b", value=b"v" * 100, key=b"k%014d" % i)
    assert p.flush() == 0
    with embedlog.open(logdir) as log:
        raw = log.partition("b", 0).read_raw(0, 1 << 30)
    counts, pos = [], 0
    while pos < len(raw):
        h = embedlog.parse_header(raw, pos)
        counts.append(h.records_count)
        pos += h.size
    assert sum(counts) == 20000
    assert min(counts[:-1]) > 1000, counts


def test_malformed_headers_are_a_clear_error(conf):
    p = Producer(conf)
    with pytest.raises(TypeError, match="headers must be"):
        p.produce("t", value=b"x", headers=[("only-a-key",)])
    with pytest.raises(TypeError, match="headers must be"):
        p.produce("t", value=b"x", headers="k=v")
    assert p.flush() == 0
