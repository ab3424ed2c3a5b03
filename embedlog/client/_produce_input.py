"""What produce() and produce_batch() are given, checked and encoded (issue #17): header
sections, the columns of a batch call, its delivery report (BatchDelivery), and the
topic's schema validation hook (#15). Split from _producer.py, which keeps the queues, the
sender and the delivery reports of single records.
"""
from __future__ import annotations

import struct
from array import array
from itertools import repeat
from operator import is_, itemgetter, sub

from ..storage import _hotpath as hp
from ..storage._records import HEADER_SIZE, MAX_RECORD_OVERHEAD, encode_batch, encode_headers, encode_varint, \
    finish_records
from ._kafka import OFFSET_INVALID, KafkaError

RECORD_OVERHEAD = 32            # per-record framing upper bound: 5 length + 1 attributes + 10 timestamp
                                # delta + 5 offset delta + 5 key length + 5 value length + 1 headers

def _fnv1a(key: bytes) -> int:
    h = 0x811C9DC5
    for b in key:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


_VARINT_SMALL = [encode_varint(i) for i in range(64)]      # one byte each
_NOT_SEEN = object()


def _encode_one_headers(h):
    """encode_headers(h), the same bytes, without its per-pair calls for the usual
    list or tuple of (str, bytes | None) tuples; anything else goes to encode_headers,
    which also raises the errors."""
    if not h:
        return b"\x00"
    if h.__class__ is not list and h.__class__ is not tuple:
        return encode_headers(h)
    n = len(h)
    out = [_VARINT_SMALL[n] if n < 64 else encode_varint(n)]
    append = out.append
    for pair in h:
        if pair.__class__ is not tuple or len(pair) != 2:
            return encode_headers(h)
        k, v = pair
        if k.__class__ is str:
            k = k.encode("utf-8", "surrogateescape")
        elif k.__class__ is not bytes:
            return encode_headers(h)
        n = len(k)
        append(_VARINT_SMALL[n] if n < 64 else encode_varint(n))
        append(k)
        if v is None:
            append(b"\x01")                           # varint(-1)
        elif v.__class__ is bytes:
            n = len(v)
            append(_VARINT_SMALL[n] if n < 64 else encode_varint(n))
            append(v)
        else:
            return encode_headers(h)
    return b"".join(out)


def _encode_headers_all(headers):
    """Every record's header section, joined, and their lengths. Encoded once per
    distinct headers object: all are encoded now, so records sharing one object get
    the same bytes as encoding each would give."""
    n = len(headers)
    first = headers[0]
    if all(map(is_, headers, repeat(first, n))):        # one object for all (a constant list)
        enc = _encode_one_headers(first)
        return enc * n, array("i", [len(enc)]) * n
    memo = {}
    out = []
    append = out.append
    prev = _NOT_SEEN
    enc = None
    for h in headers:
        if h is not prev:
            prev = h
            enc = memo.get(id(h))
            if enc is None:
                enc = memo[id(h)] = _encode_one_headers(h)
        append(enc)
    return b"".join(out), array("i", map(len, out))


def _encode_batch_with_headers(values, keys, timestamps, headers, compression, timestamp,
                               producer_id=-1, producer_epoch=-1, base_sequence=-1):
    """encode_batch(values, keys, timestamps, headers, ...) for the producer's chunks, with
    the header sections encoded by _encode_headers_all (each distinct headers object once)."""
    return encode_batch(values, keys, timestamps, compression=compression, timestamp=timestamp,
                        producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=base_sequence,
                        encoded_headers=_encode_headers_all(headers))


def record_check(log, t):
    """Topic t's schema validation (#15), None when its configs are off (registry/_enforce.py,
    loaded only then: the one upward import, test_layout.LAZY_UP)."""
    c = t.config
    if c["confluent.value.schema.validation"] or c["confluent.key.schema.validation"]:
        from ..registry._enforce import topic_check
        return topic_check(log, t)


def _as_bytes(x, what):
    if x is None or x.__class__ is bytes:
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"{what} must be bytes, str or None, not {type(x).__name__}")


