"""Partition append/read semantics on real files."""
import os
import threading

import pytest

import embedlog
from embedlog import OffsetOutOfRangeError, RecordTooLargeError, build_batch
from embedlog.storage._segment import list_segments


def values(n, start=0, size=20):
    return [(b"%08d" % i).ljust(size, b".") for i in range(start, start + n)]


@pytest.fixture
def part(log):
    log.create_topic("t", config={"segment.bytes": 4000, "index.interval.bytes": 200})
    return log.partition("t", 0)


def test_offsets_are_dense_and_reads_return_whole_records(part):
    res = [part.append_records(values(n, sum(range(1, n)))) for n in range(1, 30)]
    assert res[0].base_offset == 0
    for a, b in zip(res, res[1:]):
        assert b.base_offset == a.last_offset + 1
    end = part.log_end_offset
    assert end == sum(range(1, 30)) == part.high_watermark
    everything = part.read(0, max_bytes=1 << 30)
    assert [r.offset for r in everything] == list(range(end))
    for start in (0, 1, 17, end - 1):
        got = part.read(start, max_bytes=300)
        assert got and got[0].offset == start
        assert [r.offset for r in got] == list(range(start, start + len(got)))
        assert [r.value for r in got] == [everything[o].value for o in range(start, start + len(got))]
    assert part.read(end) == []
    assert len(list_segments(part.path)) > 3          # segment.bytes=4000 rolled


def test_max_records_and_out_of_range(part):
    part.append_records(values(50))
    assert [r.offset for r in part.read(10, max_records=5)] == [10, 11, 12, 13, 14]
    with pytest.raises(OffsetOutOfRangeError) as e:
        part.read(51)
    assert e.value.log_end_offset == 50 and e.value.offset == 51
    with pytest.raises(OffsetOutOfRangeError):
        part.read(-1)


def test_first_batch_larger_than_max_bytes_is_returned_whole(part):
    part.append_records(values(100, size=30))
    got = part.read(0, max_bytes=1)
    assert len(got) == 100                             # KIP-74: progress is always possible
    part.append_records(values(5))
    assert [r.offset for r in part.read(0, max_bytes=100)] == list(range(100))


def test_roll_at_segment_bytes_and_index_lookups_use_the_index(part):
    for i in range(200):
        part.append_records(values(3, 3 * i))
    segs = list_segments(part.path)
    assert segs[0] == 0 and segs == sorted(segs) and len(segs) >= 6
    for base in segs[:-1]:
        size = os.path.getsize(os.path.join(part.path, f"{base:020d}.log"))
        assert size <= 4000
        assert os.path.getsize(os.path.join(part.path, f"{base:020d}.index")) % 8 == 0
        assert os.path.getsize(os.path.join(part.path, f"{base:020d}.index")) > 0
    # Every offset read alone returns exactly that record.
    for off in range(0, 600, 7):
        assert part.read(off, max_records=1)[0].value == values(1, off)[0]


def test_index_entries_follow_kafkas_rule(log):
    log.create_topic("i", config={"index.interval.bytes": 4096})
    p = log.partition("i", 0)
    sizes = []
    for _ in range(40):
        sizes.append(len(build_batch(values(10, size=50))))
        p.append_records(values(10, size=50))
    seg = os.path.join(p.path, f"{0:020d}")
    idx = open(seg + ".index", "rb").read()
    # Kafka: an entry is added when the bytes since the last entry already exceed the interval.
    expected, since, pos = [], 0, 0
    for i, s in enumerate(sizes):
        if since > 4096:
            expected.append((10 * i + 9, pos))
            since = 0
        since += s
        pos += s
    got = [(int.from_bytes(idx[k:k + 4], "big"), int.from_bytes(idx[k + 4:k + 8], "big"))
           for k in range(0, len(idx), 8)]
    assert got == expected and len(got) >= 3


