"""Regression tests for what the I/O-fault and crash suites found (issue #8), one per fix.
The fail-at-every-call loops in test_io_faults.py find each again if it comes back;
these name the exact call that failed."""
from __future__ import annotations

import errno

import pytest

from embedlog import StorageError

from . import crashpoints as cp
from .iofault import FailAt, fds_under, installed


@pytest.fixture
def log_dir(tmp_path):
    return str(tmp_path / "log")


def test_a_failed_checkpoint_write_in_an_append_is_a_storage_error(log_dir):
    """The first append of a handle rewrites a clean checkpoint; when that write failed the
    append raised a bare OSError instead of StorageError."""
    with cp.open_log(log_dir) as log:
        log.create_topic("t")
    with cp.open_log(log_dir) as log:
        p = log.partition("t", 0)
        with installed(FailAt(1, errno.ENOSPC, only=("write",))):
            with pytest.raises(StorageError) as e:
                p.append_records([b"x"])
        assert e.value.errno == errno.ENOSPC and e.value.path.endswith(".tmp")
        assert p.append_records([b"y"]).base_offset == 0          # and the next append works


def test_a_failed_segment_create_leaks_no_descriptor(log_dir):
    """Segment.create opened the .log, then failed to open the .index: the .log's
    descriptor was never closed."""
    with cp.open_log(log_dir) as log:
        log.create_topic("t", config={"segment.bytes": 14})
    with cp.open_log(log_dir) as log:
        p = log.partition("t", 0)
        p.append_records([b"first"])
        with installed(FailAt(1, errno.EMFILE, only=("open",), path_filter="00000000000000000001.index")) as f:
            with pytest.raises(StorageError):
                p.append_records([b"rolls"])        # the roll creates 00000000000000000001.*
        assert f.failed
    assert not fds_under(log_dir)


def test_a_failed_folder_fsync_in_a_roll_leaks_no_descriptor(log_dir):
    """The roll created the new segment's three files, then the folder's fsync failed: the
    new segment's descriptors were never closed."""
    with cp.open_log(log_dir) as log:
        log.create_topic("t", config={"segment.bytes": 14})
    with cp.open_log(log_dir) as log:
        p = log.partition("t", 0)
        p.append_records([b"first"])
        with installed(FailAt(1, errno.EIO, only=("fsync_dir",))):
            with pytest.raises(StorageError):
                p.append_records([b"rolls"])
    assert not fds_under(log_dir)


def test_a_failed_topic_creation_names_the_file(log_dir):
    """create_topic wrapped a partition's StorageError (which carries `path`, not
    `filename`) into one whose path was None."""
    with cp.open_log(log_dir) as log:
        with installed(FailAt(1, errno.ENOSPC, only=("mkdir",))):
            with pytest.raises(StorageError) as e:
                log.create_topic("new")
        assert e.value.errno == errno.ENOSPC and e.value.path.endswith("new-0")
        log.create_topic("new")                     # and once space is back it works


def test_a_partition_state_that_cannot_be_sized_leaks_no_descriptor(log_dir):
    """partition.state was opened, then extending it to 4096 bytes failed: its descriptor
    was never closed."""
    with cp.open_log(log_dir) as log:
        with installed(FailAt(1, errno.ENOSPC, only=("ftruncate",), path_filter="partition.state")):
            with pytest.raises(StorageError):
                log.create_topic("new")
        assert not fds_under(f"{log_dir}/new-0")


def test_a_partition_whose_recovery_fails_leaks_no_descriptor(log_dir):
    """Opening a partition runs recovery; when recovery failed (here: creating the first
    segment), the half-opened Partition kept partition.state open and mapped."""
    with cp.open_log(log_dir) as log:
        with installed(FailAt(1, errno.EIO, only=("open",), path_filter="00000000000000000000.log")):
            with pytest.raises(StorageError):
                log.create_topic("new")
        assert not fds_under(f"{log_dir}/new-0")


@pytest.mark.parametrize("op", ["write", "fsync", "replace"])
def test_a_failed_write_atomic_leaves_no_temp_file(tmp_path, op):
    """write_atomic (checkpoints, topic files) left its `.<pid>.tmp` behind when the write,
    the fsync or the rename failed; only a later recovery or topic creation removed it."""
    from embedlog.storage import _state
    target = tmp_path / "file.json"
    target.write_bytes(b"old\n")
    with installed(FailAt(1, errno.ENOSPC, only=(op,))):
        with pytest.raises(OSError):
            _state.write_atomic(target, b"new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]
    assert target.read_bytes() == b"old\n"
