"""Producer with confluent-kafka's shape (DESIGN.md; issue #3).

produce() only queues: it appends the record to its topic's accumulator under a lock
(no I/O, no partitioning, no encoding). A topic's accumulator is sent when it holds
`batch.size` bytes or `batch.num.messages` records (by the producing thread itself),
or when its oldest record is `linger.ms` old (by a background sender thread), or on
flush(). Sending partitions the whole chunk in one C call (murmur2 of every key), builds
one RecordBatch per partition in one C call each, and appends it: with acks=all the
append returns after fdatasync, shared with concurrent writers (group commit).
Delivery reports are queued and served by poll()/flush() in the caller's thread.

Records of one producer to one partition keep produce order: chunks are taken and
sent under one send lock.
"""
from __future__ import annotations

from array import array
import random
import threading
import time
import zlib
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from ..storage import _compression
from ..storage._config import producer_config
from ..storage._errors import ConfigError, EmbedlogError, LogClosedError
from ..storage._partitioner import StickyPartitioner, partitions_for_keys
from ..storage._records import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    encode_batch,
    now_ms,
)
from ._clients import acquire_log, get_topic, release_log
from ._kafka import (
    OFFSET_INVALID,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
    error_from,
)
from ._produce_input import (
    RECORD_OVERHEAD,
    BatchDelivery,
    _as_bytes,
    _encode_batch_with_headers,
    _fnv1a,
    Plan,
    _column,
    _picker,
    _same,
    _seq,
    _timestamps_column,
    record_check,
)
from ._delivery import _DeliveryReport, _Sent
from ._remote import remote_client

if TYPE_CHECKING:
    from typing_extensions import Self

# What produce() takes as a key or value, and as headers (a dict or (name, value) pairs).
Bytesish = bytes | bytearray | memoryview | str | None
HeadersIn = Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None
# on_delivery(err, msg): err is None when the record was appended.
DeliveryCallback = Callable[[KafkaError | None, Message], object]

_monotonic = time.monotonic


_HEADER_KEY = (str, bytes)               # exact classes of an immutable header pair
_HEADER_VALUE = (bytes, str, type(None))


def _grow(column, n, pad):
    """column (an _Acc extras column) long enough to store record n: twice as long, or more."""
    column.extend([pad] * max(len(column), n + 1 - len(column)))
    return column


class _Acc:
    """Records queued for one topic, as parallel lists under a small lock: produce()
    appends (explicit acquire/release: a `with` statement costs more than the appends),
    and a send swaps the lists out whole, with no per-record work to take them."""

    __slots__ = (
        "bytes",
        "callbacks", "check",
        "first",
        "headers",
        "keys",
        "lock",
        "nparts",
        "parts",
        "stamps",
        "topic",
        "values",
        "xcap",
    )

    def __init__(self, topic, nparts, check=None):
        self.topic, self.check = topic, check          # check: record_check()'s, None when off
        self.lock = threading.Lock()
        self.nparts = nparts     # partitions as last seen (never fewer): partition= checks against it
        self.xcap = 64           # records the next extras column is made for: about the last chunk's
        self.reset()

    def reset(self):
        self.values = []
        self.keys = []
        self.callbacks = []
        # partition=, timestamp=, headers=: None until a record of the chunk gives one, then
        # a column made whole at once ([-1] / [0] / [None] * xcap) that produce() stores
        # into by index: records without extras add nothing, and no column needs padding;
        # _grow doubles one that is short, and the send cuts it to the chunk's length.
        self.parts = None
        self.stamps = None
        self.headers = None
        self.bytes = 0
        self.first = 0.0         # monotonic time the oldest queued record arrived


