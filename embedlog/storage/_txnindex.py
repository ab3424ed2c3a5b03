"""Transaction markers and the aborted-transaction index (FORMAT.md §19, #19).

A marker is a control batch (attributes 0x30) holding one record: key int16 version 0 +
int16 type (0 ABORT, 1 COMMIT), value int16 version 0 + int32 coordinator epoch.

`<base>.txnindex` sits beside the segment holding the ABORT marker and lists aborted
transactions in Kafka's 34-byte AbortedTxn entries: int16 version 0, int64 producer id,
int64 first offset, int64 last offset (the marker's), int64 last stable offset at the
time. Entries are appended (and fdatasync'd) before the marker is published, so a reader
that sees the marker sees its entry. A torn last entry (shorter than 34 bytes) is ignored.
"""
from __future__ import annotations

import os
import struct

from . import _io

ABORT, COMMIT = 0, 1
_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")
ENTRY = struct.Struct(">hqqqq")
SUFFIX = ".txnindex"


def marker_record(commit: bool, coordinator_epoch: int) -> tuple[bytes, bytes]:
    """(key, value) of a COMMIT or ABORT marker's one record."""
    return _KEY.pack(0, COMMIT if commit else ABORT), _VALUE.pack(0, coordinator_epoch)


def marker_type(key: bytes | None) -> int:
    """The control record type of a marker's key (-1, UNKNOWN, for anything else)."""
    if key is None or len(key) < 4:
        return -1
    version, kind = _KEY.unpack_from(key, 0)
    return kind if version == 0 else -1


def path_for(dir_path: str, base_offset: int) -> str:
    return os.path.join(dir_path, f"{base_offset:020d}{SUFFIX}")


def append_entry(path: str, producer_id: int, first: int, last: int, last_stable: int) -> None:
    """Append one AbortedTxn entry and fdatasync it (the marker is acknowledged after)."""
    data = ENTRY.pack(0, producer_id, first, last, last_stable)
    fd = _io.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size % ENTRY.size:                 # a torn entry from a crash: cut it first
            _io.ftruncate(fd, size - size % ENTRY.size)
        if _io.write(fd, data) != len(data):
            raise OSError(f"short write of an aborted-transaction entry to {path}")
        _io.fdatasync(fd)
    finally:
        os.close(fd)
    if size == 0:                             # a new file: its name must be durable too
        _io.fsync_dir(os.path.dirname(path))


def read_entries(path: str) -> list[tuple[int, int, int, int]]:
    """(producer id, first offset, last offset, last stable offset) of every whole entry."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    n = len(data) // ENTRY.size
    return [e[1:] for e in ENTRY.iter_unpack(data[:n * ENTRY.size])]


def truncate_after(path: str, end_offset: int) -> None:
    """Drop entries whose marker lies at or past end_offset (a torn log tail lost it)."""
    entries = read_entries(path)
    keep = [e for e in entries if e[2] < end_offset]
    if len(keep) == len(entries):
        return
    if not keep:
        _io.unlink(path)
        return
    fd = _io.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        _io.ftruncate(fd, len(keep) * ENTRY.size)
        _io.fdatasync(fd)
    finally:
        os.close(fd)
