"""What the Consumer hands out and keeps per partition (split from _consumer.py): a
Message read from a fetched chunk's columns on access (_Fetched), a chunk as columns
(ConsumedBatch, #17), and an assigned partition's fetch state (_PState).
"""
from __future__ import annotations

import sys
import sysconfig
from itertools import chain, islice, repeat

from ._kafka import Message, TopicPartition


class _Fetched(Message):
    """A consumed record: fields are read from the fetched chunk's columns on access."""

    __slots__ = ("_c", "_i")

    def __init__(self, chunk, i):
        self._c = chunk
        self._i = i

    def topic(self):
        return self._c[0]

    def partition(self):
        return self._c[1]

    def offset(self):
        return self._c[2][self._i]

    def timestamp(self):
        return self._c[7], self._c[3][self._i]

    def key(self):
        return self._c[4][self._i]

    def value(self):
        return self._c[5][self._i]

    def headers(self):
        h = self._c[6][self._i]
        return list(h) if h else None

    def error(self):
        return None

    def latency(self):
        return None

    def leader_epoch(self):
        return None

    def __len__(self):
        v = self._c[5][self._i]
        return len(v) if v is not None else 0

    def __repr__(self):
        return f"<Message {self._c[0]}[{self._c[1]}]@{self.offset()}>"


class _MessagePool:
    """consume()'s Messages, reused once nothing but the pool refers to them (#17).

    Why: consume(10000) returned 10,000 new objects that live while the caller works
    through them, so they outlive the cyclic collector's young generations into the old
    one, and that growth triggers full collections of the whole heap (21 per million
    messages in bench/compare_clients.py, against 0 for poll(), whose one Message dies
    before a collection sees it): consume() ran at 0.54x poll(). An object of a Python
    class is always tracked by the collector, so the fix is to not make new ones: take()
    re-points (chunk, index) of pooled _Fetched objects whose reference count says only
    the pool holds them (the caller dropped the list and every message of it), and makes
    new ones only for the rest, keeping up to `cap` of them (two calls' worth: the
    caller's previous list is still alive during the next call). A message the caller
    still refers to in any way (a list, a variable, a dict) has a higher count and is
    never touched. Pooled objects keep their last chunk's columns alive until reused.

    Where the count cannot say this (no sys.getrefcount, a free-threaded build, or an
    interpreter whose count in take()'s loop differs from _FREE_REFS' probe), take()
    makes new objects every time, as before."""

    __slots__ = ("cap", "items", "next")

    CAP_MAX = 100_000           # objects (~56 B each, plus the records they keep alive)

    def __init__(self):
        self.cap = 0
        self.items = []
        self.next = 0           # where take() looks first: after the last object it reused

    @staticmethod
    def of(consumer, num_messages):
        """The consumer's pool (made on first use), kept to two calls of num_messages."""
        pool = consumer.__dict__.get("_msg_pool")
        if pool is None:
            pool = consumer.__dict__["_msg_pool"] = _MessagePool()
        if pool.cap < 2 * num_messages:
            pool.cap = min(2 * num_messages, _MessagePool.CAP_MAX)
        return pool

    def take(self, chunk, i, j):
        """Messages for records i..j-1 of `chunk` (a list; its objects not in use elsewhere)."""
        out = []
        free = _FREE_REFS
        items = self.items
        if free is not None and items:
            # Round the pool from where the last take() stopped: the objects the caller
            # dropped first (two calls ago) come first, so about one look per message.
            k = start = self.next
            for o in chain(islice(items, start, None), islice(items, start)):
                k += 1
                if _getrefcount(o) == free:     # only self.items and `o` refer to it
                    o._c = chunk
                    o._i = i
                    out.append(o)
                    i += 1
                    if i == j:
                        self.next = k % len(items)
                        return out
        new = list(map(_Fetched, repeat(chunk, j - i), range(i, j)))
        room = self.cap - len(self.items)
        if room > 0:
            self.items += new[:room]
        out += new
        return out


_getrefcount = getattr(sys, "getrefcount", None)


