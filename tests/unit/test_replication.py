"""Mirroring to peer directories (issue #7): byte-identical copies, Kafka's ISR and high
watermark rules, min.insync.replicas, catch-up, truncation of a divergent tail,
promotion and repair. Real files; faults injected through failpoints or a held lock."""
from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

import embedlog
from embedlog import (
    InvalidReplicationFactorError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    StorageError,
)
from embedlog.storage import _failpoints
from embedlog.storage._failover import promote, repair
from embedlog.storage._replication import COPY_LOCK_BASE

T0 = 1_700_000_000_000


def same_files(a: str, b: str) -> list[str]:
    """Segment and index files of two partition folders, compared byte for byte."""
    names = sorted(n for n in os.listdir(a) if n.endswith((".log", ".index", ".timeindex")))
    other = sorted(n for n in os.listdir(b) if n.endswith((".log", ".index", ".timeindex")))
    assert names == other, (names, other)
    for n in names:
        assert filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False), n
    return names


@pytest.fixture
def dirs(tmp_path):
    return str(tmp_path / "primary"), str(tmp_path / "m1"), str(tmp_path / "m2")


@pytest.fixture
def mirrored(dirs):
    primary, m1, m2 = dirs
    log = embedlog.Log(primary, retention_check_interval_ms=0)
    log.add_replica(m1)
    log.add_replica(m2)
    yield log
    _failpoints.disarm()
    if not log._closed:
        log.close()


def fill(part, n, start=0, sync=False, size=40):
    for i in range(start, start + n):
        part.append_records([b"v%d:" % i + b"x" * size], [b"k%d" % (i % 7)], timestamps=[T0 + i], sync=sync)


# ------------------------------------------------------------------ registry and topics

def test_mirrors_are_persisted_and_counted_by_replication_factor(dirs, mirrored):
    primary, m1, m2 = dirs
    with pytest.raises(InvalidReplicationFactorError, match="replication factor 4 needs 3 mirror"):
        mirrored.create_topic("t", 1, replication_factor=4)
    assert "t" not in mirrored.topics()
    t = mirrored.create_topic("t", 2, replication_factor=3)
    assert t.replication_factor == 3
    mirrored.close()
    with embedlog.open(primary) as again:            # another opener agrees
        assert [(r["id"], r["path"]) for r in again.replicas()] == [(1, m1), (2, m2)]
        assert again.topic("t").replication_factor == 3
    with pytest.raises(StorageError, match="is a mirror of"):
        embedlog.open(m1)                            # a mirror cannot be opened as a primary


def test_a_mirror_must_be_empty_or_ours_and_outside_the_log(tmp_path, dirs):
    primary, m1, _ = dirs
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "file").write_text("x")
    with embedlog.open(primary) as log:
        with pytest.raises(StorageError, match="not empty"):
            log.add_replica(str(junk))
        with pytest.raises(StorageError, match="outside the log directory"):
            log.add_replica(os.path.join(primary, "inside"))
        assert log.replicas() == []
        with embedlog.open(str(tmp_path / "other")) as other:
            other.add_replica(m1)
        with pytest.raises(StorageError, match="already a mirror of"):
            log.add_replica(m1)


# ------------------------------------------------------------------ byte-identical copies

def test_mirrors_are_byte_identical_through_rolls_retention_and_compaction(dirs, mirrored):
    primary, m1, m2 = dirs
    t = mirrored.create_topic("t", 1, {"segment.bytes": 1500, "retention.bytes": 6000, "retention.ms": -1,
                                       "cleanup.policy": "compact,delete"}, replication_factor=3)
    p = t.partition(0)
    fill(p, 150, sync=True)                          # acks=all: copied and synced before return
    for m in (m1, m2):
        same_files(p.path, os.path.join(m, "t-0"))
    p.maintain(T0 + 10**6, force_compaction=True)   # deletes and rewrites segments
    fill(p, 5, start=150, sync=True)
    names = same_files(p.path, os.path.join(m1, "t-0"))
    same_files(p.path, os.path.join(m2, "t-0"))
    assert names[0] != "00000000000000000000.index", "retention should have deleted the first segments"
    with open(os.path.join(m1, "topics", "t.json")) as a, open(os.path.join(primary, "topics", "t.json")) as b:
        assert a.read() == b.read()


