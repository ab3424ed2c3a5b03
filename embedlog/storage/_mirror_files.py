"""The files of a mirror copy (FORMAT.md §15; split from _replication.py): byte ranges and
prefixes copied between descriptors, whole small files, fdatasync of a path, and the common
prefix of a primary's and a mirror's segment (where a copy may resume).
"""
from __future__ import annotations

import os

from . import _io
from . import _state as st
from ._errors import EmbedlogError
from ._records import iter_batches, peek_header

COPY_CHUNK = 8 << 20              # bytes a copy moves per call

def _copy_topic_config_of(mirror):
    """topics/<name>.json of the primary, copied to the mirror when it changed."""
    src = os.path.join(os.path.dirname(mirror.part.path), "topics", mirror.part.topic + ".json")
    try:
        s = os.stat(src)
    except FileNotFoundError:
        return
    key = (s.st_ino, s.st_mtime_ns, s.st_size)
    if mirror._config_seen == key:
        return
    _io.makedirs(os.path.join(mirror.root, "topics"), exist_ok=True)
    with open(src, "rb") as f:
        data = f.read()
    st.write_atomic(os.path.join(mirror.root, "topics", mirror.part.topic + ".json"), data)
    mirror._config_seen = key


def _copy_cleaner_checkpoint(src_dir, dst_dir):
    """A compacted partition's offsets have gaps; its cleaner.checkpoint says so (FORMAT.md
    §14). A mirror needs it before the first compacted segment reaches it, or a promoted
    mirror would take the first gap for damage."""
    from ._cleaner import CLEANER_CHECKPOINT
    src = os.path.join(src_dir, CLEANER_CHECKPOINT)
    try:
        with open(src, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return
    dst = os.path.join(dst_dir, CLEANER_CHECKPOINT)
    try:
        with open(dst, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    st.write_atomic(dst, data)


def _create(path):
    os.close(_io.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644))


def _fdatasync_path(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        _io.fdatasync(fd, path)
    finally:
        os.close(fd)


def _copy_fds(sfd: int, dfd: int, start: int, end: int, where):
    pos = start
    while pos < end:
        buf = os.pread(sfd, min(COPY_CHUNK, end - pos), pos)
        if not buf:
            raise OSError(5, f"the primary's file ended at {pos}, expected {end} bytes", where)
        _io.pwrite_all(dfd, buf, pos, where)
        pos += len(buf)


def _copy_range(src, dst, start: int, end: int, *, truncate: bool):
    """dst[start:end] = src[start:end]; with truncate, dst ends at `end`."""
    sfd = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        dfd = _io.open(dst, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))   # failing, it leaked sfd
        try:
            _copy_fds(sfd, dfd, start, end, dst)
            if truncate and os.fstat(dfd).st_size != end:
                _io.ftruncate(dfd, end, dst)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_file_prefix(src, dst, size: int):
    """dst := the first `size` bytes of src, through a new file (fdatasync'd, renamed)."""
    tmp = dst + ".mirror"
    fd = _io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            sfd = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                _copy_fds(sfd, fd, 0, size, tmp)
            finally:
                os.close(sfd)
            _io.fdatasync(fd, tmp)
        finally:
            os.close(fd)
        _io.replace(tmp, dst)
    except OSError:
        _unlink_quietly(tmp)
        raise


def _copy_file(src, dst):
    if src.endswith(".timeindex"):
        # A segment's aborted-transaction index (#19) travels with its other indexes.
        txn_src, txn_dst = src[:-len(".timeindex")] + ".txnindex", dst[:-len(".timeindex")] + ".txnindex"
        if os.path.exists(txn_src):
            _copy_one(txn_src, txn_dst)
    _copy_one(src, dst)


def _copy_one(src, dst):
    tmp = dst + ".mirror"
    try:
        _io.copyfile(src, tmp)
        _fdatasync_path(tmp)
        _io.replace(tmp, dst)
    except OSError:
        _unlink_quietly(tmp)          # a failed copy leaves no temp file (the next copy would)
        raise


def _unlink_quietly(path):
    try:
        _io.unlink(path)
    except OSError:
        pass


def common_prefix(src, dst, src_size: int) -> int:
    """The length of the longest prefix of whole, valid batches that dst shares byte for
    byte with src (src's first src_size bytes): where a mirror must be truncated before it
    continues. Oldest first: with no leader epochs, a later batch that happens to match
    must not hide an earlier one that differs. Reads both files in chunks."""
    try:
        dfd = os.open(dst, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return 0
    sfd = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        # Reads ask for what both files hold, never a whole COPY_CHUNK: an 8 MiB buffer
        # that comes back short or empty is freed whole and raises glibc's mmap threshold
        # to 8 MiB; the mirror threads' later buffers then fragment their arenas (#18).
        limit = min(src_size, os.fstat(dfd).st_size)
        pos = 0                                   # everything before pos is equal and whole
        while pos < src_size:
            buf = os.pread(dfd, min(COPY_CHUNK, max(0, limit - pos)), pos)
            ends = []
            try:
                for bpos, h in iter_batches(buf, verify_crc=True):
                    if pos + bpos + h.size > src_size:
                        break
                    ends.append(bpos + h.size)
            except EmbedlogError:
                pass                              # torn or garbage: the valid batches so far count
            if not ends:
                if len(buf) < COPY_CHUNK:
                    break
                h = peek_header(buf)              # one batch larger than a chunk
                if h is None or pos + h.size > src_size:
                    break
                buf = os.pread(dfd, h.size, pos)
                try:
                    ends = [bpos + hh.size for bpos, hh in iter_batches(buf, verify_crc=True)]
                except EmbedlogError:
                    break
                if not ends:
                    break
            theirs = os.pread(sfd, ends[-1], pos)
            if theirs == buf[:ends[-1]]:
                pos += ends[-1]
                continue
            # theirs may be shorter than asked (the source shrank under a compaction swap):
            # then it can be a strict prefix of buf, which differs at its end.
            differ = _first_difference(theirs, buf)
            return pos + max((e for e in ends if e <= differ), default=0)
        return pos
    finally:
        os.close(sfd)
        os.close(dfd)


def _first_difference(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while hi - lo > 64:                          # bisect on equal prefixes, then scan
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    for i in range(lo, min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


# ------------------------------------------------------------------ ISR and high watermark
