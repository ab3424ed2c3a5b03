"""Crash recovery on real files: torn tails, CRC damage, lost indexes, clean vs unclean reopen."""
import os

import pytest

import embedlog
from embedlog import CorruptRecordError
from embedlog.storage._segment import Segment, list_segments


def make(tmp_path, batches=30, segment_bytes=1500, per=4):
    path = tmp_path / "log"
    log = embedlog.open(path)
    log.create_topic("t", config={"segment.bytes": segment_bytes, "index.interval.bytes": 300})
    p = log.partition("t", 0)
    for i in range(batches):
        p.append_records([b"v%05d" % (per * i + j) for j in range(per)], keys=[b"k"] * per)
    return path, log, p


def pdir(path):
    return os.path.join(path, "t-0")


def seg_file(path, base, ext="log"):
    return os.path.join(pdir(path), f"{base:020d}.{ext}")


def reboot(path):
    """What a power cut + reboot leaves for embedlog to see: the shared state is not
    trusted any more (its boot id would differ). Zeroing its magic has the same effect."""
    with open(os.path.join(pdir(path), "partition.state"), "r+b") as f:
        f.write(bytes(8))


def expected_values(n, per=4):
    return [b"v%05d" % i for i in range(n)]


def read_all(p):
    return [r.value for r in p.read(p.log_start_offset, max_bytes=1 << 30)]


def test_torn_tail_is_truncated_after_a_crash(tmp_path):
    path, log, p = make(tmp_path)
    log._abandon()
    last = list_segments(pdir(path))[-1]
    size = os.path.getsize(seg_file(path, last))
    good_batch = embedlog.build_batch([b"x" * 50])
    with open(seg_file(path, last), "ab") as f:
        f.write(good_batch[:40])                     # a torn write of a new batch
    reboot(path)
    with embedlog.open(path) as log2:
        p2 = log2.partition("t", 0)
        assert p2.log_end_offset == 120
        assert read_all(p2) == expected_values(120)
        assert os.path.getsize(seg_file(path, last)) == size
        p2.append_records([b"after"])
        assert p2.read(120)[0].value == b"after"


def test_crc_failing_tail_batch_is_dropped(tmp_path):
    path, log, p = make(tmp_path)
    log._abandon()
    last = list_segments(pdir(path))[-1]
    with open(seg_file(path, last), "r+b") as f:
        f.seek(-3, os.SEEK_END)
        b = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([b[0] ^ 0x40]))
    reboot(path)
    with embedlog.open(path) as log2:
        p2 = log2.partition("t", 0)
        assert p2.log_end_offset == 116                # the last batch (4 records) is gone
        assert read_all(p2) == expected_values(116)


def test_writer_killed_mid_append_is_recovered_by_the_next_writer(tmp_path):
    path, log, p = make(tmp_path)
    # Leave things as a writer killed between its pwrite and its publish would.
    p.state.set_in_append(999_999)
    last = list_segments(pdir(path))[-1]
    with open(seg_file(path, last), "ab") as f:
        f.write(b"\x00" * 17)
    log._abandon()
    with embedlog.open(path) as log2:                  # same boot: no reboot() here
        p2 = log2.partition("t", 0)
        assert p2.state.in_append() == 0
        assert read_all(p2) == expected_values(120)
        p2.append_records([b"next"])
        assert p2.log_end_offset == 121


def test_damage_in_the_middle_is_never_skipped(tmp_path):
    path, log, p = make(tmp_path)
    first = list_segments(pdir(path))[0]
    with open(seg_file(path, first), "r+b") as f:
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 1]))
    before = p.read(0, max_bytes=1 << 20)          # what precedes the damage is handed out...
    assert before and [r.value for r in before] == expected_values(len(before))
    with pytest.raises(CorruptRecordError) as e:     # ...and the damaged batch is an error
        p.read(len(before), max_bytes=1 << 20)
    assert e.value.path == seg_file(path, first)
    assert e.value.position is not None and e.value.position <= 200
    assert seg_file(path, first) in str(e.value) and "CRC" in str(e.value)
    with pytest.raises(CorruptRecordError):
        p.read(len(before), max_bytes=1 << 20)       # stays an error: never skipped
    log.close()


def test_missing_index_is_rebuilt_identically(tmp_path):
    path, log, p = make(tmp_path)
    log.close()
    bases = list_segments(pdir(path))
    assert len(bases) >= 3
    originals = {}
    for base in bases[:-1]:
        for ext in ("index", "timeindex"):
            originals[(base, ext)] = open(seg_file(path, base, ext), "rb").read()
            os.unlink(seg_file(path, base, ext))
    reboot(path)
    with embedlog.open(path) as log2:
        p2 = log2.partition("t", 0)
        assert read_all(p2) == expected_values(120)
    for (base, ext), data in originals.items():
        assert open(seg_file(path, base, ext), "rb").read() == data, (base, ext)


def test_damaged_index_gives_correct_reads_and_is_rebuilt(tmp_path):
    path, log, p = make(tmp_path)
    base = list_segments(pdir(path))[0]
    idx = seg_file(path, base, "index")
    original = open(idx, "rb").read()
    assert len(original) >= 16
    with open(idx, "r+b") as f:
        f.write(b"\xff" * len(original))               # same size, nonsense entries
    log.close()
    with embedlog.open(path) as log2:
        p2 = log2.partition("t", 0)
        for off in (0, 5, 13, 21):
            assert p2.read(off, max_records=1)[0].value == b"v%05d" % off
    assert open(idx, "rb").read() == original