def test_acks1_reaches_mirrors_through_the_replicator_and_moves_the_high_watermark(dirs, mirrored):
    primary, m1, _ = dirs
    p = mirrored.create_topic("t", 1, replication_factor=2).partition(0)
    fill(p, 1, sync=True)                            # puts the mirror in the ISR
    assert p.mirrors[0].in_isr()
    fill(p, 20, start=1)
    assert p.wait(20, timeout=10), "the replicator copies and moves the high watermark"
    assert p.high_watermark == 21
    deadline = time.monotonic() + 10
    while p.mirrors[0].get(0) < 21 and time.monotonic() < deadline:
        time.sleep(0.005)
    same_files(p.path, os.path.join(m1, "t-0"))


# ------------------------------------------------------------------ ISR and high watermark

def hold_copy_lock(part, slot=0):
    """Another open file description holding a mirror's copy lock: no copy can happen."""
    fd = os.open(os.path.join(part.path, "partition.state"), os.O_RDWR)
    from embedlog.storage import _hotpath as hp
    assert hp.lock(fd, COPY_LOCK_BASE + slot, 1, True, 10)     # the replicator may hold it a moment
    return fd


def test_consumers_read_only_up_to_the_high_watermark(dirs, mirrored):
    p = mirrored.create_topic("t", 1, {"replica.lag.time.max.ms": 60000}, replication_factor=2).partition(0)
    fill(p, 3, sync=True)
    fd = hold_copy_lock(p)
    try:
        fill(p, 5, start=3)                          # acks=1: written, not yet on the mirror
        assert p.log_end_offset == 8 and p.high_watermark == 3
        assert [r.offset for r in p.read(0)] == [0, 1, 2]
        assert not p.wait(3, timeout=0.05)
    finally:
        os.close(fd)                                 # the mirror copies; the watermark moves
    assert p.wait(7, timeout=10)
    assert [r.offset for r in p.read(0)] == list(range(8))


def test_a_lagging_mirror_leaves_the_isr_and_rejoins_when_caught_up(dirs, mirrored):
    t = mirrored.create_topic("t", 1, {"replica.lag.time.max.ms": 100, "min.insync.replicas": 2},
                              replication_factor=2)
    p = t.partition(0)
    fill(p, 2, sync=True)
    fd = hold_copy_lock(p)
    try:
        fill(p, 3, start=2)
        time.sleep(0.25)                             # longer than replica.lag.time.max.ms
        from embedlog.storage._replication import refresh
        refresh(p, durable=False, wait=False)
        st = {r["replica"]: r for r in mirrored.replica_status()}
        assert not st[1]["in_sync"] and st[1]["lag"] == 3
        assert p.high_watermark == 5, "with the mirror out, the ISR is the primary alone"
        with pytest.raises(NotEnoughReplicasError, match="min.insync.replicas=2"):
            p.append_records([b"refused"], sync=True)
        assert p.log_end_offset == 5, "nothing was written"
    finally:
        os.close(fd)
    p.append_records([b"accepted"], sync=True)       # catches the mirror up, which rejoins
    assert {r["replica"]: r["in_sync"] for r in mirrored.replica_status()} == {0: True, 1: True}


