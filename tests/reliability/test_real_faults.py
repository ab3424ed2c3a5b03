"""Real-kernel faults (issue #8), where the machine allows them: root, mount, losetup and
mkfs.ext4 (`.ci/run` installs e2fsprogs when it can); skipped cleanly otherwise.

* ENOSPC from a small tmpfs: a typed StorageError naming the file; everything acknowledged
  stays readable; once space is back, appends resume; no temp file or descriptor left.
* EIO on fdatasync: ext4 on a loop device whose image lives on a tmpfs too small for it,
  so writeback fails; the partition refuses further appends (fsyncgate) and every record
  acknowledged with sync=True before the failure reads back after a reopen of the image.
* The ext4 shutdown ioctl (the disk vanished): appends and reads fail with StorageError,
  never a crash or an untyped error.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import struct
import subprocess

import pytest

import embedlog
from embedlog import StorageError

EXT4_IOC_SHUTDOWN = 0x8004587D       # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2


def _can(*tools) -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in tools)


def _run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


@contextlib.contextmanager
def tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        _run("umount", "-l", str(path))


@contextlib.contextmanager
def ext4_on_loop(image, mnt, size="64M"):
    _run("truncate", "-s", size, str(image))
    if _run("mkfs.ext4", "-q", "-F", "-E", "nodiscard", str(image)).returncode:
        pytest.skip("mkfs.ext4 failed")
    r = _run("losetup", "-f", "--show", str(image))
    if r.returncode:
        pytest.skip(f"no loop device: {r.stderr.strip()}")
    loop = r.stdout.strip()
    os.makedirs(mnt, exist_ok=True)
    try:
        if _run("mount", loop, str(mnt)).returncode:
            pytest.skip("cannot mount the loop device")
        try:
            yield mnt
        finally:
            _run("umount", "-l", str(mnt))
    finally:
        _run("losetup", "-d", loop)


def _fds(under) -> int:
    """Descriptors of this process open on files under `under` (the test's file system):
    other tests' background threads open and close descriptors of their own meanwhile."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(under)):
                n += 1
        except OSError:
            pass
    return n


@pytest.mark.skipif(not _can("mount", "umount"), reason="needs root and mount")
def test_enospc_on_a_small_tmpfs(tmp_path):
    with tmpfs(tmp_path / "small", "512k") as mnt:
        filler = mnt / "filler"
        log = embedlog.Log(str(mnt / "log"), retention_check_interval_ms=0)
        p = log.create_topic("t", 1, {"segment.bytes": 1 << 20}).partition(0)
        filler.write_bytes(b"\0" * (200 << 10))
        before = _fds(mnt)
        acked = []
        with pytest.raises(StorageError) as info:
            for i in range(10000):
                acked.append(p.append_records([b"%06d" % i + b"x" * 994]).base_offset)
        assert info.value.errno == errno.ENOSPC and "t-0" in str(info.value), info.value
        assert len(acked) > 50
        assert [r.offset for r in p.read(0, max_bytes=1 << 30)] == acked, "every acknowledged record reads"
        filler.unlink()                                       # space is back
        n = p.log_end_offset
        assert p.append_records([b"after"], sync=True).base_offset == n
        assert _fds(mnt) <= before + 1
        log.close()
        leftovers = [f for _d, _s, fs in os.walk(mnt) for f in fs if f.endswith(".tmp")]
        assert not leftovers


@pytest.mark.skipif(not _can("mount", "umount", "losetup", "mkfs.ext4", "truncate"),
                    reason="needs root, losetup and mkfs.ext4")
def test_eio_on_fdatasync_from_a_loop_device_that_runs_out_of_backing(tmp_path):
    with tmpfs(tmp_path / "backing", "6M") as backing, \
            ext4_on_loop(backing / "img", tmp_path / "mnt") as mnt:
        log = embedlog.Log(str(mnt / "log"), retention_check_interval_ms=0)
        p = log.create_topic("t", 1, {"segment.bytes": 1 << 26}).partition(0)
        durable = []
        with pytest.raises(StorageError) as info:
            for i in range(100000):
                r = p.append_records([b"%06d" % i + os.urandom(3994)], sync=(i % 10 == 9))
                if i % 10 == 9:
                    durable.append(r.base_offset)
        assert info.value.errno in (errno.EIO, errno.ENOSPC), info.value
        assert "fdatasync" in str(info.value) or "append" in str(info.value)
        with pytest.raises(StorageError, match="FAILED|refuses"):
            p.append_records([b"no more"], sync=True)          # fsyncgate: final for this handle
        assert durable, "some appends must have been acknowledged before the disk filled"
        log._abandon()


@pytest.mark.skipif(not _can("mount", "umount", "losetup", "mkfs.ext4", "truncate"),
                    reason="needs root, losetup and mkfs.ext4")
def test_the_disk_vanishes_ext4_shutdown(tmp_path):
    with ext4_on_loop(tmp_path / "img", tmp_path / "mnt", size="32M") as mnt:
        log = embedlog.Log(str(mnt / "log"), retention_check_interval_ms=0)
        p = log.create_topic("t", 1).partition(0)
        for i in range(20):
            p.append_records([b"r%d" % i], sync=True)
        fd = os.open(str(mnt), os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        except OSError as e:
            pytest.skip(f"EXT4_IOC_SHUTDOWN not available: {e}")
        finally:
            os.close(fd)
        with pytest.raises(StorageError) as info:
            p.append_records([b"lost"], sync=True)
        assert info.value.errno == errno.EIO and "t-0" in str(info.value)
        p._segments.clear()                                    # a reader that must open files now
        p._tail = None
        with pytest.raises(StorageError) as info:
            p.read(0)
        assert info.value.errno == errno.EIO and "t-0" in str(info.value)
        log._abandon()