class BatchDelivery:
    """The delivery report of one Producer.produce_batch() call (an embedlog addition)."""

    __slots__ = ("_batches", "_error", "_n", "_topic")

    def __init__(self, topic: str, n: int) -> None:
        self._topic, self._n = topic, n
        self._batches: list[tuple] = []
        self._error: KafkaError | None = None

    def topic(self) -> str:
        return self._topic

    def error(self) -> KafkaError | None:
        """None, or the KafkaError that stopped the appends."""
        return self._error

    def __len__(self) -> int:
        return self._n

    def batches(self) -> list[tuple[int, int, int]]:
        """[(partition, base_offset, last_offset)] of each batch appended, in append order
        (OFFSET_INVALID offsets with acks=0)."""
        return [(p, base, last) for p, base, last, _idx, _lo, _hi in self._batches]

    def _per_record(self, value_of):
        out = [OFFSET_INVALID] * self._n
        for b in self._batches:
            idx, lo, hi = b[3], b[4], b[5]
            vals = value_of(b, hi - lo)
            if idx is None:
                out[lo:hi] = vals
            else:
                for i, x in zip(idx[lo:hi], vals):
                    out[i] = x
        return out

    def offsets(self) -> list[int]:
        """Each record's offset, in the order given (OFFSET_INVALID: not written, or acks=0)."""
        return self._per_record(lambda b, m: range(b[1], b[1] + m) if b[1] >= 0 else [OFFSET_INVALID] * m)

    def partitions(self) -> list[int]:
        """Each record's partition, in the order given (-1: not written)."""
        return [-1 if p == OFFSET_INVALID else p for p in self._per_record(lambda b, m: [b[0]] * m)]

    def __repr__(self) -> str:
        return f"<BatchDelivery {self._topic} {self._n} records in {len(self._batches)} batches" + \
            (f" error={self._error}>" if self._error is not None else ">")


_NONE_TYPE = type(None)
_BYTES_LIKE = (bytes, bytearray, memoryview)
_ONLY_BYTES = {bytes}
_BYTES_OR_NONE = {bytes, _NONE_TYPE}


def _same(seq):
    return seq


def _picker(idx):
    if len(idx) == 1:
        i = idx[0]
        return lambda seq: [seq[i]]
    g = itemgetter(*idx)
    return lambda seq: list(g(seq))


def _seq(x, what, n=None):
    """x as a list or tuple; TypeError for what is no sequence of records (bytes, str...)."""
    if x.__class__ is not list and x.__class__ is not tuple:
        if isinstance(x, (bytes, bytearray, memoryview, str, dict)) or not hasattr(x, "__iter__"):
            raise TypeError(f"{what} must be a sequence (one item per record), not {type(x).__name__}")
        x = list(x)
    if n is not None and len(x) != n:
        raise ValueError(f"{len(x)} {what} for {n} values")
    return x


def _bytes_column(items, what):
    """(items with str encoded and bytearray/memoryview made bytes, sizes with None as 0),
    checked: TypeError naming the first record that is not bytes-like, str or None."""
    types = set(map(type, items))
    if types <= {bytes}:
        return items, list(map(len, items))
    if types <= {bytes, _NONE_TYPE}:
        return items, [0 if x is None else len(x) for x in items]
    out = []
    for i, x in enumerate(items):
        if x is None or x.__class__ is bytes:
            out.append(x)
        elif isinstance(x, str):
            out.append(x.encode())
        elif isinstance(x, _BYTES_LIKE):
            out.append(bytes(x))
        else:
            raise TypeError(f"record {i}: {what} must be bytes, str or None, not {type(x).__name__}")
    return out, [0 if x is None else len(x) for x in out]


def _column(items, what):
    """(items as bytes or None, their int32 lengths with -1 for None as packed bytes, whether
    one is None) of a produce_batch column, checked: str encoded, bytearray and memoryview
    made bytes, a TypeError naming the first item that is none of these. Each step is one
    C-level loop when every item is bytes. The items are joined later, per batch, right
    before it is encoded: a join of the whole column would fault in ~116 MB of new pages
    per 1M records, one batch's join reuses the same ~1 MB."""
    types = set(map(type, items))
    n = len(items)
    if types <= _ONLY_BYTES:
        return items, struct.pack(f"{n}i", *map(len, items)), False
    if not types <= _BYTES_OR_NONE:
        items, _ = _bytes_column(items, what)
    return items, struct.pack(f"{n}i", *[-1 if x is None else len(x) for x in items]), True


def _joined(items, lo, hi, has_none):
    part = items[lo:hi]
    return b"".join([x for x in part if x is not None] if has_none else part)


_NO_PRODUCER = {"producer_id": -1, "producer_epoch": -1, "base_sequence": -1}


