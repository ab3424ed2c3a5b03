"""Partition: the segments of one `<topic>-<partition>/` folder, appended to by any number
of processes and read by any number (FORMAT.md §5-§8).

Invariants
 1. Offsets are dense and unique: a batch appended gets base offset = log end offset.
 2. Only the holder of the append lock (byte 0 of partition.state) writes segment or
    index files; it holds it for one append, one roll or one recovery, never longer.
 3. A byte is visible to readers only after the writer published a state whose
    active_size covers it, and publishes only after the write returned. Readers
    never read past the published size, so they never see a torn batch.
 4. `in_append` is set to the writer's pid before its first write and cleared after its
    publish. Finding it set (the kernel released a dead writer's lock) means the files
    past the published state are unknown: the next lock holder runs recovery.
 5. The state file is a cache. After a reboot (boot id differs) the partition is
    recovered from the last durable checkpoint: segments from the recovery point on
    are scanned, the torn or corrupt tail is truncated, indexes are rebuilt.
 6. An offset is durable once `flushed_offset` covers it; fdatasync is shared by
    concurrent writers (group commit) through the sync lock (byte 1).
 7. A failed fdatasync is final for this handle: it goes FAILED and refuses appends,
    because a retried fsync can succeed after the kernel dropped the dirty pages.

States of a handle:  OPEN --append/read--> OPEN --fsync error--> FAILED --close--> CLOSED
                     OPEN --close()--> CLOSED (clean checkpoint written)
"""
from __future__ import annotations

import functools
import os
import threading
import time

from . import _hotpath as hp
from . import _io
from . import _state as st
from . import _cleaner, _failpoints
from . import _replication
from ._errors import (CorruptRecordError, InvalidProducerEpochError, LockTimeoutError, LogClosedError,
                      NotEnoughReplicasAfterAppendError, NotEnoughReplicasError, OffsetOutOfRangeError,
                      OutOfOrderSequenceError, RecordTooLargeError, StorageError)
from ._index import IndexCorrupt, OffsetIndex, TimeIndex
from ._records import (ATTR_CONTROL, ATTR_LOG_APPEND_TIME, HEADER_SIZE, MAGIC, Columns, Record,
                       decode_columns, encode_batch, iter_batches, now_ms, parse_header, peek_header)
from ._segment import MAX_RELATIVE_OFFSET, Segment, list_segments

DEFAULT_LOCK_TIMEOUT = 30.0
_new_record = functools.partial(tuple.__new__, Record)   # 2x cheaper than Record(*fields)
DEFAULT_MAX_BYTES = 1 << 20
MAX_OPEN_SEGMENTS = 64
_SMALL_READ = 65536               # read step when only a few records are wanted
_END, _BUDGET, _DAMAGE = 0, 1, 2   # why _read_segment stopped
PRODUCER_BATCHES_RETAINED = 5      # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
INT32_MAX = 2**31 - 1
_fork_generation = 0


def _after_fork():
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork)


class _Stale(Exception):
    """A lock-free read met files that changed under it; the caller reads again."""


class AppendResult(tuple):
    """(base_offset, last_offset, log_append_time): log_append_time is -1 for CreateTime."""

    __slots__ = ()

    def __new__(cls, base_offset, last_offset, log_append_time=-1):
        return tuple.__new__(cls, (base_offset, last_offset, log_append_time))

    base_offset = property(lambda s: s[0])
    last_offset = property(lambda s: s[1])
    log_append_time = property(lambda s: s[2])


def _storage_error(e: OSError, what: str, path) -> StorageError:
    return StorageError(f"{what} failed for {path}: {e.strerror or e}", path=str(path), errno=e.errno)