def test_io_errors_take_a_mirror_out_and_acks_all_fails_cleanly(dirs, mirrored):
    primary, m1, _ = dirs
    p = mirrored.create_topic("t", 1, {"min.insync.replicas": 2}, replication_factor=2).partition(0)
    fill(p, 2, sync=True)
    _failpoints.arm("mirror.after_copy", OSError(28, "No space left on device"), times=1000)
    # Written but not acknowledged (AFTER_APPEND), or refused before writing if the
    # replicator met the fault first: both are NotEnoughReplicasError, naming the cause.
    with pytest.raises(NotEnoughReplicasError, match="No space left on device"):
        p.append_records([b"x"], sync=True)
    row = [r for r in mirrored.replica_status() if r["replica"] == 1][0]
    assert row["failed"] and not row["in_sync"]
    n = p.log_end_offset
    assert n in (2, 3)
    with pytest.raises(NotEnoughReplicasError) as info:     # now refused before writing
        p.append_records([b"y"], sync=True)
    assert not isinstance(info.value, NotEnoughReplicasAfterAppendError)
    assert p.log_end_offset == n, "nothing was written"
    assert p.append_records([b"z"]).base_offset == n, "acks=1 does not wait for mirrors"
    _failpoints.disarm()
    p.append_records([b"w"], sync=True)              # space is back: the mirror catches up
    same_files(p.path, os.path.join(m1, "t-0"))


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount a tmpfs")
def test_a_full_mirror_filesystem(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        log = embedlog.Log(str(tmp_path / "p"), retention_check_interval_ms=0)
        log.add_replica(str(small / "m"))
        p = log.create_topic("t", 1, {"min.insync.replicas": 2}, replication_factor=2).partition(0)
        acked = 0
        with pytest.raises(NotEnoughReplicasError) as info:
            for i in range(10000):
                p.append_records([os.urandom(1000)], sync=True)
                acked += 1
        assert "No space left" in str(info.value) or "min.insync.replicas=2" in str(info.value)
        assert acked > 50
        n = p.log_end_offset
        assert p.append_records([b"acks=1 still works"]).base_offset == n
        log.close()
    finally:
        subprocess.run(["umount", str(small)])


# ------------------------------------------------------------------ catch-up and divergence

def test_a_removed_mirror_catches_up_from_where_it_stopped(dirs, mirrored):
    primary, m1, _ = dirs
    p = mirrored.create_topic("t", 1, {"segment.bytes": 2000}, replication_factor=2).partition(0)
    fill(p, 30, sync=True)
    before = {n: os.stat(os.path.join(m1, "t-0", n)).st_ino for n in os.listdir(os.path.join(m1, "t-0"))}
    mirrored.remove_replica(m1)
    assert p.append_records([b"alone"], sync=True).base_offset == 30    # min.insync.replicas=1
    assert {r["replica"]: r["in_sync"] for r in mirrored.replica_status()}[1] is False
    fill(p, 100, start=31)
    mirrored.add_replica(m1)
    p.append_records([b"back"], sync=True)
    same_files(p.path, os.path.join(m1, "t-0"))
    first = "00000000000000000000.log"
    assert os.stat(os.path.join(m1, "t-0", first)).st_ino == before[first], "closed segments were not recopied"


def test_promotion_keeps_acks_all_records_and_demotes_the_old_primary(dirs, mirrored):
    primary, m1, m2 = dirs
    p = mirrored.create_topic("t", 1, {"segment.bytes": 2000}, replication_factor=2).partition(0)
    fill(p, 40, sync=True)                           # acks=all: on the mirror
    fd = hold_copy_lock(p)
    fill(p, 10, start=40)                            # acks=1 only: never reached the mirror
    os.close(fd)
    mirrored._abandon()                              # the primary's process dies
    _failpoints.disarm()
    time.sleep(0.05)
    doc = promote(m1)
    assert doc["old_primary"] == primary and primary in doc["fenced"]
    with pytest.raises(StorageError, match="is a mirror of"):
        embedlog.open(primary)                       # fenced: no split brain
    with embedlog.open(m1, retention_check_interval_ms=0) as new:
        q = new.topic("t").partition(0)
        recs = q.read(0, max_bytes=1 << 20)
        assert q.log_end_offset >= 40
        assert [r.value for r in recs[:40]] == [b"v%d:" % i + b"x" * 40 for i in range(40)]
        for i in range(5):                            # different records at the old primary's offsets
            q.append_records([b"new%d" % i], sync=True)
        # The old primary, now a mirror of m1, was truncated to the common prefix and caught up.
        same_files(q.path, os.path.join(primary, "t-0"))
        assert not os.path.exists(os.path.join(primary, "t-0", "partition.state"))


def test_repair_replaces_a_damaged_segment_from_an_in_sync_mirror(dirs, mirrored):
    primary, m1, _ = dirs
    p = mirrored.create_topic("t", 1, {"segment.bytes": 2000}, replication_factor=2).partition(0)
    fill(p, 60, sync=True)
    seg = os.path.join(p.path, "00000000000000000000.log")
    good = open(seg, "rb").read()
    with open(seg, "r+b") as f:                      # a flipped byte in a closed segment
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0xFF]))
    from embedlog.storage._replication import refresh
    p.mirrors[0].close()                              # next copy takes the slow path: every segment
    refresh(p, durable=False, wait=True)              # a copy now must not spread the damage
    assert open(os.path.join(m1, "t-0", "00000000000000000000.log"), "rb").read() == good
    assert "is damaged at position" in p.mirrors[0].last_error
    p._segments_version = -1
    good_prefix = p.read(0, max_bytes=1 << 20)        # what precedes the damage; the next read raises
    with pytest.raises(embedlog.CorruptRecordError, match="00000000000000000000.log"):
        p.read(good_prefix[-1].offset + 1, max_bytes=1 << 20)
    done = repair(p)
    assert len(done) == 1 and done[0]["segment"] == seg
    assert open(seg, "rb").read() == good
    assert len(p.read(0, max_bytes=1 << 20)) == 60


# ------------------------------------------------------------------ another process

CHILD = textwrap.dedent("""
    import sys, embedlog
    log = embedlog.open(sys.argv[1], retention_check_interval_ms=0)
    p = log.topic("t").partition(0)
    for i in range(50):
        p.append_records([b"child%d" % i], sync=True)
    log.close()
""")