def test_offset_for_time(part):
    base = 1_700_000_000_000
    for i in range(100):
        part.append_records([b"v%d" % i], timestamps=[base + 10 * i])
    part.append_records([b"late"], timestamps=[base + 5])   # out of order timestamp
    assert part.offset_for_time(base) == (0, base)
    assert part.offset_for_time(base + 1) == (1, base + 10)
    assert part.offset_for_time(base + 555) == (56, base + 560)
    assert part.offset_for_time(base + 990) == (99, base + 990)
    assert part.offset_for_time(base + 991) is None
    assert part.offset_for_time(0) == (0, base)


def test_log_append_time(log):
    log.create_topic("lat", config={"message.timestamp.type": "LogAppendTime"})
    p = log.partition("lat", 0)
    before = embedlog.storage._records.now_ms()
    res = p.append_records([b"a", b"b"], timestamps=[1, 2])
    recs = p.read(0)
    assert res.log_append_time >= before
    assert [r.timestamp for r in recs] == [res.log_append_time] * 2
    raw = p.read_raw(0)
    assert embedlog.parse_header(raw).log_append_time     # CRC re-computed: parse_header checks it


def test_max_message_bytes(log):
    log.create_topic("small", config={"max.message.bytes": 500})
    p = log.partition("small", 0)
    with pytest.raises(RecordTooLargeError, match="max.message.bytes=500"):
        p.append_records([b"x" * 600])
    p.append_records([b"x" * 100])
    assert p.log_end_offset == 1 and [r.value for r in p.read(0)] == [b"x" * 100]


def test_append_rejects_damaged_or_foreign_batches(part):
    good = build_batch([b"v"])
    bad = bytearray(good)
    bad[-1] ^= 1
    with pytest.raises(embedlog.CorruptRecordError, match="CRC"):
        part.append(bytes(bad))
    with pytest.raises(embedlog.CorruptRecordError):
        part.append(good + b"extra")
    assert part.log_end_offset == 0


def test_read_raw_is_byte_identical_but_for_the_stamped_offset(part):
    raw = build_batch([b"a", b"b"], keys=[b"k", None], compression=3, producer_id=5,
                      producer_epoch=0, base_sequence=0)
    part.append_records([b"first"])
    part.append(raw)
    stored = part.read_raw(1)
    assert stored[0:8] == (1).to_bytes(8, "big")
    assert stored[12:16] == bytes(4)                   # partitionLeaderEpoch
    assert stored[16:] == raw[16:] and stored[8:12] == raw[8:12]


def test_sync_advances_flushed_offset(part):
    part.append_records(values(5))
    flushed = part.flushed_offset
    part.append_records(values(5), sync=True)
    assert part.flushed_offset >= 10 > flushed
    part.append_records(values(5))
    part.flush()
    assert part.flushed_offset == 15


def test_flush_messages_bounds_the_unsynced_window(log):
    log.create_topic("f", config={"flush.messages": 10})
    p = log.partition("f", 0)
    for i in range(25):
        p.append_records([b"x"])
        assert p.log_end_offset - p.flushed_offset < 10


def test_wait_wakes_on_append_from_another_thread(part):
    assert not part.wait(0, timeout=0.01)
    woke = []
    t = threading.Thread(target=lambda: woke.append(part.wait(0, timeout=30)))
    t.start()
    part.append_records([b"hello"])
    t.join(30)
    assert woke == [True]


def test_threads_share_a_partition(part):
    def writer(k):
        for i in range(50):
            part.append_records([b"%d-%d" % (k, i)] * 3)
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recs = part.read(0, max_bytes=1 << 30)
    assert [r.offset for r in recs] == list(range(600))
    for k in range(4):
        mine = [r.value for r in recs if r.value.startswith(b"%d-" % k)]
        assert mine == [b"%d-%d" % (k, i) for i in range(50) for _ in range(3)]


def test_reopen_sees_everything(tmp_path):
    path = tmp_path / "log"
    with embedlog.open(path) as log:
        log.create_topic("t", config={"segment.bytes": 1000})
        for i in range(100):
            log.partition("t", 0).append_records([b"r%d" % i], keys=[b"k"])
    with embedlog.open(path) as log:
        p = log.partition("t", 0)
        assert p.log_end_offset == 100
        assert [r.value for r in p.read(0, max_bytes=1 << 20)] == [b"r%d" % i for i in range(100)]
        p.append_records([b"more"])
        assert p.read(100)[0].value == b"more"


