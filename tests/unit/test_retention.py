"""Retention and compaction by Kafka's rules (issue #6), on real files, with the clock
passed in (`maintain(now)`): no sleeps."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import embedlog
from embedlog import OffsetOutOfRangeError
from embedlog.storage._records import decode_columns, iter_batches, parse_header

T0 = 1_700_000_000_000
HOUR = 3_600_000


def segs(part) -> list[int]:
    return sorted(int(n[:20]) for n in os.listdir(part.path) if n.endswith(".log"))


def fill(part, n, *, start_ts=T0, step_ms=1000, size=50, keys=None):
    for i in range(n):
        key = None if keys is None else keys(i)
        part.append_records([b"x" * size], [key], timestamps=[start_ts + i * step_ms])


@pytest.fixture
def log(tmp_path):
    with embedlog.open(tmp_path / "log") as lg:
        yield lg


# ------------------------------------------------------------------ retention.ms

def test_retention_ms_deletes_only_a_prefix_of_expired_segments(log):
    part = log.create_topic("t", 1, {"segment.bytes": 1000, "retention.ms": HOUR}).partition(0)
    fill(part, 40, step_ms=60_000)              # one record a minute: 40 minutes, ~9 segments
    before = segs(part)
    assert len(before) > 4
    # At T0 + 60 min, records older than T0 + 0 min... nothing is > 1 h old yet.
    assert part.maintain(T0 + HOUR)["retention"]["deleted_segments"] == 0
    # 20 minutes later, segments whose newest record is older than T0 + 20 min go.
    r = part.maintain(T0 + HOUR + 20 * 60_000)["retention"]
    assert r["deleted_segments"] > 0 and r["reasons"] == ["retention.ms"]
    after = segs(part)
    assert after == before[r["deleted_segments"]:]
    assert part.log_start_offset == after[0]
    # Every remaining segment holds a record newer than the cut, every deleted one did not.
    assert part.read(part.log_start_offset)[0].offset == after[0]
    with pytest.raises(OffsetOutOfRangeError):
        part.read(0)


def test_one_recent_record_keeps_its_whole_segment_and_everything_after(log):
    """Deletion is a prefix: Kafka stops at the first segment that does not qualify."""
    part = log.create_topic("t", 1, {"segment.bytes": 1000, "retention.ms": HOUR}).partition(0)
    fill(part, 10, step_ms=1000)
    part.append_records([b"late" * 10], timestamps=[T0 + 10 * HOUR])   # a future-stamped record
    fill(part, 30, step_ms=1000, start_ts=T0 + 20_000)
    before = segs(part)
    pinned = [b for b in before if b <= 10][-1]
    r = part.maintain(T0 + 3 * HOUR)["retention"]
    assert segs(part) == before[before.index(pinned):]
    assert part.log_start_offset == pinned
    assert r["deleted_segments"] == before.index(pinned)


def test_everything_expired_rolls_a_new_active_segment_first(log):
    part = log.create_topic("t", 1, {"segment.bytes": 1000, "retention.ms": HOUR}).partition(0)
    fill(part, 25)
    end = part.log_end_offset
    r = part.maintain(T0 + 2 * HOUR)["retention"]
    assert segs(part) == [end], "one empty active segment at the log end remains"
    assert part.watermarks() == (end, end)
    assert r["log_start_offset"] == end
    # The log goes on from there.
    assert part.append_records([b"after"]).base_offset == end
    assert [rec.value for rec in part.read(end)] == [b"after"]


def test_minus_one_means_unlimited_and_compact_alone_deletes_nothing(log):
    a = log.create_topic("a", 1, {"segment.bytes": 1000, "retention.ms": -1}).partition(0)
    b = log.create_topic("b", 1, {"segment.bytes": 1000, "retention.ms": 1, "cleanup.policy": "compact"}).partition(0)
    for p in (a, b):
        fill(p, 30, keys=lambda i: b"k%d" % i)
        n = len(segs(p))
        assert p.maintain(T0 + 1000 * HOUR)["retention"]["deleted_segments"] == 0
        assert len(segs(p)) == n


# ------------------------------------------------------------------ retention.bytes

def test_retention_bytes_is_per_partition_and_leaves_at_most_one_segment_over(log):
    t = log.create_topic("t", 2, {"segment.bytes": 1000, "retention.bytes": 3000, "retention.ms": -1})
    for p in t.partitions:
        fill(p, 60)
    for p in t.partitions:
        sizes_before = p.size_bytes()
        r = p.maintain(T0)["retention"]
        assert r["reasons"] == ["retention.bytes"]
        size = p.size_bytes()
        assert size <= 3000 + 1000, "over by less than one segment"
        # Deleting one more segment would have gone below the limit: Kafka's diff rule.
        assert size - os.path.getsize(os.path.join(p.path, "%020d.log" % segs(p)[0])) < 3000
        assert sizes_before - size == r["deleted_bytes"]


# ------------------------------------------------------------------ delete_records

def test_delete_records_moves_the_log_start_and_the_next_pass_frees_the_segments(log):
    part = log.create_topic("t", 1, {"segment.bytes": 1000, "retention.ms": -1}).partition(0)
    fill(part, 40)
    cut = segs(part)[3] + 2
    assert part.delete_records(cut) == cut
    assert part.log_start_offset == cut
    assert part.read(cut)[0].offset == cut
    with pytest.raises(OffsetOutOfRangeError):
        part.read(cut - 1)
    r = part.maintain(T0)["retention"]
    assert r["reasons"] == ["log start offset"]
    first, second = segs(part)[:2]
    assert first <= cut < second
    assert part.log_start_offset == cut, "the log start stays where DeleteRecords put it"
    with pytest.raises(OffsetOutOfRangeError):
        part.delete_records(part.log_end_offset + 1)
    assert part.delete_records(5) == cut, "the log start never moves back"


def test_log_start_survives_reopen(tmp_path):
    path = tmp_path / "log"
    with embedlog.open(path) as log:
        part = log.create_topic("t", 1, {"segment.bytes": 1000, "retention.bytes": 2000}).partition(0)
        fill(part, 40)
        part.maintain(T0)
        start = part.log_start_offset
        assert start > 0
    with embedlog.open(path) as log:
        assert log.partition("t", 0).log_start_offset == start


# ------------------------------------------------------------------ consumers

def test_consumer_below_the_log_start_is_reset_by_auto_offset_reset(tmp_path):
    for reset, expect in (("earliest", "start"), ("latest", "end")):
        path = tmp_path / reset
        with embedlog.open(path) as log:
            part = log.create_topic("t", 1, {"segment.bytes": 1000, "retention.bytes": 2000}).partition(0)
            fill(part, 40)
        c = embedlog.Consumer({"bootstrap.servers": str(path), "group.id": "g-" + reset,
                               "auto.offset.reset": reset, "enable.auto.commit": False,
                               "max.partition.fetch.bytes": 1})          # one batch per fetch: no prefetch
        c.assign([embedlog.TopicPartition("t", 0, 3)])
        m = c.poll(2.0)
        assert m is not None and m.error() is None and m.offset() == 3
        with embedlog.open(path) as log:
            part = log.partition("t", 0)
            part.maintain(T0)
            start, end = part.watermarks()
            assert start > 4
            if expect == "end":
                assert c.poll(0.3) is None, "reset to the log end: nothing to read yet"
                part.append_records([b"new"])
        m = c.poll(2.0)
        assert m is not None and m.error() is None
        assert m.offset() == (start if expect == "start" else end)
        c.close()


# ------------------------------------------------------------------ compaction

def test_compaction_keeps_offsets_batch_bounds_and_latest_values(log):
    part = log.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": 1200}).partition(0)
    for i in range(60):
        part.append_records([b"v%d" % i, b"w%d" % i], [b"k%d" % (i % 4), b"solo%d" % i],
                            timestamps=[T0 + i, T0 + i])
    end = part.log_end_offset
    bounds_before = {}
    for b in segs(part)[:-1]:
        with open(os.path.join(part.path, "%020d.log" % b), "rb") as f:
            for pos, h in iter_batches(f.read()):
                bounds_before[h.base_offset] = h.last_offset
    r = part.compact(T0 + 100)
    assert r["records_out"] < r["records_in"]
    kept = part.read(0, max_bytes=1 << 20)
    assert part.log_end_offset == end
    assert [x.offset for x in kept] == sorted(x.offset for x in kept)
    for rec in kept:                                      # offsets never change
        i, j = divmod(rec.offset, 2)
        assert rec.value == (b"v%d" % i if j == 0 else b"w%d" % i)
    latest = {}
    for rec in kept:
        latest[rec.key] = rec.value
    for k in range(4):
        last = max(i for i in range(60) if i % 4 == k)
        assert latest[b"k%d" % k] == b"v%d" % last
    assert all(latest[b"solo%d" % i] == b"w%d" % i for i in range(60))
    # Rewritten batches keep their base offset and lastOffsetDelta (producer state, KIP-98).
    for b in segs(part)[:-1]:
        with open(os.path.join(part.path, "%020d.log" % b), "rb") as f:
            data = f.read()
        for pos, h in iter_batches(data):
            assert bounds_before[h.base_offset] == h.last_offset
            assert h.records_count <= h.last_offset_delta + 1


def test_kafka_python_reads_a_rewritten_batch(log):
    """Cross-check with an independent decoder: the cleaner's output is Kafka's format."""
    from kafka.record.default_records import DefaultRecordBatch
    part = log.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": 600}).partition(0)
    for i in range(30):
        part.append_records([b"a%d" % i, None, b"c%d" % i], [b"x", b"y%d" % (i % 3), b"z%d" % i],
                            timestamps=[T0 + i, T0 + i + 1, T0 + i + 2], compression=3)
    part.compact(T0 + 1000)
    checked = 0
    for b in segs(part)[:-1]:
        with open(os.path.join(part.path, "%020d.log" % b), "rb") as f:
            data = f.read()
        for pos, h in iter_batches(data):
            ours = decode_columns(data, pos, h)
            theirs = list(DefaultRecordBatch(data[pos:pos + h.size]))
            assert [(r.offset, r.key, r.value, r.timestamp) for r in theirs] == \
                list(zip(ours.offsets, ours.keys, ours.values, ours.timestamps))
            checked += 1
    assert checked > 3


def test_tombstones_get_a_delete_horizon_then_go(log):
    part = log.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": 500,
                                     "delete.retention.ms": HOUR}).partition(0)
    for i in range(20):
        part.append_records([b"v"], [b"k%d" % i], timestamps=[T0])
    for i in range(10):
        part.append_records([None], [b"k%d" % i], timestamps=[T0])       # tombstones for k0..k9
    fill(part, 20, keys=lambda i: b"pad%d" % i)                          # move them out of the active segment
    part.compact(T0 + 1000)
    keys = {r.key: r.value for r in part.read(0, max_bytes=1 << 20)}
    assert all(keys[b"k%d" % i] is None for i in range(10)), "tombstones stay for delete.retention.ms"
    # The horizon is recorded in the batch header (attribute bit 6, baseTimestamp).
    horizons = set()
    for b in segs(part)[:-1]:
        with open(os.path.join(part.path, "%020d.log" % b), "rb") as f:
            data = f.read()
        for pos, h in iter_batches(data):
            if h.attributes & 0x40:
                horizons.add(h.base_timestamp)
    assert horizons == {T0 + 1000 + HOUR}
    assert part.maintain(T0 + 1000 + HOUR - 1).get("compaction") is None, "not due yet"
    r = part.maintain(T0 + 1000 + HOUR)["compaction"]                    # due: cleans by itself
    assert r["tombstones_removed"] == 10
    keys = {r.key for r in part.read(0, max_bytes=1 << 20)}
    assert not any(b"k%d" % i in keys for i in range(10))
    assert all(b"k%d" % i in keys for i in range(10, 20))


def test_dirty_ratio_and_min_compaction_lag(log):
    part = log.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": 600,
                                     "min.cleanable.dirty.ratio": 0.5,
                                     "min.compaction.lag.ms": HOUR}).partition(0)
    fill(part, 60, keys=lambda i: b"u%d" % i, step_ms=1)         # unique keys: cleaning keeps them all
    assert part.maintain(T0 + 1000).get("compaction") is None, "younger than min.compaction.lag.ms"
    r = part.maintain(T0 + 2 * HOUR)["compaction"]
    assert r is not None and r["reason"] == "dirty ratio 1.00"
    clean_bytes = r["bytes_out"]
    # A little new data: one closed dirty segment, far under half of the log.
    fill(part, 12, keys=lambda i: b"u%d" % i, start_ts=T0 + 2 * HOUR, step_ms=1)
    dirty = [b for b in segs(part)[:-1] if b >= r["cleaned_up_to"]]
    assert dirty, "the new records should have rolled at least one segment"
    assert part.maintain(T0 + 4 * HOUR).get("compaction") is None, "under min.cleanable.dirty.ratio"
    forced = part.maintain(T0 + 4 * HOUR, force_compaction=True)["compaction"]
    assert forced["reason"] == "forced" and forced["bytes_in"] > clean_bytes


def test_consumer_offsets_topic_is_compacted(tmp_path):
    path = str(tmp_path / "log")
    with embedlog.open(path) as log:
        log.create_topic("t", 1)
        log.partition("t", 0).append_records([b"x"] * 10)
    c = embedlog.Consumer({"bootstrap.servers": path, "group.id": "g", "enable.auto.commit": False})
    c.assign([embedlog.TopicPartition("t", 0, 0)])
    c.commit(offsets=[embedlog.TopicPartition("t", 0, 0)], asynchronous=False)   # creates the topic
    with embedlog.open(path) as log:
        log.alter_topic_config("__consumer_offsets", {"segment.bytes": 4096})       # reaches c's handle too
    for i in range(400):
        c.commit(offsets=[embedlog.TopicPartition("t", 0, i % 10)], asynchronous=False)
    c.close()
    with embedlog.open(path) as log:
        off = log.topic("__consumer_offsets").partition(0)
        before = off.log_end_offset
        r = off.compact()
        assert r is not None and r["records_out"] < r["records_in"]
        assert off.log_end_offset == before
    c = embedlog.Consumer({"bootstrap.servers": path, "group.id": "g"})
    assert c.committed([embedlog.TopicPartition("t", 0)])[0].offset == 399 % 10
    c.close()


# ------------------------------------------------------------------ readers in other processes

READER = textwrap.dedent("""
    import sys, time, embedlog
    from embedlog import OffsetOutOfRangeError
    path, topic, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    log = embedlog.open(path, create=False)
    part = log.topic(topic).partition(0)
    reads = oor = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            off = part.log_start_offset
            while off < part.log_end_offset:
                cols, nxt = part.fetch(off, 4096)
                for o, k, v in zip(cols.offsets, cols.keys, cols.values):
                    assert o >= off, (o, off)
                    assert v == b"v%d" % o and k == b"k%d" % (o % 37), (o, k, v)
                off = nxt
                reads += 1
        except OffsetOutOfRangeError:
            oor += 1
    print(reads, oor)
