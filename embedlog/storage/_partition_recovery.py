"""Partition recovery (FORMAT.md §8): rebuilding the state from the files after a crash or
a reboot, truncating a torn tail, checking and rebuilding indexes."""
from __future__ import annotations

import os
import time

from . import _cleaner, _io, _txnindex
from . import _state as st
from ._index import IndexCorrupt
from ._partition_common import _Stale, _storage_error
from ._records import now_ms
from ._segment import Segment, list_segments


class RecoveryPart:
    """Recovery and index checks of Partition: a mixin holding no state of its own."""

    # ============================================================ recovery
    def _recover_locked(self) -> list[int]:
        """Rebuild the state from the files (append lock held). FORMAT.md §8."""
        if self.read_only:
            return self._recover_read_only()
        try:
            return self._recover_files_locked()
        except OSError as e:
            raise _storage_error(e, "recovery", getattr(e, "filename", None) or self.path) from e

    def _recover_files_locked(self) -> list[int]:
        ck = st.read_checkpoint(self.path)      # first: a newer version is refused before any write
        # After a failed fdatasync the page cache may show bytes that never reached the disk
        # and are no longer dirty (fsyncgate): what the scan accepts is written back first.
        rewrite = self.state.fsync_failed()
        self.state.set_in_append(os.getpid())   # a crash during recovery re-runs it
        st.remove_temp_files(self.path)
        _cleaner.finish_swap(self.path)         # a committed swap completes (FORMAT.md §14)
        if not self._cleaning and self.state.lock(st.LOCK_CLEAN, 0):   # nobody cleans: drop uncommitted output
            try:
                _cleaner.remove_cleaned_files(self.path)
            finally:
                self.state.unlock(st.LOCK_CLEAN)
        if self.state.swap_word() & 1:
            self.state.swap_end(self.state.swap_word())
        self._gaps = os.path.exists(os.path.join(self.path, _cleaner.CLEANER_CHECKPOINT))
        self.state.reset_replication()          # mirrors are verified again before they count
        interval = self.config["index.interval.bytes"]
        bases = list_segments(self.path)
        for base in list(self._segments):
            self._segments.pop(base).close()
        if not bases:
            Segment.create(self.path, 0).close()
            st.fsync_dir(self.path)
            bases = [0]
        log_start = max(ck.get("log_start_offset", 0), bases[0])
        fields = ck.get("fields")
        if not rewrite and ck.get("clean") and fields and len(fields) == st.N_FIELDS and \
                fields[st.F_ACTIVE_BASE] == bases[-1] and \
                os.stat(Segment(self.path, bases[-1]).log_path).st_size == fields[st.F_ACTIVE_SIZE]:
            fields = list(fields)          # clean close: trust it, no scan
            flushed = fields[st.F_LOG_END]
            self._check_index_files(bases[:-1], interval)
        else:
            fields, flushed, bases = self._scan_recover(bases, ck.get("recovery_point", 0), interval, rewrite)
        fields[st.F_LOG_START] = log_start
        old = self.state.load() if self.state.valid() else None
        fields[st.F_SEGMENTS_VERSION] = (old[st.F_SEGMENTS_VERSION] + 1) if old else int(time.time_ns() & 0xFFFFFFFF)
        self.state.initialize(fields, flushed)
        self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
        self._recover_transactions(fields)
        return fields

    def _recover_read_only(self) -> list[int]:
        """A read-only handle's state (Log(read_only=True)), into its private state with
        nothing written: the folder's live state when a handle of this boot published it,
        else FORMAT.md §8's recovery without its writes. A torn tail stays on disk but past
        the end this handle reads; segments after damage are left out; indexes are checked
        as they are used (a damaged one is rebuilt in memory)."""
        try:
            ck = st.read_checkpoint(self.path)
            live = st.current_fields(os.path.join(self.path, st.STATE_FILE))
            bases = list_segments(self.path)
            if live is not None:
                fields, flushed = live
                last_base = fields[st.F_ACTIVE_BASE]
            else:
                if not bases:
                    raise _storage_error(FileNotFoundError(2, "no segment file", self.path),
                                         "read-only open (the folder has no segment)", self.path)
                if os.path.exists(os.path.join(self.path, _cleaner.SWAP_MANIFEST)):
                    raise _storage_error(OSError(5, "an interrupted compaction", self.path),
                                         "read-only open (open the log writable once to finish it)", self.path)
                fields = ck.get("fields")
                if ck.get("clean") and fields and len(fields) == st.N_FIELDS and \
                        fields[st.F_ACTIVE_BASE] == bases[-1] and \
                        os.stat(Segment(self.path, bases[-1]).log_path).st_size == fields[st.F_ACTIVE_SIZE]:
                    fields = list(fields)
                else:
                    fields = self._scan_read_only(bases, ck.get("recovery_point", 0))
                fields[st.F_LOG_START] = max(ck.get("log_start_offset", 0), bases[0])
                flushed = fields[st.F_LOG_END]
                last_base = fields[st.F_ACTIVE_BASE]
        except OSError as e:
            raise _storage_error(e, "read-only open", getattr(e, "filename", None) or self.path) from e
        self._gaps = os.path.exists(os.path.join(self.path, _cleaner.CLEANER_CHECKPOINT))
        self._ro_last_base = last_base
        fields[st.F_SEGMENTS_VERSION] = 1
        self.state.initialize(fields, flushed)
        self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
        self._recover_transactions(fields)
        return fields

    def _scan_read_only(self, bases, recovery_point) -> list[int]:
        interval = self.config["index.interval.bytes"]
        dense = self._dense()
        start_i = max(0, self._segment_for_in(bases, recovery_point))
        next_offset = bases[start_i]
        result = None
        for i in range(start_i, len(bases)):
            if i > start_i and (bases[i] < next_offset or (dense and bases[i] != next_offset)):
                break                       # does not continue the previous segment: not read
            seg = Segment(self.path, bases[i], read_only=True)
            try:
                size = seg.file_size()
                r = seg.scan(next_offset, interval, end=size, dense=dense)
            finally:
                seg.close()
            next_offset = max(r.next_offset, bases[i]) if r.batches else max(next_offset, bases[i])
            result = (seg, r)
            if r.valid_size < size:
                break                       # damage: what follows is not read
        seg, r = result
        fields = [0] * st.N_FIELDS
        fields[st.F_LOG_END] = fields[st.F_HIGH_WATERMARK] = next_offset
        fields[st.F_ACTIVE_BASE] = seg.base_offset
        fields[st.F_ACTIVE_SIZE] = r.valid_size
        self._set_index_fields(fields, r)
        fields[st.F_CREATED_MS] = fields[st.F_FIRST_UNFLUSHED_MS] = now_ms()
        return fields

    def _check_index_files(self, bases, interval):
        """Closed segments below the recovery point are not rescanned; only their index
        files are checked (missing or mis-sized ones are rebuilt)."""
        for base in bases:
            seg = Segment(self.path, base)
            try:
                for idx in (seg.index, seg.timeindex):
                    if not os.path.exists(idx.path):
                        raise IndexCorrupt(f"{idx.path} is missing")
                    idx.file_entries()
            except IndexCorrupt:
                seg.rebuild_indexes(interval, closed=True, dense=self._dense())
            finally:
                seg.close()

    def _scan_recover(self, bases, recovery_point, interval, rewrite=False):
        dense = self._dense()
        start_i = max(0, self._segment_for_in(bases, recovery_point))
        self._check_index_files(bases[:start_i], interval)
        next_offset = bases[start_i]
        result = None
        for i in range(start_i, len(bases)):
            if i > start_i and (bases[i] < next_offset or (dense and bases[i] != next_offset)):
                # This segment does not continue the previous one: damage at a boundary.
                self._drop_segments(bases[i:])
                bases = bases[:i]
                break
            seg = Segment(self.path, bases[i])
            try:
                size = seg.file_size()
                r = seg.scan(next_offset, interval, end=size, dense=dense)
                last = i == len(bases) - 1
                torn = r.valid_size < size
                if torn and not last:
                    # Kafka: everything after the first damage goes. Drop the later segments
                    # first, so a crash here finds the damage again on the next recovery.
                    self._drop_segments(bases[i + 1:])
                    bases = bases[:i + 1]
                    last = True
                if rewrite:
                    self._write_back(seg, r.valid_size)
                if torn or rewrite:
                    if torn:
                        _io.ftruncate(seg.open(), r.valid_size, seg.log_path)
                    try:
                        _io.fdatasync(seg.open(), seg.log_path)
                    except OSError:
                        self.state.invalidate(fsync_failed=True)    # final here too: the next recovery rewrites
                        raise
                if not last:
                    seg.final_time_entry(r)
                seg.write_indexes(r)
                next_offset = max(r.next_offset, bases[i]) if r.batches else max(next_offset, bases[i])
                result = (seg, r)
            finally:
                seg.close()
            if torn:
                break
        seg, r = result
        fields = [0] * st.N_FIELDS
        fields[st.F_LOG_END] = next_offset
        fields[st.F_HIGH_WATERMARK] = next_offset
        fields[st.F_ACTIVE_BASE] = seg.base_offset
        fields[st.F_ACTIVE_SIZE] = r.valid_size
        self._set_index_fields(fields, r)
        fields[st.F_CREATED_MS] = now_ms()
        fields[st.F_FIRST_UNFLUSHED_MS] = now_ms()
        # Nothing scanned is known to be on disk until the next fsync.
        flushed = bases[start_i]
        return fields, flushed, bases

    @staticmethod
    def _write_back(seg, size):
        """Write a segment's first `size` bytes again, as the page cache shows them, so that
        the next fdatasync writes every page (pages a failed fdatasync marked clean too)."""
        fd = seg.open()
        pos = 0
        while pos < size:
            buf = os.pread(fd, min(8 << 20, size - pos), pos)
            if not buf:
                break
            _io.pwrite_all(fd, buf, pos, seg.log_path)
            pos += len(buf)

    @staticmethod
    def _set_index_fields(fields, r):
        fields[st.F_INDEX_ENTRIES] = len(r.index)
        fields[st.F_TIMEINDEX_ENTRIES] = len(r.timeindex)
        fields[st.F_BYTES_SINCE_INDEX] = r.bytes_since_index
        fields[st.F_MAX_TIMESTAMP] = r.max_timestamp
        fields[st.F_OFFSET_OF_MAX_TIMESTAMP] = r.offset_of_max_timestamp
        fields[st.F_ROLL_TIMESTAMP] = r.roll_timestamp
        fields[st.F_LAST_TIMEINDEX_TS] = r.last_timeindex_ts

    def _drop_segments(self, bases):
        """Delete segments, newest first, and make the deletion durable."""
        for base in sorted(bases, reverse=True):
            Segment(self.path, base).delete_files()
        st.fsync_dir(self.path)

    @staticmethod
    def _segment_for_in(bases, offset):
        from bisect import bisect_right
        return bisect_right(bases, offset) - 1


    def _load_indexes(self, seg, fields, active, log_size):
        if active:
            seg.load_indexes(fields[st.F_INDEX_ENTRIES], fields[st.F_TIMEINDEX_ENTRIES], log_size)
        else:
            seg.load_indexes(None, None, log_size)

    def _rebuild_index(self, seg, active) -> list[int]:
        """A damaged index is disposable (FORMAT.md §4): rebuild it from the log under the
        append lock, and for the active segment republish the index counters too.
        Returns fresh fields."""
        seen = self._segments_version
        with self._mutex:
            self._lock()
            try:
                fields = self._ensure_state_locked()
                if fields[st.F_SEGMENTS_VERSION] != seen:
                    raise _Stale()      # the files changed (cleaner, recovery): do not touch them
                seg.index.reset()
                seg.timeindex.reset()
                interval = self.config["index.interval.bytes"]
                if seg.base_offset == fields[st.F_ACTIVE_BASE]:
                    self.state.set_in_append(os.getpid())
                    r = seg.scan(seg.base_offset, interval, end=fields[st.F_ACTIVE_SIZE], dense=self._dense())
                    seg.write_indexes(r)
                    self._set_index_fields(fields, r)
                    fields[st.F_SEGMENTS_VERSION] += 1
                    self.state.publish(fields)
                    self.state.set_in_append(0)
                else:
                    seg.rebuild_indexes(interval, closed=True, dense=self._dense())
                return fields
            except OSError as e:
                raise _storage_error(e, "index rebuild", seg.index.path) from e
            finally:
                self.state.unlock(st.LOCK_APPEND)

    def _recover_transactions(self, fields):
        """After the fields are rebuilt: aborted-transaction entries whose marker the log
        no longer holds are cut (writers only), and the open transactions, hence the
        last stable offset, are learned again from the log (#19)."""
        end = fields[st.F_LOG_END]
        if not self.read_only:
            for base in self._bases:
                path = _txnindex.path_for(self.path, base)
                if os.path.exists(path):
                    _txnindex.truncate_after(path, end)
        # Where open transactions may begin: the active segment, the oldest one open at
        # the last roll (the checkpoint), the published word (if it survived), or, with a
        # damaged checkpoint, the log start.
        ck = st.read_checkpoint(self.path)
        start = fields[st.F_ACTIVE_BASE]
        # A roll whose checkpoint did not land (its recovery point is below the active
        # base): transactions may also have opened in the segment before it.
        rolled_unrecorded = ck.get("recovery_point", 0) < start and len(self._bases) > 1
        for cand in (ck.get("txn_start"), self.state.first_unstable(),
                     fields[st.F_LOG_START] if ck.get("damaged") else None,
                     self._bases[-2] if rolled_unrecorded else None):
            if isinstance(cand, int) and fields[st.F_LOG_START] <= cand < start:
                start = cand
        self._pstate, self._pstate_end = {}, start
        opened = set(self._segments)
        self._load_producer_state_locked(fields)
        for base in set(self._segments) - opened:   # the scan's descriptors: reopened when used
            self._segments.pop(base).close()
        first = self._first_unstable()
        self.state.set_first_unstable(first)
        if not self.read_only and first != ck.get("txn_start") and (first is not None or "txn_start" in ck):
            st.write_checkpoint(self.path, clean=False, recovery_point=ck.get("recovery_point", 0),
                                log_start_offset=fields[st.F_LOG_START], txn_start=first)