def test_a_second_process_replicates_to_the_same_mirrors(dirs, mirrored):
    primary, m1, m2 = dirs
    p = mirrored.create_topic("t", 1, {"min.insync.replicas": 3}, replication_factor=3).partition(0)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, primary])
    for i in range(50):
        p.append_records([b"parent%d" % i], sync=True)
    assert proc.wait(60) == 0
    assert p.log_end_offset == 100
    mirrored.close()
    for m in (m1, m2):
        same_files(os.path.join(primary, "t-0"), os.path.join(m, "t-0"))


def test_producer_reports_not_enough_replicas_in_the_delivery_report(dirs, mirrored):
    primary, m1, _ = dirs
    mirrored.create_topic("t", 1, {"min.insync.replicas": 2}, replication_factor=2)
    mirrored.remove_replica(m1)
    reports = []
    # NOT_ENOUGH_REPLICAS is retriable: the producer retries until delivery.timeout.ms.
    p = embedlog.Producer({"bootstrap.servers": primary, "acks": "all", "delivery.timeout.ms": 300})
    p.produce("t", b"x", on_delivery=lambda err, msg: reports.append(err))
    p.flush()
    assert reports[0] is not None and reports[0].code() == embedlog.KafkaError.NOT_ENOUGH_REPLICAS
    q = embedlog.Producer({"bootstrap.servers": primary, "acks": 1})
    q.produce("t", b"y", on_delivery=lambda err, msg: reports.append(err))
    q.flush()
    assert reports[1] is None, "acks=1 does not need the mirrors"
    assert mirrored.partition("t", 0).log_end_offset == 1


def test_common_prefix_finds_where_a_mirror_diverges(tmp_path):
    from embedlog.storage._records import build_batch
    from embedlog.storage._replication import common_prefix

    def batch(i, value):
        b = bytearray(build_batch([value], timestamp=T0))
        b[0:8] = i.to_bytes(8, "big")          # baseOffset (outside the CRC)
        return bytes(b)
    primary = b"".join(batch(i, b"p%d" % i) for i in range(10))
    sizes = [len(batch(i, b"p%d" % i)) for i in range(10)]
    src = tmp_path / "src"
    src.write_bytes(primary)
    cut = sum(sizes[:6])
    cases = {
        "identical": (primary, len(primary)),
        "torn tail": (primary[:cut + 5], cut),
        "garbage tail": (primary[:cut] + b"\xff" * 100, cut),
        "divergent tail": (primary[:cut] + b"".join(batch(i, b"X%d" % i) for i in range(6, 9)), cut),
        "empty": (b"", 0),
        "longer than the primary's published size": (primary, len(primary)),
    }
    for name, (data, expect) in cases.items():
        dst = tmp_path / name.replace(" ", "_")
        dst.write_bytes(data)
        assert common_prefix(str(src), str(dst), len(primary)) == expect, name
    dst = tmp_path / "ahead"
    dst.write_bytes(primary)
    assert common_prefix(str(src), str(dst), cut) == cut, "never past what the primary published"


# ------------------------------------------------------------------ min.insync.replicas above the replication factor

def produce_one(path, acks, value):
    """One record through the Producer; the delivery report's error (None when delivered)."""
    reports = []
    p = embedlog.Producer({"bootstrap.servers": path, "acks": acks, "delivery.timeout.ms": 300})
    p.produce("t", value, on_delivery=lambda err, msg: reports.append(err))
    assert p.flush(10) == 0
    assert len(reports) == 1
    return reports[0]


def test_min_insync_above_rf1_refuses_acks_all_and_writes_nothing(tmp_path):
    path = str(tmp_path / "log")
    with embedlog.Log(path, retention_check_interval_ms=0) as log:
        with pytest.warns(UserWarning, match="acks=all will always fail with NOT_ENOUGH_REPLICAS"):
            log.create_topic("t", 1, {"min.insync.replicas": 2})        # replication factor 1, no mirrors
        part = log.partition("t", 0)
        with pytest.raises(NotEnoughReplicasError, match="replication factor 1") as info:
            part.append_records([b"direct"], sync=True)
        assert info.value.code == 19 and not isinstance(info.value, NotEnoughReplicasAfterAppendError)
        assert part.log_end_offset == 0
        err = produce_one(path, "all", b"refused")
        assert err is not None and err.code() == embedlog.KafkaError.NOT_ENOUGH_REPLICAS == 19, err
        assert part.log_end_offset == 0, "nothing stored for a refused acks=all record"
        assert produce_one(path, 1, b"acks1") is None, "acks=1 does not count replicas"
        assert produce_one(path, 0, b"acks0") is None
        assert part.append_records([b"plain"]).base_offset == 2
        assert [r.value for r in part.read(0)] == [b"acks1", b"acks0", b"plain"]


