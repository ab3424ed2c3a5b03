"""Committed offsets: records in the internal compacted topic `__consumer_offsets`
(FORMAT.md §12), in Kafka's own key and value layouts, so the log is the only truth.

    key   (OffsetCommitKey v1):   int16 version=1, string group, string topic, int32 partition
    value (OffsetCommitValue v3): int16 version=3, int64 offset, int32 leader_epoch (-1),
                                  string metadata, int64 commit_timestamp
    a null value (tombstone) deletes the committed offset (offset reset / group deletion)

Strings are int16 length + UTF-8 bytes. A committed offset is the next offset to read.
Each process keeps an in-memory view, brought up to date incrementally by reading the
topic from where it last stopped.

Offsets sent in a transaction (Producer.send_offsets_to_transaction) are transactional
batches of the producer: they are held as pending per producer id until that producer's
control batch, applied on COMMIT (a record later in the log than the current commit wins,
as Kafka's completePendingTxnOffsetCommit) and dropped on ABORT.
"""
from __future__ import annotations

import struct
import threading

from ._errors import TopicExistsError, UnknownTopicOrPartitionError
from ._records import ATTR_CONTROL, ATTR_TRANSACTIONAL, decode_columns, now_ms

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.bytes": 104857600,
                        "min.cleanable.dirty.ratio": 0.5, "retention.ms": -1}
_KEY_VERSION = 1
_VALUE_VERSION = 3


def _string(s: str) -> bytes:
    b = s.encode()
    if len(b) > 32767:
        raise ValueError(f"a string of {len(b)} bytes does not fit an offset commit (at most 32767): {s[:40]!r}...")
    return struct.pack(">h", len(b)) + b


def _read_string(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">h", buf, pos)
    pos += 2
    if n < 0:                      # a null string
        return "", pos
    return buf[pos:pos + n].decode(), pos + n


def encode_key(group: str, topic: str, partition: int) -> bytes:
    return struct.pack(">h", _KEY_VERSION) + _string(group) + _string(topic) + struct.pack(">i", partition)


def decode_key(buf: bytes):
    (version,) = struct.unpack_from(">h", buf, 0)
    if version not in (0, 1):
        return None          # group metadata and future record types are not offsets
    group, pos = _read_string(buf, 2)
    topic, pos = _read_string(buf, pos)
    (partition,) = struct.unpack_from(">i", buf, pos)
    return group, topic, partition


def encode_value(offset: int, metadata: str = "", timestamp: int | None = None) -> bytes:
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**63:
        raise ValueError(f"a committed offset must be an int64 >= 0, not {offset!r}")
    return (struct.pack(">hqi", _VALUE_VERSION, offset, -1) + _string(metadata or "")
            + struct.pack(">q", now_ms() if timestamp is None else timestamp))


def decode_value(buf: bytes):
    (version, offset) = struct.unpack_from(">hq", buf, 0)
    pos = 10
    if version >= 3:
        pos += 4              # leader epoch
    metadata, pos = _read_string(buf, pos)
    (ts,) = struct.unpack_from(">q", buf, pos)
    return offset, metadata, ts


def read_batches(part, pos: int, end: int):
    """(header, Columns) of every batch from the one holding `pos` up to `end`."""
    while pos < end:
        items = part._read_batches(pos, 1 << 20)
        if not items:
            return
        for buf, bpos, h, path, fpos in items:
            yield h, decode_columns(buf, bpos, h, path=path, file_position=fpos)
        pos = items[-1][2].next_offset


