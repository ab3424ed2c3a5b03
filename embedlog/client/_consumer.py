"""Consumer with confluent-kafka's shape (DESIGN.md; issue #3).

Each assigned partition has a fetch position (next offset to read from the log) and an
application position (next offset to hand out). poll() hands out the next record of
the current fetched chunk; when the chunk is drained it fetches the next partition's
records (round robin, max.partition.fetch.bytes each) or sleeps on the partitions'
futexes until data arrives. Group membership, committed offsets, auto-commit and
rebalance checks run at most every few milliseconds, off the per-record path.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..storage._config import consumer_config
from ..storage._errors import (
    EmbedlogError,
    LogClosedError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from ..storage._offsets import store_for
from ._clients import acquire_log, get_topic, release_log
from ._fetched import ConsumedBatch, _Fetched, _MessagePool, _PState
from ._groups import CommitFailedError, GroupMember
from ._kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    OFFSET_STORED,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
    error_from,
)
from ._remote import remote_client

if TYPE_CHECKING:
    from typing_extensions import Self

# on_assign(consumer, partitions), as confluent-kafka calls it.
RebalanceCallback = Callable[["Consumer", list[TopicPartition]], object]

_MAINTAIN_EVERY = 0.005      # seconds between group / auto-commit checks
_monotonic = time.monotonic
_EMPTY = ()

INT64_MAX = 2**63 - 1             # offsets are int64 in OffsetCommitValue


class Consumer:
    """confluent_kafka.Consumer for a log directory: Consumer({'bootstrap.servers': 'file:///dir',
    'group.id': 'g', ...})."""

    def __new__(cls, conf=None, **kwargs):
        """For a log directory, this class; for Kafka brokers in bootstrap.servers,
        confluent-kafka's Consumer behind embedlog's names (_remote)."""
        remote = remote_client("Consumer", conf, kwargs)
        return super().__new__(cls) if remote is None else remote

    def __init__(self, conf: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        conf = dict(conf or {}, **kwargs)
        self._conf = values = consumer_config(conf)
        # Without group.id nothing is written (no membership, no commits): a directory
        # this process may not write opens read-only (issue #20). With one, the group's
        # membership files and committed offsets need a writable directory.
        self._log = acquire_log(values, reader=values["group.id"] is None, writes=(
            f"a Consumer with group.id {values['group.id']!r} writes its membership and committed offsets "
            "there; without group.id (assign() only) a Consumer reads it read-only"))
        self._group = values["group.id"]
        self._reset = values["auto.offset.reset"]
        self._auto_commit = values["enable.auto.commit"] and self._group is not None
        self._auto_store = values["enable.auto.offset.store"]
        self._commit_every = values["auto.commit.interval.ms"] / 1000.0
        self._eof = values["enable.partition.eof"]
        self._fetch_bytes = values["max.partition.fetch.bytes"]
        # read_committed (librdkafka's default): records up to the last stable offset,
        # aborted transactions passed over; EOF, waits and lag count against the LSO (#19).
        self._read_committed = values["isolation.level"] == "read_committed"
        self._next_expire = 0.0
        self._on_commit = values["on_commit"]
        self._assigned: dict[tuple[str, int], _PState] = {}
        self._revoked_keys: set[tuple[str, int]] = set()   # partitions removed since the call began
        self._order: list[_PState] = []
        self._rr = 0
        self._cur: _PState | None = None
        self._pending: list[Message] = []        # error/EOF events to hand out
        self._missing: dict[str, Message] = {}   # subscribed names reported as not existing
        self._watch_missing: tuple[str, ...] = ()  # plain names to report (allow.auto.create.topics off)
        self._commit_results: list = []          # (err, partitions) for on_commit in poll
        self._member: GroupMember | None = None
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._on_lost: RebalanceCallback | None = None
        self._in_assign_cb = False
        self._assign_called = False
        self._closed = False
        now = time.monotonic()
        self._next_maint = now
        self._next_commit = now + self._commit_every
        self._next_member_check = now
        self._store = store_for(self._log)

    # ------------------------------------------------------------ helpers
    def _check(self):
        if self._closed:
            raise LogClosedError("Consumer closed")

    def _need_group(self, what):
        if self._group is None:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG,
                                            f"{what} needs 'group.id' in the consumer config"))

    def _topic(self, name):
        try:
            return self._log.topic(name)
        except EmbedlogError as e:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, str(e))) from e

    def _ps(self, tp) -> _PState:
        ps = self._assigned.get((tp.topic, tp.partition))
        if ps is None:
            raise KafkaException(KafkaError(KafkaError._STATE,
                                            f"{tp.topic} [{tp.partition}] is not assigned to this consumer"))
        return ps

    # ------------------------------------------------------------ subscribe / assign
    def subscribe(self, topics: Sequence[str], on_assign: RebalanceCallback | None = None,
                  on_revoke: RebalanceCallback | None = None, on_lost: RebalanceCallback | None = None) -> None:
        """Join the group for these topics (names, or '^regex' patterns)."""
        self._check()
        self._need_group("subscribe()")
        if isinstance(topics, str) or not all(isinstance(t, str) for t in topics):
            raise TypeError("subscribe() takes a list of topic names or '^regex' patterns")
        for t in topics:
            if t.startswith("^"):
                try:
                    re.compile(t)
                except re.error as e:
                    raise KafkaException(KafkaError(KafkaError._INVALID_ARG, f"bad pattern {t!r}: {e}")) from e
        self._on_assign, self._on_revoke, self._on_lost = on_assign, on_revoke, on_lost
        if self._conf["allow.auto.create.topics"]:
            # "create an unknown topic on first use": a subscription is a use, as Kafka's
            # Java consumer makes a broker with auto.create.topics.enable create it, so a
            # misspelt name shows up in `topics list` instead of a silent wait.
            existing = set(self._log.topics())
            for t in topics:
                if not t.startswith("^") and t not in existing and not t.startswith("__"):
                    get_topic(self._log, t, self._conf)
        if self._member is None:
            self._member = GroupMember(self._log, self._group, self._conf["client.id"],
                                       self._conf["partition.assignment.strategy"],
                                       self._conf["embedlog.lock.timeout.ms"] / 1000.0,
                                       session_timeout=self._conf["session.timeout.ms"] / 1000.0,
                                       heartbeat_interval=self._conf["heartbeat.interval.ms"] / 1000.0,
                                       max_poll_interval=self._conf["max.poll.interval.ms"] / 1000.0)
        self._member.join(list(topics))
        # A plain name that is not a topic (and will not be auto-created) is reported,
        # as librdkafka does: one UNKNOWN_TOPIC_OR_PART event per topic, not per poll.
        # Regexes matching nothing are no error. The group waits for the topic as before.
        self._drop_missing()
        if not self._conf["allow.auto.create.topics"]:
            self._watch_missing = tuple(dict.fromkeys(t for t in topics if not t.startswith("^")))
            self._report_missing()
        self._maintain(time.monotonic(), force=True)

    def _report_missing(self):
        """Queue the error event for each watched name that is not a topic now and has not
        been reported since it went missing; forget names that exist (deleted later, they
        are reported again: librdkafka's rkcg_errored_topics)."""
        if not self._watch_missing:
            return
        existing = set(self._log.topics())
        for name in self._watch_missing:
            if name in existing:
                self._missing.pop(name, None)
            elif name not in self._missing:
                reason = f"Subscribed topic not available: {name}: Broker: Unknown topic or partition"
                ev = self._missing[name] = Message(name, -1, OFFSET_INVALID, value=reason.encode(),
                                                   error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, reason))
                self._pending.append(ev)

    def _drop_missing(self):
        """A new subscription (or none): events of the old one not handed out yet are dropped."""
        if self._missing:
            stale = {id(ev) for ev in self._missing.values()}
            self._pending = [ev for ev in self._pending if id(ev) not in stale]
        self._missing = {}
        self._watch_missing = ()

    def unsubscribe(self) -> None:
        self._check()
        self._drop_missing()
        if self._member is not None:
            self._revoke_all()
            self._member.close()
            self._member = None

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Take exactly these partitions (no group membership); offsets in the
        TopicPartitions are start positions (OFFSET_STORED/INVALID: committed or reset)."""
        self._check()
        if self._in_assign_cb:
            self._assign_called = True
        self._apply_assignment(list(partitions))

    def incremental_assign(self, partitions: Sequence[TopicPartition]) -> None:
        self._check()
        current = [TopicPartition(t, p, OFFSET_STORED) for (t, p) in self._assigned]
        keep = {(tp.topic, tp.partition) for tp in partitions}
        self._apply_assignment([tp for tp in current if (tp.topic, tp.partition) not in keep] + list(partitions))

    def incremental_unassign(self, partitions: Sequence[TopicPartition]) -> None:
        self._check()
        drop = {(tp.topic, tp.partition) for tp in partitions}
        for key in list(self._assigned):
            if key in drop:
                self._remove(key)

    def unassign(self) -> None:
        self._check()
        for key in list(self._assigned):
            self._remove(key)

    def assignment(self) -> list[TopicPartition]:
        self._check()
        return [TopicPartition(t, p) for (t, p) in self._assigned]

    def _apply_assignment(self, partitions):
        want = {}
        for tp in partitions:
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"expected TopicPartition, not {type(tp).__name__}")
            want[(tp.topic, tp.partition)] = tp
        for key in list(self._assigned):
            if key not in want:
                self._remove(key)
        for key, tp in want.items():
            ps = self._assigned.get(key)
            if ps is None:
                topic = self._topic(tp.topic)
                try:
                    part = topic.partition(tp.partition)
                except UnknownTopicOrPartitionError as e:
                    raise KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION, str(e))) from e
                ts_type = TIMESTAMP_LOG_APPEND_TIME if topic.config["message.timestamp.type"] == "LogAppendTime" \
                    else TIMESTAMP_CREATE_TIME
                ps = self._assigned[key] = _PState(tp.topic, tp.partition, part, ts_type)
                self._order.append(ps)
            if tp.offset not in (OFFSET_STORED, OFFSET_INVALID):
                self._seek_ps(ps, tp.offset)
        if self._cur is not None:
            self._cur.drop_buffer()      # records fetched but not handed out are fetched again
            self._cur = None

    def _remove(self, key):
        ps = self._assigned.pop(key)
        self._revoked_keys.add(key)      # consume()/consume_batch() drop what they collected of it
        self._order.remove(ps)
        if self._cur is ps:
            self._cur = None

    # ------------------------------------------------------------ positions
    def _resolve(self, ps):
        """Starting position: the committed offset, else auto.offset.reset."""
        if self._group is not None:
            self._store.refresh()
            self._store.wait_stable(self._group, ps.topic, ps.partition)   # KIP-447 (#19)
            c = self._store.committed(self._group, ps.topic, ps.partition)
            if c is not None:
                start, end = ps.part.watermarks()
                if start <= c[0] <= end:
                    ps.position = ps.fetch_pos = c[0]
                    return
                # A committed offset outside the log (retention, or lost in a power cut
                # after the commit): Kafka's answer is the reset policy, never a silent skip.
        self._apply_reset(ps, None)

    def _apply_reset(self, ps, cause):
        start, end = ps.part.watermarks()
        if self._reset == "error":
            ps.position = ps.fetch_pos = None
            reason = f"no valid offset for {ps.topic} [{ps.partition}] and auto.offset.reset=error"
            if cause is not None:
                reason += f" ({cause})"
            self._pending.append(Message(ps.topic, ps.partition, OFFSET_INVALID,
                                         error=KafkaError(KafkaError._AUTO_OFFSET_RESET, reason)))
            ps.paused = True        # nothing to fetch until the application seeks
            return
        ps.position = ps.fetch_pos = start if self._reset == "earliest" else min(end, self._end(ps.part))

    def _seek_ps(self, ps, offset):
        if offset == OFFSET_BEGINNING:
            offset = ps.part.log_start_offset
        elif offset == OFFSET_END:
            offset = self._end(ps.part)
        elif offset < 0:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, f"invalid offset {offset}"))
        ps.chunk, ps.i, ps.n = None, 0, 0
        ps.position = ps.fetch_pos = offset
        ps.eof_sent = False
        if ps.paused and self._reset == "error":
            ps.paused = False
        if self._cur is ps:
            self._cur = None

    def seek(self, partition: TopicPartition) -> None:
        self._check()
        ps = self._ps(partition)
        self._seek_ps(ps, partition.offset)

    def position(self, partitions: Sequence[TopicPartition]) -> list[TopicPartition]:
        self._check()
        out = []
        for tp in partitions:
            ps = self._assigned.get((tp.topic, tp.partition))
            pos = ps.app_position() if ps is not None else None
            out.append(TopicPartition(tp.topic, tp.partition, OFFSET_INVALID if pos is None else pos))
        return out

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        self._check()
        for tp in partitions:
            ps = self._ps(tp)
            ps.drop_buffer()
            ps.paused = True
            if self._cur is ps:
                self._cur = None

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        self._check()
        for tp in partitions:
            self._ps(tp).paused = False

    # ------------------------------------------------------------ poll / consume
    def poll(self, timeout: float | None = None) -> Message | None:
        """The next record (a Message), an event Message whose error() is set (e.g.
        _PARTITION_EOF), or None after `timeout` seconds (None/-1: wait forever)."""
        ps = self._cur
        if ps is not None and ps.i < ps.n and _monotonic() < self._next_maint:
            # One Message per call, created here: it dies with the caller's reference and
            # never reaches the cyclic GC (a chunk's worth created at once would).
            i = ps.i
            ps.i = i + 1
            return _Fetched(ps.chunk, i)
        return self._poll_slow(timeout)

    def _poll_slow(self, timeout):
        self._check()
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= self._next_maint or (self._member is not None and self._member.metadata_moved()):
                self._maintain(now)
            if self._pending:
                return self._pending.pop(0)
            ps = self._cur
            if ps is not None and ps.i < ps.n:
                i = ps.i
                ps.i = i + 1
                return _Fetched(ps.chunk, i)
            if self._fetch():
                continue
            if self._pending:
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._wait(left)

    def consume(self, num_messages: int = 1, timeout: float | None = -1) -> list[Message]:
        """Up to num_messages records (and events); waits up to `timeout` for the first."""
        self._check()
        if not isinstance(num_messages, int) or num_messages < 1 or num_messages > 1000000:
            raise ValueError("num_messages must be an int between 1 and 1000000")
        out: list[Message] = []
        first = self.poll(timeout)
        if first is None:
            return out
        out.append(first)
        self._revoked_keys.clear()
        pool = _MessagePool.of(self, num_messages)    # Messages reused, not made anew: why in _fetched.py
        while len(out) < num_messages:
            ps = self._cur
            if ps is not None and ps.i < ps.n and not self._pending:
                j = min(ps.n, ps.i + num_messages - len(out))
                out += pool.take(ps.chunk, ps.i, j)
                ps.i = j
                continue
            m = self.poll(0)
            if self._revoked_keys:
                # A rebalance ran in that poll (on_revoke included): records collected of a
                # partition it took away are not handed out after it (another member owns
                # them now, or they are fetched again from the committed offset).
                gone = self._revoked_keys
                out = [x for x in out if x.error() is not None or (x.topic(), x.partition()) not in gone]
                self._revoked_keys = set()
            if m is None:
                break
            out.append(m)
        return out

    def consume_batch(self, max_messages: int = 100000, timeout: float | None = -1) -> list[ConsumedBatch]:
        """Records as columns, one ConsumedBatch per fetched chunk (an embedlog addition).

        Returns a list of ConsumedBatch holding up to `max_messages` records in all, each
        with one partition's records in offset order as parallel lists: offsets, keys,
        values, timestamps, headers (a tuple of (str, bytes | None) pairs per record,
        empty when it has none), and its topic, partition, timestamp_type and
        next_offset. Waits up to `timeout` seconds (None/-1: forever) for the first
        records, then takes only what is readable without waiting. An empty list means
        the timeout ran out.

        Positions move past each chunk handed out, as they move past each Message of
        poll(): commit() (or auto-commit) commits them, `chunk.commit()` or
        `consumer.commit(chunk)` commits one partition to chunk.next_offset. Offsets
        compaction removed are passed over; control batches are not records and are
        skipped. Error events (not _PARTITION_EOF, which is dropped here) are raised as
        KafkaException once no records come before them."""
        self._check()
        if not isinstance(max_messages, int) or isinstance(max_messages, bool) or max_messages < 1:
            raise ValueError(f"max_messages must be a positive int, not {max_messages!r}")
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        out: list[ConsumedBatch] = []
        total = 0
        self._revoked_keys.clear()
        while True:
            now = _monotonic()
            if now >= self._next_maint or (self._member is not None and self._member.metadata_moved()):
                self._maintain(now)
                if self._revoked_keys:   # a rebalance: nothing of a revoked partition goes out (consume())
                    gone, self._revoked_keys = self._revoked_keys, set()
                    out = [b for b in out if (b.topic, b.partition) not in gone]
                    total = sum(len(b) for b in out)
            while self._pending:
                ev = self._pending[0]
                err = ev.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    self._pending.pop(0)
                    continue
                if out:
                    return out           # records first; the event comes with the next call
                self._pending.pop(0)
                if err is None:
                    continue
                raise KafkaException(err)
            ps = self._cur
            if ps is not None and ps.i < ps.n:
                i = ps.i
                j = min(ps.n, i + max_messages - total)
                out.append(ConsumedBatch(self, ps, i, j))
                ps.i = j
                total += j - i
                if total >= max_messages:
                    return out
                continue
            if self._fetch():
                continue
            if out:
                return out
            if self._pending:
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return out
            self._wait(left)

    def __iter__(self):
        """Records forever (an embedlog addition): `for msg in consumer: ...`."""
        while True:
            msg = self.poll(1.0)
            if msg is not None:
                yield msg

    def _fetch(self) -> bool:
        """Fetch the next partition's records into _cur; False if nothing is readable."""
        order = self._order
        n = len(order)
        if self._cur is not None:
            self._retire(self._cur)
            self._cur = None
        for k in range(n):
            ps = order[(self._rr + k) % n]
            if ps.paused:
                continue
            if ps.fetch_pos is None:
                self._resolve(ps)
                if ps.fetch_pos is None:
                    continue
            try:
                hw = self._end(ps.part)
                if ps.fetch_pos >= hw:
                    if self._read_committed and hw < ps.part.high_watermark:
                        self._stuck_transaction()
                    if self._eof and not ps.eof_sent and ps.fetch_pos == hw:
                        ps.eof_sent = True
                        self._pending.append(Message(ps.topic, ps.partition, hw,
                                                     error=KafkaError(KafkaError._PARTITION_EOF,
                                                                      f"Fetch from broker 0 reached end of partition at offset {hw} (HighwaterMark {hw})")))
                        self._rr = (self._rr + k + 1) % n
                        return True
                    continue
                cols, nxt = ps.part.fetch(ps.fetch_pos, self._fetch_bytes, read_committed=self._read_committed)
            except OffsetOutOfRangeError as e:
                self._apply_reset(ps, str(e))
                return True
            except EmbedlogError as e:
                self._pending.append(Message(ps.topic, ps.partition, ps.fetch_pos, error=error_from(e)))
                ps.paused = True       # do not spin on a damaged batch; seek() to go on
                return True
            ps.fetch_pos = nxt
            ps.eof_sent = False
            if not cols.offsets:
                ps.position = nxt
                continue
            ps.chunk = (ps.topic, ps.partition, cols.offsets, cols.timestamps, cols.keys, cols.values,
                        cols.headers, ps.ts_type)
            ps.i, ps.n = 0, len(cols.offsets)
            self._cur = ps
            self._rr = (self._rr + k + 1) % n
            return True
        return False

    def _end(self, part) -> int:
        """Where this consumer's reading of a partition ends for now: the last stable
        offset for read_committed, the high watermark for read_uncommitted."""
        return part.last_stable_offset() if self._read_committed else part.high_watermark

    def _stuck_transaction(self):
        """The LSO is held below the high watermark by an open transaction: at most once a
        second, abort transactions past their timeout and finish prepared ones whose
        producer died (the coordinator has no process of its own)."""
        now = time.monotonic()
        if now < self._next_expire or self._read_only_log():
            return
        self._next_expire = now + 1.0
        from ..storage._txn_coordinator import expire_and_recover
        try:
            expire_and_recover(self._log)
        except EmbedlogError:
            pass        # another process finishes it; this consumer keeps waiting

    def _read_only_log(self) -> bool:
        return bool(getattr(self._log, "read_only", False))

    def _retire(self, ps):
        """A drained chunk: its partition's application position moves past it."""
        if ps.chunk is not None:
            if ps.i > 0:
                ps.position = ps.chunk[2][ps.i - 1] + 1
            if ps.i >= ps.n:
                ps.position = max(ps.position, ps.fetch_pos)
            ps.chunk, ps.i, ps.n = None, 0, 0
            if ps.position != ps.fetch_pos:
                ps.fetch_pos = ps.position

    def _wait(self, left):
        """Sleep until a partition has data (futex) or the timeout; short slices when
        several partitions or a group need watching."""
        active = [ps for ps in self._order if not ps.paused and ps.fetch_pos is not None]
        member = self._member
        slice_ = 0.1 if member is not None or self._auto_commit else None
        t = left if slice_ is None else (slice_ if left is None else min(left, slice_))
        if len(active) == 1 and member is None:
            active[0].part.wait(active[0].fetch_pos, t)
        elif active:
            # Several partitions, or a group: sleep on the directory's futex word, which
            # every append to any partition bumps, and every topic change (partitions
            # added, a topic created or deleted: the group may rebalance). Read it before
            # checking, so no append or change is missed.
            notifier = self._log.notifier
            seen = notifier.value()
            if member is not None and member.metadata_moved():
                return
            if all(self._end(ps.part) <= ps.fetch_pos for ps in active):
                if self._read_committed and any(ps.part.high_watermark > ps.fetch_pos for ps in active):
                    t = 0.05 if t is None else min(t, 0.05)   # the LSO word moves after a publish
                notifier.wait(seen, t)
        else:
            time.sleep(0.01 if left is None else max(0.0, min(left, 0.01)))

    # ------------------------------------------------------------ group maintenance
    def _maintain(self, now, force=False):
        self._next_maint = now + _MAINTAIN_EVERY
        if self._commit_results:
            results, self._commit_results = self._commit_results, []
            if self._on_commit is not None:
                for err, parts in results:
                    self._on_commit(err, parts)
        if self._member is not None:
            member = self._member
            member.last_poll = now
            if member.poll_exceeded:
                # max.poll.interval.ms ran out: the member left; its partitions are lost
                # (not revoked: another member may own them already). Tell, then rejoin.
                member.poll_exceeded = False
                lost = [TopicPartition(t, p) for (t, p) in self._assigned]
                if lost and self._on_lost is not None:
                    self._on_lost(self, lost)
                self.unassign()
                self._pending.append(Message(error=KafkaError(
                    KafkaError._MAX_POLL_EXCEEDED,
                    "Application maximum poll interval exceeded: left the group; rejoining")))
                member.join(member.subscription)
            moved = member.metadata_moved()
            if force or now >= self._next_member_check or moved:
                # Death is seen through the kernel-released lock: checked every 100 ms
                # (or heartbeat.interval.ms if shorter), so a SIGKILLed member's partitions
                # move within about that long plus the survivors' next poll. A topic
                # change (partitions added, a subscribed topic created or deleted) is
                # seen at once: the metadata version in .notify moved.
                self._next_member_check = now + min(self._conf["heartbeat.interval.ms"] / 1000.0, 0.1)
                member.check_members()
                if moved:
                    self._report_missing()     # a subscribed topic deleted: said again
            change = self._member.poll_assignment()
            if change is not None:
                self._rebalance(change[1])
        if self._auto_commit and now >= self._next_commit:
            self._next_commit = now + self._commit_every
            try:
                self._commit_positions(asynchronous=True)
            except KafkaException:
                pass

    def _revoke_all(self):
        if not self._assigned:
            return
        old = [TopicPartition(t, p) for (t, p) in self._assigned]
        if self._auto_commit:
            try:
                self._commit_positions(asynchronous=False)
            except KafkaException:
                pass
        if self._on_revoke is not None:
            self._on_revoke(self, old)
        self.unassign()

    def _rebalance(self, assignment):
        """Eager protocols revoke everything, then assign the new generation's partitions;
        cooperative-sticky revokes and assigns only what moved (KIP-429)."""
        if self._member is not None and self._member.protocol == "cooperative-sticky":
            return self._rebalance_incremental(assignment)
        self._revoke_all()
        if self._member is not None and self._member.owes_revocation():
            # on_revoke has returned: the partitions moving away can go to their new owners
            self._member.request_rebalance()
        new = [TopicPartition(t, p, OFFSET_INVALID) for t, p in assignment]
        if self._on_assign is not None:
            self._in_assign_cb, self._assign_called = True, False
            try:
                self._on_assign(self, new)
            finally:
                self._in_assign_cb = False
            if self._assign_called:
                return
        self._apply_assignment(new)

    def _rebalance_incremental(self, assignment):
        new = set(assignment)
        revoked = [TopicPartition(t, p) for (t, p) in self._assigned if (t, p) not in new]
        added = [TopicPartition(t, p, OFFSET_INVALID) for (t, p) in assignment if (t, p) not in self._assigned]
        if revoked:
            gone = {(tp.topic, tp.partition) for tp in revoked}
            if self._auto_commit:
                todo = [o for o in self._positions() if (o[0], o[1]) in gone]
                if todo:
                    try:
                        self._do_commit(todo, asynchronous=False)
                    except KafkaException:
                        pass
            if self._on_revoke is not None:
                self._on_revoke(self, revoked)
            self.incremental_unassign(revoked)
            self._member.request_rebalance()      # the revoked partitions can move now
        if added:
            if self._on_assign is not None:
                self._in_assign_cb, self._assign_called = True, False
                try:
                    self._on_assign(self, added)
                finally:
                    self._in_assign_cb = False
                if self._assign_called:
                    return
            self.incremental_assign(added)

    # ------------------------------------------------------------ commits
    def store_offsets(self, message: Message | None = None, offsets: Sequence[TopicPartition] | None = None) -> None:
        self._check()
        if message is not None:
            ps = self._ps(TopicPartition(message.topic(), message.partition()))  # type: ignore[arg-type]
            ps.stored = message.offset() + 1
        for tp in offsets or ():
            self._ps(tp).stored = tp.offset

    def _positions(self):
        out = []
        for ps in self._order:
            pos = ps.app_position() if self._auto_store else ps.stored
            if pos is not None:
                out.append((ps.topic, ps.partition, pos, ""))
        return out

    def _commit_positions(self, asynchronous):
        offsets = self._positions()
        if offsets:
            return self._do_commit(offsets, asynchronous)
        return None

    def commit(self, message: Message | ConsumedBatch | None = None, offsets: Sequence[TopicPartition] | None = None,
               asynchronous: bool = True) -> list[TopicPartition] | None:
        """Commit offsets (the next offset to read): of `message` + 1, of `offsets`, or the
        current positions. Synchronous calls return the committed TopicPartitions."""
        self._check()
        self._need_group("commit()")
        if message is not None and offsets is not None:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "pass message or offsets, not both"))
        todo: list[tuple]
        if isinstance(message, ConsumedBatch):
            todo = [(message.topic, message.partition, message.next_offset, "")]
        elif message is not None:
            if message.error() is not None:
                raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "cannot commit an error event"))
            todo = [(message.topic(), message.partition(), message.offset() + 1, "")]
        elif offsets is not None:
            todo = []
            for tp in offsets:
                if not isinstance(tp, TopicPartition):
                    raise TypeError(f"expected TopicPartition, not {type(tp).__name__}")
                if not 0 <= tp.offset <= INT64_MAX:
                    raise KafkaException(KafkaError(KafkaError._INVALID_ARG,
                                                    f"cannot commit offset {tp.offset} for {tp.topic} [{tp.partition}]"))
                todo.append((tp.topic, tp.partition, tp.offset, tp.metadata or ""))
        else:
            todo = self._positions()
            if not todo:
                raise KafkaException(KafkaError(KafkaError._NO_OFFSET, "no offsets to commit"))
        return self._do_commit(todo, asynchronous)

    def _do_commit(self, todo, asynchronous):
        parts = [TopicPartition(t, p, o, m or None) for t, p, o, m in todo]
        try:
            if self._member is not None:
                with self._member.commit_guard():
                    self._member.validate_commit([(t, p) for t, p, _o, _m in todo])
                    self._store.commit(self._group, todo)
            else:
                self._store.commit(self._group, todo)
            err = None
        except CommitFailedError as e:
            err = KafkaError(e.code, str(e))
        except EmbedlogError as e:
            err = error_from(e)
        except ValueError as e:      # nothing written: an offset or metadata the record cannot hold
            err = KafkaError(KafkaError._INVALID_ARG, str(e))
        if asynchronous:
            self._commit_results.append((err, parts))
            return None
        if self._on_commit is not None:
            self._on_commit(err, parts)
        if err is not None:
            raise KafkaException(err)
        return parts

    def committed(self, partitions: Sequence[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        self._check()
        self._need_group("committed()")
        self._store.refresh()
        out = []
        for tp in partitions:
            c = self._store.committed(self._group, tp.topic, tp.partition)
            out.append(TopicPartition(tp.topic, tp.partition, OFFSET_INVALID if c is None else c[0],
                                      None if c is None else (c[1] or None)))
        return out

    # ------------------------------------------------------------ metadata
    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        self._check()
        part = self._topic(partition.topic).partition(partition.partition)
        low, high = part.watermarks()
        return low, (min(high, part.last_stable_offset()) if self._read_committed else high)

    def offsets_for_times(self, partitions: Sequence[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        """For each TopicPartition whose .offset holds a timestamp (ms): the earliest
        offset whose timestamp is >= it, or OFFSET_END (-1) when there is none."""
        self._check()
        out = []
        for tp in partitions:
            part = self._topic(tp.topic).partition(tp.partition)
            hit = part.offset_for_time(tp.offset)
            out.append(TopicPartition(tp.topic, tp.partition, OFFSET_END if hit is None else hit[0]))
        return out

    def list_topics(self, topic=None, timeout=-1):
        self._check()
        from ._admin import cluster_metadata
        return cluster_metadata(self._log, topic)

    def memberid(self) -> str | None:
        return self._member.member_id if self._member is not None else None

    def consumer_group_metadata(self) -> dict[str, Any]:
        return {"group_id": self._group, "member_id": self.memberid(),
                "generation_id": self._member.generation if self._member else -1}

    def lag(self) -> list[tuple[TopicPartition, int, int]]:
        """[(TopicPartition with the committed offset, log end offset, lag)] for this
        consumer's assignment (an embedlog addition)."""
        self._check()
        self._need_group("lag()")
        self._store.refresh()
        rows = []
        for ps in self._order:
            c = self._store.committed(self._group, ps.topic, ps.partition)
            end = self._end(ps.part)
            committed = c[0] if c else OFFSET_INVALID
            rows.append((TopicPartition(ps.topic, ps.partition, committed), end,
                         max(0, end - (committed if c else ps.part.log_start_offset))))
        return rows

    # ------------------------------------------------------------ close
    def close(self) -> None:
        """Commit final offsets (enable.auto.commit), run on_revoke for the partitions a
        subscription holds, leave the group, release the log."""
        if self._closed:
            return
        try:
            try:
                if self._member is not None and self._assigned:
                    # as librdkafka's close(): the final revoke runs on_revoke (commit
                    # there, as the README's loop does) before the group hands the
                    # partitions to another member
                    self._revoke_all()
                elif self._auto_commit:
                    try:
                        self._commit_positions(asynchronous=False)
                    except KafkaException:
                        pass
            finally:
                if self._member is not None:
                    self._member.close()
                    self._member = None
        finally:
            self._closed = True
            self._assigned.clear()
            self._order.clear()
            self._cur = None
            release_log(self._log)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
