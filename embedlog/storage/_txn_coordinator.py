"""The transaction coordinator (KIP-98; FORMAT.md §12.2): the state of every transactional.id
as records in the compacted topic `__transaction_state` (one partition), in Kafka's layouts,
and the state changes of a transaction: init (fencing), add partitions, end (commit or
abort), timeout and recovery.

    key   (TransactionLogKey v0):   int16 version=0, string transactional_id
    value (TransactionLogValue v0): int16 version=0, int64 producer_id, int16 producer_epoch,
          int32 transaction_timeout_ms, int8 status, the partitions (int32 count, -1: null;
          each: string topic, int32 count, int32 partition...), int64 last_update_ms,
          int64 start_ms
    a null value (tombstone): the id is gone

Strings are int16 length + UTF-8. Status codes are Kafka's (TransactionState.java):

    Empty 0 -add-> Ongoing 1 -commit-> PrepareCommit 2 -markers-> CompleteCommit 4 -add-> Ongoing
                            \\-abort---> PrepareAbort 3  -markers-> CompleteAbort 5  -add-> Ongoing
    Ongoing past transaction.timeout.ms, or a new init: epoch + 1, then PrepareAbort ...
    any idle state -init-> Empty with epoch + 1 (a new producer id once the epoch is 32766)

Concurrency: every change to one id's state runs under that id's lock: an OFD byte-range
lock on `<dir>/.txnlock` (1 byte at crc32(id); the kernel releases it when its holder
dies), with a thread lock for holders in this process. Under it the in-memory view is
caught up with the topic, so a change always starts from the latest state, and several
processes may run producers and recovery at once.

The commit point is the durable PrepareCommit (PrepareAbort) record. After it the markers
go to every partition of the transaction (Partition.append_marker, durable) and then
CompleteCommit (CompleteAbort, not synced: losing it only repeats the markers). Whoever
next takes the id's lock and finds a Prepare* state finishes it; a marker twice is harmless.
"""
from __future__ import annotations

import os
import secrets
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from . import _failpoints, _io
from . import _hotpath as hp
from ._errors import (
    InvalidTxnStateError,
    LockTimeoutError,
    ProducerFencedError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
)
from ._offsets import read_batches
from ._records import now_ms

TXN_TOPIC = "__transaction_state"
TXN_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.bytes": 104857600,
                    "min.cleanable.dirty.ratio": 0.5, "retention.ms": -1}
LOCK_FILE = ".txnlock"

EMPTY, ONGOING, PREPARE_COMMIT, PREPARE_ABORT, COMPLETE_COMMIT, COMPLETE_ABORT, DEAD, PREPARE_EPOCH_FENCE = range(8)
STATUS_NAMES = ("Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort",
                "Dead", "PrepareEpochFence")
_PREPARED = (PREPARE_COMMIT, PREPARE_ABORT)
_IDLE = (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT)
# Kafka's TransactionMetadata.isProducerEpochExhausted: at Short.MaxValue - 1 the id gets a
# new producer id (epoch 0), so a fence bump (+1) always fits an int16.
EPOCH_EXHAUSTED = 32766
_KEY_VERSION = 0
_VALUE_VERSION = 0