class Producer:
    """confluent_kafka.Producer for a log directory: Producer({'bootstrap.servers': 'file:///dir', ...})."""

    def __new__(cls, conf=None, **kwargs):
        """For a log directory, this class; for Kafka brokers in bootstrap.servers,
        confluent-kafka's Producer behind embedlog's names (_remote)."""
        remote = remote_client("Producer", conf, kwargs)
        return super().__new__(cls) if remote is None else remote

    def __init__(self, conf: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        conf = dict(conf or {}, **kwargs)
        values = producer_config(conf)
        given = values["_given"]
        if values["transactional.id"] is not None:
            if "enable.idempotence" in given and not values["enable.idempotence"]:
                raise ConfigError("transactional.id needs enable.idempotence=true (as in Kafka)")
            values["enable.idempotence"] = True
        if values["enable.idempotence"]:
            if "acks" in given and values["acks"] != -1:
                raise ConfigError("enable.idempotence needs acks=all (as in Kafka)")
            if values["max.in.flight.requests.per.connection"] > 5 and \
                    "max.in.flight.requests.per.connection" in given:
                raise ConfigError("enable.idempotence needs max.in.flight.requests.per.connection <= 5")
            if values["retries"] == 0:
                raise ConfigError("enable.idempotence needs retries > 0")
            values["acks"] = -1
        self._conf = values
        self._log = acquire_log(values)
        self._acks = values["acks"]
        self._codec = _compression.codec_id(values["compression.type"])
        self._linger = values["linger.ms"] / 1000.0
        self._batch_bytes = values["batch.size"]
        # Send a topic's chunk at batch.size, but below the largest batch we may build, so
        # a chunk never spills one record into a batch of its own.
        self._send_bytes = min(self._batch_bytes, values["message.max.bytes"] - HEADER_SIZE,
                               values["queue.buffering.max.kbytes"] * 1024)
        self._batch_count = values["batch.num.messages"]
        self._max_queued = values["queue.buffering.max.messages"] or 2**62
        self._max_queued_bytes = values["queue.buffering.max.kbytes"] * 1024
        self._max_message = values["message.max.bytes"]
        self._default_cb = values["on_delivery"]
        self._only_errors = values["delivery.report.only.error"]
        self._partitioner = values["partitioner"]
        self._sticky = StickyPartitioner()
        self._rng = random.Random()
        self._lock = threading.Lock()            # topic registration
        self._wake = threading.Event()           # the sender has something to look at
        self._send_lock = threading.RLock()      # one send at a time: produce order holds
        self._reports_cond = threading.Condition(threading.Lock())
        self._accs: dict[str, _Acc] = {}
        self._topics: dict = {}
        self._in_flight = 0              # taken from a queue, not yet reported (under _send_lock)
        self._q_limit = self._max_queued # per-queue bound, lowered by in-flight and pending reports
        self._reports: deque = deque()
        self._closed = False
        self._idempotent = values["enable.idempotence"]
        self._producer_id = self._rng.getrandbits(62) if self._idempotent else -1
        self._epoch = 0 if self._idempotent else -1
        self._sequences: dict[tuple[str, int], int] = {}
        self._hcache: tuple = (None, None, 0)   # (class, snapshot, size) of the last headers sized
        self._enq_ok = True              # False: a transactional producer outside a transaction
        self._txn = None
        if values["transactional.id"] is not None:
            from ._transactions import Transactions
            self._txn = Transactions(self, values["transactional.id"], values["transaction.timeout.ms"])
            self._txn_gate(False)
        self._sender = threading.Thread(target=self._sender_loop, name="embedlog-producer", daemon=True)
        self._sender.start()

    # ------------------------------------------------------------ produce
    def produce(self, topic: str, value: Bytesish = None, key: Bytesish = None, partition: int = -1,
                on_delivery: DeliveryCallback | None = None, timestamp: int = 0, headers: HeadersIn = None,
                callback: DeliveryCallback | None = None) -> None:
        """Queue one record. Raises BufferError when the local queue is full (call poll()),
        KafkaException for an unknown topic or a record over message.max.bytes."""
        if value.__class__ is not bytes:
            value = _as_bytes(value, "value")
        if key.__class__ is not bytes:
            key = _as_bytes(key, "key")
        acc = self._accs.get(topic)
        if acc is None:
            acc = self._new_topic(topic)
        size = (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if acc.check is not None:        # schema validation on: InvalidRecordError, nothing queued
            acc.check.one(value, key)
        # partition=, timestamp=, headers=: each checked only when given (the usual valid
        # values pass the quick tests; anything else takes the checks that say why).
        extras = False
        if partition != -1:
            if partition.__class__ is not int or partition >= acc.nparts or partition < 0:
                self._check_extras(acc, topic, partition, 0, None)
            extras = True
        if timestamp:
            if timestamp.__class__ is not int or timestamp < 0:
                self._check_extras(acc, topic, -1, timestamp, None)
            extras = True
        if headers is not None:
            # Headers equal to the last ones sized (same class, equal pairs) have their
            # size, and are queued as that snapshot; others are checked and sized.
            hc = self._hcache
            try:
                hit = headers.__class__ is hc[0] and headers == hc[1]
            except Exception:              # a value whose == raises: the checks say what it is
                hit = False
            if hit:
                headers = hc[1]
                size += hc[2]
            else:
                headers, hsize = self._size_headers(headers)
                size += hsize
            extras = True
        if size > self._max_message:     # key, value and headers, as librdkafka counts them
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE,
                                            f"record of {size} bytes exceeds message.max.bytes={self._max_message}"))
        size += RECORD_OVERHEAD
        cb = on_delivery or callback or self._default_cb
        lock = acc.lock
        while True:
            lock.acquire()
            values = acc.values
            n = len(values)
            if n < self._q_limit and (n == 0 or acc.bytes + size <= self._send_bytes):
                break
            lock.release()
            self._make_room(acc, size)
        values.append(value)
        acc.keys.append(key)
        acc.callbacks.append(cb)
        if extras:
            if partition != -1:
                lst = acc.parts
                if lst is None:
                    lst = acc.parts = [-1] * acc.xcap
                try:
                    lst[n] = partition
                except IndexError:
                    _grow(lst, n, -1)[n] = partition
            if timestamp:
                lst = acc.stamps
                if lst is None:
                    lst = acc.stamps = [0] * acc.xcap
                try:
                    lst[n] = timestamp
                except IndexError:
                    _grow(lst, n, 0)[n] = timestamp
            if headers is not None:
                lst = acc.headers
                if lst is None:
                    lst = acc.headers = [None] * acc.xcap
                try:
                    lst[n] = headers
                except IndexError:
                    _grow(lst, n, None)[n] = headers
        acc.bytes += size
        if n == 0:
            acc.first = _monotonic()
        lock.release()
        if n == 0:
            if self._linger <= 0:
                self._send_topic(acc)        # linger.ms 0: send now, in this thread (no handoff)
            else:
                self._wake.set()
        elif n + 1 >= self._batch_count:
            self._send_topic(acc)

    # ------------------------------------------------------------ produce_batch
    def produce_batch(self, topic: str, values: Sequence[Bytesish], keys: Sequence[Bytesish] | None = None,
                      partition: int | None = None, headers: Sequence[HeadersIn] | None = None,
                      timestamps: Sequence[int] | None = None,
                      on_delivery: Callable[[BatchDelivery], object] | None = None) -> int:
        """Append many records at once, in the calling thread (an embedlog addition).

        `values` is a sequence (list, tuple, ...) of bytes-like or None (str is encoded
        as UTF-8); `keys`, `headers` and `timestamps`, when given, are sequences of the
        same length holding, per record, what produce() takes as key= (bytes-like, str
        or None), headers= (a list of (str, bytes | str | None) pairs, a dict, or None)
        and timestamp= (CreateTime in epoch ms, 0: now). `partition` (an int; None or
        -1: not given) sends every record there; without it each record goes where
        produce() would send it (the partitioner on its key, one sticky partition for
        the null keys of this call). The records read back are those that produce()
        called once per record would have written: the same bytes, offsets in order,
        timestamps and headers.

        Semantics:
        - Records this producer queued earlier with produce() for `topic` are sent
          first, so a partition keeps call order.
        - Every argument is checked and the call cut into its batches before anything
          is written (compressed batches are encoded then too; plain ones each right
          before its append, into one buffer reused for all): a wrong type, a record
          over message.max.bytes (key, value and encoded headers), an unknown partition
          or a length mismatch raises (TypeError, ValueError or KafkaException) and
          writes nothing of the call.
        - Each partition's records go in as few batches as max.message.bytes allows,
          appended before this returns: with acks=1 written to the OS, with acks=all
          fdatasync'd (and on the in-sync mirrors).
        - `on_delivery(err, report)` is called once for the whole call, from poll() or
          flush() as produce()'s callbacks are; `report` is a BatchDelivery (topic(),
          error(), len(), batches(), and offsets() / partitions() per record in input
          order). The producer's default on_delivery (a per-record callback) is not
          called for a batch.
        - An append that fails after the checks (an I/O error, NOT_ENOUGH_REPLICAS)
          leaves the batches appended before it written (several partitions, or more
          than ~1 MB, are several appends; one batch is all or nothing) and stops: the
          error goes to `on_delivery` (report.error(); offsets() of the records not
          written are OFFSET_INVALID), or is raised as KafkaException without one.

        Returns the number of records in the call."""
        if self._closed:
            raise LogClosedError("producer is closed")
        if not self._enq_ok and self._txn is not None:
            raise self._txn.produce_error()
        acc = self._accs.get(topic)
        if acc is None:
            acc = self._new_topic(topic)
        t = self._topics[topic]
        values = _seq(values, "values")
        n = len(values)
        keys = None if keys is None else _seq(keys, "keys", n)
        timestamps = None if timestamps is None else _seq(timestamps, "timestamps", n)
        headers = None if headers is None else _seq(headers, "headers", n)
        if partition == -1:
            partition = None
        if partition is not None:
            self._check_extras(acc, topic, partition, 0, None)
        if n == 0:
            return 0
        columns = _column(values, "value")      # (items, lengths, has None): checked in input order
        values = columns[0]
        if keys is not None:
            keys = _column(keys, "key")          # typed once, for the partitioner too
        ts_now = now_ms()
        ts_arr = None
        if timestamps is not None:
            ts_arr = array("q", _timestamps_column(timestamps, ts_now))
        if headers is not None:
            for i, h in enumerate(headers):
                if h is not None and not isinstance(h, (list, tuple, dict)):
                    raise TypeError(f"record {i}: headers must be a list of (str, bytes) pairs, a dict "
                                    f"or None, not {type(h).__name__}")
        groups: dict[int, list[int] | None]
        if partition is not None:
            groups = {partition: None}
        else:
            targets = self._partitions(t, [None] * n if keys is None else keys[0], None)
            first = targets[0]
            if targets.count(first) == n:
                groups = {first: None}
            else:
                order = sorted(range(n), key=targets.__getitem__)      # stable: call order kept
                groups = {}
                lo = 0
                for p in sorted(set(targets)):
                    hi = lo + targets.count(p)
                    groups[p] = order[lo:hi]
                    lo = hi
        topic_codec = t.config["compression.type"]
        codec = self._codec if topic_codec == "producer" else _compression.codec_id(topic_codec)
        limit = min(self._max_message, t.config["max.message.bytes"] - LOG_OVERHEAD) - HEADER_SIZE
        plans = []                         # every record checked, every batch cut, before the first append
        over = []
        for p, idx in groups.items():
            pick = _same if idx is None else _picker(idx)
            plan = Plan(columns if idx is None else _column(pick(values), "value"),
                        None if keys is None else (keys if idx is None else _column(pick(keys[0]), "key")),
                        None if ts_arr is None else (ts_arr if idx is None else array("q", pick(ts_arr))),
                        None if headers is None else pick(headers), limit, self._max_message)
            if plan.first_over >= 0:
                i = plan.first_over
                over.append(((i if idx is None else idx[i]), plan, i))
            plans.append((p, idx, plan))
        if over:
            i, plan, j = min(over, key=lambda o: o[0])
            size = plan.size_of(j)
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE,
                                            f"record {i} of {size} bytes exceeds "
                                            f"message.max.bytes={self._max_message}"))
        if (check := record_check(self._log, t)) is not None:
            check(values, None if keys is None else keys[0], "of the produce_batch call")
        report = BatchDelivery(topic, n)
        buf = bytearray(max(plan.cap for _, _, plan in plans)) if not codec else None
        with self._send_lock:
            self._send_topic(acc)          # produce()'s queued records of this topic go first
            runs = []
            for p, idx, plan in plans:
                seq = self._sequences.get((topic, p), 0) if self._idempotent else None
                for j in range(plan.runs):
                    lo, hi = plan.run(j)
                    fields: dict[str, Any] = {}
                    if seq is not None:
                        fields = {"producer_id": self._producer_id, "producer_epoch": self._epoch,
                                  "base_sequence": seq, "transactional": self._txn is not None}
                        seq = (seq + hi - lo) % 2**31
                    # Compressed batches are all encoded now (a codec error writes nothing);
                    # plain ones each into `buf` right before its append.
                    batch = plan.encode(j, bytearray(plan.cap), ts_now, codec, **fields) if codec else None
                    runs.append((p, idx, plan, j, lo, hi, fields, batch))
            err = None
            if self._txn is not None and len(groups) > 1:
                self._add_to_txn(topic, groups)
            for p, idx, plan, j, lo, hi, fields, batch in runs:
                try:
                    if self._txn is not None:
                        self._txn.add_partition(topic, p)
                    data, size = batch if batch is not None else plan.encode(j, buf, ts_now, 0, **fields)
                    res = self._append_with_retries(t.partition(p), memoryview(data)[:size])
                except KafkaException as e:
                    err = e.args[0]
                    break
                except (EmbedlogError, OSError) as e:
                    err = error_from(e) if isinstance(e, EmbedlogError) else KafkaError(KafkaError._FAIL, str(e))
                    if self._txn is not None:
                        self._txn.delivery_failed(err)
                    break
                if fields:
                    self._sequences[(topic, p)] = (fields["base_sequence"] + hi - lo) % 2**31
                if self._acks == 0:
                    report._batches.append((p, OFFSET_INVALID, OFFSET_INVALID, idx, lo, hi))
                else:
                    report._batches.append((p, res.base_offset, res.last_offset, idx, lo, hi))
        report._error = err
        if on_delivery is not None:
            with self._reports_cond:
                self._reports.append((on_delivery, report, None))
                self._reports_cond.notify_all()
        elif err is not None:
            raise KafkaException(err)
        return n

    def _make_room(self, acc, size):
        """produce() found the queue full, the producer closed, or a chunk the record
        would push past the batch limit: raise, or send the chunk first (so a full chunk
        is one batch, with no one-record straggler)."""
        if len(acc.values) >= self._q_limit or acc.bytes >= self._max_queued_bytes:
            if self._closed:
                raise LogClosedError("producer is closed")
            if not self._enq_ok:
                raise self._txn.produce_error()
            raise BufferError("Local: Queue full")
        self._send_topic(acc)

    def _check_extras(self, acc, topic, partition, timestamp, headers):
        """The checks behind produce()'s quick ones: raise for a bad value (each message
        is part of the API), return for a valid one the quick checks did not know."""
        if partition != -1:
            if not isinstance(partition, int) or isinstance(partition, bool):
                raise TypeError(f"partition must be an int, not {type(partition).__name__}")
            t = self._topics[topic]
            n = t._num_partitions                 # as last seen; re-checked when out of range:
            if not 0 <= partition < n:            # another process may have added partitions
                n = t.num_partitions
            if not 0 <= partition < n:
                raise KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION,
                                                f"topic {topic} has partitions 0..{n - 1}, not {partition}"))
            acc.nparts = max(acc.nparts, n)
        if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
            raise TypeError(f"timestamp must be a non-negative int (ms), not {timestamp!r}")
        if headers is not None and not isinstance(headers, (list, tuple, dict)):
            raise TypeError(f"headers must be a list of (str, bytes) pairs or a dict, not {type(headers).__name__}")

    def _add_to_txn(self, topic, partitions):
        """The partitions a send is about to write, added to the transaction in one durable
        coordinator record instead of one each. A failure is left to the per-batch
        add_partition, which raises it where the delivery report carries it."""
        try:
            self._txn.add_partitions(topic, partitions)
        except KafkaException:
            pass

    def _size_headers(self, headers):
        """(headers to queue, their size as message.max.bytes counts it) for produce();
        TypeError for what is no headers. Headers whose every pair is a tuple of str or
        bytes and bytes, str or None become the cached snapshot (a copy of the list or
        dict; a tuple is its own) that produce() compares the next headers with: a change
        to the caller's list after produce() does not reach the queued record."""
        cls = headers.__class__
        if cls is not list and cls is not tuple:
            self._check_extras(None, None, -1, 0, headers)      # TypeError for what is no headers
        pairs = headers.items() if isinstance(headers, dict) else headers
        size = 0
        try:
            for k, v in pairs:
                size += 10 + len(k) + (len(v) if v is not None else 0)
        except (TypeError, ValueError):
            raise TypeError("headers must be (str, bytes | str | None) pairs or a dict") from None
        if cls is dict:
            if all(k.__class__ in _HEADER_KEY and v.__class__ in _HEADER_VALUE for k, v in pairs):
                headers = dict(headers)
            else:
                return headers, size
        elif cls is list or cls is tuple:
            for pair in headers:
                if pair.__class__ is not tuple or pair[0].__class__ not in _HEADER_KEY \
                        or pair[1].__class__ not in _HEADER_VALUE:
                    return headers, size
            if cls is list:
                headers = list(headers)
        else:
            return headers, size
        self._hcache = (cls, headers, size)     # one tuple: produce() in other threads reads it whole
        return headers, size

    def _new_topic(self, topic) -> _Acc:
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        try:
            t = get_topic(self._log, topic, self._conf)
        except EmbedlogError as e:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC, str(e))) from e
        with self._lock:
            self._topics[topic] = t
            return self._accs.setdefault(topic, _Acc(topic, t._num_partitions, record_check(self._log, t)))

    def __len__(self):
        """Records queued, being appended, or waiting for their delivery report."""
        return sum(len(a.values) for a in list(self._accs.values())) + self._in_flight + len(self._reports)

    # ------------------------------------------------------------ sending
    def _send_topic(self, acc: _Acc):
        with self._send_lock:
            with acc.lock:
                values, keys, callbacks = acc.values, acc.keys, acc.callbacks
                if not values:
                    return
                parts, stamps, headers = acc.parts, acc.stamps, acc.headers
                nbytes = acc.bytes               # exact: every append counted under the lock
                acc.reset()
            n = len(values)
            self._in_flight += n
            try:
                if parts is not None or stamps is not None or headers is not None:
                    for column in (parts, stamps, headers):
                        if column is not None:
                            del column[n:]           # the column's unused tail
                    acc.xcap = n + (n >> 2) + 64     # the next chunk is likely about as long
                self._send_chunk(acc.topic, values, keys, callbacks, parts, stamps, headers, nbytes)
            finally:
                self._in_flight -= n
                self._refresh_limit()
                acc.check = record_check(self._log, self._topics[acc.topic])   # config changes

    def _txn_gate(self, open_: bool):
        """Let produce() queue records (in a transaction) or refuse them: the refusal costs
        produce() nothing, it rides on the queue limit check (_make_room says why)."""
        self._enq_ok = open_
        if open_:
            self._refresh_limit()
        else:
            self._q_limit = -1

    def _refresh_limit(self):
        if not self._closed and self._enq_ok:
            self._q_limit = max(1, self._max_queued - self._in_flight - len(self._reports))

    def _send_all(self):
        for acc in list(self._accs.values()):
            self._send_topic(acc)

    def _partitions(self, t, keys, explicit):
        """Each record's partition; `explicit` is None or per record the partition= given (-1: none)."""
        n = t.num_partitions      # current: partitions added by any process count from the next chunk
        if n == 1:
            return [0] * len(keys)   # explicit partitions were checked to be 0
        name = self._partitioner
        if explicit is not None and -1 not in explicit and not callable(name):
            return explicit          # every record named its partition (a callable still sees each key)
        if callable(name):
            targets = [int(name(k, n)) if k is not None else -1 for k in keys]
        elif name in ("murmur2_random", "murmur2"):
            if name == "murmur2":
                keys = [b"" if k is None else k for k in keys]
            targets = partitions_for_keys(keys, n)
        elif name in ("consistent_random", "consistent"):
            targets = [(zlib.crc32(k) % n) if k is not None else (-1 if name.endswith("random") else 0)
                       for k in keys]
        elif name in ("fnv1a", "fnv1a_random"):
            targets = [(_fnv1a(k) % n) if k is not None else (-1 if name.endswith("random") else _fnv1a(b"") % n)
                       for k in keys]
        else:  # random
            targets = [-1] * len(keys)
        if -1 in targets:
            sticky = self._sticky.partition(t.name, n)
            targets = [sticky if p < 0 else p for p in targets]
            self._sticky.batch_complete(t.name, n)
        if explicit is not None:
            targets = [q if q != -1 else p for q, p in zip(explicit, targets)]
        return targets

    def _send_chunk(self, topic, values, keys, callbacks, explicit, timestamps, headers, nbytes=None):
        """explicit, timestamps, headers: None, or one per record (-1, 0, None where not given)."""
        t = self._topics[topic]
        n = len(values)
        targets = self._partitions(t, keys, explicit)
        first = targets[0]
        if targets.count(first) == n:
            groups = {first: None}
        else:
            groups = {}
            for i, p in enumerate(targets):
                groups.setdefault(p, []).append(i)
        ts_now = now_ms()
        if timestamps is not None:
            t0 = timestamps[0]       # one timestamp for all (counted by identity, quickly): no 0 to fill
            if not (t0 and timestamps.count(t0) == n) and 0 in timestamps:
                timestamps = [ts or ts_now for ts in timestamps]
        topic_codec = t.config["compression.type"]
        codec = self._codec if topic_codec == "producer" else _compression.codec_id(topic_codec)
        limit = min(self._max_message, t.config["max.message.bytes"] - LOG_OVERHEAD) - HEADER_SIZE
        if self._txn is not None and len(groups) > 1:
            self._add_to_txn(topic, groups)
        for p, idx in groups.items():
            pick = (lambda seq: seq) if idx is None else (lambda seq: [seq[i] for i in idx])
            v, k, cbs = pick(values), pick(keys), pick(callbacks)
            ts = None if timestamps is None else pick(timestamps)
            hs = None if headers is None else pick(headers)
            # The chunk's size was counted as records arrived: split only when it may be needed.
            fits = idx is None and nbytes is not None and nbytes <= limit
            for lo, hi in ((0, len(v)),) if fits else self._split(v, k, limit):
                self._send_batch(t, p, v[lo:hi], k[lo:hi], cbs[lo:hi],
                                 None if ts is None else ts[lo:hi], None if hs is None else hs[lo:hi],
                                 codec, ts_now)

    @staticmethod
    def _split(values, keys, limit):
        """Index ranges whose estimated encoded size stays under the batch size limit."""
        n = len(values)
        try:
            total = sum(map(len, values)) + sum(map(len, keys)) + n * RECORD_OVERHEAD
        except TypeError:          # null keys or values
            total = None
        if total is not None and total <= limit:
            yield 0, n
            return
        sizes = [(len(v) if v is not None else 0) + (len(k) if k is not None else 0) + RECORD_OVERHEAD
                 for v, k in zip(values, keys)]
        ends = list(accumulate(sizes))
        start, consumed = 0, 0
        while start < n:
            stop = bisect_right(ends, consumed + limit, lo=start + 1)
            stop = max(stop, start + 1)          # a record larger than the limit goes alone
            yield start, stop
            consumed = ends[stop - 1]
            start = stop

    def _send_batch(self, t, p, values, keys, callbacks, timestamps, headers, codec, ts_now):
        sent = _Sent()
        sent.topic, sent.partition = t.name, p
        sent.keys, sent.values, sent.headers = keys, values, headers
        sent.error = None
        sent.base_offset = -1
        pid_fields = {}
        if self._idempotent:
            seq = self._sequences.get((t.name, p), 0)
            pid_fields = dict(producer_id=self._producer_id, producer_epoch=self._epoch, base_sequence=seq)
            if self._txn is not None:
                pid_fields["transactional"] = True
            self._sequences[(t.name, p)] = (seq + len(values)) % 2**31
        enc_ts, enc_t = timestamps, ts_now
        if timestamps is not None:
            t0 = timestamps[0]
            if timestamps.count(t0) == len(timestamps) and t0 < 2**63:
                enc_ts, enc_t = None, t0    # one timestamp for all: the same bytes, no per-record array
        try:
            if self._txn is not None:
                self._txn.add_partition(t.name, p)       # KafkaException: the report carries its error
            batch = (encode_batch if headers is None else _encode_batch_with_headers)(
                values, keys, enc_ts, headers, compression=codec, timestamp=enc_t, **pid_fields)
            res = self._append_with_retries(t.partition(p), batch)
            sent.base_offset = res.base_offset if self._acks != 0 else -1
            if res.log_append_time >= 0:
                sent.ts_type, sent.timestamps = TIMESTAMP_LOG_APPEND_TIME, [res.log_append_time] * len(values)
            else:
                sent.ts_type = TIMESTAMP_CREATE_TIME
                sent.timestamps = timestamps if timestamps is not None else [ts_now] * len(values)
        except (EmbedlogError, OSError, TypeError, ValueError, KafkaException) as e:
            if isinstance(e, KafkaException):
                sent.error = e.args[0]
            else:
                sent.error = error_from(e) if isinstance(e, EmbedlogError) else KafkaError(KafkaError._FAIL, str(e))
            if self._txn is not None:
                self._txn.delivery_failed(sent.error)
                if self._txn.state == "FATAL_ERROR":
                    sent.error = self._txn.error
            sent.ts_type = TIMESTAMP_CREATE_TIME
            sent.timestamps = timestamps if timestamps is not None else [ts_now] * len(values)
        self._report(sent, callbacks)

    def _append_with_retries(self, part, batch):
        deadline = time.monotonic() + self._conf["delivery.timeout.ms"] / 1000.0
        attempts = 0
        while True:
            try:
                return part.append_batches([batch], sync=self._acks == -1, _built_here=True)[0]
            except EmbedlogError as e:
                attempts += 1
                if not e.retriable or attempts > self._conf["retries"] or time.monotonic() >= deadline:
                    raise
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _report(self, sent, callbacks):
        """Queue delivery reports for the records that have a callback."""
        if sent.error is None and self._only_errors:
            return
        reports = self._reports
        if callbacks.count(None) == len(callbacks):
            return
        with self._reports_cond:
            for i, cb in enumerate(callbacks):
                if cb is not None:
                    reports.append((cb, sent, i))
            self._reports_cond.notify_all()

    def _sender_loop(self):
        """Send each topic's records once the oldest is linger.ms old."""
        while not self._closed:
            now = _monotonic()
            wait = None
            for acc in list(self._accs.values()):
                if acc.values:
                    left = acc.first + self._linger - now if acc.first else 0.0
                    if left <= 0:
                        try:
                            self._send_topic(acc)
                        except Exception as e:  # never let the sender die silently
                            cb = self._conf.get("error_cb")
                            if cb:
                                cb(KafkaError(KafkaError._FAIL, f"sending to {acc.topic}: {e}"))
                        if acc.values and (wait is None or self._linger < wait):
                            wait = self._linger
                    elif wait is None or left < wait:
                        wait = left
            self._wake.wait(wait)
            self._wake.clear()

    # ------------------------------------------------------------ reports
    def poll(self, timeout: float | None = None) -> int:
        """Serve queued delivery callbacks; wait up to `timeout` seconds for one. Returns
        the number served."""
        served = self._serve()
        if served or timeout == 0:
            return served
        deadline = None if timeout is None or timeout < 0 else _monotonic() + timeout
        with self._reports_cond:
            while not self._reports:
                left = None if deadline is None else deadline - _monotonic()
                if left is not None and left <= 0:
                    break
                if deadline is None and len(self) == 0:
                    break
                self._reports_cond.wait(left if left is not None else 0.1)
        return self._serve()

    def _serve(self) -> int:
        served = 0
        pop = self._reports.popleft
        try:
            while True:
                cb, sent, i = pop()
                served += 1
                if i is None:                    # produce_batch(): one report for the call
                    cb(sent._error, sent)
                else:
                    cb(sent.error, _DeliveryReport(sent, i))
        except IndexError:
            pass
        if served:
            self._refresh_limit()
        return served

    def flush(self, timeout: float | None = None) -> int:
        """Send everything queued, wait for it to be appended (and fsync'd for acks=all),
        serve the delivery callbacks. Returns the number of records still queued."""
        deadline = None if timeout is None or timeout < 0 else _monotonic() + timeout
        while True:
            self._send_all()
            self._serve()
            left_count = len(self)
            if left_count == 0:
                return 0
            left = None if deadline is None else deadline - _monotonic()
            if left is not None and left <= 0:
                return left_count
            with self._reports_cond:
                if not self._reports:
                    self._reports_cond.wait(0.05 if left is None else min(left, 0.05))

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        """Drop queued records; their callbacks get _PURGE_QUEUE."""
        with self._send_lock:
            for acc in list(self._accs.values()):
                with acc.lock:
                    values, keys, callbacks = acc.values, acc.keys, acc.callbacks
                    acc.reset()
                if values:
                    sent: Any = _Sent()
                    sent.topic, sent.partition, sent.base_offset = acc.topic, -1, -1
                    sent.keys, sent.values, sent.headers = keys, values, None
                    sent.error = KafkaError(KafkaError._PURGE_QUEUE, "Local: Purged in queue")
                    sent.ts_type, sent.timestamps = TIMESTAMP_CREATE_TIME, [0] * len(values)
                    self._report(sent, callbacks)

    def list_topics(self, topic=None, timeout=-1):
        from ._admin import cluster_metadata
        return cluster_metadata(self._log, topic)

    # ------------------------------------------------------------ transactions (#19)
    def _transactions(self):
        if self._txn is None:
            raise KafkaException(KafkaError(KafkaError._NOT_CONFIGURED,
                                            "The Transactional API requires transactional.id to be configured"))
        return self._txn

    def init_transactions(self, timeout: float | None = None) -> None:
        """Take the transactional.id: its producer id, the next epoch (fencing the older
        instance), and the end of that instance's open transaction (aborted, or completed
        if it had reached its commit point)."""
        self._transactions().init(timeout)

    def begin_transaction(self) -> None:
        self._transactions().begin()

    def send_offsets_to_transaction(self, positions: Sequence[TopicPartition], group_metadata: Any,
                                    timeout: float | None = None) -> None:
        """Commit the consumer's positions (next offsets to read) with this transaction:
        they count for the group exactly when it commits."""
        self._transactions().send_offsets(positions, group_metadata, timeout)

    def commit_transaction(self, timeout: float | None = None) -> None:
        """Flush, then commit: every record of the transaction becomes visible to
        read_committed consumers, with the offsets sent in it."""
        self._transactions().commit(timeout)

    def abort_transaction(self, timeout: float | None = None) -> None:
        """Purge queued records (_PURGE_QUEUE), wait for the in-flight ones, then abort."""
        self._transactions().abort(timeout)

    def close(self, timeout: float | None = None) -> int:
        """Flush, stop the sender thread and release the log (an embedlog addition)."""
        if self._closed:
            return 0
        left = self.flush(timeout)
        self._closed = True
        self._q_limit = -1               # produce() checks one number, then says why
        self._wake.set()
        self._sender.join(1.0)
        release_log(self._log)
        return left

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
