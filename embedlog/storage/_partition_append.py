"""Partition's append path (FORMAT.md §5-§7): offsets assigned under the append lock, idempotent
producer sequences, segment rolls, acks=all replication and group-commit fdatasync."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from . import _failpoints, _io, _replication, _txnindex
from . import _hotpath as hp
from . import _state as st
from ._errors import (
    CorruptRecordError,
    InvalidProducerEpochError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    OutOfOrderSequenceError,
    RecordTooLargeError,
    StorageError,
)
from ._index import OffsetIndex, TimeIndex
from ._partition_common import (
    _BUDGET,
    DEFAULT_MAX_BYTES,
    INT32_MAX,
    PRODUCER_BATCHES_RETAINED,
    AppendResult,
    _storage_error,
)
from ._records import (
    ATTR_CONTROL,
    ATTR_LOG_APPEND_TIME,
    ATTR_TRANSACTIONAL,
    HEADER_SIZE,
    encode_batch,
    now_ms,
    parse_header,
)
from ._segment import MAX_RELATIVE_OFFSET, Segment


class AppendPart:
    """The append path of Partition: a mixin holding no state of its own."""

    # ============================================================ append
    def append(self, batch, *, sync: bool = False) -> AppendResult:
        """Append one encoded RecordBatch v2; offsets are assigned here (the batch's own
        baseOffset is overwritten, outside the CRC). With sync=True, returns only once
        the batch is fdatasync'd (acks=all)."""
        return self.append_batches([batch], sync=sync)[0]

    def append_records(self, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None,
                       timestamps: Sequence[int] | None = None,
                       headers: Sequence[Sequence[tuple[str, bytes | None]] | None] | None = None, *,
                       compression: int = 0, sync: bool = False, **batch_fields: Any) -> AppendResult:
        """Encode the records as one batch and append it."""
        return self.append_batches([encode_batch(values, keys, timestamps, headers, compression=compression,
                                                 **batch_fields)], sync=sync, _built_here=True)[0]

    def append_marker(self, producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int = 0, *,
                      sync: bool = True) -> AppendResult:
        """Write a transaction marker (a COMMIT or ABORT control batch, FORMAT.md §19) for
        the producer: it closes the producer's open transaction here, and an ABORT adds the
        transaction to the segment's .txnindex. Written also when the producer has no open
        transaction here (Kafka does; readers take it as a no-op). Refused with
        InvalidProducerEpochError when producer_epoch is older than the one this partition
        knows for the producer; a newer epoch fences the older one's later batches."""
        if not isinstance(producer_id, int) or producer_id < 0:
            raise ValueError(f"a marker needs a producer id >= 0, not {producer_id!r}")
        key, value = _txnindex.marker_record(commit, coordinator_epoch)
        batch = encode_batch([value], [key], producer_id=producer_id, producer_epoch=producer_epoch,
                             base_sequence=-1, transactional=True, extra_attributes=ATTR_CONTROL)
        return self.append_batches([batch], sync=sync, _built_here=True, _marker=True)[0]

    def append_batches(self, batches, *, sync: bool = False, _built_here: bool = False,
                       _marker: bool = False) -> list[AppendResult]:
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
            if h.attributes & ATTR_CONTROL and not _marker:
                raise CorruptRecordError("clients may not append control batches")
            headers.append(h)
        if self._failed:
            raise StorageError(f"partition {self.topic}-{self.partition} is FAILED after an I/O error "
                               f"({self._failed}); reopen the log to recover", path=self.path)
        if sync and (self.mirrors or cfg["min.insync.replicas"] > 1):
            # Without mirrors too: min.insync.replicas above the replication factor (the
            # primary alone is 1) refuses every acks=all append, as Kafka does.
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
        have = _replication.isr_size(self)
        if have >= need:
            return
        replicas = 1 + len(self.mirrors)
        if replicas < need:         # no copying can help: the primary and every mirror are too few
            raise NotEnoughReplicasError(
                f"{self.topic}-{self.partition} has {have} in-sync replica(s), min.insync.replicas={need} "
                f"is more than its replication factor {replicas}; nothing was written")
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
            txn_seen = False
            for data, h in zip(batches, headers):
                if h.attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL):
                    txn_seen = True
                if h.attributes & ATTR_CONTROL:
                    try:
                        self._check_marker_epoch_locked(fields, h)
                    except InvalidProducerEpochError as e:
                        refused = e
                        break
                elif h.producer_id >= 0:
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
                if h.attributes & ATTR_CONTROL:
                    self._abort_entry_locked(seg, h, base, data)   # before the marker's bytes
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
                    self._remember_batch(h, base, last)      # a marker closes the transaction
                if self._pstate_end == base:
                    self._pstate_end = last + 1
            raised_unstable = None
            if txn_seen:
                new = self._first_unstable()
                old = state.first_unstable()
                if new is not None and (old is None or new < old):
                    state.set_first_unstable(new)       # lowered before the publish
                elif new != old:
                    raised_unstable = (new,)
            state.publish(fields)
            if raised_unstable is not None:
                state.set_first_unstable(raised_unstable[0])    # raised after it
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
        """A producer's entry: [epoch, recent batches' (base seq, last seq, base offset,
        last offset), first offset of its open transaction or None]."""
        entry = self._pstate.get(h.producer_id)
        if entry is None or h.producer_epoch > entry[0]:
            entry = self._pstate[h.producer_id] = [h.producer_epoch, [], None]
        if h.attributes & ATTR_CONTROL:        # a marker: closes the open transaction
            entry[2] = None
            return
        if h.attributes & ATTR_TRANSACTIONAL and entry[2] is None:
            entry[2] = base_offset
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
        epoch, batches = entry[0], entry[1]
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

    # ------------------------------------------------------------ transactions (#19)
    def _check_marker_epoch_locked(self, fields, h):
        self._load_producer_state_locked(fields)
        entry = self._pstate.get(h.producer_id)
        if entry is not None and h.producer_epoch < entry[0]:
            raise InvalidProducerEpochError(
                f"marker of producer {h.producer_id} epoch {h.producer_epoch} is older than {entry[0]} "
                f"on {self.topic}-{self.partition}")

    def _abort_entry_locked(self, seg, h, offset, data):
        """Before an ABORT marker of an open transaction is written at `offset`: its
        .txnindex entry, fdatasync'd. A crash before the marker lands leaves an entry past
        the log end, which recovery cuts; so a marker on disk always has its entry."""
        entry = self._pstate.get(h.producer_id)
        first = entry[2] if entry is not None and h.producer_epoch >= entry[0] else None
        if first is None:
            return
        # The marker's key: the record follows the 61-byte header (a varint length,
        # attributes, deltas, then the 4-byte key); decode it as the reader does.
        from ._records import decode_columns
        cols = decode_columns(data, 0, h)
        if _txnindex.marker_type(cols.keys[0]) == _txnindex.ABORT:
            others = [e[2] for pid, e in self._pstate.items() if e[2] is not None and pid != h.producer_id]
            lso = min([*others, offset])          # the LSO once this transaction is closed
            path = _txnindex.path_for(self.path, seg.base_offset)
            try:
                _txnindex.append_entry(path, h.producer_id, first, offset, lso)
            except OSError as e:
                raise _storage_error(e, "append", path) from e

    def _first_unstable(self) -> int | None:
        firsts = [e[2] for e in self._pstate.values() if e[2] is not None]
        return min(firsts) if firsts else None

    def open_transactions(self) -> dict[int, int]:
        """{producer id: first offset} of the transactions open in this partition."""
        with self._mutex:
            self._lock()
            try:
                fields = self._ensure_state_locked()
                self._load_producer_state_locked(fields)
                return {pid: e[2] for pid, e in self._pstate.items() if e[2] is not None}
            finally:
                self.state.unlock(st.LOCK_APPEND)

    def _load_producer_state_locked(self, fields):
        """Learn producer ids from batch headers other writers appended since we last
        looked (first use: from the start of the active segment; older producer state
        is treated as expired, as Kafka does after producer.id.expiration.ms)."""
        end = fields[st.F_LOG_END]
        if self._pstate_end is None or self._pstate_end > end:
            # From the active segment, or from the oldest open transaction if it began
            # earlier (partition.state keeps where it starts).
            start = fields[st.F_ACTIVE_BASE]
            fu = self.state.first_unstable()
            if fu is not None and fields[st.F_LOG_START] <= fu < start:
                start = fu
            self._pstate, self._pstate_end = {}, start
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
                        self._remember_batch(bh, bh.base_offset, bh.last_offset)   # markers too
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
            except BaseException as e:
                new.close()
                if isinstance(e, OSError):
                    # The kernel may have dropped the new names (and may not report it
                    # again): as after a failed fdatasync, this handle writes no more, and
                    # the next lock holder re-derives the state from the files.
                    self._failed = f"fsync of the folder {self.path}: {e.strerror}"
                    self.state.invalidate(fsync_failed=True)
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
                            log_start_offset=fields[st.F_LOG_START], txn_start=self.state.first_unstable())

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

    def flush(self) -> None:
        """fdatasync everything appended so far (by any process)."""
        self._check_open()
        if self._failed:
            raise StorageError(f"partition {self.topic}-{self.partition} is FAILED after an I/O error "
                               f"({self._failed}); reopen the log to recover", path=self.path)
        self._sync_to(self._fields()[st.F_LOG_END])