def test_lowering_min_insync_to_the_replication_factor_lets_acks_all_through(tmp_path):
    path = str(tmp_path / "log")
    with embedlog.Log(path, retention_check_interval_ms=0) as log:
        with pytest.warns(UserWarning):
            log.create_topic("t", 1, {"min.insync.replicas": 2})
        assert produce_one(path, "all", b"refused").code() == embedlog.KafkaError.NOT_ENOUGH_REPLICAS
        log.alter_topic_config("t", {"min.insync.replicas": 1})
        assert produce_one(path, "all", b"ok") is None
        assert log.partition("t", 0).append_records([b"direct"], sync=True).base_offset == 1
        with pytest.warns(UserWarning, match="replication factor 1: acks=all will always fail"):
            log.alter_topic_config("t", {"min.insync.replicas": 3})
        with pytest.raises(NotEnoughReplicasError):
            log.partition("t", 0).append_records([b"again"], sync=True)
        assert [r.value for r in log.partition("t", 0).read(0)] == [b"ok", b"direct"]


def test_min_insync_above_rf2_with_a_mirror_refuses_acks_all(dirs):
    primary, m1, _ = dirs
    with embedlog.Log(primary, retention_check_interval_ms=0) as log:
        log.add_replica(m1)
        with pytest.warns(UserWarning, match="replication factor 2"):
            log.create_topic("t", 1, {"min.insync.replicas": 3}, replication_factor=2)
        err = produce_one(primary, "all", b"refused")
        assert err is not None and err.code() == embedlog.KafkaError.NOT_ENOUGH_REPLICAS, err
        assert log.partition("t", 0).log_end_offset == 0
        assert produce_one(primary, 1, b"acks1") is None


def test_min_insync_equal_to_rf2_works_while_the_mirror_is_in_sync(dirs):
    primary, m1, _ = dirs
    with embedlog.Log(primary, retention_check_interval_ms=0) as log:
        log.add_replica(m1)
        log.create_topic("t", 1, {"min.insync.replicas": 2}, replication_factor=2)
        for i in range(3):
            assert produce_one(primary, "all", b"r%d" % i) is None
        part = log.partition("t", 0)
        assert part.log_end_offset == 3
        rows = log.replica_status(["t"])
        assert [(r["role"], r["in_sync"], r["log_end_offset"]) for r in rows] == \
            [("primary", True, 3), ("mirror", True, 3)], rows
        assert part.high_watermark == 3
    same_files(os.path.join(primary, "t-0"), os.path.join(m1, "t-0"))


def test_wire_produce_acks_all_answers_not_enough_replicas(embedlog_broker, embedlog):
    ck = pytest.importorskip("confluent_kafka", reason="confluent-kafka is a test extra")
    with pytest.warns(UserWarning):
        embedlog.create_topic("t", 1, {"min.insync.replicas": 2})
    reports = []

    def send(acks, value):
        p = ck.Producer({"bootstrap.servers": embedlog_broker.bootstrap, "acks": acks, "retries": 0,
                         "message.timeout.ms": 5000, "log_level": 3})
        p.produce("t", value, on_delivery=lambda err, msg: reports.append(err))
        assert p.flush(10) == 0
        return reports[-1]
    err = send("all", b"refused")
    assert err is not None and err.code() == ck.KafkaError.NOT_ENOUGH_REPLICAS, err
    assert embedlog.partition("t", 0).log_end_offset == 0
    assert send(1, b"acks1") is None
    assert [r.value for r in embedlog.partition("t", 0).read(0)] == [b"acks1"]


def test_common_prefix_when_the_source_shrank_under_it(tmp_path):
    """src_size is read before the scan; if the source file is then cut shorter (a
    compaction swap), the mirror's bytes past the new end still match what is left: the
    common prefix is the whole batches inside the shorter source, not a StopIteration
    that would kill the replicator thread."""
    from embedlog.storage._records import build_batch
    from embedlog.storage._replication import common_prefix

    batches = []
    for i in range(6):
        b = bytearray(build_batch([b"v%d" % i], timestamp=T0))
        b[0:8] = i.to_bytes(8, "big")
        batches.append(bytes(b))
    whole = b"".join(batches)
    src, dst = tmp_path / "src", tmp_path / "dst"
    dst.write_bytes(whole)
    keep = sum(map(len, batches[:4]))
    src.write_bytes(whole[:keep])                  # shrank: the caller still says len(whole)
    assert common_prefix(str(src), str(dst), len(whole)) == keep
