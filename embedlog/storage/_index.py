"""Sparse offset and time indexes of one segment (FORMAT.md §4).

`.index`: 8-byte big-endian entries (relative_offset: i32, position: i32): the batch
that starts at `position` ends at offset `base_offset + relative_offset`. One entry
after every `index.interval.bytes` of log; the first batch of a segment has none.

`.timeindex`: 12-byte big-endian entries (timestamp: i64, relative_offset: i32): the
largest timestamp among records up to that offset. Timestamps strictly increase.

Derived data: not checksummed, validated when loaded and rebuilt from the .log when
damaged or missing. Files are appended with pwrite at `count * entry_size`; the
entry count of the active segment comes from the shared state, so bytes a dead
writer left past it are ignored and overwritten. Not thread-safe; Partition locks.
"""
from __future__ import annotations

import os
from array import array
from bisect import bisect_left, bisect_right

from . import _io

OFFSET_ENTRY = 8
TIME_ENTRY = 12
_BIG = os.sys.byteorder == "little"


class IndexCorrupt(Exception):
    """An index file that cannot be trusted (internal: the segment rebuilds it)."""


def _be_ints(data: bytes, typecode: str) -> array:
    a = array(typecode, data)
    if _BIG:
        a.byteswap()
    return a


class _IndexFile:
    entry_size = 0

    def __init__(self, path, read_only: bool = False):
        self.path = path
        self.fd = None
        self.count = 0          # entries cached in memory
        # Read-only handles open the file O_RDONLY and move it to memory the first time it
        # must change (a rebuild), so the directory is never written.
        self.read_only = read_only
        self.in_memory = False

    def open(self):
        if self.fd is None:
            if not self.read_only:
                self.fd = _io.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            else:
                try:
                    self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except FileNotFoundError:
                    self.fd, self.in_memory = _io.memory_file(self.path), True
        return self.fd

    def _writable(self) -> int:
        fd = self.open()
        if self.read_only and not self.in_memory:
            self.fd, self.in_memory = _io.memory_file(self.path, fd), True
            os.close(fd)
        return self.fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.in_memory = False
        self.reset()

    def file_entries(self) -> int:
        """Whole entries in the file; IndexCorrupt if its size is not a multiple."""
        size = os.fstat(self.open()).st_size
        if size % self.entry_size:
            raise IndexCorrupt(f"{self.path}: size {size} is not a multiple of {self.entry_size}")
        return size // self.entry_size

    def _read(self, first: int, last: int) -> bytes:
        n = (last - first) * self.entry_size
        data = os.pread(self.open(), n, first * self.entry_size)
        if len(data) != n:
            raise IndexCorrupt(f"{self.path}: {len(data)} bytes where {n} were expected")
        return data

    def write_entries(self, at: int, data: bytes):
        _io.pwrite_all(self._writable(), data, at * self.entry_size, self.path)

    def truncate(self, entries: int):
        _io.ftruncate(self._writable(), entries * self.entry_size, self.path)
        if self.count > entries:
            self.reset()


class OffsetIndex(_IndexFile):
    entry_size = OFFSET_ENTRY

    def reset(self):
        self.count = 0
        self.rel = array("i")
        self.pos = array("i")

    def __init__(self, path, read_only: bool = False):
        super().__init__(path, read_only)
        self.reset()

    def load(self, count: int, log_size: int):
        """Make the first `count` entries available, checking each new one."""
        if count <= self.count:
            return
        raw = _be_ints(self._read(self.count, count), "i")
        rel, pos = raw[0::2], raw[1::2]
        prev_rel = self.rel[-1] if self.count else -1
        prev_pos = self.pos[-1] if self.count else -1
        for r, p in zip(rel, pos):
            if r <= prev_rel or p < prev_pos or p >= log_size or p < 0:
                raise IndexCorrupt(f"{self.path}: entry ({r}, {p}) out of order or past the log "
                                   f"({log_size} bytes)")
            prev_rel, prev_pos = r, p
        self.rel.extend(rel)
        self.pos.extend(pos)
        self.count = count

    def lookup(self, relative_offset: int) -> tuple[int, int]:
        """(position, relative offset) of the greatest entry whose offset is <= the target:
        the batch holding the target starts there or later. (0, -1) if there is none."""
        i = bisect_right(self.rel, relative_offset) - 1
        return (self.pos[i], self.rel[i]) if i >= 0 else (0, -1)

    @staticmethod
    def entry(relative_offset: int, position: int) -> bytes:
        return relative_offset.to_bytes(4, "big", signed=True) + position.to_bytes(4, "big", signed=True)


class TimeIndex(_IndexFile):
    entry_size = TIME_ENTRY

    def reset(self):
        self.count = 0
        self.ts = []
        self.rel = []

    def __init__(self, path, read_only: bool = False):
        super().__init__(path, read_only)
        self.reset()

    def load(self, count: int, max_relative_offset: int):
        if count <= self.count:
            return
        data = self._read(self.count, count)
        prev_ts = self.ts[-1] if self.count else None
        prev_rel = self.rel[-1] if self.count else -1
        for i in range(0, len(data), TIME_ENTRY):
            t = int.from_bytes(data[i:i + 8], "big", signed=True)
            r = int.from_bytes(data[i + 8:i + 12], "big", signed=True)
            if (prev_ts is not None and t <= prev_ts) or r < prev_rel or r > max_relative_offset:
                raise IndexCorrupt(f"{self.path}: entry ({t}, {r}) out of order")
            self.ts.append(t)
            self.rel.append(r)
            prev_ts, prev_rel = t, r
        self.count = count

    def lookup_before(self, timestamp: int) -> int:
        """Relative offset of the last entry with a timestamp below `timestamp` (every
        record up to it is older than the target), or -1."""
        i = bisect_left(self.ts, timestamp) - 1
        return self.rel[i] if i >= 0 else -1

    def last_timestamp(self) -> int | None:
        return self.ts[-1] if self.count else None

    @staticmethod
    def entry(timestamp: int, relative_offset: int) -> bytes:
        return timestamp.to_bytes(8, "big", signed=True) + relative_offset.to_bytes(4, "big", signed=True)

