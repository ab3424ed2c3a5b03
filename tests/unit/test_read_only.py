"""Log(read_only=True) (issue #20): a directory that may not be written opens for reading
and nothing in it changes, not even a lock file; every write is refused clearly."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from treesnap import read_only_bind, snapshot

import embedlog
from embedlog.storage import _state as st


def _snapshot(root):
    return snapshot(root, mtimes=True)

def _make(path, partitions=2, batches=5, per=50):
    with embedlog.open(path) as log:
        t = log.create_topic("t", partitions, {"segment.bytes": 4096})
        for b in range(batches):
            for p in range(partitions):
                t.append([b"p%d-%d-%d" % (p, b, i) for i in range(per)], partition=p)
    return [[b"p%d-%d-%d" % (p, b, i) for b in range(batches) for i in range(per)] for p in range(partitions)]


def _values(part):
    out, offset = [], part.log_start_offset
    while offset < part.log_end_offset:
        records = part.read(offset)
        assert records, f"no record at {offset} below the end {part.log_end_offset}"
        out.extend(r.value for r in records)
        offset = records[-1].offset + 1
    return out


def _stale(path):
    """Make every partition state look written in another boot (a backup, a reboot)."""
    for name in os.listdir(path):
        state = os.path.join(path, name, st.STATE_FILE)
        if os.path.exists(state):
            with open(state, "r+b") as f:
                f.seek(32)
                f.write(b"\xff" * 16)


@pytest.mark.parametrize("stale", [False, True], ids=["live-state", "other-boot"])
def test_reads_everything_and_changes_nothing(tmp_path, stale):
    d = tmp_path / "log"
    expected = _make(d)
    if stale:
        _stale(d)
    before = _snapshot(d)
    with embedlog.open(d, read_only=True) as log:
        assert log.topics() == ["t"]
        for p in range(2):
            assert _values(log.partition("t", p)) == expected[p]
    assert _snapshot(d) == before


def test_every_write_is_refused_and_nothing_is_written(tmp_path):
    d = tmp_path / "log"
    _make(d)
    before = _snapshot(d)
    with embedlog.open(d, read_only=True) as log:
        t = log.topic("t")
        writes = [lambda: t.append([b"x"]), lambda: t.append([b"x"], partition=0),
                  lambda: log.create_topic("u"), lambda: log.delete_topic("t"),
                  lambda: log.add_partitions("t", 3), lambda: log.alter_topic_config("t", {"retention.ms": 5}),
                  lambda: log.maintain(), lambda: log.partition("t", 0).delete_records(1),
                  lambda: log.partition("t", 1).compact()]
        for write in writes:
            with pytest.raises(embedlog.ReadOnlyLogError, match="read-only"):
                write()
        assert log.partition("t", 0).log_end_offset == 250
    assert _snapshot(d) == before


def test_torn_tail_and_damaged_index_are_read_around_not_repaired(tmp_path):
    d = tmp_path / "log"
    expected = _make(d, partitions=1, batches=30)
    pdir = d / "t-0"
    segments = sorted(n for n in os.listdir(pdir) if n.endswith(".log"))
    assert len(segments) > 2                      # segment.bytes=4096: several
    with open(pdir / segments[-1], "ab") as f:    # a torn append: half a batch header
        f.write(b"\x00" * 7 + b"\x01\x02")
    with open(pdir / segments[0].replace(".log", ".index"), "r+b") as f:
        f.truncate(3)                             # an index of no whole entry
    _stale(d)                                     # so the open must scan
    before = _snapshot(d)
    with embedlog.open(d, read_only=True) as log:
        part = log.partition("t", 0)
        assert part.log_end_offset == len(expected[0])
        assert _values(part) == expected[0]
        assert [r.value for r in part.read(3, max_bytes=1)][:1] == [expected[0][3]]
    assert _snapshot(d) == before
    with embedlog.open(d) as log:                 # a writable open repairs as before
        assert _values(log.partition("t", 0)) == expected[0]
    assert os.path.getsize(pdir / segments[0].replace(".log", ".index")) % 8 == 0


def test_a_live_writer_keeps_writing_while_a_reader_holds_a_read_only_handle(tmp_path):
    d = tmp_path / "log"
    _make(d, partitions=1, batches=1)
    with embedlog.open(d) as writer, embedlog.open(d, read_only=True) as reader:
        part = reader.partition("t", 0)
        assert part.log_end_offset == 50          # the writer's live state, not a scan
        writer.topic("t").append([b"more"] * 10, partition=0)
        assert part.log_end_offset == 50          # a snapshot: opened before those
        with embedlog.open(d, read_only=True) as again:
            assert again.partition("t", 0).log_end_offset == 60


def test_missing_directory_and_newer_format_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no embedlog directory"):
        embedlog.open(tmp_path / "nothing", read_only=True)
    assert not (tmp_path / "nothing").exists()


def test_a_read_only_mount_opens_read_only_in_the_cli_and_refuses_writes_clearly(tmp_path):
    d = tmp_path / "log"
    expected = _make(d, partitions=1, batches=1)
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only_bind(d, ro):
        with pytest.raises(embedlog.ReadOnlyLogError, match="read_only=True"):
            embedlog.open(ro)
        with embedlog.open(ro, read_only=True) as log:
            assert _values(log.partition("t", 0)) == expected[0]
        cli = [sys.executable, "-m", "embedlog", "--dir", str(ro)]
        r = subprocess.run(cli + ["topics", "describe", "--topic", "t", "--json"], capture_output=True, text=True)
        assert r.returncode == 0 and '"t"' in r.stdout, r.stderr
        r = subprocess.run(cli + ["topics", "create", "--topic", "u"], capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.startswith("Error:") and "Traceback" not in r.stderr, r.stderr