class OffsetStore:
    """The committed offsets of every group, as of the last refresh()."""

    def __init__(self, log):
        self._log = log
        self._lock = threading.Lock()
        self._offsets: dict[tuple[str, str, int], tuple[int, str, int]] = {}
        self._where: dict[tuple[str, str, int], int] = {}    # log offset of the record applied
        self._pending: dict[int, dict] = {}      # producer id -> {key: (value | None, log offset)}
        self._next = 0
        self._partition = None

    def _part(self):
        if self._partition is None:
            try:
                t = self._log.topic(OFFSETS_TOPIC)
            except UnknownTopicOrPartitionError:
                try:
                    t = self._log.create_topic(OFFSETS_TOPIC, partitions=1, config=OFFSETS_TOPIC_CONFIG)
                except TopicExistsError:
                    t = self._log.topic(OFFSETS_TOPIC)
            self._partition = t.partition(0)
        return self._partition

    def refresh(self):
        part = self._part()
        with self._lock:
            start, end = part.watermarks()
            pos = max(self._next, start)
            for h, cols in read_batches(part, pos, end):
                if h.attributes & ATTR_CONTROL:
                    self._end_txn(h.producer_id, cols)
                elif h.attributes & ATTR_TRANSACTIONAL and h.producer_id >= 0:
                    held = self._pending.setdefault(h.producer_id, {})
                    for off, key, value in zip(cols.offsets, cols.keys, cols.values):
                        k = decode_key(key) if key and off >= pos else None
                        if k is not None:
                            held[k] = (None if value is None else decode_value(value), off)
                else:
                    for off, key, value in zip(cols.offsets, cols.keys, cols.values):
                        k = decode_key(key) if key and off >= pos else None
                        if k is not None:
                            self._apply(k, None if value is None else decode_value(value), off)
                pos = max(pos, h.next_offset)
            self._next = max(pos, self._next)

    def _apply(self, k, v, off):
        if v is None:
            self._offsets.pop(k, None)
        else:
            self._offsets[k] = v
        self._where[k] = off

    def _end_txn(self, producer_id, cols):
        held = self._pending.pop(producer_id, None)
        if not held or not cols.keys or cols.keys[0] is None or len(cols.keys[0]) < 4:
            return
        if struct.unpack_from(">h", cols.keys[0], 2)[0] == 1:          # COMMIT
            for k, (v, off) in held.items():
                if self._where.get(k, -1) < off:
                    self._apply(k, v, off)

    def has_pending(self, group: str, topic: str, partition: int) -> bool:
        """A transaction not yet ended holds offsets for (group, topic, partition)."""
        k = (group, topic, partition)
        return any(k in held for held in self._pending.values())

    def wait_stable(self, group: str, topic: str, partition: int) -> None:
        """KIP-447's UNSTABLE_OFFSET_COMMIT wait: while a transaction holds offsets for
        the partition, recover abandoned transactions (at most once a second) and wait, so
        a new owner never starts from an offset a committing transaction replaces. The
        transaction timeout bounds the wait (expire_and_recover aborts past it)."""
        if not self.has_pending(group, topic, partition):
            return
        import time

        from ._txn_coordinator import expire_and_recover
        last = 0.0
        while True:
            now = time.monotonic()
            if now - last >= 1.0:
                expire_and_recover(self._log)
                last = now
            self.refresh()
            if not self.has_pending(group, topic, partition):
                return
            time.sleep(0.01)

    def commit(self, group: str, offsets: list[tuple[str, int, int, str]]):
        """Append one batch of commits, fdatasync'd before returning (D5: a commit that
        returned is durable). offsets: (topic, partition, offset, metadata)."""
        keys = [encode_key(group, t, p) for t, p, _o, _m in offsets]
        ts = now_ms()
        values = [encode_value(o, m, ts) if o is not None else None for _t, _p, o, m in offsets]
        self._part().append_records(values, keys, sync=True)
        self.refresh()

    def delete(self, group: str, partitions: list[tuple[str, int]]):
        self.commit(group, [(t, p, None, "") for t, p in partitions])

    def committed(self, group: str, topic: str, partition: int):
        """(offset, metadata, commit_timestamp) or None."""
        return self._offsets.get((group, topic, partition))

    def groups(self) -> set[str]:
        return {g for g, _t, _p in self._offsets}

    def group_offsets(self, group: str) -> dict[tuple[str, int], tuple[int, str, int]]:
        return {(t, p): v for (g, t, p), v in self._offsets.items() if g == group}


def store_for(log) -> OffsetStore:
    store = getattr(log, "_offset_store", None)
    if store is None:
        store = log._offset_store = OffsetStore(log)
    return store


def consumer_lag(log, group: str, *, read_committed: bool = False) -> list[dict]:
    """Committed offset, log end offset and lag of every partition of the topics a group
    has committed for (an embedlog addition; the CLI's `groups describe`). A partition
    without a commit has committed None and its whole log as lag. With read_committed
    the end is the last stable offset, as a read_committed Kafka consumer's lag is (#19)."""
    store = store_for(log)
    store.refresh()
    offsets = store.group_offsets(group)
    rows = []
    for topic in sorted({t for t, _p in offsets}):
        try:
            t = log.topic(topic)
        except UnknownTopicOrPartitionError:
            continue
        for partition in range(t.num_partitions):
            part = t.partition(partition)
            start, end = part.watermarks()
            if read_committed:
                end = min(end, part.last_stable_offset())
            c = offsets.get((topic, partition))
            committed = c[0] if c else None
            rows.append({"group": group, "topic": topic, "partition": partition, "committed": committed,
                         "log_end_offset": end,
                         "lag": max(0, end - (max(committed, start) if committed is not None else start))})
    return rows