def _free_refs():
    """What _getrefcount(o) says in take()'s loop for an object that only the pool's list
    holds (3 on CPython 3.11: the list, the loop variable, the call's argument), or None
    where counts do not tell whether anything else holds it."""
    if _getrefcount is None or sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None
    items = [_Fetched(None, 0)]
    for o in chain(islice(items, 0, None), islice(items, 0)):     # take()'s loop
        alone = _getrefcount(o)
    held = [o]
    for o in chain(islice(items, 0, None), islice(items, 0)):
        also_held = _getrefcount(o)
    del held
    return alone if also_held == alone + 1 else None


_FREE_REFS = _free_refs()


class ConsumedBatch:
    """One fetched chunk of one partition, as columns (Consumer.consume_batch()).

    `offsets`, `keys`, `values`, `timestamps` and `headers` are parallel lists, one item
    per record in offset order (offsets may have gaps where compaction removed
    records); `topic`, `partition` and `timestamp_type` (TIMESTAMP_CREATE_TIME or
    TIMESTAMP_LOG_APPEND_TIME) hold for all of them; `next_offset` is where this
    partition's reading goes on after the chunk: what commit() stores for it."""

    __slots__ = ("_consumer", "headers", "keys", "next_offset", "offsets", "partition", "timestamp_type",
                 "timestamps", "topic", "values")

    topic: str
    partition: int
    timestamp_type: int
    offsets: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[tuple[tuple[str, bytes | None], ...]]
    next_offset: int

    def __init__(self, consumer, ps, i, j):
        c = ps.chunk
        self._consumer = consumer
        self.topic, self.partition, self.timestamp_type = c[0], c[1], c[7]
        if i == 0 and j == ps.n:
            self.offsets, self.timestamps, self.keys, self.values, self.headers = c[2], c[3], c[4], c[5], c[6]
            self.next_offset = ps.fetch_pos      # past the chunk's last batch (compaction gaps too)
        else:
            self.offsets, self.timestamps, self.keys, self.values, self.headers = (
                c[2][i:j], c[3][i:j], c[4][i:j], c[5][i:j], c[6][i:j])
            self.next_offset = ps.fetch_pos if j == ps.n else c[2][j - 1] + 1

    def __len__(self) -> int:
        return len(self.offsets)

    def commit(self, asynchronous: bool = False) -> list[TopicPartition] | None:
        """Commit this partition's position as next_offset (what a new member of the
        group starts from). Synchronous by default; returns the committed TopicPartitions."""
        return self._consumer.commit(self, asynchronous=asynchronous)

    def __repr__(self):
        first = self.offsets[0] if self.offsets else None
        return (f"<ConsumedBatch {self.topic}[{self.partition}] {len(self.offsets)} records from "
                f"{first}, next {self.next_offset}>")


class _PState:
    """One assigned partition."""

    __slots__ = (
        "chunk",
        "eof_sent",
        "fetch_pos",
        "i",
        "n",
        "part",
        "partition",
        "paused",
        "position",
        "stored",
        "topic",
        "ts_type",
    )

    def __init__(self, topic, partition, part, ts_type):
        self.topic, self.partition, self.part, self.ts_type = topic, partition, part, ts_type
        self.fetch_pos = self.position = None     # None: not resolved yet (committed / reset)
        self.chunk, self.i, self.n = None, 0, 0
        self.paused = False
        self.eof_sent = False
        self.stored = None                        # offset stored for the next commit

    def drop_buffer(self):
        if self.chunk is not None and self.i > 0:
            self.position = self.chunk[2][self.i - 1] + 1
        self.chunk, self.i, self.n = None, 0, 0
        self.fetch_pos = self.position

    def app_position(self):
        if self.chunk is not None and self.i > 0:
            if self.i >= self.n:
                # drained: past what the fetch read after its last record too (control
                # batches, offsets compaction removed), as _retire will set it
                return max(self.chunk[2][self.i - 1] + 1, self.fetch_pos)
            return self.chunk[2][self.i - 1] + 1
        return self.position
