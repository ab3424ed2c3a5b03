"""One segment: a `.log` of back-to-back RecordBatches and its two indexes (FORMAT.md §2-§4).

Files are named by the segment's base offset, zero-padded to 20 digits, so that
`ls` sorts them: 00000000000000000000.log, .index, .timeindex. The .log is the
source of truth; the indexes are derived (see _index.py).

Not thread-safe: the Partition serializes access.
"""
from __future__ import annotations

import os
import re
from bisect import bisect_left

from . import _hotpath as hp
from . import _io
from ._index import IndexCorrupt, OffsetIndex, TimeIndex
from ._records import HEADER_SIZE

SEGMENT_RE = re.compile(r"^(\d{20})\.log$")
MAX_RELATIVE_OFFSET = 2**31 - 1
SCAN_CHUNK = 4096            # batch infos per el_scan_fd call
SCRATCH_BYTES = 1 << 20


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


def list_segments(dir_path) -> list[int]:
    """Base offsets of the segments in a partition folder, sorted (never readdir order).
    Only regular files (or links to them) count: a folder, FIFO, device or dangling link
    that happens to have a segment's name is not a segment."""
    out = []
    with os.scandir(dir_path) as it:
        for entry in it:
            m = SEGMENT_RE.match(entry.name)
            if m and entry.is_file():
                out.append(int(m.group(1)))
    out.sort()
    return out


class ScanResult:
    """What a validating scan of a segment found (see Segment.scan)."""

    __slots__ = (
        "batches",
        "bytes_since_index",
        "index",
        "last_timeindex_ts",
        "max_timestamp",
        "next_offset",
        "offset_of_max_timestamp",
        "roll_timestamp",
        "stop_reason",
        "timeindex",
        "valid_size",
    )


