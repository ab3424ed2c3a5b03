"""Bad input table (issue #8): invalid topic names, offsets, oversized records, wrong
types, absurd configs, and directories written by a newer format version. Each must
raise a clear, typed error that names the problem, and write nothing: the whole
directory tree (every path, size and byte, the memory-mapped state files included) is
the same before and after.

Accepted error types: embedlog's own errors (EmbedlogError subclasses, several of them
also ValueError), confluent-kafka's KafkaException from the client classes, and
TypeError / ValueError for arguments of the wrong type or value, with a message that
names the argument. Never an IndexError, KeyError, struct.error, OverflowError,
AttributeError or UnicodeError from deep inside.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

import pytest

import embedlog
from embedlog import (ConfigError, CorruptRecordError, EmbedlogError, FormatVersionError, InvalidPartitionsError,
                      InvalidTopicError, KafkaException, OffsetOutOfRangeError, RecordTooLargeError,
                      TopicPartition)
from embedlog.storage._records import build_batch

T0 = 1_700_000_000_000


def snapshot(root) -> dict:
    """Every folder, and every file with its size and SHA-256, under `root` (symlinks by
    target): compare two of them to know that nothing was written."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = "-> " + os.readlink(full)
                continue
            with open(full, "rb") as fh:
                data = fh.read()
            out[rel] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def diff(before: dict, after: dict) -> list[str]:
    return sorted([f"+{k}" for k in after.keys() - before.keys()] + [f"-{k}" for k in before.keys() - after.keys()]
                  + [f"~{k}" for k in before.keys() & after.keys() if before[k] != after[k]])


def test_snapshot_sees_every_kind_of_write(tmp_path):
    """The helper itself: a new file, a removed one, one changed in place without a size
    change, a new empty folder and a byte written through an mmap are all seen."""
    import mmap
    (tmp_path / "a").write_bytes(b"12345")
    (tmp_path / "m").write_bytes(bytes(16))
    s0 = snapshot(tmp_path)
    assert diff(s0, snapshot(tmp_path)) == []
    (tmp_path / "a").write_bytes(b"12346")
    (tmp_path / "b").write_bytes(b"")
    (tmp_path / "d").mkdir()
    with open(tmp_path / "m", "r+b") as f:
        mm = mmap.mmap(f.fileno(), 16)
        mm[3] = 1
        mm.close()
    assert diff(s0, snapshot(tmp_path)) == ["+b", "+d/", "~a", "~m"]


# ------------------------------------------------------------------ the log the cases run on

@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input") / "log"
    with embedlog.open(root, retention_check_interval_ms=0) as log:
        t = log.create_topic("t", partitions=2, config={"retention.ms": -1, "segment.bytes": 2000})
        for p in (0, 1):
            for b in range(10):
                t.partition(p).append_records([b"v%d-%d" % (b, i) for i in range(5)], [b"k%d" % i for i in range(5)],
                                              timestamps=[T0 + b * 10 + i for i in range(5)])
        log.create_topic("small", config={"max.message.bytes": 1000})
        c = log.create_topic("c", config={"cleanup.policy": "compact", "segment.bytes": 300,
                                          "min.cleanable.dirty.ratio": 0.01})
        for b in range(8):
            c.partition(0).append_records([b"x%d" % b], [b"k%d" % (b % 2)], timestamps=[T0 + b])
        c.partition(0).compact(now=T0 + 10**6)
        from embedlog.storage._offsets import store_for
        store_for(log).commit("g", [("t", 0, 3, "")])
    assert os.path.exists(root / "c-0" / "cleaner.checkpoint")
    return root


@pytest.fixture
def logdir(template, tmp_path):
    d = tmp_path / "log"
    shutil.copytree(template, d, symlinks=True)
    return d


