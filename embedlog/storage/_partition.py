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

import errno
import os
import threading

from . import _cleaner, _io
from . import _state as st
from ._errors import LockTimeoutError, LogClosedError, ReadOnlyLogError
from ._partition_append import AppendPart
from ._partition_common import (  # noqa: F401
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_BYTES,
    INT32_MAX,
    MAX_OPEN_SEGMENTS,
    PRODUCER_BATCHES_RETAINED,
    AppendResult,
    _Stale,
    _storage_error,
)
from ._partition_maintenance import MaintenancePart
from ._partition_read import ReadPart
from ._partition_recovery import RecoveryPart
from ._segment import Segment, list_segments

_fork_generation = 0


def _after_fork():
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork)



class Partition(AppendPart, ReadPart, RecoveryPart, MaintenancePart):
    """One partition of a topic. Obtain it from `Log.partition()` or `Topic.partition()`."""

    def __init__(self, path, topic: str, partition: int, config: dict,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, notifier=None, read_only: bool = False):
        """`read_only`: read the folder without changing a byte (Log(read_only=True)): the
        state is this handle's own, in memory, taken from the folder when it opens (the
        live state file when a handle of this boot keeps it, else a scan), so the handle
        shows the records present then; writes raise ReadOnlyLogError."""
        self.path = os.fspath(path)
        self.read_only = read_only
        self._ro_last_base = None               # read-only: segments after a torn one are not read
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
            if not read_only:
                _io.makedirs(self.path, exist_ok=True)
            elif not os.path.isdir(self.path):
                raise FileNotFoundError(errno.ENOENT, "no partition folder", self.path)
        except OSError as e:
            raise _storage_error(e, "creating partition folder" if not read_only else "opening partition folder",
                                 self.path) from e
        self.state = st.SharedState(os.path.join(self.path, st.STATE_FILE), private=read_only)
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

    def _refuse_write(self, what: str):
        if self.read_only:
            raise ReadOnlyLogError(f"{what} of {self.topic}-{self.partition}: the log was opened read-only "
                                   f"({self.path}); open it without read_only=True to write", path=self.path)

    def maintain(self, *args, **kwargs):
        if self.read_only:
            self._refuse_write("retention and compaction")
        return super().maintain(*args, **kwargs)

    def compact(self, *args, **kwargs):
        if self.read_only:
            self._refuse_write("compaction")
        return super().compact(*args, **kwargs)

    def delete_records(self, before_offset: int) -> int:
        if self.read_only:
            self._refuse_write("delete_records")
        return super().delete_records(before_offset)

    def _lock(self, which=st.LOCK_APPEND):
        if not self.state.lock(which, self.lock_timeout):
            raise LockTimeoutError(
                f"another process held the {'append' if which == st.LOCK_APPEND else 'sync'} lock of "
                f"{self.topic}-{self.partition} for more than {self.lock_timeout}s "
                f"({os.path.join(self.path, st.STATE_FILE)}); is a writer stopped?",
                path=os.path.join(self.path, st.STATE_FILE))

    def _open_state(self):
        """Make the shared state trustworthy, recovering the segments if needed."""
        if self.read_only:
            with self._mutex:
                self._lock()
                try:
                    self._recover_read_only()
                finally:
                    self.state.unlock(st.LOCK_APPEND)
            return
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
        if self._ro_last_base is not None:
            bases = [b for b in bases if b <= self._ro_last_base]
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
        return self._adopt(seg if seg is not None else Segment(self.path, base, read_only=self.read_only))

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

    def close(self) -> None:
        """Flush and, if no append raced us, write a clean checkpoint so the next open after
        a reboot need not scan."""
        if self._closed:
            return
        try:
            if self._fork_generation == _fork_generation and not self._failed and not self.read_only:
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
