"""A topic range as Apache Arrow columns: embedlog.to_arrow() (the `embedlog[arrow]` extra).

Reads whole batches as stored (CRC-checked, as every reader does), parses each batch's
records section in one C call into offset/length arrays, and copies every key and value
once, by one C call per batch (el_gather), into one data buffer per column and read
chunk, with Arrow's offsets and validity bitmap written beside it. pyarrow then wraps
those buffers (pa.Array.from_buffers, no copy). Offsets and timestamps are built from
the batch headers and the C arrays by C-level loops (array('q', range/map)). Headers,
where a batch has any, are decoded per record (the uncommon case). Control batches are
not records and are skipped; offsets compaction removed are absent (gaps).

Columns: partition int32, offset int64, timestamp timestamp[ms, UTC] (CreateTime, or
LogAppendTime where the topic or batch says so), key and value large_binary (null for
a null key / tombstone), headers list<struct<key: string, value: binary>>.
"""
from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

try:
    import pyarrow as pa
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("embedlog.to_arrow() needs pyarrow: pip install 'embedlog[arrow]'") from e

from .storage import _compression
from .storage import _hotpath as hp
from .storage._errors import CorruptRecordError
from .storage._records import ATTR_CONTROL, HEADER_SIZE, _decode_headers

if TYPE_CHECKING:
    from .storage._log import Log

# start=/end=: one offset for every partition, or {partition: offset}.
Bounds = int | Mapping[int, int] | None

__all__ = ["SCHEMA", "iter_record_batches", "to_arrow"]

HEADERS_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
SCHEMA = pa.schema([
    ("partition", pa.int32()), ("offset", pa.int64()), ("timestamp", pa.timestamp("ms", tz="UTC")),
    ("key", pa.large_binary()), ("value", pa.large_binary()), ("headers", HEADERS_TYPE),
])
READ_BYTES = 4 << 20          # bytes of batches read per chunk (one RecordBatch each)
_EMPTY_HEADERS = pa.array([], type=HEADERS_TYPE.value_type)


def to_arrow(log: Log | str | os.PathLike[str], topic: str, partitions: Iterable[int] | None = None,
             start: Bounds = None, end: Bounds = None) -> pa.Table:
    """The records of `topic` as a pyarrow Table (columns: partition, offset, timestamp,
    key, value, headers), partition by partition in offset order.

    `log` is an open Log (embedlog.open) or a log directory's path. `partitions`: the
    partition numbers to read (default: all). `start`/`end`: offsets, an int for every
    partition or a {partition: offset} dict; records with start <= offset < end are
    read (default: from the log start to the high watermark, what a consumer can read).
    The Table's chunks are the RecordBatches of iter_record_batches()."""
    return pa.Table.from_batches(list(iter_record_batches(log, topic, partitions, start, end)), schema=SCHEMA)


def iter_record_batches(log: Log | str | os.PathLike[str], topic: str, partitions: Iterable[int] | None = None,
                        start: Bounds = None, end: Bounds = None) -> Iterator[pa.RecordBatch]:
    """to_arrow() as a stream: one pyarrow RecordBatch per ~4 MB read."""
    if isinstance(log, (str, os.PathLike)):
        from .storage._log import open_log
        with open_log(log) as opened:
            yield from iter_record_batches(opened, topic, partitions, start, end)
        return
    t = log.topic(topic)
    if partitions is None:
        partitions = range(t.num_partitions)
    elif isinstance(partitions, int) or not all(isinstance(p, int) and not isinstance(p, bool) for p in partitions):
        raise TypeError(f"partitions must be a list of partition numbers, not {partitions!r}")
    parts = [t.partition(p) for p in partitions]           # UnknownTopicOrPartitionError first
    for part in parts:
        p = part.partition
        first, hw = part.watermarks()
        lo = max(first, _bound(start, p, first, "start"))
        hi = min(hw, _bound(end, p, hw, "end"))
        pos = lo
        while pos < hi:
            items = part._read_batches(pos, READ_BYTES)
            if not items:
                break
            rb = _record_batch(p, items, pos, hi)
            if rb is not None and rb.num_rows:
                yield rb
            pos = items[-1][2].next_offset