def expect(exc, match, fn, *args, **kwargs):
    """Run fn; it must raise `exc` with a message matching `match`. Returns the exception."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        text = str(e) if not isinstance(e, KafkaException) else str(e.args[0])
        assert re.search(match, text, re.I | re.S), f"{type(e).__name__}: {text!r} does not say {match!r}"
        return e
    except BaseException as e:
        raise AssertionError(f"expected {exc} matching {match!r}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {exc} matching {match!r}, nothing was raised")


def no_write(logdir, fn):
    """Run fn (which must raise as it checks) against the open log; the tree must not change."""
    before = snapshot(logdir)
    fn()
    changed = diff(before, snapshot(logdir))
    assert not changed, f"the bad input wrote: {changed}"


# ------------------------------------------------------------------ topic names

BAD_NAMES = [("", "empty"), (".", "not allowed"), ("..", "not allowed"), ("../x", "'/'"), ("a/b", "'/'"),
             ("/abs", "'/'"), ("x\0y", r"'\\x00'"), ("a" * 250, "250 characters"), ("t\n", r"'\\n'"),
             ("t p", "' '"), ("t\u00f3pico", "'\u00f3'"), ("con:x", "':'"),
             (5, "must be a str"), (None, "must be a str"), (b"t", "must be a str")]


@pytest.mark.parametrize("name,why", BAD_NAMES, ids=[repr(n)[:20] for n, _ in BAD_NAMES])
def test_invalid_topic_names(logdir, name, why):
    with embedlog.open(logdir, retention_check_interval_ms=0) as log:
        def calls():
            for fn, args in ((log.create_topic, (name,)), (log.topic, (name,)), (log.delete_topic, (name,)),
                             (log.alter_topic_config, (name, {"retention.ms": 5})),
                             (log.add_partitions, (name, 5)), (log.partition, (name, 0))):
                expect(InvalidTopicError, why, fn, *args)
        no_write(logdir, calls)


@pytest.mark.parametrize("name,why", BAD_NAMES[:9] + BAD_NAMES[12:13], ids=[repr(n)[:20] for n, _ in BAD_NAMES[:9] + BAD_NAMES[12:13]])
def test_invalid_topic_names_through_the_clients(logdir, name, why):
    from embedlog import AdminClient, Consumer, NewTopic, Producer
    conf = {"bootstrap.servers": f"file://{logdir}", "log.retention.check.interval.ms": 0}
    producer = Producer(conf)
    consumer = Consumer({**conf, "group.id": "bad"})
    admin = AdminClient(conf)
    try:
        def calls():
            expect((KafkaException, TypeError), why, producer.produce, name, b"v")
            if isinstance(name, str):
                expect((KafkaException, EmbedlogError), why, consumer.assign, [TopicPartition(name, 0, 0)])
                futures = admin.create_topics([NewTopic(name, 1)])
                expect((KafkaException, EmbedlogError), why, futures[name].result)
        no_write(logdir, calls)
    finally:
        consumer.close()
        producer.close()


# ------------------------------------------------------------------ offsets

BAD_OFFSETS = [(-1, OffsetOutOfRangeError, "out of range"), (-2**63, OffsetOutOfRangeError, "out of range"),
               (10**6, OffsetOutOfRangeError, "out of range"), (2**70, OffsetOutOfRangeError, "out of range"),
               ("5", TypeError, "offset must be an int"), (1.5, TypeError, "offset must be an int"),
               (None, TypeError, "offset must be an int"), (True, TypeError, "offset must be an int")]


@pytest.mark.parametrize("offset,exc,why", BAD_OFFSETS, ids=[repr(o) for o, _, _ in BAD_OFFSETS])
def test_bad_read_offsets(logdir, offset, exc, why):
    with embedlog.open(logdir, retention_check_interval_ms=0) as log:
        part = log.partition("t", 0)

        def calls():
            for fn in (part.read, part.read_columns, part.fetch, part.read_raw):
                expect(exc, why, fn, offset)
        no_write(logdir, calls)


@pytest.mark.parametrize("offset,exc,why", [(-5, OffsetOutOfRangeError, "cannot delete records before offset -5"),
                                            (2**70, OffsetOutOfRangeError, "high watermark"),
                                            ("3", TypeError, "offset must be an int"),
                                            (1.5, TypeError, "offset must be an int"),
                                            (True, TypeError, "offset must be an int")])
def test_bad_delete_records(logdir, offset, exc, why):
    with embedlog.open(logdir, retention_check_interval_ms=0) as log:
        part = log.partition("t", 0)
        no_write(logdir, lambda: expect(exc, why, part.delete_records, offset))


@pytest.mark.parametrize("offset,why", [(-5, "invalid offset -5"), (-7, "invalid offset -7")])
def test_bad_seek(logdir, offset, why):
    from embedlog import Consumer
    c = Consumer({"bootstrap.servers": f"file://{logdir}", "log.retention.check.interval.ms": 0})
    try:
        c.assign([TopicPartition("t", 0, 0)])
        no_write(logdir, lambda: expect(KafkaException, why, c.seek, TopicPartition("t", 0, offset)))
    finally:
        c.close()


@pytest.mark.parametrize("offset,metadata,why", [(-7, None, "cannot commit offset -7"),
                                                 (2**63, None, "cannot commit offset"),
                                                 (2**70, None, "cannot commit offset"),
                                                 (5, "m" * 40000, "40000 bytes does not fit")])
def test_bad_commit(logdir, offset, metadata, why):
    from embedlog import Consumer
    c = Consumer({"bootstrap.servers": f"file://{logdir}", "group.id": "g2", "log.retention.check.interval.ms": 0})
    try:
        c.assign([TopicPartition("t", 0, 0)])
        tp = TopicPartition("t", 0, 0, metadata=metadata)
        tp.offset = offset
        no_write(logdir, lambda: expect(KafkaException, why, c.commit, offsets=[tp], asynchronous=False))
    finally:
        c.close()


# ------------------------------------------------------------------ records

RECORDS = [
    ("oversized", dict(values=[b"x" * 2000]), RecordTooLargeError, "exceeds max.message.bytes=1000"),
    ("str value", dict(values=["text"]), TypeError, "value must be bytes"),
    ("int value", dict(values=[5]), TypeError, "value must be bytes"),
    ("int key", dict(values=[b"v"], keys=[7]), TypeError, "key must be bytes"),
    ("keys length", dict(values=[b"v", b"w"], keys=[b"k"]), ValueError, "1 keys for 2 values"),
    ("no records", dict(values=[]), ValueError, "at least one record"),
    ("values None", dict(values=None), TypeError, "values"),
    ("header not a pair", dict(values=[b"v"], headers=[["h"]]), TypeError, "header must be a .key, value. pair"),
    ("header int key", dict(values=[b"v"], headers=[[(1, b"x")]]), TypeError, "header key must be str"),
    ("header int value", dict(values=[b"v"], headers=[[("h", 5)]]), TypeError, "value must be bytes, str or None"),
    ("headers length", dict(values=[b"v"], headers=[[], []]), ValueError, "2 header lists for 1 values"),
    ("str timestamp", dict(values=[b"v"], timestamps=["now"]), TypeError, "timestamps must be integers"),
    ("float timestamp", dict(values=[b"v"], timestamps=[1.5]), TypeError, "timestamps must be integers"),
    ("huge timestamp", dict(values=[b"v"], timestamps=[2**64]), ValueError, "timestamp"),
    ("timestamps length", dict(values=[b"v"], timestamps=[1, 2]), ValueError, "2 timestamps for 1 values"),
]


@pytest.mark.parametrize("case", RECORDS, ids=[c[0] for c in RECORDS])
def test_bad_records(logdir, case):
    _name, kwargs, exc, why = case
    with embedlog.open(logdir, retention_check_interval_ms=0) as log:
        part = log.partition("small", 0)
        no_write(logdir, lambda: expect(exc, why, part.append_records, **kwargs))


def test_bad_batches(logdir):
    """Bytes handed to append() that are not one whole, valid batch."""
    good = build_batch([b"v"] * 3)
    crc_bad = bytearray(good)
    crc_bad[-1] ^= 1
    cases = [(good + b"x", CorruptRecordError, "after its end"), (good[:-1], CorruptRecordError, "truncated"),
             (bytes(crc_bad), CorruptRecordError, "CRC"), (b"", CorruptRecordError, "truncated"),
             (b"\x00" * 100, CorruptRecordError, "magic"), ("text", TypeError, "bytes-like object, not str"),
             (None, TypeError, "bytes-like object, not NoneType")]
    with embedlog.open(logdir, retention_check_interval_ms=0) as log:
        part = log.partition("t", 1)

        def calls():
            for data, exc, why in cases:
                expect(exc, why, part.append, data)
        no_write(logdir, calls)


PRODUCE = [
    ("int value", dict(value=123), TypeError, "value must be bytes, str or None"),
    ("float key", dict(value=b"v", key=1.5), TypeError, "key must be bytes, str or None"),
    ("header value", dict(value=b"v", headers={"a": 1}), TypeError, "headers"),
    ("headers type", dict(value=b"v", headers="a=1"), TypeError, "headers must be"),
    ("negative timestamp", dict(value=b"v", timestamp=-1), TypeError, "timestamp must be a non-negative int"),
    ("str timestamp", dict(value=b"v", timestamp="x"), TypeError, "timestamp must be a non-negative int"),
    ("str partition", dict(value=b"v", partition="0"), TypeError, "partition must be an int"),
    ("partition -5", dict(value=b"v", partition=-5), KafkaException, "not -5"),
    ("partition 99", dict(value=b"v", partition=99), KafkaException, "not 99"),
    ("too large", dict(value=b"x" * (2 << 20)), KafkaException, "exceeds message.max.bytes"),
]


@pytest.mark.parametrize("case", PRODUCE, ids=[c[0] for c in PRODUCE])
def test_bad_produce(logdir, case):
    from embedlog import Producer
    _name, kwargs, exc, why = case
    p = Producer({"bootstrap.servers": f"file://{logdir}", "log.retention.check.interval.ms": 0})
    try:
        p.produce("t", value=b"warm")           # the topic's handles are open before the snapshot
        p.flush()
        no_write(logdir, lambda: (expect(exc, why, p.produce, "t", **kwargs), p.flush()))
    finally:
        p.close()


def test_a_record_over_the_topics_limit_fails_its_delivery_and_writes_nothing(logdir):
    from embedlog import KafkaError, Producer
    reports = []
    p = Producer({"bootstrap.servers": f"file://{logdir}", "log.retention.check.interval.ms": 0})
    try:
        p.produce("small", value=b"warm")
        p.flush()
        no_write(logdir, lambda: (p.produce("small", value=os.urandom(3000),
                                            on_delivery=lambda err, msg: reports.append(err)), p.flush()))
    finally:
        p.close()
    assert len(reports) == 1 and reports[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, reports


# ------------------------------------------------------------------ configs

TOPIC_CONFIGS = [
    ({"segment.bytes": -1}, "segment.bytes must be between"), ({"segment.bytes": 0}, "segment.bytes must be between"),
    ({"segment.bytes": "abc"}, "segment.bytes must be an integer"), ({"segment.bytes": 1.5}, "segment.bytes"),
    ({"segment.bytes": True}, "segment.bytes must be an integer"), ({"segment.bytes": 2**40}, "segment.bytes"),
    ({"unknown.key": 1}, "unknown topic config key 'unknown.key'"),
    ({"retention.msec": 1}, "did you mean 'retention.ms'"),
    ({"retention.ms": -5}, "retention.ms must be between -1"), ({"cleanup.policy": "zip"}, "cleanup.policy"),
    ({"min.cleanable.dirty.ratio": 2}, "min.cleanable.dirty.ratio"), ({"index.interval.bytes": -1}, "index.interval"),
    ({"max.message.bytes": 2**40}, "max.message.bytes"), ({"segment.ms": 0}, "segment.ms"),
    ({"compression.type": "brotli"}, "compression.type"), ({"message.timestamp.type": "Now"}, "message.timestamp.type"),
    ({"min.insync.replicas": 0}, "min.insync.replicas"), ({"flush.messages": 0}, "flush.messages"),
    (["segment.bytes"], "config must be a dict"), ("retention.ms=5", "config must be a dict"),
]


@pytest.mark.parametrize("config,why", TOPIC_CONFIGS, ids=[repr(c)[:30] for c, _ in TOPIC_CONFIGS])
def test_absurd_topic_configs(logdir, config, why):
    with embedlog.open(logdir, retention_check_interval_ms=0) as log:
        def calls():
            expect(ConfigError, why, log.create_topic, "n", config=config)
            if isinstance(config, dict):
                expect(ConfigError, why, log.alter_topic_config, "t", config)
        no_write(logdir, calls)


@pytest.mark.parametrize("partitions", [0, -1, "3", 1.5, True, None, 2**31])
def test_absurd_partition_counts(logdir, partitions):
    with embedlog.open(logdir, retention_check_interval_ms=0) as log:
        def calls():
            expect(InvalidPartitionsError, "partitions", log.create_topic, "n", partitions=partitions)
            expect(InvalidPartitionsError, "partitions", log.add_partitions, "t", partitions)
        no_write(logdir, calls)


CLIENT_CONFIGS = [
    ("Producer", {"acks": 5}, "acks"), ("Producer", {"linger.ms": -1}, "linger.ms"),
    ("Producer", {"compression.type": "brotli"}, "compression"), ("Producer", {"batch.size": "big"}, "batch.size"),
    ("Producer", {"no.such.key": 1}, "no.such.key"), ("Producer", {"enable.idempotence": "maybe"}, "enable.idempotence"),
    ("Consumer", {"auto.offset.reset": "middle"}, "auto.offset.reset"),
    ("Consumer", {"session.timeout.ms": -5}, "session.timeout.ms"),
    ("Consumer", {"max.poll.interval.ms": "x"}, "max.poll.interval.ms"),
    ("Consumer", {"no.such.key": 1}, "no.such.key"),
]


@pytest.mark.parametrize("cls,config,why", CLIENT_CONFIGS, ids=[f"{c}-{list(k)[0]}" for c, k, _ in CLIENT_CONFIGS])
def test_absurd_client_configs(logdir, cls, config, why):
    import embedlog as el
    conf = {"bootstrap.servers": f"file://{logdir}", "log.retention.check.interval.ms": 0, **config}
    with embedlog.open(logdir, retention_check_interval_ms=0):
        no_write(logdir, lambda: expect((ConfigError, KafkaException), why, getattr(el, cls), conf))


def test_absurd_log_arguments(logdir, tmp_path):
    before = snapshot(logdir)
    expect(ValueError, "retention_check_interval_ms", embedlog.open, logdir, retention_check_interval_ms=-1)
    expect(TypeError, "path must be a str", embedlog.open, 5)
    expect(ValueError, "NUL", embedlog.open, str(logdir) + "\0x")
    expect(FileNotFoundError, "no embedlog directory", embedlog.open, tmp_path / "missing", create=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("mine")
    expect(FormatVersionError, "not empty and has no embedlog.json", embedlog.open, foreign)
    assert os.listdir(foreign) == ["data.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    expect((FormatVersionError, EmbedlogError, OSError), "afile", embedlog.open, afile)
    assert afile.read_text() == "x"
    assert diff(before, snapshot(logdir)) == []


# ------------------------------------------------------------------ a newer format version

def _reboot(pdir):
    with open(os.path.join(pdir, "partition.state"), "r+b") as f:
        f.write(bytes(8))


def _rewrite_json(path, change, seal=True):
    from embedlog.storage._state import seal_json, unseal_json
    with open(path, "rb") as f:
        doc = unseal_json(f.read())
    change(doc)
    text = json.dumps(doc).encode()
    with open(path, "wb") as f:
        f.write(seal_json(text) if seal else text + b"\n")


NEWER = [
    ("embedlog.json v2", "embedlog.json", lambda d: d.update(version=2), "newer embedlog"),
    ("embedlog.json v'2'", "embedlog.json", lambda d: d.update(version="2"), "version"),
    ("embedlog.json v2.5", "embedlog.json", lambda d: d.update(version=2.5), "newer embedlog"),
    ("embedlog.json list", "embedlog.json", None, "embedlog.json"),
    ("partition.checkpoint v2", "t-0/partition.checkpoint", lambda d: d.update(version=2), "newer embedlog"),
    ("cleaner.checkpoint v2", "c-0/cleaner.checkpoint", lambda d: d.update(version=2), "newer embedlog"),
    ("partition.state v2", "t-0/partition.state", None, "newer embedlog"),
]


@pytest.mark.parametrize("case", NEWER, ids=[c[0] for c in NEWER])
def test_a_newer_format_version_is_refused_before_anything_is_written(logdir, case):
    name, rel, change, why = case
    path = os.path.join(logdir, rel)
    if rel.endswith("partition.state"):
        with open(path, "r+b") as f:
            f.seek(48)
            f.write((2).to_bytes(4, "little"))
    elif change is None:
        with open(path, "w") as f:
            f.write('["embedlog", 1]\n')
    else:
        _rewrite_json(path, change, seal=not rel.endswith("embedlog.json"))
    if "partition.checkpoint" in rel:
        _reboot(os.path.dirname(path))          # the checkpoint is read by recovery
    before = snapshot(logdir)

    def use():
        with embedlog.open(logdir, retention_check_interval_ms=0) as log:
            if rel.startswith("t-0"):
                log.partition("t", 0).read(0)
            else:
                log.partition("c", 0).compact(now=T0 + 10**7)
    err = expect(FormatVersionError, why, use)
    assert os.path.basename(rel) in str(err) or str(logdir) in str(err), err
    assert diff(before, snapshot(logdir)) == []


@pytest.mark.parametrize("rel,content", [
    ("c-0/cleaner.checkpoint", '{"version": "2", "first_dirty_offset": 3}\n'),
    ("c-0/cleaner.checkpoint", '[1, 2]\n'),
    ("c-0/cleaner.checkpoint", '{"version": 1, "first_dirty_offset": "x"}\n'),
    ("t-0/partition.checkpoint", '{"version": "2", "clean": true}\n'),
    ("t-0/partition.checkpoint", '[1, 2]\n'),
])
def test_checkpoints_of_the_wrong_shape_are_damage_not_a_crash(logdir, rel, content):
    """A checkpoint whose version or values have the wrong type (never written by any
    embedlog) is read as damaged, as unparsable JSON is: the safe direction (a full
    recovery scan; compaction starts again from the log start). It was a TypeError
    (cleaner.checkpoint {"version": "2"}) or AttributeError (a JSON list) before."""
    with open(os.path.join(logdir, rel), "w") as f:
        f.write(content)
    pdir = os.path.join(logdir, rel.split("/")[0])
    _reboot(pdir)
    with embedlog.open(logdir, retention_check_interval_ms=0) as log:
        topic = rel.split("-")[0]
        part = log.partition(topic, 0)
        records = part.read(part.log_start_offset, max_bytes=1 << 20)
        assert records
        if topic == "c":
            part.compact(now=T0 + 10**7)
            assert [r.value for r in part.read(part.log_start_offset, max_bytes=1 << 20)][-2:] == \
                [r.value for r in records][-2:]
        else:
            assert [r.offset for r in records] == list(range(50))


def test_a_timestamp_past_int64_fails_its_delivery_and_writes_nothing(logdir):
    """produce() takes any int >= 0 (confluent-kafka's check); one past int64 used to
    escape from the sender as OverflowError. Now the batch build refuses it (ValueError)
    and the delivery report carries the error."""
    from embedlog import Producer
    reports = []
    p = Producer({"bootstrap.servers": f"file://{logdir}", "log.retention.check.interval.ms": 0})
    try:
        p.produce("t", value=b"warm")
        p.flush()
        no_write(logdir, lambda: (p.produce("t", value=b"v", timestamp=2**64,
                                            on_delivery=lambda err, msg: reports.append(err)), p.flush()))
    finally:
        p.close()
    assert len(reports) == 1 and reports[0] is not None and "64-bit" in str(reports[0]), reports


# ------------------------------------------------------------------ generated names and configs

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .conftest import soak_enabled  # noqa: E402

_NAME_CHARS = st.sampled_from(list("abcXYZ019._-/\\\0\n :*?\u00e9\u4e2d") + ["..", "\udcff"])
NAMES = st.one_of(st.text(max_size=300), st.lists(_NAME_CHARS, max_size=260).map("".join))


_SCALE = 20 if soak_enabled() else 1     # EMBEDLOG_SOAK=1 / -m soak: 20x the examples


@settings(max_examples=500 * _SCALE, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(name=NAMES)
def test_generated_topic_names(template, name):
    """Kafka's rule or InvalidTopicError, decided before any file is touched: the template
    log is opened read-only in spirit, and must not change."""
    from embedlog.storage._log import validate_topic_name
    legal = (0 < len(name) <= 249 and name not in (".", "..")
             and re.fullmatch(r"[A-Za-z0-9._-]+", name) is not None)
    if legal:
        assert validate_topic_name(name) == name
        return
    before = snapshot(template)
    with embedlog.open(template, retention_check_interval_ms=0) as log:
        for fn in (log.create_topic, log.topic, log.delete_topic):
            expect(InvalidTopicError, "topic name", fn, name)
    assert diff(before, snapshot(template)) == []


_KEYS = st.one_of(st.sampled_from(sorted(__import__("embedlog.storage._config", fromlist=["x"]).TOPIC_CONFIG)), st.text(max_size=20))
_VALUES = st.one_of(st.integers(), st.integers(-5, 5), st.text(max_size=12), st.floats(allow_nan=True),
                    st.booleans(), st.none(), st.lists(st.integers(), max_size=2), st.sampled_from(
                        ["compact", "delete", "compact,delete", "lz4", "LogAppendTime", "-1", "1e3", " 5 "]))


@settings(max_examples=1000 * _SCALE, deadline=None, database=None)
@given(config=st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_generated_topic_configs(config):
    """Any dict of keys and values: a normalized config or a ConfigError naming a key of
    the dict, never another exception."""
    from embedlog.storage._config import topic_config
    try:
        values = topic_config(config)
    except ConfigError as e:
        assert any(str(k) in str(e) or repr(k)[1:-1] in str(e) for k in config), (config, str(e))
        return
    for key in config:
        assert key in values