class Partition:
    """One partition of a topic. Obtain it from `Log.partition()` or `Topic.partition()`."""

    def __init__(self, path, topic: str, partition: int, config: dict,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, notifier=None):
        self.path = os.fspath(path)
        self.topic = topic
        self.partition = partition
        self.config = config          # the topic's live config dict
        self._notifier = notifier     # the log directory's DirNotifier (wakes multi-partition waiters)
        self.lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        self._clean_mutex = threading.Lock()    # one maintenance pass per handle at a time
        self._gaps = False                      # compaction ran: offsets may have gaps
        self._cleaning = False                  # this handle holds the cleaner lock
        self.mirrors: list = []                 # _replication.PartitionMirror, set by the Topic (FORMAT.md §15)
        self._segments: dict[int, Segment] = {}
        self._bases: list[int] = []
        self._segments_version = -1
        self._failed: str | None = None
        self._closed = False
        self._fork_generation = _fork_generation
        self._dirty_clean_checkpoint = True   # first append must clear a clean checkpoint
        # Idempotent producers: pid -> [epoch, [(base_seq, last_seq, base_offset, last_offset)...]],
        # learned from batch headers up to _pstate_end (None: not loaded yet).
        self._tail = None     # (next offset, segment base, position) where the last read ended
        self._pstate: dict[int, list] = {}
        self._pstate_end: int | None = None
        try:
            _io.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise _storage_error(e, "creating partition folder", self.path) from e
        self.state = st.SharedState(os.path.join(self.path, st.STATE_FILE))
        try:
            self._open_state()
        except BaseException:
            self._abandon()          # the state file's descriptor and mapping, any segment opened
            raise

    def __repr__(self):
        return f"<Partition {self.topic}-{self.partition} at {self.path}>"

    # ============================================================ state and locks
    def _check_open(self):
        if self._closed:
            raise LogClosedError(f"partition {self.topic}-{self.partition} is closed")
        if self._fork_generation != _fork_generation:
            raise LogClosedError(
                f"partition {self.topic}-{self.partition} was opened before fork(); "
                "open the log again in the child process")

    def _lock(self, which=st.LOCK_APPEND):
        if not self.state.lock(which, self.lock_timeout):
            raise LockTimeoutError(
                f"another process held the {'append' if which == st.LOCK_APPEND else 'sync'} lock of "
                f"{self.topic}-{self.partition} for more than {self.lock_timeout}s "
                f"({os.path.join(self.path, st.STATE_FILE)}); is a writer stopped?",
                path=os.path.join(self.path, st.STATE_FILE))

    def _open_state(self):
        """Make the shared state trustworthy, recovering the segments if needed."""
        if self.state.valid() and not self.state.in_append() and self.state.load() is not None:
            return
        with self._mutex:
            self._lock()
            try:
                self._ensure_state_locked()
            finally:
                self.state.unlock(st.LOCK_APPEND)

    def _ensure_state_locked(self) -> list[int]:
        """With the append lock held: return trustworthy fields, recovering first if the
        state is stale (reboot, first open) or a writer died mid-change."""
        if self.state.valid() and not self.state.in_append():
            fields = self.state.load()
            if fields is not None:
                return fields
        return self._recover_locked()

    def _fields(self) -> list[int]:
        """A consistent snapshot of the published fields (readers need no lock)."""
        fields = self.state.load()
        if fields is None or not self.state.valid():
            with self._mutex:
                self._lock()
                try:
                    fields = self._ensure_state_locked()
                finally:
                    self.state.unlock(st.LOCK_APPEND)
        return fields

    # ============================================================ segments
    def _refresh_segments(self, version: int):
        if version == self._segments_version:
            return
        bases = list_segments(self.path)
        self._gaps = os.path.exists(os.path.join(self.path, _cleaner.CLEANER_CHECKPOINT))
        self._tail = None                      # positions may have moved (recovery, rolls)
        for base in list(self._segments):
            self._segments.pop(base).close()   # contents may have been rewritten
        self._bases = bases
        self._segments_version = version

    def _segment(self, base: int) -> Segment:
        """The Segment handle for a base offset. At most MAX_OPEN_SEGMENTS keep their
        descriptors open (least recently used closed first), so a partition of
        thousands of segments does not run out of file descriptors."""
        segs = self._segments
        seg = segs.pop(base, None)
        return self._adopt(seg if seg is not None else Segment(self.path, base))

    def _adopt(self, seg: Segment) -> Segment:
        segs = self._segments
        segs.pop(seg.base_offset, None)
        while len(segs) >= MAX_OPEN_SEGMENTS:
            segs.pop(next(iter(segs))).close()
        segs[seg.base_offset] = seg   # most recently used last (dicts keep insertion order)
        return seg

    def _segment_for(self, offset: int) -> int:
        """Index into self._bases of the segment that would hold `offset`."""
        from bisect import bisect_right
        return bisect_right(self._bases, offset) - 1

    # ============================================================ recovery
    def _recover_locked(self) -> list[int]:
        """Rebuild the state from the files (append lock held). FORMAT.md §8."""
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

    # ============================================================ append
    def append(self, batch, *, sync: bool = False) -> AppendResult:
        """Append one encoded RecordBatch v2; offsets are assigned here (the batch's own
        baseOffset is overwritten, outside the CRC). With sync=True, returns only once
        the batch is fdatasync'd (acks=all)."""
        return self.append_batches([batch], sync=sync)[0]

    def append_records(self, values, keys=None, timestamps=None, headers=None, *,
                       compression: int = 0, sync: bool = False, **batch_fields) -> AppendResult:
        """Encode the records as one batch and append it."""
        return self.append_batches([encode_batch(values, keys, timestamps, headers, compression=compression,
                                                 **batch_fields)], sync=sync, _built_here=True)[0]

    def append_batches(self, batches, *, sync: bool = False, _built_here: bool = False) -> list[AppendResult]:
        """Append encoded batches under one lock hold. Each is validated as Kafka's broker
        does (whole, magic 2, CRC-32C, record count); `_built_here` skips only the CRC
        for batches this process just encoded with build_batch."""
        self._check_open()
        cfg = self.config
        limit = cfg["max.message.bytes"]
        headers = []
        for b in batches:
            h = parse_header(b, verify_crc=not _built_here)
            if h.size != len(b):
                raise CorruptRecordError(f"batch has {len(b) - h.size} bytes after its end")
            if h.size > limit:
                raise RecordTooLargeError(
                    f"batch of {h.size} bytes exceeds max.message.bytes={limit} of topic {self.topic}")
            if h.records_count <= 0 or h.last_offset_delta != h.records_count - 1:
                raise CorruptRecordError(
                    f"batch declares {h.records_count} records but lastOffsetDelta {h.last_offset_delta}")
            if h.attributes & ATTR_CONTROL:
                raise CorruptRecordError("clients may not append control batches")
            headers.append(h)
        if self._failed:
            raise StorageError(f"partition {self.topic}-{self.partition} is FAILED after an I/O error "
                               f"({self._failed}); reopen the log to recover", path=self.path)
        if sync and self.mirrors:
            self._check_insync_replicas()
        results = []
        with self._mutex:
            self._lock()
            try:
                end_offset = self._append_locked(batches, headers, results)
            except StorageError:
                raise
            except OSError as e:        # a checkpoint write (first append, roll): typed, naming its file
                raise _storage_error(e, "append", e.filename or self.path) from e
            finally:
                self.state.unlock(st.LOCK_APPEND)
        if sync and self.mirrors:
            self._replicate_durably(end_offset)        # the primary's fdatasync included
        elif sync or self._flush_due():
            self._sync_to(end_offset)
        return results

    # ------------------------------------------------------------ mirrors (acks=all)
    def _check_insync_replicas(self):
        """Kafka's NOT_ENOUGH_REPLICAS: refuse an acks=all append, before writing, when the
        ISR is smaller than min.insync.replicas (after trying to bring lagging mirrors in)."""
        need = self.config["min.insync.replicas"]
        if _replication.isr_size(self) >= need:
            return
        # Copy to the mirrors that are out (waiting briefly for a copy lock someone holds:
        # they are copying, and the mirror may be in by the time they are done).
        errors = _replication.refresh(self, durable=True, wait=1.0)
        have = _replication.isr_size(self)
        if have < need:
            why = "; ".join([str(e) for e in errors] or [m.why_not() for m in self.mirrors if not m.in_isr()])
            raise NotEnoughReplicasError(
                f"{self.topic}-{self.partition} has {have} in-sync replica(s), min.insync.replicas={need}"
                + (f" ({why})" if why else "") + "; nothing was written")

    def _replicate_durably(self, end_offset: int):
        """acks=all: every in-sync mirror holds [.., end_offset) fdatasync'd, and at least
        min.insync.replicas replicas do, or NOT_ENOUGH_REPLICAS_AFTER_APPEND."""
        errors = []
        todo = []
        now = now_ms()
        lag_max = self.config["replica.lag.time.max.ms"]
        for m in self.mirrors:
            # The ISR, and the healthy mirrors about to join it: never verified yet (new, or
            # after a restart: Kafka starts a partition with every replica in sync), or
            # caught up within replica.lag.time.max.ms. A mirror that is out for lagging is
            # left to the replicator: acks=all does not wait for a slow disk.
            flags = m.flags()
            if m.root is None or flags & _replication.FAILED or m.get(_replication.DURABLE) >= end_offset:
                continue
            if flags & _replication.IN_ISR or not flags & _replication.VERIFIED or \
                    now - m.get(_replication.CAUGHT_UP) <= lag_max:
                todo.append(m)

        def copy(m):      # copies (and syncs) other writers' appends too: group commit
            try:
                m.sync(True, self.lock_timeout)
            except StorageError as e:
                errors.append(e)
        # The mirrors' copies and fdatasyncs run beside the primary's own (the GIL is
        # released in both), so one mirror costs about one fdatasync, not two.
        pending = [_replication.background(copy, m) for m in todo]
        try:
            self._sync_to(end_offset)
        finally:
            for f in pending:
                f.result()
        self._with_append_lock_publish(lambda f: _replication.update_isr_locked(self, f, now_ms()))
        acked = 1 + sum(1 for m in self.mirrors if m.in_isr() and m.get(_replication.DURABLE) >= end_offset)
        need = self.config["min.insync.replicas"]
        if acked < need:
            why = "; ".join([str(e) for e in errors] or [m.why_not() for m in self.mirrors if not m.in_isr()])
            raise NotEnoughReplicasAfterAppendError(
                f"{self.topic}-{self.partition}: written on the primary but only {acked} replica(s) hold it "
                f"durably, min.insync.replicas={need}" + (f" ({why})" if why else "") + "; not acknowledged")

    def _with_append_lock_publish(self, change):
        """Run change(fields) under the append lock and publish if it returns True (state
        only: no file is written, so in_append is not set)."""
        with self._mutex:
            self._lock()
            try:
                fields = self._ensure_state_locked()
                if change(fields):
                    self.state.publish(fields)
            finally:
                self.state.unlock(st.LOCK_APPEND)

    def _flush_due(self) -> bool:
        cfg = self.config
        if cfg["flush.messages"] >= 2**62 and cfg["flush.ms"] >= 2**62:
            return False
        f = self.state.load()
        if f is None:
            return False
        unflushed = f[st.F_LOG_END] - self.state.flushed_offset()
        return unflushed >= cfg["flush.messages"] or \
            (unflushed > 0 and now_ms() - f[st.F_FIRST_UNFLUSHED_MS] >= cfg["flush.ms"])

    def _append_locked(self, batches, headers, results) -> int:
        fields = self._ensure_state_locked()
        if self._dirty_clean_checkpoint:
            ck = st.read_checkpoint(self.path)
            if ck.get("clean"):   # a writer is live again: the clean mark must go first
                st.write_checkpoint(self.path, clean=False, recovery_point=ck.get("recovery_point", 0),
                                    log_start_offset=fields[st.F_LOG_START])
            self._dirty_clean_checkpoint = False
        self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
        cfg = self.config
        log_append = cfg["message.timestamp.type"] == "LogAppendTime"
        interval = cfg["index.interval.bytes"]
        state = self.state
        state.set_in_append(os.getpid())
        try:
            refused = None
            for data, h in zip(batches, headers):
                if h.producer_id >= 0:
                    try:
                        dup = self._check_sequence_locked(fields, h)
                    except (OutOfOrderSequenceError, InvalidProducerEpochError) as e:
                        refused = e              # publish what went before, then raise
                        break
                    if dup is not None:
                        results.append(dup)      # a retry of a stored batch: stored once
                        continue
                if self._should_roll(fields, h, len(data), now_ms() if log_append else h.max_timestamp):
                    self._roll_locked(fields)
                seg = self._segment(fields[st.F_ACTIVE_BASE])
                base = fields[st.F_LOG_END]
                last = base + h.last_offset_delta
                # Stamp a copy of the 61-byte header only; the records go out untouched.
                head = bytearray(memoryview(data)[:HEADER_SIZE])
                body = memoryview(data)[HEADER_SIZE:]
                head[0:8] = base.to_bytes(8, "big", signed=True)
                head[12:16] = bytes(4)                    # partitionLeaderEpoch 0: one leader, ever
                max_ts = h.max_timestamp
                append_time = -1
                if log_append or h.log_append_time:
                    if log_append:
                        max_ts = append_time = now_ms()
                        head[21:23] = (h.attributes | ATTR_LOG_APPEND_TIME).to_bytes(2, "big")
                        head[35:43] = max_ts.to_bytes(8, "big", signed=True)
                    else:
                        head[21:23] = (h.attributes & ~ATTR_LOG_APPEND_TIME).to_bytes(2, "big")
                    head[17:21] = hp.crc32c(body, hp.crc32c(memoryview(head)[21:])).to_bytes(4, "big")
                position = fields[st.F_ACTIVE_SIZE]
                size = len(data)
                try:
                    _io.pwrite2(seg.open(), head, body, position, seg.log_path)
                    self._index_locked(seg, fields, position, size, last, max_ts, interval)
                except OSError as e:
                    raise _storage_error(e, "append", seg.log_path) from e
                if fields[st.F_ROLL_TIMESTAMP] < 0 and position == 0:
                    fields[st.F_ROLL_TIMESTAMP] = max_ts
                if state.flushed_offset() >= base:     # this append opens the unflushed window
                    fields[st.F_FIRST_UNFLUSHED_MS] = now_ms()
                fields[st.F_ACTIVE_SIZE] = position + size
                fields[st.F_LOG_END] = last + 1
                if not self.mirrors or not any(m.in_isr() for m in self.mirrors):
                    fields[st.F_HIGH_WATERMARK] = last + 1     # else: the lowest LEO in the ISR
                results.append(AppendResult(base, last, append_time))
                if h.producer_id >= 0:
                    self._remember_batch(h, base, last)
                if self._pstate_end == base:
                    self._pstate_end = last + 1
            state.publish(fields)
            if self._notifier is not None:
                self._notifier.bump()
            _failpoints.hit("partition.after_publish")
        except BaseException:
            # Leave in_append set: the next lock holder recovers the unknown tail.
            raise
        state.set_in_append(0)
        if refused is not None:
            raise refused
        return fields[st.F_LOG_END]

    # ------------------------------------------------------------ idempotence
    def _remember_batch(self, h, base_offset, last_offset):
        entry = self._pstate.get(h.producer_id)
        if entry is None or h.producer_epoch > entry[0]:
            entry = self._pstate[h.producer_id] = [h.producer_epoch, []]
        last_seq = (h.base_sequence + h.last_offset_delta) % (INT32_MAX + 1)
        entry[1].append((h.base_sequence, last_seq, base_offset, last_offset))
        del entry[1][:-PRODUCER_BATCHES_RETAINED]

    def _check_sequence_locked(self, fields, h) -> AppendResult | None:
        """Kafka's producer-state rules for a batch carrying a producer id (append lock
        held): the AppendResult of the stored copy for a duplicate, None to append, or
        an error for a fenced epoch or a sequence gap."""
        self._load_producer_state_locked(fields)
        entry = self._pstate.get(h.producer_id)
        if entry is None:
            return None                       # unknown producer: any sequence is accepted
        epoch, batches = entry
        if h.producer_epoch < epoch:
            raise InvalidProducerEpochError(
                f"producer {h.producer_id} epoch {h.producer_epoch} is older than {epoch} "
                f"on {self.topic}-{self.partition}")
        if h.producer_epoch > epoch:
            if h.base_sequence != 0:
                raise OutOfOrderSequenceError(
                    f"producer {h.producer_id} new epoch {h.producer_epoch} must start at sequence 0, "
                    f"not {h.base_sequence}")
            return None
        last_seq = (h.base_sequence + h.last_offset_delta) % (INT32_MAX + 1)
        for base_seq, cached_last, base_off, last_off in batches:
            if base_seq == h.base_sequence and cached_last == last_seq:
                return AppendResult(base_off, last_off)
        expected = (batches[-1][1] + 1) % (INT32_MAX + 1) if batches else None
        if expected is not None and h.base_sequence != expected:
            raise OutOfOrderSequenceError(
                f"producer {h.producer_id} sent sequence {h.base_sequence} to {self.topic}-{self.partition}, "
                f"expected {expected}")
        return None

    def _load_producer_state_locked(self, fields):
        """Learn producer ids from batch headers other writers appended since we last
        looked (first use: from the start of the active segment; older producer state
        is treated as expired, as Kafka does after producer.id.expiration.ms)."""
        end = fields[st.F_LOG_END]
        if self._pstate_end is None or self._pstate_end > end:
            self._pstate, self._pstate_end = {}, fields[st.F_ACTIVE_BASE]
        if self._pstate_end >= end:
            return
        self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
        offset = self._pstate_end
        i = max(0, self._segment_for(offset))
        while offset < end and i < len(self._bases):
            seg = self._segment(self._bases[i])
            while offset < end:
                items, stop = self._read_segment(seg, fields, offset, DEFAULT_MAX_BYTES, end)
                for _buf, _pos, bh, _path, _fpos in items:
                    if bh.producer_id >= 0:
                        self._remember_batch(bh, bh.base_offset, bh.last_offset)
                    offset = bh.next_offset
                if stop != _BUDGET or not items:
                    break
            i += 1
        self._pstate_end = end

    def _index_locked(self, seg, fields, position, size, last_offset, max_ts, interval):
        if max_ts > fields[st.F_MAX_TIMESTAMP] or position == 0:
            fields[st.F_MAX_TIMESTAMP] = max_ts
            fields[st.F_OFFSET_OF_MAX_TIMESTAMP] = last_offset
        if fields[st.F_BYTES_SINCE_INDEX] > interval:
            base = seg.base_offset
            seg.index.write_entries(fields[st.F_INDEX_ENTRIES],
                                    OffsetIndex.entry(last_offset - base, position))
            fields[st.F_INDEX_ENTRIES] += 1
            if fields[st.F_MAX_TIMESTAMP] > fields[st.F_LAST_TIMEINDEX_TS]:
                seg.timeindex.write_entries(
                    fields[st.F_TIMEINDEX_ENTRIES],
                    TimeIndex.entry(fields[st.F_MAX_TIMESTAMP], fields[st.F_OFFSET_OF_MAX_TIMESTAMP] - base))
                fields[st.F_TIMEINDEX_ENTRIES] += 1
                fields[st.F_LAST_TIMEINDEX_TS] = fields[st.F_MAX_TIMESTAMP]
            fields[st.F_BYTES_SINCE_INDEX] = 0
        fields[st.F_BYTES_SINCE_INDEX] += size

    def _should_roll(self, fields, h, size, max_ts) -> bool:
        """Kafka's LogSegment.shouldRoll (FORMAT.md §5.2); max_ts is the batch's max
        timestamp as it will be stored (the append time under LogAppendTime)."""
        active = fields[st.F_ACTIVE_SIZE]
        if active == 0:
            return False
        cfg = self.config
        if active > cfg["segment.bytes"] - size:
            return True
        jitter_max = min(cfg["segment.jitter.ms"], cfg["segment.ms"])
        # Kafka draws the jitter at random per segment; a hash of the base offset is as
        # spread out and gives every process the same answer.
        jitter = (fields[st.F_ACTIVE_BASE] * 2654435761 % 2**32) % jitter_max if jitter_max else 0
        seg_ms = cfg["segment.ms"] - jitter
        roll_ts = fields[st.F_ROLL_TIMESTAMP]
        if roll_ts >= 0 and max_ts >= 0:
            if max_ts - roll_ts > seg_ms:
                return True
        elif now_ms() - fields[st.F_CREATED_MS] > seg_ms:
            return True
        index_bytes = cfg["segment.index.bytes"]
        if (fields[st.F_INDEX_ENTRIES] + 1) * 8 > index_bytes or \
                (fields[st.F_TIMEINDEX_ENTRIES] + 2) * 12 > index_bytes:
            return True
        return fields[st.F_LOG_END] + h.last_offset_delta - fields[st.F_ACTIVE_BASE] > MAX_RELATIVE_OFFSET

    def _roll_locked(self, fields):
        """Close the active segment (final time-index entry, fdatasync) and start a new one
        at the log end offset. The append lock is held and in_append is set."""
        old = self._segment(fields[st.F_ACTIVE_BASE])
        try:
            if fields[st.F_MAX_TIMESTAMP] > fields[st.F_LAST_TIMEINDEX_TS]:
                old.timeindex.write_entries(
                    fields[st.F_TIMEINDEX_ENTRIES],
                    TimeIndex.entry(fields[st.F_MAX_TIMESTAMP],
                                    fields[st.F_OFFSET_OF_MAX_TIMESTAMP] - old.base_offset))
                fields[st.F_TIMEINDEX_ENTRIES] += 1
            old.index.truncate(fields[st.F_INDEX_ENTRIES])
            old.timeindex.truncate(fields[st.F_TIMEINDEX_ENTRIES])
            _io.ftruncate(old.open(), fields[st.F_ACTIVE_SIZE], old.log_path)
            self._fsync(old.open(), old.log_path)
            for idx in (old.index, old.timeindex):
                self._fsync(idx.open(), idx.path)
            base = fields[st.F_LOG_END]
            new = Segment.create(self.path, base)
            try:
                st.fsync_dir(self.path)
            except BaseException:
                new.close()
                raise
        except OSError as e:
            raise _storage_error(e, "segment roll", old.log_path) from e
        self._adopt(new)
        self._bases.append(base)
        self.state.raise_flushed_offset(base)
        fields[st.F_ACTIVE_BASE] = base
        fields[st.F_ACTIVE_SIZE] = 0
        fields[st.F_INDEX_ENTRIES] = fields[st.F_TIMEINDEX_ENTRIES] = 0
        fields[st.F_BYTES_SINCE_INDEX] = 0
        fields[st.F_MAX_TIMESTAMP] = -1
        fields[st.F_OFFSET_OF_MAX_TIMESTAMP] = base
        fields[st.F_ROLL_TIMESTAMP] = -1
        fields[st.F_LAST_TIMEINDEX_TS] = -1
        fields[st.F_CREATED_MS] = now_ms()
        fields[st.F_SEGMENTS_VERSION] += 1
        self._segments_version = fields[st.F_SEGMENTS_VERSION]
        st.write_checkpoint(self.path, clean=False, recovery_point=base,
                            log_start_offset=fields[st.F_LOG_START])

    def _fsync(self, fd, path):
        try:
            _io.fdatasync(fd, path)
        except OSError as e:
            self._failed = f"fdatasync of {path}: {e.strerror}"
            # fsyncgate: the kernel may have dropped the dirty pages, or marked them clean
            # unwritten. Nobody may trust the cached state any more; the next lock holder
            # re-derives it from the files, writing back what it scans (FORMAT.md §8).
            self.state.invalidate(fsync_failed=True)
            raise StorageError(f"fdatasync failed for {path}: {e.strerror}; partition "
                               f"{self.topic}-{self.partition} refuses further appends until reopened",
                               path=str(path), errno=e.errno) from e

    def _sync_to(self, end_offset: int):
        """Group commit: make every offset below end_offset durable, sharing fdatasync calls
        with concurrent writers in any process."""
        state = self.state
        if state.flushed_offset() >= end_offset:
            return
        with self._mutex:
            self._lock(st.LOCK_SYNC)
            try:
                if state.flushed_offset() >= end_offset:
                    return                      # another writer's fsync covered us
                fields = self._fields()
                self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
                seg = self._segment(fields[st.F_ACTIVE_BASE])
                covered = fields[st.F_LOG_END]
                self._fsync(seg.open(), seg.log_path)
                state.raise_flushed_offset(covered)
            finally:
                state.unlock(st.LOCK_SYNC)

    def flush(self):
        """fdatasync everything appended so far (by any process)."""
        self._check_open()
        if self._failed:
            raise StorageError(f"partition {self.topic}-{self.partition} is FAILED after an I/O error "
                               f"({self._failed}); reopen the log to recover", path=self.path)
        self._sync_to(self._fields()[st.F_LOG_END])

    # ============================================================ maintenance (FORMAT.md §14)
    def maintain(self, now: int | None = None, *, force_compaction: bool = False) -> dict:
        """Apply the topic's retention and compaction rules now (Kafka's log retention
        check and log cleaner, for this partition). `now` (epoch ms) replaces the clock,
        for tests. Returns what was done; {"skipped": ...} if another process is
        maintaining this partition at this moment."""
        self._check_open()
        now = now_ms() if now is None else now
        with self._clean_mutex:
            if not self.state.lock(st.LOCK_CLEAN, 0):
                return {"skipped": "another process is maintaining this partition"}
            self._cleaning = True
            try:
                result = {"retention": self._with_append_lock(
                    lambda fields: _cleaner.apply_retention_locked(self, fields, now))}
                if "compact" in self.config["cleanup.policy"]:
                    result["compaction"] = self._compact(now, force_compaction)
                return result
            except OSError as e:
                raise _storage_error(e, "maintenance", getattr(e, "filename", None) or self.path) from e
            finally:
                self._cleaning = False
                self.state.unlock(st.LOCK_CLEAN)

    def compact(self, now: int | None = None) -> dict | None:
        """Clean every closed segment now, whatever the dirty ratio (the cleaner's other
        rules still hold: the active segment and records younger than
        min.compaction.lag.ms are left alone). For topics whose cleanup.policy has
        "compact"; returns the cleaning's figures, or None if there was nothing to do."""
        if "compact" not in self.config["cleanup.policy"]:
            raise ValueError(f"topic {self.topic} has cleanup.policy={self.config['cleanup.policy']}, "
                             "not compact")
        return self.maintain(now, force_compaction=True).get("compaction")

    def delete_records(self, before_offset: int) -> int:
        """Kafka's DeleteRecords: move the log start offset up to `before_offset` (at most
        the high watermark); records below it are gone for readers at once, and segments
        wholly below it are deleted by the next maintenance. Returns the log start offset."""
        self._check_open()
        if not isinstance(before_offset, int) or isinstance(before_offset, bool):
            raise TypeError(f"offset must be an int, not {type(before_offset).__name__}")

        def check(fields) -> int:
            hw = fields[st.F_HIGH_WATERMARK]
            target = hw if before_offset == -1 else before_offset
            if not 0 <= target <= hw:
                raise OffsetOutOfRangeError(
                    f"cannot delete records before offset {before_offset} of {self.topic}-{self.partition} "
                    f"(high watermark {hw})", offset=before_offset,
                    log_start_offset=fields[st.F_LOG_START], log_end_offset=hw)
            return target

        def move(fields):
            target = check(fields)
            if target > fields[st.F_LOG_START]:
                ck = st.read_checkpoint(self.path)
                st.write_checkpoint(self.path, clean=False, recovery_point=ck.get("recovery_point", 0),
                                    log_start_offset=target)
                fields[st.F_LOG_START] = target
                self.state.publish(fields)
            return fields[st.F_LOG_START]
        check(self._fields())    # refused before the lock: _with_append_lock marks the state in_append
        return self._with_append_lock(move)

    def _with_append_lock(self, change):
        """Run change(fields) under the append lock with in_append set (a crash inside
        makes the next lock holder recover)."""
        with self._mutex:
            self._lock()
            try:
                fields = self._ensure_state_locked()
                self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
                self.state.set_in_append(os.getpid())
                out = change(fields)
                self.state.set_in_append(0)
                return out
            finally:
                self.state.unlock(st.LOCK_APPEND)

    def _compact(self, now: int, force: bool) -> dict | None:
        fields = self._fields()
        with self._mutex:
            self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
            _cleaner.remove_cleaned_files(self.path)       # a dead cleaner's leftovers
            plan = _cleaner.plan_cleaning(self, fields, now, force)
        if plan is None:
            return None
        latest = _cleaner.build_offset_map(self, plan)
        if _cleaner.read_cleaner_checkpoint(self.path) is None:
            # Mark the partition as gapped before any reader can meet a cleaned segment.
            _cleaner.write_cleaner_checkpoint(self.path, plan.first_dirty)
        totals = {"reason": plan.reason, "first_dirty_offset": plan.first_dirty,
                  "cleaned_up_to": plan.first_dirty, "keys": len(latest), "segments_in": 0,
                  "segments_out": 0, "records_in": 0, "records_out": 0, "bytes_in": 0, "bytes_out": 0,
                  "tombstones_removed": 0, "next_horizon": None}
        for group in _cleaner.group_segments(plan, self.config["segment.bytes"]):
            stats = _cleaner.clean_group(self, plan, group, latest, now)
            _failpoints.hit("cleaner.before_swap")
            if not self._with_append_lock(lambda fields: _cleaner.swap_locked(self, fields, group, plan.sizes)):
                break
            horizon = stats.pop("next_horizon")
            if horizon is not None and (totals["next_horizon"] is None or horizon < totals["next_horizon"]):
                totals["next_horizon"] = horizon
            for k, v in stats.items():
                totals[k] += v
            totals["segments_in"] += len(group)
            totals["segments_out"] += 1
        else:
            _cleaner.write_cleaner_checkpoint(self.path, max(plan.first_dirty, plan.first_uncleanable),
                                              totals["next_horizon"])
            totals["cleaned_up_to"] = plan.first_uncleanable
        return totals

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

    def fetch(self, offset: int, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Columns, int]:
        """(records from `offset` on, next offset to fetch). The next offset is the end of
        the last batch read, which passes over offsets compaction removed (even when no
        record is returned), so a consumer always makes progress."""
        items = self._read_batches(offset, max_bytes)
        if not items:
            return Columns([], [], [], [], []), offset
        out = Columns([], [], [], [], [])
        for buf, pos, h, path, fpos in items:
            cols = decode_columns(buf, pos, h, path=path, file_position=fpos)
            skip = 0
            if h.base_offset < offset:
                while skip < len(cols.offsets) and cols.offsets[skip] < offset:
                    skip += 1
            if len(items) == 1 and not skip:
                return cols, h.next_offset
            for dst, src in zip(out, cols):
                dst.extend(src[skip:] if skip else src)
        return out, items[-1][2].next_offset

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

    # ============================================================ close
    def _abandon(self):
        """Close every descriptor without flushing or checkpointing, as a killed process
        would leave things (tests use it to simulate crashes in-process)."""
        self._closed = True
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        for m in self.mirrors:
            m.close()
        self.state.close()

    def close(self):
        """Flush and, if no append raced us, write a clean checkpoint so the next open after
        a reboot need not scan."""
        if self._closed:
            return
        try:
            if self._fork_generation == _fork_generation and not self._failed:
                with self._mutex:
                    self._lock()
                    try:
                        fields = self._ensure_state_locked()
                        if fields[st.F_LOG_END] > self.state.flushed_offset() or \
                                not st.read_checkpoint(self.path).get("clean"):
                            self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
                            seg = self._segment(fields[st.F_ACTIVE_BASE])
                            self._fsync(seg.open(), seg.log_path)
                            for idx in (seg.index, seg.timeindex):
                                self._fsync(idx.open(), idx.path)
                            self.state.raise_flushed_offset(fields[st.F_LOG_END])
                            st.write_checkpoint(self.path, clean=True, recovery_point=fields[st.F_LOG_END],
                                                log_start_offset=fields[st.F_LOG_START], fields=fields)
                    finally:
                        self.state.unlock(st.LOCK_APPEND)
        finally:
            self._closed = True
            for seg in self._segments.values():
                seg.close()
            self._segments.clear()
            for m in self.mirrors:
                m.close()
            self.state.close()