def test_clean_close_means_no_scan_on_reopen(tmp_path, monkeypatch):
    path, log, p = make(tmp_path)
    log.close()
    reboot(path)

    def no_scan(*a, **k):
        raise AssertionError("a clean close must not be followed by a scan")
    monkeypatch.setattr(Segment, "scan", no_scan)
    with embedlog.open(path) as log2:
        p2 = log2.partition("t", 0)
        assert p2.log_end_offset == 120
        monkeypatch.undo()
        assert read_all(p2) == expected_values(120)


def test_unclean_reopen_scans_only_from_the_recovery_point(tmp_path, monkeypatch):
    path, log, p = make(tmp_path)
    bases = list_segments(pdir(path))
    log._abandon()
    reboot(path)
    scanned = []
    real = Segment.scan

    def spy(self, *a, **k):
        scanned.append(self.base_offset)
        return real(self, *a, **k)
    monkeypatch.setattr(Segment, "scan", spy)
    with embedlog.open(path) as log2:
        assert log2.partition("t", 0).log_end_offset == 120
    assert scanned == [bases[-1]]                      # rolled segments were fsynced: trusted


def test_segments_after_a_damaged_unflushed_segment_are_removed(tmp_path):
    path, log, p = make(tmp_path)
    bases = list_segments(pdir(path))
    log._abandon()
    # Pretend nothing was ever checkpointed (recovery point 0): every segment is scanned.
    os.unlink(os.path.join(pdir(path), "partition.checkpoint"))
    with open(seg_file(path, bases[1]), "r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 8)
    reboot(path)
    with embedlog.open(path) as log2:
        p2 = log2.partition("t", 0)
        end = p2.log_end_offset
        assert bases[1] <= end < 120
        assert read_all(p2) == expected_values(end)
        assert list_segments(pdir(path)) == bases[:2]


def test_crash_during_recovery_is_recovered_again(tmp_path, monkeypatch):
    path, log, p = make(tmp_path)
    log._abandon()
    reboot(path)

    def boom(self, r):
        raise KeyboardInterrupt("killed while rebuilding indexes")
    monkeypatch.setattr(Segment, "write_indexes", boom)
    with pytest.raises(KeyboardInterrupt):
        embedlog.open(path).partition("t", 0)
    monkeypatch.undo()
    with embedlog.open(path) as log2:
        assert read_all(log2.partition("t", 0)) == expected_values(120)


def test_newer_state_version_is_refused(tmp_path):
    path, log, p = make(tmp_path, batches=1)
    log.close()
    with open(os.path.join(pdir(path), "partition.state"), "r+b") as f:
        f.seek(48)
        f.write((7).to_bytes(4, "little"))
    with pytest.raises(embedlog.FormatVersionError, match="newer embedlog"):
        embedlog.open(path).partition("t", 0)


def test_damaged_base_offset_outside_the_crc_is_caught(tmp_path):
    """baseOffset is not covered by the CRC (Kafka stamps it at append time), so a flipped
    bit there must be caught by the offset continuity check, never handed out as data."""
    path, log, p = make(tmp_path)
    batch_size = len(embedlog.build_batch([b"v%05d" % j for j in range(4)], keys=[b"k"] * 4))
    with open(seg_file(path, 0), "r+b") as f:
        f.seek(2 * batch_size + 7)                 # low byte of the third batch's baseOffset
        f.write(b"\x30")
    got = p.read(0, max_bytes=1 << 20)
    assert [r.value for r in got] == expected_values(8)   # the two batches in front of it
    with pytest.raises(CorruptRecordError, match="base offset 48, expected 8"):
        p.read(8)
    log.close()


def test_crash_while_dropping_segments_after_damage_leaves_no_gap(tmp_path, monkeypatch):
    path, log, p = make(tmp_path, batches=60)
    bases = list_segments(pdir(path))
    assert len(bases) >= 5
    log._abandon()
    os.unlink(os.path.join(pdir(path), "partition.checkpoint"))      # scan everything
    with open(seg_file(path, bases[1]), "r+b") as f:                    # damage segment 1
        f.seek(150)
        f.write(b"\xee" * 4)
    reboot(path)
    real = Segment.delete_files
    calls = []

    def dies_on_second(self):
        calls.append(self.base_offset)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while deleting segments")
        return real(self)
    monkeypatch.setattr(Segment, "delete_files", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        embedlog.open(path).partition("t", 0)
    monkeypatch.undo()
    assert calls[0] == bases[-1]                       # newest first
    with embedlog.open(path) as log2:
        p2 = log2.partition("t", 0)
        end = p2.log_end_offset
        assert read_all(p2) == expected_values(end)    # a gap-free prefix
        assert end < bases[2]
        assert list_segments(pdir(path)) == bases[:2]


def test_damaged_active_index_is_repaired_without_a_reboot(tmp_path):
    path, log, p = make(tmp_path, batches=12, segment_bytes=1 << 20)
    assert list_segments(pdir(path)) == [0]
    idx = seg_file(path, 0, "index")
    original = open(idx, "rb").read()
    assert len(original) >= 16
    with open(idx, "r+b") as f:
        f.write(b"\x7f" * len(original))
    log.close()
    with embedlog.open(path) as log2:                  # state still valid: no recovery
        p2 = log2.partition("t", 0)
        for off in (47, 0, 30):
            assert p2.read(off, max_records=1)[0].value == b"v%05d" % off
        assert open(idx, "rb").read() == original
        p2.append_records([b"more"])
        assert p2.read(48)[0].value == b"more"