def _bound(value, p, default, what):
    if value is None:
        return default
    if isinstance(value, dict):
        value = value.get(p, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an offset (int) or a {{partition: offset}} dict, not {value!r}")
    return value


def _record_batch(p, items, lo, hi):
    """One RecordBatch of the records lo <= offset < hi in these batches."""
    parsed = []
    rows = key_bytes = value_bytes = 0
    for buf, bpos, h, path, fpos in items:
        if h.attributes & ATTR_CONTROL or h.records_count == 0:
            continue
        if h.base_offset >= hi:
            break
        n = h.records_count
        if h.compression:
            src = _compression.decompress(h.compression, memoryview(buf)[bpos + HEADER_SIZE:bpos + h.size],
                                          path=path, position=fpos)
            cptr, length = hp.from_buffer(src), len(src)
        else:
            src = buf
            cptr, length = hp.from_buffer(buf) + bpos + HEADER_SIZE, h.size - HEADER_SIZE
        if n < 0 or n > length:
            raise CorruptRecordError(f"impossible record count {n} in {path} at position {fpos}",
                                     path=path, position=fpos)
        ts_delta = hp.new("int64_t[]", n)
        ints = hp.new("int32_t[]", 7 * n)
        flags = hp.lib.el_parse_records(cptr, length, n, 0, ts_delta, ints, ints + n, ints + 2 * n,
                                        ints + 3 * n, ints + 4 * n, ints + 5 * n, ints + 6 * n)
        if flags < 0:
            raise CorruptRecordError(f"{hp.REASONS[flags]} in {path} at position {fpos}", path=path, position=fpos)
        iv = memoryview(hp.ffi.buffer(ints)).cast("i")
        if not flags & 2 and iv[n - 1] > h.last_offset_delta:
            raise CorruptRecordError(f"record offsets outside the batch at position {fpos} of {path}",
                                     path=path, position=fpos)
        key_bytes += hp.lib.el_fill_i64(hp.NULL, 0, hp.NULL, hp.NULL, 0, n, ints + 2 * n)
        value_bytes += hp.lib.el_fill_i64(hp.NULL, 0, hp.NULL, hp.NULL, 0, n, ints + 4 * n)
        parsed.append((h, n, src, cptr, length, ts_delta, ints, iv, flags))
        rows += n
    if not rows:
        return None
    offsets, stamps = array("q", bytes(8 * rows)), array("q", bytes(8 * rows))
    kbuf, vbuf = bytearray(key_bytes), bytearray(value_bytes)
    koffs, voffs = array("q", bytes(8 * (rows + 1))), array("q", bytes(8 * (rows + 1)))
    kvalid, vvalid = bytearray((rows + 7) // 8), bytearray((rows + 7) // 8)
    nulls = hp.new("int64_t[2]")
    kpos = vpos = row = 0
    headers = None
    kdst, vdst = hp.from_buffer(kbuf), hp.from_buffer(vbuf)
    kop, vop = hp.i64(koffs), hp.i64(voffs)
    kvp, vvp = hp.from_buffer(kvalid), hp.from_buffer(vvalid)
    op, tp = hp.i64(offsets), hp.i64(stamps)
    fill, NULL = hp.lib.el_fill_i64, hp.NULL
    for h, n, _src, cptr, length, ts_delta, ints, iv, flags in parsed:
        fill(op + row, h.base_offset, NULL if flags & 2 else ints, NULL, 1, n, NULL)
        if h.log_append_time:
            fill(tp + row, h.max_timestamp, NULL, NULL, 0, n, NULL)
        elif flags & 1:
            fill(tp + row, h.base_timestamp, NULL, NULL, 0, n, NULL)
        else:
            fill(tp + row, h.base_timestamp, NULL, ts_delta, 0, n, NULL)
        kpos = hp.lib.el_gather(cptr, ints + n, ints + 2 * n, n, kdst, kpos, kop + row, kvp, row, nulls)
        vpos = hp.lib.el_gather(cptr, ints + 3 * n, ints + 4 * n, n, vdst, vpos, vop + row, vvp, row, nulls + 1)
        if not flags & 16 or headers is not None:
            if headers is None:
                headers = [()] * row
            if flags & 16:
                headers.extend([()] * n)
            else:
                headers.extend(_headers_of(cptr, length, n, iv))
        row += n
    i, j = bisect_left(offsets, lo), bisect_left(offsets, hi)
    key_nulls, value_nulls = nulls[0], nulls[1]
    cols = [
        pa.Array.from_buffers(pa.int32(), rows, [None, pa.py_buffer(array("i", [p]) * rows)]),
        pa.Array.from_buffers(pa.int64(), rows, [None, pa.py_buffer(offsets)]),
        pa.Array.from_buffers(SCHEMA.field("timestamp").type, rows, [None, pa.py_buffer(stamps)]),
        pa.Array.from_buffers(pa.large_binary(), rows,
                              [pa.py_buffer(kvalid) if key_nulls else None, pa.py_buffer(koffs),
                               pa.py_buffer(kbuf)], null_count=key_nulls),
        pa.Array.from_buffers(pa.large_binary(), rows,
                              [pa.py_buffer(vvalid) if value_nulls else None, pa.py_buffer(voffs),
                               pa.py_buffer(vbuf)], null_count=value_nulls),
        pa.Array.from_buffers(HEADERS_TYPE, rows, [None, pa.py_buffer(array("i", bytes(4 * (rows + 1))))],
                              children=[_EMPTY_HEADERS]) if headers is None
        else pa.array(headers, type=HEADERS_TYPE),
    ]
    batch = pa.RecordBatch.from_arrays(cols, schema=SCHEMA)
    return batch if i == 0 and j == rows else batch.slice(i, j - i)


def _headers_of(cptr, length, n, iv):
    """Each record's headers as [(key, value)] lists, decoded from the records section."""
    section = memoryview(hp.ffi.buffer(cptr, length))
    ho, hcount = iv[5 * n:6 * n].tolist(), iv[6 * n:7 * n].tolist()
    return [list(_decode_headers(section, o, c)) if c else () for o, c in zip(ho, hcount)]
