"""Regression tests for the defects a review of retention, compaction and mirroring found
(each failed before its fix)."""
from __future__ import annotations

import os
import threading

import embedlog
from embedlog.storage._failover import promote
from embedlog.storage._records import build_batch
from embedlog.storage._replication import common_prefix
from embedlog.storage._state import write_atomic

T0 = 1_700_000_000_000


def test_write_atomic_from_two_threads_into_one_folder(tmp_path):
    """A roll's partition.checkpoint and the cleaner's cleaner.checkpoint shared one temp name."""
    errors = []

    def writer(name, payload):
        try:
            for _ in range(300):
                write_atomic(tmp_path / name, payload)
        except OSError as e:
            errors.append(e)
    threads = [threading.Thread(target=writer, args=("a", b"A" * 100)),
               threading.Thread(target=writer, args=("b", b"B" * 50))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert (tmp_path / "a").read_bytes() == b"A" * 100 and (tmp_path / "b").read_bytes() == b"B" * 50
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_one_damaged_partition_does_not_stop_maintenance_of_the_others(tmp_path):
    with embedlog.open(tmp_path / "log", retention_check_interval_ms=0) as log:
        a = log.create_topic("a", 1, {"segment.bytes": 300, "cleanup.policy": "compact"}).partition(0)
        b = log.create_topic("b", 1, {"segment.bytes": 300, "retention.ms": 1000}).partition(0)
        for p in (a, b):
            for i in range(12):
                p.append_records([b"x" * 60], [b"k%d" % (i % 2)], timestamps=[T0 + i])
        seg = sorted(n for n in os.listdir(a.path) if n.endswith(".log"))[1]
        with open(os.path.join(a.path, seg), "r+b") as f:   # the cleaner of a meets a CRC error
            f.seek(70)
            f.write(b"\xff\xff")
        done = log.maintain(T0 + 10**6)
        assert "CorruptRecordError" in done["a"][0]["error"]
        assert done["b"][0]["retention"]["deleted_segments"] > 0, "b is maintained all the same"
        assert b.log_start_offset == 12


def test_a_maintenance_pass_leaves_no_segment_descriptors_open(tmp_path):
    def fds():
        return len(os.listdir("/proc/self/fd"))
    with embedlog.open(tmp_path / "log", retention_check_interval_ms=0) as log:
        t = log.create_topic("t", 6, {"segment.bytes": 200, "retention.ms": -1})
        for p in t.partitions:
            for _ in range(30):
                p.append_records([b"y" * 80])
        for p in t.partitions:
            for seg in p._segments.values():     # as a process that only writes elsewhere
                seg.close()                      # (closed, not dropped: ~540 descriptors would
            p._segments.clear()                  # stay open in the test process for good)
        before = fds()
        log.maintain(T0)
        assert fds() - before <= 6, "at most the partitions' own state files"


def test_common_prefix_stops_at_the_first_difference_even_if_later_batches_match(tmp_path):
    def batch(i, value):
        b = bytearray(build_batch([value], timestamp=T0))
        b[0:8] = i.to_bytes(8, "big")
        return bytes(b)
    src = b"".join(batch(i, b"same%d" % i) for i in range(5))
    dst = batch(0, b"same0") + batch(1, b"OLD1!") + b"".join(batch(i, b"same%d" % i) for i in range(2, 5))
    assert len(src) == len(dst)
    (tmp_path / "s").write_bytes(src)
    (tmp_path / "d").write_bytes(dst)
    assert common_prefix(str(tmp_path / "s"), str(tmp_path / "d"), len(src)) == len(batch(0, b"same0"))


def test_compaction_stops_below_the_high_watermark(tmp_path):
    """Records a lagging mirror does not have must not make committed ones obsolete."""
    log = embedlog.Log(str(tmp_path / "p"), retention_check_interval_ms=0)
    log.add_replica(str(tmp_path / "m"))
    p = log.create_topic("t", 1, {"cleanup.policy": "compact", "segment.bytes": 300,
                                  "replica.lag.time.max.ms": 60000}, replication_factor=2).partition(0)
    p.append_records([b"committed"], [b"a"], sync=True)
    from embedlog.storage import _hotpath as hp
    from embedlog.storage._replication import COPY_LOCK_BASE
    fd = os.open(os.path.join(p.path, "partition.state"), os.O_RDWR)
    assert hp.lock(fd, COPY_LOCK_BASE, 1, True, 10)          # the mirror cannot copy
    try:
        for i in range(10):
            p.append_records([b"uncommitted%d" % i], [b"a"])
        assert p.high_watermark == 1
        p.compact(T0)
        assert [(r.offset, r.value) for r in p.read(0)] == [(0, b"committed")]
    finally:
        os.close(fd)
        log.close()


def test_a_promoted_mirror_of_a_once_compacted_topic_keeps_its_records(tmp_path):
    primary, mirror = str(tmp_path / "p"), str(tmp_path / "m")
    log = embedlog.Log(primary, retention_check_interval_ms=0)
    log.add_replica(mirror)
    p = log.create_topic("t", 1, {"cleanup.policy": "compact", "segment.bytes": 300},
                         replication_factor=2).partition(0)
    for i in range(30):
        p.append_records([b"v%d" % i], [b"k%d" % (i % 3)], sync=True)
    p.compact(T0)
    log.alter_topic_config("t", {"cleanup.policy": "delete"})    # gaps stay in the offsets
    for i in range(30, 35):
        p.append_records([b"v%d" % i], [b"k%d" % (i % 3)], sync=True)
    expect = [(r.offset, r.value) for r in p.read(0, max_bytes=1 << 20)]
    log._abandon()
    promote(mirror, fence=False)
    with embedlog.open(mirror) as new:
        q = new.partition("t", 0)
        assert [(r.offset, r.value) for r in q.read(q.log_start_offset, max_bytes=1 << 20)] == expect


def _compacted_mirror(tmp_path):
    log = embedlog.Log(str(tmp_path / "p"), retention_check_interval_ms=0)
    log.add_replica(str(tmp_path / "m1"))
    p = log.create_topic("c", 1, {"cleanup.policy": "compact", "segment.ms": 10},
                         replication_factor=2).partition(0)
    for i in range(12):                          # one segment per record (segment.ms)
        p.append_records([b"v%d" % i], [b"k%d" % i], timestamps=[T0 + 100 * i], sync=True)
    return log, p


def _promoted_offsets(tmp_path):
    import shutil
    copy = str(tmp_path / "m1copy")
    shutil.copytree(str(tmp_path / "m1"), copy)
    promote(copy, fence=False)
    with embedlog.open(copy, retention_check_interval_ms=0) as new:
        return [r.offset for r in new.partition("c", 0).read(0, max_bytes=1 << 20)]


def test_a_mirror_copy_racing_a_compaction_swap_gives_up_instead_of_mixing(tmp_path, monkeypatch):
    from embedlog.storage import _replication
    log, p = _compacted_mirror(tmp_path)
    acked = [r.offset for r in p.read(0, max_bytes=1 << 20)]
    other = embedlog.Log(str(tmp_path / "p"), retention_check_interval_ms=0).partition("c", 0)
    real = _replication.list_segments

    def racing(path):                             # the cleaner swaps right after the copy listed
        out = real(path)
        if path == p.path:
            monkeypatch.setattr(_replication, "list_segments", real)
            done = other.compact(T0 + 10**6)
            assert done["segments_out"] < done["segments_in"]
        return out
    monkeypatch.setattr(_replication, "list_segments", racing)
    p.mirrors[0].close()                          # the slow path, as after any roll
    p.mirrors[0].sync(False, 1)
    p.mirrors[0].sync(False, 1)                   # the next copy completes
    assert set(acked) <= set(_promoted_offsets(tmp_path))
    log.close()


def test_a_mirror_copy_killed_while_replacing_merged_segments(tmp_path, monkeypatch):
    from embedlog.storage import _failpoints
    log, p = _compacted_mirror(tmp_path)
    p.compact(T0 + 10**6)                         # merges segments on the primary
    kept = [r.offset for r in p.read(0, max_bytes=1 << 20)]

    class Killed(BaseException):
        pass

    def die():
        raise Killed()
    _failpoints.arm("cleaner.swap.deleted_one", die)   # inside the mirror's committed swap
    p.mirrors[0].close()
    try:
        p.mirrors[0].sync(False, 1)
    except Killed:
        pass
    finally:
        _failpoints.disarm()
    assert set(kept) <= set(_promoted_offsets(tmp_path)), "the promoted mirror finishes the swap"
    log._abandon()


def test_a_mirror_whose_fdatasync_failed_is_rewritten_not_trusted(tmp_path):
    """fsyncgate on a mirror: after a failed fdatasync the kernel may have dropped the pages
    and marked them clean, so a later fdatasync of the same file succeeds without them. The
    mirror's segment must be rewritten through a new file before it counts again."""
    import errno as _errno

    from embedlog import NotEnoughReplicasError
    from embedlog.storage import _io
    log = embedlog.Log(str(tmp_path / "p"), retention_check_interval_ms=0)
    log.add_replica(str(tmp_path / "m"))
    p = log.create_topic("t", 1, {"min.insync.replicas": 2}, replication_factor=2).partition(0)
    for i in range(5):
        p.append_records([b"r%d" % i], sync=True)
    seg = os.path.join(str(tmp_path / "m"), "t-0", "00000000000000000000.log")
    inode = os.stat(seg).st_ino
    failed = []

    def hook(op, real, *args, **kwargs):
        if op == "fdatasync" and str(tmp_path / "m") in str(args[-1] if len(args) > 1 else "") and not failed:
            failed.append(args)
            raise OSError(_errno.EIO, "Input/output error")
        return real(*args, **kwargs)
    _io.install(hook)
    try:
        try:
            p.append_records([b"during"], sync=True)
        except NotEnoughReplicasError:
            pass
    finally:
        _io.uninstall()
    assert failed, "the mirror's fdatasync should have been failed"
    p.append_records([b"after"], sync=True)                  # the mirror comes back in
    assert os.stat(seg).st_ino != inode, "the suspect file was replaced, not fdatasync'd again"
    assert open(seg, "rb").read() == open(os.path.join(p.path, "00000000000000000000.log"), "rb").read()
    assert {r["replica"]: r["in_sync"] for r in log.replica_status()} == {0: True, 1: True}
    log.close()