class Plan:
    """One partition's records of a produce_batch call, checked and cut into the batches
    they will be sent as (el_batch_bounds: batches of at most `limit` bytes) before
    anything is written; encode(j, ...) then writes batch j into a buffer the caller
    reuses for every batch (no new buffer, and so no page faults, per batch)."""

    def __init__(self, values, keys, timestamps, headers, limit, max_size):
        """values, keys: _column()s (keys None: all null); timestamps: array("q") or None."""
        self.values, self.vlens, self.vnone = values
        self.keys, self.klens, self.knone = (None, None, False) if keys is None else keys
        self.ts = timestamps
        self.hblob, self.hlens = (b"", None) if headers is None else _encode_headers_all(headers)
        self.n = n = len(self.values)
        klens = hp.NULL if self.klens is None else hp.i32(self.klens)
        hlens = hp.NULL if self.hlens is None else hp.i32(self.hlens)
        cap = 16 + n // 512
        over = hp.new("int32_t[1]")
        while True:
            stops, kends, vends, hends = (hp.new("int32_t[]", cap), hp.new("int64_t[]", cap),
                                          hp.new("int64_t[]", cap), hp.new("int64_t[]", cap))
            runs = hp.lib.el_batch_bounds(klens, hp.i32(self.vlens), hlens, n, limit, RECORD_OVERHEAD, max_size,
                                          cap, stops, kends, vends, hends, over)
            if runs <= cap:
                break
            cap = runs
        self.runs, self.first_over = runs, over[0]
        self.stops, self.kends = list(stops[0:runs]), list(kends[0:runs])
        self.vends, self.hends = list(vends[0:runs]), list(hends[0:runs])
        longest = max(map(sub, self.stops, [0, *self.stops[:-1]]))
        self.null_lens = array("i", [-1]) * longest if self.klens is None else None
        self.cap = HEADER_SIZE + longest * MAX_RECORD_OVERHEAD + max(map(self._run_bytes, range(runs)))

    def size_of(self, i):
        """Record i's key + value + header bytes (what message.max.bytes limits)."""
        return sum(max(0, lens[i]) for lens in (array("i", self.klens) if self.klens else None,
                                                 array("i", self.vlens), self.hlens) if lens is not None)

    def _run_bytes(self, j):
        return sum(ends[j] - (ends[j - 1] if j else 0) for ends in (self.kends, self.vends, self.hends))

    def run(self, j):
        """(lo, hi): the records of batch j."""
        return (self.stops[j - 1] if j else 0), self.stops[j]

    def encode(self, j, buf, ts_now, compression, **fields):
        """Batch j as (buffer, length): the records encoded into buf (a bytearray of at
        least self.cap bytes), its header filled (`fields`: producer id, epoch, base
        sequence, transactional). The same bytes encode_batch gives for these records."""
        lo, hi = self.run(j)
        m = hi - lo
        ts = self.ts
        if ts is None:
            ts_ptr, base_ts, max_ts = hp.NULL, ts_now, ts_now
        else:
            ts_ptr, base_ts, max_ts = hp.i64(ts) + lo, ts[lo], max(ts[lo:hi])
        vblob = _joined(self.values, lo, hi, self.vnone)
        kblob = b"" if self.keys is None else _joined(self.keys, lo, hi, self.knone)
        hs = self.hends[j - 1] if j else 0
        cbuf = hp.from_buffer(buf)
        written = hp.lib.el_encode_records(
            cbuf + HEADER_SIZE, len(buf) - HEADER_SIZE, kblob, len(kblob),
            hp.i32(self.null_lens) if self.klens is None else hp.i32(self.klens) + lo,
            vblob, len(vblob), hp.i32(self.vlens) + lo, ts_ptr, base_ts,
            hp.NULL if self.hlens is None else hp.from_buffer(self.hblob) + hs,
            hp.NULL if self.hlens is None else hp.i32(self.hlens) + lo, hp.NULL, m)
        del cbuf
        return finish_records(buf, written, m, compression=compression, base_offset=0,
                              partition_leader_epoch=-1, last_offset_delta=m - 1, base_timestamp=base_ts,
                              max_timestamp=max_ts, **{**_NO_PRODUCER, **fields})


def _timestamps_column(timestamps, ts_now):
    """A list of int64 ms with 0 replaced by now; TypeError naming the first bad one."""
    try:
        arr = array("q", timestamps)
        ok = set(map(type, timestamps)) == {int} and min(arr) >= 0
    except (TypeError, OverflowError):
        ok = False
    if not ok:
        for i, x in enumerate(timestamps):
            if x.__class__ is not int or not 0 <= x < 2**63:
                raise TypeError(f"record {i}: timestamp must be a non-negative int (ms), not {x!r}")
    if 0 in arr:
        return [x or ts_now for x in timestamps]
    return list(timestamps)