""")


@pytest.mark.parametrize("policy", ["compact", "delete"])
def test_readers_in_another_process_see_correct_data_while_segments_change(tmp_path, policy):
    path = str(tmp_path / "log")
    cfg = {"cleanup.policy": policy, "segment.bytes": 2000, "retention.bytes": 6000,
           "min.cleanable.dirty.ratio": 0.0}
    log = embedlog.open(path)
    part = log.create_topic("t", 1, cfg).partition(0)
    n = 0

    def more(k):
        nonlocal n
        for i in range(n, n + k):
            part.append_records([b"v%d" % i], [b"k%d" % (i % 37)], timestamps=[T0 + i])
        n += k
    more(300)
    readers = [subprocess.Popen([sys.executable, "-c", READER, path, "t", "4"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    passes = 0
    while any(r.poll() is None for r in readers):
        more(60)
        part.maintain(T0 + n, force_compaction=True)
        passes += 1
    for r in readers:
        out, err = r.communicate()
        assert r.returncode == 0, err
        reads, _oor = map(int, out.split())
        assert reads > 10
    assert passes > 5
    log.close()


# ------------------------------------------------------------------ the timer

def test_a_writing_process_maintains_by_itself(tmp_path):
    """log.retention.check.interval.ms: the process that appends runs the passes; the
    timer is what is under test here, so this test waits (bounded) for it."""
    import time
    path = str(tmp_path / "log")
    p = embedlog.Producer({"bootstrap.servers": path, "log.retention.check.interval.ms": 50})
    with embedlog.open(path) as log:
        log.create_topic("t", 1, {"segment.bytes": 1000, "retention.bytes": 2000, "retention.ms": -1})
    for _ in range(60):
        p.produce("t", b"y" * 50)
        p.flush()
    deadline = time.monotonic() + 10
    with embedlog.open(path, retention_check_interval_ms=0) as log:
        part = log.partition("t", 0)
        while part.size_bytes() > 3000 and time.monotonic() < deadline:
            time.sleep(0.02)            # the last appends may still await their pass
        assert part.size_bytes() <= 3000
        assert part.log_start_offset > 0
        assert log._maintainer is None, "a process that only reads starts no timer"
    p.flush()
    del p


def test_log_maintain_covers_every_topic_and_reports_what_it_did(log):
    a = log.create_topic("a", 2, {"segment.bytes": 1000, "retention.bytes": 1500, "retention.ms": -1})
    log.create_topic("quiet", 1)
    for p in a.partitions:
        fill(p, 30)
    done = log.maintain(T0)
    assert set(done) == {"a"} and set(done["a"]) == {0, 1}
    assert all(r["retention"]["deleted_segments"] > 0 for r in done["a"].values())
    assert log.maintain(T0) == {}, "a second pass has nothing to do"


def test_compaction_after_delete_records_inside_the_first_segment(log):
    """Found by the model test: a log start inside the first segment once made the
    cleaner leave that segment out of its key map, so an older value survived a
    tombstone that was later removed."""
    part = log.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": 700,
                                     "delete.retention.ms": 1000}).partition(0)
    part.append_records([b"old"] * 3 + [b"", None], [b"a"] * 5, timestamps=[T0] * 5)
    part.delete_records(1)
    fill(part, 20, keys=lambda i: b"pad%d" % i, size=40)        # roll: the first segment is closed
    part.compact(T0)
    assert [r.offset for r in part.read(1, max_bytes=1 << 20) if r.key == b"a"] == [4]
    part.compact(T0 + 1000)
    assert [r.key for r in part.read(1, max_bytes=1 << 20) if r.key == b"a"] == []
