"""Partition's read path: watermarks, long-poll waits, lock-free reads of the published
state (repeated when a cleaner swap or a deletion overlapped them), and time lookups."""
from __future__ import annotations

import os
import time

from . import _state as st
from . import _txnindex
from ._errors import CorruptRecordError, OffsetOutOfRangeError, StorageError
from ._index import IndexCorrupt
from ._partition_common import (
    _BUDGET,
    _DAMAGE,
    _END,
    _SMALL_READ,
    DEFAULT_MAX_BYTES,
    _new_record,
    _Stale,
    _storage_error,
)
from ._records import (
    ATTR_CONTROL,
    ATTR_TRANSACTIONAL,
    HEADER_SIZE,
    MAGIC,
    Columns,
    Record,
    decode_columns,
    iter_batches,
    parse_header,
    peek_header,
)


class ReadPart:
    """The read path of Partition: a mixin holding no state of its own."""

    # ============================================================ offsets
    @property
    def log_start_offset(self) -> int:
        return self._fields()[st.F_LOG_START]

    @property
    def log_end_offset(self) -> int:
        return self._fields()[st.F_LOG_END]

    @property
    def high_watermark(self) -> int:
        return self._fields()[st.F_HIGH_WATERMARK]

    @property
    def flushed_offset(self) -> int:
        """Every offset below this is on disk (survives power loss)."""
        return self.state.flushed_offset()

    def watermarks(self) -> tuple[int, int]:
        f = self._fields()
        return f[st.F_LOG_START], f[st.F_HIGH_WATERMARK]

    def size_bytes(self) -> int:
        return self._consistent(self._size_bytes_once)

    def _size_bytes_once(self) -> int:
        f = self._fields()
        with self._mutex:
            self._refresh_segments(f[st.F_SEGMENTS_VERSION])
            return sum(self._segment(b).file_size() for b in self._bases if b < f[st.F_ACTIVE_BASE]) + \
                f[st.F_ACTIVE_SIZE]

    def wait(self, offset: int, timeout: float | None = None) -> bool:
        """Block until the high watermark passes `offset` (data at `offset` is readable),
        or the timeout runs out. Sleeps on a futex: no polling."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self.state.notify_value()
            if self._fields()[st.F_HIGH_WATERMARK] > offset:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self.state.wait(seen, None if left is None else min(left, 1.0))

    # ============================================================ read
    def read(self, offset: int, *, max_bytes: int = DEFAULT_MAX_BYTES,
             max_records: int | None = None) -> list[Record]:
        """Records from `offset` on (whole records only; at least one batch even if it is
        larger than max_bytes). Offsets of compacted-away records are skipped."""
        cols = self.read_columns(offset, max_bytes=max_bytes, max_records=max_records)
        return list(map(_new_record, zip(*cols)))

    def read_columns(self, offset: int, *, max_bytes: int = DEFAULT_MAX_BYTES,
                     max_records: int | None = None) -> Columns:
        """Like read(), as parallel lists (offsets, timestamps, keys, values, headers)."""
        out = Columns([], [], [], [], [])
        for buf, pos, h, path, fpos in self._read_batches(offset, max_bytes, max_records):
            cols = decode_columns(buf, pos, h, path=path, file_position=fpos)
            skip = 0
            if h.base_offset < offset:
                while skip < len(cols.offsets) and cols.offsets[skip] < offset:
                    skip += 1
            take = len(cols.offsets)
            if max_records is not None:
                take = min(take, skip + max_records - len(out.offsets))
            for dst, src in zip(out, cols):
                dst.extend(src[skip:take] if skip or take < len(src) else src)
            if max_records is not None and len(out.offsets) >= max_records:
                break
        return out

    def last_stable_offset(self) -> int:
        """The last stable offset: the high watermark, or the first offset of the oldest
        open transaction if that is lower (what read_committed reads up to, #19)."""
        hw = self._fields()[st.F_HIGH_WATERMARK]     # the fields first, then the word
        fu = self.state.first_unstable()
        return hw if fu is None or fu >= hw else max(fu, self._fields()[st.F_LOG_START])

    def aborted_transactions(self, start: int, end: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions overlapping
        [start, end), from the .txnindex files (a Fetch response's AbortedTransactions)."""
        return [(pid, first) for pid, first, _last in self._aborted_ranges(start, end)]

    def _aborted_ranges(self, start: int, end: int) -> list[tuple[int, int, int]]:
        fields = self._fields()
        with self._mutex:
            self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
            bases = list(self._bases)
        i = max(0, self._segment_for(start))
        out = []
        for base in bases[i:]:
            for pid, first, last, _lso in _txnindex.read_entries(_txnindex.path_for(self.path, base)):
                if first < end and last >= start:
                    out.append((pid, first, last))
        return out

    def fetch(self, offset: int, max_bytes: int = DEFAULT_MAX_BYTES, *,
              read_committed: bool = False) -> tuple[Columns, int]:
        """(records from `offset` on, next offset to fetch). The next offset is the end of
        the last batch read, which passes over offsets compaction removed (even when no
        record is returned), so a consumer always makes progress. With read_committed,
        only what lies below the last stable offset is read, and the records of aborted
        transactions are passed over as control batches are."""
        if read_committed:
            lso = self.last_stable_offset()
            if offset >= lso:
                if offset > self._fields()[st.F_HIGH_WATERMARK]:
                    self._read_batches(offset, max_bytes)        # raises OFFSET_OUT_OF_RANGE
                return Columns([], [], [], [], []), offset
        items = self._read_batches(offset, max_bytes)
        if not items:
            return Columns([], [], [], [], []), offset
        if read_committed:
            items = [it for it in items if it[2].last_offset < lso]
            if not items:
                return Columns([], [], [], [], []), offset
        nxt = items[-1][2].next_offset
        if read_committed and any(it[2].attributes & ATTR_TRANSACTIONAL for it in items):
            aborted = self._aborted_ranges(offset, nxt)
            if aborted:
                items = [it for it in items if not _is_aborted(it[2], aborted)]
                if not items:
                    return Columns([], [], [], [], []), nxt
        if any(it[2].attributes & ATTR_CONTROL for it in items):
            # Control batches (transaction markers) are not records: a consumer passes over them.
            items = [it for it in items if not it[2].attributes & ATTR_CONTROL]
            if not items:
                return Columns([], [], [], [], []), nxt
        out = Columns([], [], [], [], [])
        for buf, pos, h, path, fpos in items:
            cols = decode_columns(buf, pos, h, path=path, file_position=fpos)
            skip = 0
            if h.base_offset < offset:
                while skip < len(cols.offsets) and cols.offsets[skip] < offset:
                    skip += 1
            if len(items) == 1 and not skip:
                return cols, nxt
            for dst, src in zip(out, cols):
                dst.extend(src[skip:] if skip else src)
        return out, nxt

    def read_raw(self, offset: int, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        """Whole batches, byte for byte as stored, from the batch holding `offset` on:
        what a Kafka Fetch response carries for this partition."""
        parts = []
        for buf, pos, h, _path, _fpos in self._read_batches(offset, max_bytes):
            parts.append(bytes(memoryview(buf)[pos:pos + h.size]))
        return b"".join(parts)

    def _read_batches(self, offset: int, max_bytes: int, max_records: int | None = None) -> list:
        """(buffer, position, header, path, file_position) for whole, CRC-checked batches
        from the one holding `offset`, up to max_bytes (at least one batch). With
        max_records, reads in small steps and stops once that many records are covered."""
        self._check_open()
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise TypeError(f"offset must be an int, not {type(offset).__name__}")
        return self._consistent(self._read_batches_once, offset, max_bytes, max_records)

    def _consistent(self, fn, *args):
        """Run a lock-free read so that it never mixes files from before and after a
        change of the segment set: a read that overlapped a cleaner swap is repeated, and
        a file deleted under it (retention) makes it start again from fresh state, where
        its offset may now be below the log start (OFFSET_OUT_OF_RANGE). FORMAT.md §14."""
        state = self.state
        for _ in range(1000):
            word = state.swap_word()
            if word & 1:
                self._wait_for_swap()
                continue
            try:
                out = fn(*args)
            except (FileNotFoundError, CorruptRecordError, IndexCorrupt, _Stale) as e:
                fields = state.load()
                if state.swap_word() != word or fields is None or \
                        fields[st.F_SEGMENTS_VERSION] != self._segments_version:
                    continue                           # the files changed under us: again
                if isinstance(e, _Stale):
                    continue
                if isinstance(e, FileNotFoundError):
                    raise _storage_error(e, "read", e.filename or self.path) from e
                raise
            except OSError as e:          # EIO from a failing or vanished disk: typed, with the place
                raise _storage_error(e, f"read of {self.topic}-{self.partition}", e.filename or self.path) from e
            if state.swap_word() == word:
                return out
        raise StorageError(f"the segments of {self.topic}-{self.partition} kept changing during a read",
                           path=self.path)

    def _wait_for_swap(self):
        """A cleaner holds the append lock while it swaps: wait for it (or, if it died,
        recover in its place)."""
        with self._mutex:
            self._lock()
            try:
                self._ensure_state_locked()
            finally:
                self.state.unlock(st.LOCK_APPEND)

    def _read_batches_once(self, offset: int, max_bytes: int, max_records: int | None) -> list:
        fields = self._fields()
        log_start, hw = fields[st.F_LOG_START], fields[st.F_HIGH_WATERMARK]
        if offset < log_start or offset > hw:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range for {self.topic}-{self.partition} "
                f"(log start {log_start}, high watermark {hw})",
                offset=offset, log_start_offset=log_start, log_end_offset=hw)
        out = []
        budget = max_bytes
        want = max_records
        with self._mutex:
            self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
            bases = self._bases
            i = max(0, self._segment_for(offset))
            while i < len(bases) and offset < hw and (budget > 0 or not out):
                seg = self._segment(bases[i])
                step = budget if want is None else min(budget, _SMALL_READ)
                items, stop = self._read_segment(seg, fields, offset, step if out else max(step, 1), hw,
                                                 at_least_one=not out)
                if not items and stop == _BUDGET and step < budget:   # a batch larger than the step
                    items, stop = self._read_segment(seg, fields, offset, budget, hw, at_least_one=False)
                for item in items:
                    h = item[2]
                    budget -= h.size
                    if want is not None:
                        want -= h.next_offset - max(h.base_offset, offset)
                    offset = h.next_offset
                out.extend(items)
                if stop == _DAMAGE or budget <= 0 or (want is not None and want <= 0):
                    break           # done, or damage ahead: never skip to the next segment
                if stop == _BUDGET:
                    if items and want is not None:
                        continue    # a small step ended inside this segment: read on
                    break           # the next batch does not fit what is left of max_bytes
                i += 1
                if i < len(bases):
                    if offset != bases[i] and (offset > bases[i] or self._dense()):
                        # Offsets do not continue across the segment boundary (a closed
                        # segment lost its tail): damage, never skipped to the next segment.
                        if out:
                            break       # hand out what precedes it; the next read raises
                        prev = self._segment(bases[i - 1])
                        raise CorruptRecordError(
                            f"{prev.log_path} ends before offset {offset}, but the next segment "
                            f"starts at {bases[i]}", path=prev.log_path, position=prev.file_size())
                    offset = max(offset, bases[i])
        return out

    def _segment_size(self, seg, fields) -> tuple[bool, int]:
        active = seg.base_offset == fields[st.F_ACTIVE_BASE]
        return active, (fields[st.F_ACTIVE_SIZE] if active else seg.file_size())

    def _read_segment(self, seg, fields, offset, budget, hw, at_least_one=True) -> tuple[list, bool]:
        """Whole batches of one segment from the one holding `offset`, within `budget`
        bytes (the first may exceed it when at_least_one: KIP-74), and whether the read
        reached the end of the segment (False when it stopped at the budget or damage)."""
        active, log_size = self._segment_size(seg, fields)
        dense = self._dense()
        tail = self._tail
        for attempt in (0, 1):
            if tail is not None and tail[0] == offset and tail[1] == seg.base_offset and attempt == 0:
                # A tailing reader asks where its last read ended: no index lookup, no walk.
                pos, h, expected = tail[2], None, offset
                break
            try:
                self._load_indexes(seg, fields, active, log_size)
                pos, h, expected = seg.find_position(offset, log_size, dense)
                break
            except (IndexCorrupt, CorruptRecordError) as e:
                if attempt:
                    if isinstance(e, IndexCorrupt):
                        raise CorruptRecordError(f"index of {seg.log_path} is still damaged after a rebuild: {e}",
                                                 path=seg.index.path) from e
                    raise
                fresh = self._rebuild_index(seg, active)
                if active:
                    fields = fresh
        fd = seg.open()
        out = []
        upper = self._segment_upper(seg, fields)
        while pos < log_size:
            if h is None:
                h = peek_header(os.pread(fd, HEADER_SIZE, pos))
                if h is None:
                    raise CorruptRecordError(f"truncated batch in {seg.log_path} at position {pos}",
                                             path=seg.log_path, position=pos)
            first_size = h.size if h.magic == MAGIC and h.batch_length >= HEADER_SIZE - 12 else HEADER_SIZE
            if first_size > budget and not (at_least_one and not out):
                return out, _BUDGET
            want = min(max(budget, first_size), log_size - pos)
            buf = os.pread(fd, want, pos)
            got = 0
            try:
                for bpos, bh in iter_batches(buf, path=seg.log_path, base_position=pos):
                    if expected is not None and (bh.base_offset != expected if dense else bh.base_offset < expected):
                        raise CorruptRecordError(
                            f"batch at position {pos + bpos} of {seg.log_path} has base offset "
                            f"{bh.base_offset}, expected {expected}", path=seg.log_path, position=pos + bpos)
                    if bh.last_offset >= upper or bh.base_offset < seg.base_offset:
                        # baseOffset is outside the CRC: a batch that claims offsets past the
                        # next segment (or the log end) is damage, never "the end of the data".
                        raise CorruptRecordError(
                            f"batch at position {pos + bpos} of {seg.log_path} claims offsets "
                            f"{bh.base_offset}..{bh.last_offset}, outside the segment's "
                            f"[{seg.base_offset}, {upper})", path=seg.log_path, position=pos + bpos)
                    if bh.base_offset >= hw:
                        return out, _END
                    expected = bh.next_offset
                    got = bpos + bh.size
                    out.append((buf, bpos, bh, seg.log_path, pos + bpos))
                    self._tail = (bh.next_offset, seg.base_offset, pos + got)
                    budget -= bh.size
            except CorruptRecordError:
                if out:
                    return out, _DAMAGE   # hand out what precedes the damage; the next read raises
                raise
            if got == 0:
                # Nothing whole where a whole batch must be: damage, never skipped.
                parse_header(buf, 0, path=seg.log_path, file_position=pos)
                raise CorruptRecordError(f"batch at position {pos} of {seg.log_path} runs past the "
                                         f"published end of the segment ({log_size})",
                                         path=seg.log_path, position=pos)
            pos += got
            h = None
            if budget <= 0:
                return out, _END if pos >= log_size else _BUDGET
        return out, _END

    def _segment_upper(self, seg, fields) -> int:
        """Every offset of a segment lies below the next segment's base offset, or below
        the log end offset for the active segment."""
        if seg.base_offset >= fields[st.F_ACTIVE_BASE]:
            return fields[st.F_LOG_END]
        from bisect import bisect_right
        i = bisect_right(self._bases, seg.base_offset)
        return self._bases[i] if i < len(self._bases) else fields[st.F_LOG_END]

    def _dense(self) -> bool:
        """Offsets have no gaps (no compaction ever ran: no cleaner.checkpoint), so each
        batch must start exactly where the previous one ended."""
        return not self._gaps and "compact" not in self.config["cleanup.policy"]


    # ============================================================ time lookup
    def offset_for_time(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record whose timestamp is >= `timestamp`, as
        Kafka's ListOffsets answers it; None if there is none. Uses the time index."""
        self._check_open()
        return self._consistent(self._offset_for_time_once, timestamp)

    def _offset_for_time_once(self, timestamp: int) -> tuple[int, int] | None:
        fields = self._fields()
        with self._mutex:
            self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
            for base in list(self._bases):
                if base > fields[st.F_ACTIVE_BASE]:
                    break       # not published (a roll in progress, or a stray file): not the log
                seg = self._segment(base)
                active, log_size = self._segment_size(seg, fields)
                for attempt in (0, 1):
                    try:
                        self._load_indexes(seg, fields, active, log_size)
                        largest, start = seg.time_lookup(timestamp, log_size, self._dense(),
                                                         fields[st.F_MAX_TIMESTAMP] if active else None)
                        break
                    except IndexCorrupt as e:   # time index entries are checked against their batches
                        if attempt:
                            raise CorruptRecordError(f"time index of {seg.log_path} is still damaged after a "
                                                     f"rebuild: {e}", path=seg.timeindex.path) from e
                        fresh = self._rebuild_index(seg, active)
                        fields = fresh if active else fields
                if largest is None or largest < timestamp:
                    continue
                start = max(start, fields[st.F_LOG_START])
                hw = fields[st.F_HIGH_WATERMARK]
                while start < hw:
                    items, _ = self._read_segment(seg, fields, start, DEFAULT_MAX_BYTES, hw)
                    if not items:
                        break
                    for buf, pos, h, path, fpos in items:
                        start = h.next_offset
                        if h.max_timestamp < timestamp:
                            continue
                        cols = decode_columns(buf, pos, h, path=path, file_position=fpos)
                        for off, ts in zip(cols.offsets, cols.timestamps):
                            if ts >= timestamp:
                                return off, ts
        return None


def _is_aborted(h, aborted) -> bool:
    """A data batch of a transaction that was aborted (its marker is not a data batch)."""
    if not h.attributes & ATTR_TRANSACTIONAL or h.attributes & ATTR_CONTROL:
        return False
    pid, base = h.producer_id, h.base_offset
    return any(p == pid and first <= base <= last for p, first, last in aborted)