@dataclass(frozen=True)
class TxnMetadata:
    """One transactional.id's state, as its latest __transaction_state record says."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    status: int
    partitions: tuple[tuple[str, int], ...]
    last_update_ms: int
    start_ms: int

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.status] if 0 <= self.status < len(STATUS_NAMES) else f"status {self.status}"

    def expired(self, now: int) -> bool:
        """Ongoing for longer than its transaction.timeout.ms (Kafka counts from the start)."""
        return self.status == ONGOING and now - self.start_ms > self.timeout_ms


# ------------------------------------------------------------------ bytes

def _string(s: str) -> bytes:
    b = s.encode()
    if len(b) > 32767:
        raise ValueError(f"a string of {len(b)} bytes does not fit a transaction record (at most 32767)")
    return struct.pack(">h", len(b)) + b


def _read_string(buf, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">h", buf, pos)
    pos += 2
    if n < 0:
        return "", pos
    return bytes(buf[pos:pos + n]).decode(), pos + n


def encode_key(transactional_id: str) -> bytes:
    return struct.pack(">h", _KEY_VERSION) + _string(transactional_id)


def decode_key(buf) -> str | None:
    """The transactional id of a key, None for a key of another kind or version."""
    if buf is None or len(buf) < 4:
        return None
    (version,) = struct.unpack_from(">h", buf, 0)
    if version != _KEY_VERSION:
        return None
    return _read_string(buf, 2)[0]


def encode_value(m: TxnMetadata) -> bytes:
    out = [struct.pack(">hqhib", _VALUE_VERSION, m.producer_id, m.producer_epoch, m.timeout_ms, m.status)]
    if m.status == EMPTY and not m.partitions:
        out.append(struct.pack(">i", -1))            # Kafka writes Empty's partitions as null
    else:
        by_topic: dict[str, list[int]] = {}
        for topic, p in m.partitions:
            by_topic.setdefault(topic, []).append(p)
        out.append(struct.pack(">i", len(by_topic)))
        for topic in sorted(by_topic):
            ids = sorted(by_topic[topic])
            out.append(_string(topic) + struct.pack(f">i{len(ids)}i", len(ids), *ids))
    out.append(struct.pack(">qq", m.last_update_ms, m.start_ms))
    return b"".join(out)


def decode_value(transactional_id: str, buf) -> TxnMetadata | None:
    """The state a value holds; None for a version this code does not write (v1+, flexible)."""
    (version,) = struct.unpack_from(">h", buf, 0)
    if version != _VALUE_VERSION:
        return None
    pid, epoch, timeout_ms, status = struct.unpack_from(">qhib", buf, 2)
    pos = 17
    (count,) = struct.unpack_from(">i", buf, pos)
    pos += 4
    parts = []
    for _ in range(max(count, 0)):
        topic, pos = _read_string(buf, pos)
        (n,) = struct.unpack_from(">i", buf, pos)
        ids = struct.unpack_from(f">{n}i", buf, pos + 4)
        pos += 4 + 4 * n
        parts.extend((topic, p) for p in ids)
    last_update, start = struct.unpack_from(">qq", buf, pos)
    return TxnMetadata(transactional_id, pid, epoch, timeout_ms, status, tuple(parts), last_update, start)


# ------------------------------------------------------------------ the coordinator

class TxnCoordinator:
    """One process's coordinator for one Log (coordinator_for): the view of
    __transaction_state and the per-id locks. Thread-safe."""

    def __init__(self, log):
        self._log = log
        self._view_lock = threading.Lock()
        self._txns: dict[str, TxnMetadata] = {}
        self._next = 0
        self._partition = None
        self._guard = threading.Lock()
        self._thread_locks: dict[int, threading.Lock] = {}
        self._held: dict[str, int] = {}             # id -> lock-file descriptor, while held here

    # -- the topic
    def _part(self, create: bool = True):
        if self._partition is None:
            try:
                t = self._log.topic(TXN_TOPIC)
            except UnknownTopicOrPartitionError:
                if not create:
                    return None
                try:
                    t = self._log.create_topic(TXN_TOPIC, partitions=1, config=TXN_TOPIC_CONFIG)
                except TopicExistsError:
                    t = self._log.topic(TXN_TOPIC)
            self._partition = t.partition(0)
        return self._partition

    def refresh(self, create: bool = False) -> bool:
        """Catch the view up with the topic (to its high watermark). False when the
        topic does not exist (no transactional producer ever ran here)."""
        part = self._part(create)
        if part is None:
            return False
        with self._view_lock:
            start, end = part.watermarks()
            pos = max(self._next, start)
            for _h, cols in read_batches(part, pos, end):
                for off, key, value in zip(cols.offsets, cols.keys, cols.values):
                    tid = decode_key(key) if off >= pos else None
                    if tid is None:
                        continue
                    if value is None:
                        self._txns.pop(tid, None)
                    else:
                        m = decode_value(tid, value)
                        if m is not None:
                            self._txns[tid] = m
                pos = max(pos, _h.next_offset)
            self._next = max(pos, self._next)
        return True

    def get(self, transactional_id: str) -> TxnMetadata | None:
        return self._txns.get(transactional_id)

    def transactions(self) -> dict[str, TxnMetadata]:
        """Every id's state as of the last refresh()."""
        return dict(self._txns)

    def _write(self, m: TxnMetadata, *, sync: bool) -> TxnMetadata:
        self._part().append_records([encode_value(m)], [encode_key(m.transactional_id)], sync=sync)
        with self._view_lock:
            self._txns[m.transactional_id] = m     # the record is re-read by the next refresh: the same
        return m

    # -- the per-id lock
    def _acquire(self, transactional_id: str, timeout: float | None) -> bool:
        """Take the id's lock (timeout None: wait; 0: try once). False when busy."""
        byte = zlib.crc32(transactional_id.encode())
        with self._guard:
            tl = self._thread_locks.setdefault(byte, threading.Lock())
        if not tl.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            path = os.path.join(self._log.path, LOCK_FILE)
            fd = _io.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if not hp.lock(fd, byte, 1, True, timeout):
                    os.close(fd)
                    tl.release()
                    return False
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            tl.release()
            raise
        self._held[transactional_id] = fd
        return True

    def _release(self, transactional_id: str) -> None:
        byte = zlib.crc32(transactional_id.encode())
        fd = self._held.pop(transactional_id)
        try:
            hp.unlock(fd, byte, 1)
        finally:
            os.close(fd)
            self._thread_locks[byte].release()

    def _lock(self, transactional_id: str, timeout: float | None) -> TxnMetadata | None:
        if not self._acquire(transactional_id, timeout):
            raise LockTimeoutError(f"timed out after {timeout} s waiting for the lock of transactional.id "
                                   f"{transactional_id!r} ({self._log.path}/{LOCK_FILE})",
                                   path=os.path.join(self._log.path, LOCK_FILE))
        try:
            self.refresh(create=True)
        except BaseException:
            self._release(transactional_id)
            raise
        return self._txns.get(transactional_id)

    # -- the producer's calls (each under the id's lock)
    def init_producer(self, transactional_id: str, timeout_ms: int, lock_timeout: float | None = None
                      ) -> tuple[int, int]:
        """InitProducerId for a transactional id: finish a prepared transaction, abort an
        ongoing one (epoch + 1 first, so its producer is fenced), then return the id's
        producer id and its next epoch, as recorded (Empty)."""
        m = self._lock(transactional_id, lock_timeout)
        try:
            now = now_ms()
            if m is not None and m.status in _PREPARED:
                m = self._complete(m)
            elif m is not None and m.status in (ONGOING, PREPARE_EPOCH_FENCE):
                m = self._fence_and_abort(m, now)
            if m is None or m.status == DEAD or m.producer_epoch >= EPOCH_EXHAUSTED:
                pid, epoch = new_producer_id(), 0
            else:
                pid, epoch = m.producer_id, m.producer_epoch + 1
            self._write(TxnMetadata(transactional_id, pid, epoch, timeout_ms, EMPTY, (), now, -1), sync=True)
            return pid, epoch
        finally:
            self._release(transactional_id)

    def _check_producer(self, transactional_id, m, producer_id, producer_epoch):
        if m is None or m.producer_id != producer_id or m.producer_epoch != producer_epoch:
            now = f"producer id {m.producer_id} epoch {m.producer_epoch}" if m is not None else "no state"
            raise ProducerFencedError(
                f"transactional.id {transactional_id!r}: this producer (id {producer_id} epoch {producer_epoch}) "
                f"was fenced; the id now has {now} (another instance called init_transactions(), or the "
                "transaction ran past transaction.timeout.ms and was aborted)")

    def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                       partitions: Iterable[tuple[str, int]], lock_timeout: float | None = None) -> None:
        """AddPartitionsToTxn: record the partitions in the transaction (durably) before
        the producer writes to them; the first one starts the transaction (Ongoing)."""
        m = self._lock(transactional_id, lock_timeout)
        try:
            self._check_producer(transactional_id, m, producer_id, producer_epoch)
            now = now_ms()
            if m.status == ONGOING:
                if m.expired(now):
                    self._fence_and_abort(m, now)
                    self._check_producer(transactional_id, self._txns.get(transactional_id),
                                         producer_id, producer_epoch)
                have = set(m.partitions)
                new = have.union(partitions)
                if new == have:
                    return
                start = m.start_ms
            elif m.status in _IDLE:
                new, start = set(partitions), now
            else:
                raise InvalidTxnStateError(f"transactional.id {transactional_id!r} is {m.status_name}: "
                                           "no partition can be added")
            self._write(replace(m, status=ONGOING, partitions=tuple(sorted(new)), last_update_ms=now,
                                start_ms=start), sync=True)
        finally:
            self._release(transactional_id)

    def end_transaction(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool,
                        lock_timeout: float | None = None) -> None:
        """EndTxn: PrepareCommit/PrepareAbort (durable: the commit point), the markers,
        then CompleteCommit/CompleteAbort. A transaction past its timeout is aborted and
        the producer fenced instead of committed."""
        m = self._lock(transactional_id, lock_timeout)
        try:
            self._check_producer(transactional_id, m, producer_id, producer_epoch)
            now = now_ms()
            want = PREPARE_COMMIT if commit else PREPARE_ABORT
            if m.status == ONGOING:
                if m.expired(now):
                    self._fence_and_abort(m, now)
                    raise ProducerFencedError(
                        f"transactional.id {transactional_id!r}: the transaction ran past transaction.timeout.ms="
                        f"{m.timeout_ms} and was aborted; this producer is fenced")
                m = self._write(replace(m, status=want, last_update_ms=now), sync=True)
                _failpoints.hit("txn.after_prepare")
                self._complete(m)
            elif m.status == want:
                self._complete(m)                   # a retry after a failure part way
            elif m.status == EMPTY or m.status == (COMPLETE_COMMIT if commit else COMPLETE_ABORT):
                return                              # nothing was added, or already done
            else:
                raise InvalidTxnStateError(f"transactional.id {transactional_id!r} is {m.status_name}: "
                                           f"cannot {'commit' if commit else 'abort'}")
        finally:
            self._release(transactional_id)

    # -- transitions (the id's lock held)
    def _fence_and_abort(self, m: TxnMetadata, now: int) -> TxnMetadata:
        """Abort an ongoing transaction with the epoch bumped first, so the producer that
        left it is fenced by the coordinator and, through the markers, by every partition."""
        fenced = self._write(replace(m, producer_epoch=m.producer_epoch + 1, status=PREPARE_ABORT,
                                     last_update_ms=now), sync=True)
        return self._complete(fenced)

    def _complete(self, m: TxnMetadata) -> TxnMetadata:
        commit = m.status == PREPARE_COMMIT
        for topic, p in m.partitions:
            try:
                part = self._log.topic(topic).partition(p)
            except UnknownTopicOrPartitionError:
                continue                            # deleted since: nothing left to mark
            part.append_marker(m.producer_id, m.producer_epoch, commit, 0, sync=True)
            _failpoints.hit("txn.after_marker")
        return self._write(replace(m, status=COMPLETE_COMMIT if commit else COMPLETE_ABORT, partitions=(),
                                   last_update_ms=now_ms()), sync=False)