class Segment:
    def __init__(self, dir_path, base_offset: int, suffix: str = "", read_only: bool = False):
        """`suffix` names the cleaner's output files (`.log.cleaned`, ...). `read_only`:
        the .log is opened O_RDONLY and a rebuilt index lives in memory (Log(read_only=True))."""
        self.dir = dir_path
        self.base_offset = base_offset
        stem = os.path.join(dir_path, segment_name(base_offset))
        self.log_path = stem + ".log" + suffix
        self.index = OffsetIndex(stem + ".index" + suffix, read_only)
        self.timeindex = TimeIndex(stem + ".timeindex" + suffix, read_only)
        self.read_only = read_only
        self.fd = None

    def __repr__(self):
        return f"Segment({self.log_path!r})"

    def open(self):
        if self.fd is None:
            if self.read_only:
                self.fd = os.open(self.log_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            else:
                self.fd = _io.open(self.log_path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        return self.fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.index.close()
        self.timeindex.close()

    def file_size(self) -> int:
        return os.fstat(self.open()).st_size

    @classmethod
    def create(cls, dir_path, base_offset: int) -> Segment:
        """Create empty .log/.index/.timeindex (a leftover from a dead roll is emptied)."""
        seg = cls(dir_path, base_offset)
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        try:
            seg.fd = _io.open(seg.log_path, flags, 0o644)
            for idx in (seg.index, seg.timeindex):
                idx.fd = _io.open(idx.path, flags, 0o644)
        except BaseException:
            seg.close()          # the descriptors opened before the failure
            raise
        return seg

    def delete_files(self):
        self.close()
        txnindex = self.log_path[:-len(".log")] + ".txnindex" if self.log_path.endswith(".log") else None
        for p in (self.log_path, self.index.path, self.timeindex.path, txnindex):
            if p is None:
                continue
            try:
                _io.unlink(p)
            except FileNotFoundError:
                pass

    # ------------------------------------------------------------ scanning
    def scan(self, start_offset: int, index_interval: int, end: int = -1, dense: bool = False) -> ScanResult:
        """Validate every batch (length, magic, CRC, offsets) from position 0 and compute the
        index entries they imply, exactly as the append path would have written them."""
        fd = self.open()
        scratch = hp.new("uint8_t[]", SCRATCH_BYTES)
        infos = hp.new("el_batch_info[]", SCAN_CHUNK)
        stop_pos = hp.new("int64_t *")
        stop_reason = hp.new("int *")
        r = ScanResult()
        r.batches = 0
        r.index, r.timeindex = [], []
        r.bytes_since_index = 0
        r.max_timestamp, r.offset_of_max_timestamp = -1, self.base_offset
        r.roll_timestamp, r.last_timeindex_ts = -1, -1
        expected = max(start_offset, self.base_offset)
        pos = 0
        reason = 0
        while True:
            n = hp.lib.el_scan_fd(fd, pos, end, scratch, SCRATCH_BYTES, infos, SCAN_CHUNK, stop_pos, stop_reason)
            if n < 0:
                raise hp.oserror("read", self.log_path)
            bad = False
            for i in range(n):
                b = infos[i]
                last = b.base_offset + b.last_offset_delta
                if (b.base_offset < expected or (dense and b.base_offset != expected)
                        or b.last_offset_delta < 0
                        or last - self.base_offset > MAX_RELATIVE_OFFSET):
                    reason, pos, bad = -6, b.position, True  # offsets out of order
                    break
                self._account(r, b.position, b.size, last, b.max_timestamp, index_interval)
                r.batches += 1
                expected = last + 1
                pos = b.position + b.size
            if bad:
                break
            if n < SCAN_CHUNK:
                reason = stop_reason[0]
                pos = stop_pos[0]
                break
        r.valid_size = pos
        r.stop_reason = reason
        r.next_offset = expected
        return r

    def _account(self, r: ScanResult, position: int, size: int, last_offset: int, batch_max_ts: int,
                 index_interval: int):
        """The append path's index bookkeeping for one batch (Kafka LogSegment.append)."""
        if r.roll_timestamp < 0 and r.batches == 0:
            r.roll_timestamp = batch_max_ts
        if batch_max_ts > r.max_timestamp:
            r.max_timestamp, r.offset_of_max_timestamp = batch_max_ts, last_offset
        if r.bytes_since_index > index_interval:
            r.index.append(OffsetIndex.entry(last_offset - self.base_offset, position))
            if r.max_timestamp > r.last_timeindex_ts:
                r.timeindex.append(TimeIndex.entry(r.max_timestamp, r.offset_of_max_timestamp - self.base_offset))
                r.last_timeindex_ts = r.max_timestamp
            r.bytes_since_index = 0
        r.bytes_since_index += size

    def final_time_entry(self, r: ScanResult):
        """Kafka appends the segment's max timestamp to the time index when it closes."""
        if r.max_timestamp > r.last_timeindex_ts and r.batches:
            r.timeindex.append(TimeIndex.entry(r.max_timestamp, r.offset_of_max_timestamp - self.base_offset))
            r.last_timeindex_ts = r.max_timestamp

    def write_indexes(self, r: ScanResult):
        for idx, entries in ((self.index, r.index), (self.timeindex, r.timeindex)):
            idx.truncate(0)
            if entries:
                idx.write_entries(0, b"".join(entries))
            idx.reset()

    def rebuild_indexes(self, index_interval: int, closed: bool, dense: bool = False) -> ScanResult:
        r = self.scan(self.base_offset, index_interval, end=self.file_size(), dense=dense)
        if closed:
            self.final_time_entry(r)
        self.write_indexes(r)
        return r

    # ------------------------------------------------------------ lookups
    def load_indexes(self, index_entries: int | None, time_entries: int | None, log_size: int):
        """Load index entries (None: all in the file, for a closed segment)."""
        if index_entries is None:
            index_entries = self.index.file_entries()
        if time_entries is None:
            time_entries = self.timeindex.file_entries()
        self.index.load(index_entries, log_size)
        self.timeindex.load(time_entries, MAX_RELATIVE_OFFSET)

    def time_lookup(self, timestamp: int, log_size: int, dense: bool,
                    active_max_timestamp: int | None) -> tuple[int | None, int]:
        """(largest timestamp of the segment or None, first offset that may hold a record
        at or after `timestamp`) from the time index (Kafka's TimeIndex.lookup), for a
        closed segment (`active_max_timestamp` None) or the active one (the state's max).

        The time index is derived and unchecksummed, and a plausible but wrong entry would
        answer wrongly without any error, so each entry used is checked against the batch
        it names: that batch ends at the entry's offset and its maxTimestamp is the entry's
        timestamp. A closed segment's last batch must not be newer than its final entry
        (a lost final entry). IndexCorrupt when anything disagrees: the caller rebuilds."""
        ti = self.timeindex
        if active_max_timestamp is None:
            largest = ti.last_timestamp()
            last = self.last_header(log_size)
            if last is not None and last.max_timestamp > (-1 if largest is None else largest):
                raise IndexCorrupt(f"{ti.path}: the segment's last batch has timestamp {last.max_timestamp}, "
                                   f"newer than the final entry's {largest}")
            if largest is not None:
                self._check_time_entry(largest, ti.rel[-1], log_size, dense)
        else:
            largest = active_max_timestamp if active_max_timestamp >= 0 else None
        if largest is None or largest < timestamp:
            return largest, self.base_offset
        i = bisect_left(ti.ts, timestamp) - 1
        if i < 0:
            return largest, self.base_offset
        self._check_time_entry(ti.ts[i], ti.rel[i], log_size, dense)
        return largest, self.base_offset + ti.rel[i] + 1

    def _check_time_entry(self, timestamp: int, rel: int, log_size: int, dense: bool):
        _pos, h, _exp = self.find_position(self.base_offset + rel, log_size, dense)
        if h is None or h.magic != 2 or h.last_offset != self.base_offset + rel or h.max_timestamp != timestamp:
            found = "no batch" if h is None else f"a batch ending at {h.last_offset} with timestamp {h.max_timestamp}"
            raise IndexCorrupt(f"{self.timeindex.path}: entry ({timestamp}, {rel}) names {found}")

    def last_header(self, log_size: int):
        """The header of the segment's last batch, walking from the last offset-index entry
        (at most index.interval.bytes of headers); None if the segment is empty or the walk
        meets damage (the reader reports that)."""
        from ._records import peek_header
        pos = self.index.pos[-1] if self.index.count else 0
        fd = self.open()
        last = None
        while pos < log_size:
            chunk = os.pread(fd, min(65536, log_size - pos), pos)
            at = 0
            while len(chunk) - at >= HEADER_SIZE:
                h = peek_header(chunk, at)
                if h.magic != 2 or h.batch_length < HEADER_SIZE - 12:
                    return None
                last = h
                at += h.size
            if at == 0:
                return None
            pos += at
        return last

    def find_position(self, offset: int, log_size: int, dense: bool) -> tuple[int, object, int]:
        """(position, header, expected base offset) of the first batch whose last offset is
        >= `offset`, walking batch headers from the offset index's answer; (log_size, None,
        next offset) if there is none.

        baseOffset is outside the CRC, so offsets are checked for continuity on the way:
        the batch an index entry points at must end at the entry's offset (IndexCorrupt
        otherwise: the index is rebuilt), and each next batch must start right after the
        previous one (`dense`, no compaction) or at least after it (CorruptRecordError)."""
        from ._errors import CorruptRecordError
        from ._records import peek_header
        pos, rel = self.index.lookup(offset - self.base_offset)
        expected = None if rel >= 0 else self.base_offset
        fd = self.open()
        while pos < log_size:
            chunk = os.pread(fd, min(65536, log_size - pos), pos)
            at = 0
            while len(chunk) - at >= HEADER_SIZE:
                h = peek_header(chunk, at)
                if expected is None:
                    # The batch an index entry points at: if it is not a whole batch ending
                    # at the entry's offset, the (derived, unchecksummed) index is suspect
                    # first: it is rebuilt, and a retry meets any real damage in the log.
                    if h.magic != 2 or h.batch_length < HEADER_SIZE - 12 or pos + h.size > log_size:
                        raise IndexCorrupt(f"{self.index.path}: entry ({rel}, {pos}) points at no whole batch")
                    if h.last_offset != self.base_offset + rel:
                        raise IndexCorrupt(f"{self.index.path}: entry ({rel}, {pos}) points at a batch "
                                           f"ending at offset {h.last_offset}")
                elif h.magic != 2 or h.batch_length < HEADER_SIZE - 12:
                    return pos + at, h, expected  # the reader reports the damage
                elif h.base_offset != expected if dense else h.base_offset < expected:
                    raise CorruptRecordError(
                        f"batch at position {pos + at} of {self.log_path} has base offset {h.base_offset}, "
                        f"expected {expected}", path=self.log_path, position=pos + at)
                if h.last_offset >= offset:
                    return pos + at, h, h.base_offset
                expected = h.next_offset
                at += h.size
            if at == 0:
                if expected is None:
                    raise IndexCorrupt(f"{self.index.path}: entry ({rel}, {pos}) points at no whole batch")
                return pos, None, expected  # fewer than 61 bytes left: torn (cannot be below log_size)
            pos += at
        return log_size, None, expected


__all__ = ["IndexCorrupt", "ScanResult", "Segment", "list_segments", "segment_name"]