def test_two_handles_in_one_process_see_each_other(tmp_path):
    a = embedlog.open(tmp_path / "log")
    a.create_topic("t")
    b = embedlog.open(tmp_path / "log")
    pa, pb = a.partition("t", 0), b.partition("t", 0)
    pa.append_records([b"1"])
    pb.append_records([b"2"])
    assert [r.value for r in pa.read(0)] == [b"1", b"2"] == [r.value for r in pb.read(0)]
    a.close()
    b.close()


def test_headers_and_nulls_survive_storage(part):
    part.append_records([None, b"", b"v"], keys=[b"k", None, b""],
                        headers=[[("a", b"1"), ("b", None)], [], {"c": "text"}])
    recs = part.read(0)
    assert [(r.key, r.value) for r in recs] == [(b"k", None), (None, b""), (b"", b"v")]
    assert [r.headers for r in recs] == [(("a", b"1"), ("b", None)), (), (("c", b"text"),)]


def test_time_based_roll_uses_record_timestamps(log):
    log.create_topic("tr", config={"segment.ms": 1000})
    p = log.partition("tr", 0)
    base = 1_700_000_000_000
    p.append_records([b"a"], timestamps=[base])
    p.append_records([b"b"], timestamps=[base + 1000])       # not more than segment.ms: same segment
    assert len(list_segments(p.path)) == 1
    p.append_records([b"c"], timestamps=[base + 1001])
    assert list_segments(p.path) == [0, 2]


def test_log_append_time_rolls_by_append_time_not_client_time(log):
    log.create_topic("la", config={"message.timestamp.type": "LogAppendTime", "segment.ms": 60000})
    p = log.partition("la", 0)
    p.append_records([b"a"], timestamps=[1])
    p.append_records([b"b"], timestamps=[10**13])                 # a client clock far ahead
    assert list_segments(p.path) == [0]


def test_segment_jitter_never_exceeds_segment_ms(log):
    log.create_topic("j", config={"segment.ms": 1000, "segment.jitter.ms": 5000})
    p = log.partition("j", 0)
    base = 1_700_000_000_000
    for i in range(20):
        p.append_records([b"x"], timestamps=[base + i])           # all within 20 ms
    assert list_segments(p.path) == [0]


def test_max_records_reads_only_what_it_needs(log, monkeypatch):
    log.create_topic("mr", config={"segment.bytes": 1 << 20})
    p = log.partition("mr", 0)
    for i in range(300):
        p.append_records(values(20, 20 * i, size=100))            # ~2.6 kB batches, ~800 kB
    read_sizes = []
    real = os.pread

    def counting(fd, n, pos):
        data = real(fd, n, pos)
        read_sizes.append(len(data))
        return data
    monkeypatch.setattr(os, "pread", counting)
    got = p.read(3000, max_records=1)
    assert [r.offset for r in got] == [3000]
    assert sum(read_sizes) < 200_000, sum(read_sizes)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_many_segments_do_not_exhaust_descriptors(tmp_path):
    from embedlog.storage._partition import MAX_OPEN_SEGMENTS
    n = 4 * MAX_OPEN_SEGMENTS
    open_fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = open_fds()
    with embedlog.open(tmp_path / "log") as log:
        log.create_topic("fd", config={"segment.bytes": 200})
        p = log.partition("fd", 0)
        for i in range(n):
            p.append_records([b"x" * 150])                   # one segment per batch
        assert open_fds() - before <= 3 * MAX_OPEN_SEGMENTS + 10
    with embedlog.open(tmp_path / "log") as log:
        p = log.partition("fd", 0)
        assert len(p.read(0, max_bytes=1 << 20)) == n
        assert open_fds() - before <= 3 * MAX_OPEN_SEGMENTS + 10