def new_producer_id() -> int:
    """A fresh producer id: 62 random bits (ids of idempotent producers are drawn the same
    way; a collision is as unlikely as two random UUIDs agreeing)."""
    return secrets.randbits(62)


_coordinators_lock = threading.Lock()


def coordinator_for(log) -> TxnCoordinator:
    with _coordinators_lock:
        c = getattr(log, "_txn_coordinator", None)
        if c is None:
            c = log._txn_coordinator = TxnCoordinator(log)
        return c


def expire_and_recover(log, now: int | None = None) -> int:
    """Abort the Ongoing transactions past their transaction.timeout.ms (epoch + 1 first:
    their producer is fenced) and finish the Prepare* ones whose lock is free (their
    producer died between the commit point and the last marker). Returns how many it
    finished. Cheap when there is nothing to do: one read of new state records."""
    c = coordinator_for(log)
    if not c.refresh():
        return 0
    now = now_ms() if now is None else now
    todo = [tid for tid, m in c.transactions().items() if m.status in _PREPARED or m.expired(now)]
    done = 0
    for tid in todo:
        if not c._acquire(tid, 0):
            continue                               # its producer is at work on it
        try:
            c.refresh()
            m = c.get(tid)
            if m is None:
                continue
            if m.status in _PREPARED:
                c._complete(m)
                done += 1
            elif m.expired(now):
                c._fence_and_abort(m, now)
                done += 1
        finally:
            c._release(tid)
    return done
