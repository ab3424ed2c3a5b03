"""Kafka RecordBatch v2: build from Python data and decode back (FORMAT.md §3).

A batch is a 61-byte big-endian header followed by the records section, which may be
compressed as one blob. The CRC-32C covers byte 21 (attributes) to the end, so
baseOffset and partitionLeaderEpoch can be stamped at append time without
recomputing it. Encoding, header parsing, CRC and record splitting run in C
(csrc/native.c); this module turns Python values into buffers and back.
"""
from __future__ import annotations

import marshal
import struct
import time
from array import array
from itertools import repeat
from typing import NamedTuple

from . import _compression
from . import _hotpath as hp
from ._errors import CorruptRecordError

HEADER_SIZE = 61          # RECORD_BATCH_OVERHEAD
LOG_OVERHEAD = 12         # baseOffset + batchLength
MAGIC = 2
ATTR_COMPRESSION = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
ATTR_DELETE_HORIZON = 0x40
NO_TIMESTAMP = -1
MAX_RECORD_OVERHEAD = 32  # per-record worst case of the varints we write (<= 21 in Kafka's count + slack)
_EMPTY = ()


class Record(NamedTuple):
    """One record as stored: headers are a tuple of (str, bytes | None) pairs."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple = ()


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the batch takes in a .log file."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_COMPRESSION

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & ATTR_LOG_APPEND_TIME)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)


# ---------------------------------------------------------------- varints (Python side)

def encode_varint(n: int) -> bytes:
    """Zig-zag varint/varlong as in Kafka records (used for headers and tests)."""
    u = (n << 1) ^ (n >> 63)
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def decode_varint(buf, pos: int) -> tuple[int, int]:
    """(value, next position); raises ValueError on a truncated or overlong varint."""
    u = shift = 0
    for i in range(10):
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        u |= (b & 0x7F) << shift
        if not b & 0x80:
            return (u >> 1) ^ -(u & 1), pos
        shift += 7
    raise ValueError("varint longer than 10 bytes")


# ---------------------------------------------------------------- encoding

def _as_bytes_list(items, what: str):
    """(joined bytes, native int32 lengths as bytes) for a list of bytes-like or None."""
    try:
        # (A multi-byte memoryview's len() counts items, not bytes: the C encoder checks
        # that the lengths add up to the blob and the caller then takes the slow path.)
        return b"".join(items), struct.pack(f"{len(items)}i", *map(len, items))
    except TypeError:
        pass
    return _as_bytes_list_slow(items, what)


def _as_bytes_list_slow(items, what: str):
    lens = []
    parts = []
    for i, x in enumerate(items):
        if x is None:
            lens.append(-1)
        elif isinstance(x, (bytes, bytearray, memoryview)):
            x = memoryview(x).cast("B") if isinstance(x, memoryview) else x
            lens.append(len(x))
            parts.append(x)
        else:
            raise TypeError(f"record {i}: {what} must be bytes or None, not {type(x).__name__}")
    return b"".join(parts), struct.pack(f"{len(lens)}i", *lens)


def encode_headers(headers) -> bytes:
    """The header section of one record: count varint, then (key, value) pairs.

    `headers` is a sequence of (str, bytes | str | None) pairs or a dict."""
    if not headers:
        return b"\x00"
    items = headers.items() if isinstance(headers, dict) else headers
    out = bytearray()
    count = 0
    for pair in items:
        try:
            k, v = pair
        except (TypeError, ValueError):
            raise TypeError(f"a header must be a (key, value) pair, not {pair!r}") from None
        if isinstance(k, str):
            k = k.encode("utf-8", "surrogateescape")   # decoded with it: round trips
        elif not isinstance(k, (bytes, bytearray)):
            raise TypeError(f"header key must be str, not {type(k).__name__}")
        out += encode_varint(len(k)) + k
        if v is None:
            out += encode_varint(-1)
        else:
            if isinstance(v, str):
                v = v.encode()
            elif not isinstance(v, (bytes, bytearray, memoryview)):
                raise TypeError(f"header {k.decode(errors='replace')!r} value must be bytes, str or None, "
                                f"not {type(v).__name__}")
            out += encode_varint(len(v)) + bytes(v)
        count += 1
    return encode_varint(count) + bytes(out)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def build_batch(values, keys=None, timestamps=None, headers=None, *, compression: int = 0,
                producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1,
                transactional: bool = False, base_offset: int = 0,
                partition_leader_epoch: int = -1, timestamp: int | None = None) -> bytes:
    return bytes(encode_batch(values, keys, timestamps, headers, compression=compression,
                              producer_id=producer_id, producer_epoch=producer_epoch,
                              base_sequence=base_sequence, transactional=transactional,
                              base_offset=base_offset, partition_leader_epoch=partition_leader_epoch,
                              timestamp=timestamp))


def encode_batch(values, keys=None, timestamps=None, headers=None, *, compression: int = 0,
                 producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1,
                 transactional: bool = False, base_offset: int = 0,
                 partition_leader_epoch: int = -1, timestamp: int | None = None,
                 offset_deltas=None, last_offset_delta: int | None = None,
                 base_timestamp: int | None = None, max_timestamp: int | None = None,
                 extra_attributes: int = 0, encoded_headers=None) -> bytearray:
    """build_batch without the final copy to bytes (for callers that append it at once).
    `encoded_headers`: (blob, int32 lengths) of the records' header sections, already
    encoded (the producer encodes each distinct headers object once), instead of `headers`."""
    """Encode one RecordBatch v2 from parallel lists (values required; the rest optional).

    keys/values items are bytes-like or None; timestamps are epoch ms (default: now,
    or `timestamp`); headers are per record a list of (str, bytes|None) pairs or a dict.

    The cleaner rewrites batches with the rest: `offset_deltas` (records keep their
    offsets, with gaps), `last_offset_delta` (kept from the original batch),
    `base_timestamp` (a delete horizon: record timestamps become deltas from it),
    `max_timestamp` and `extra_attributes` (LogAppendTime, delete-horizon bits)."""
    try:
        n = len(values)
    except TypeError:
        raise TypeError(f"values must be a list of bytes or None, not {type(values).__name__}") from None
    if n == 0:
        raise ValueError("a batch needs at least one record")
    if keys is None:
        keys = repeat(None, n)      # only the slow path below iterates it
        key_blob, key_lens = b"", array("i", [-1]) * n
    else:
        if len(keys) != n:
            raise ValueError(f"{len(keys)} keys for {n} values")
        key_blob, key_lens = _as_bytes_list(keys, "key")
    value_blob, value_lens = _as_bytes_list(values, "value")
    if timestamps is None:
        ts = now_ms() if timestamp is None else timestamp
        if not isinstance(ts, int) or isinstance(ts, bool) or not -2**63 <= ts < 2**63:
            raise ValueError(f"timestamp must be an int64 (epoch milliseconds), not {ts!r}")
        base_ts = max_ts = ts
        ts_arr = hp.NULL
    else:
        if len(timestamps) != n:
            raise ValueError(f"{len(timestamps)} timestamps for {n} values")
        try:
            ts_arr = array("q", timestamps)
        except TypeError:
            raise TypeError("timestamps must be integers (epoch milliseconds)") from None
        except OverflowError:
            raise ValueError("timestamps must fit a signed 64-bit integer (epoch milliseconds)") from None
        base_ts = ts_arr[0]
        max_ts = max(ts_arr)
        ts_arr = hp.i64(ts_arr)
    if base_timestamp is not None:
        if timestamps is None:
            ts_arr = hp.i64(array("q", [base_ts]) * n)
        base_ts = base_timestamp
    if max_timestamp is not None:
        max_ts = max_timestamp
    if offset_deltas is not None:
        if len(offset_deltas) != n:
            raise ValueError(f"{len(offset_deltas)} offset deltas for {n} values")
        od_ptr = hp.i32(array("i", offset_deltas))
    else:
        od_ptr = hp.NULL
    if encoded_headers is not None:
        hdr_blob, hdr_lens = encoded_headers
        hdr_ptr, hdr_lens_ptr = hdr_blob, hp.i32(hdr_lens)
    elif headers is not None:
        if len(headers) != n:
            raise ValueError(f"{len(headers)} header lists for {n} values")
        encoded = [encode_headers(h) for h in headers]
        hdr_blob = b"".join(encoded)
        hdr_lens = array("i", map(len, encoded))
        hdr_ptr, hdr_lens_ptr = hdr_blob, hp.i32(hdr_lens)
    else:
        hdr_blob = b""
        hdr_ptr = hdr_lens_ptr = hp.NULL
    cap = HEADER_SIZE + len(key_blob) + len(value_blob) + len(hdr_blob) + n * MAX_RECORD_OVERHEAD
    buf = bytearray(cap)
    cbuf = hp.from_buffer(buf)
    written = hp.lib.el_encode_records(
        cbuf + HEADER_SIZE, cap - HEADER_SIZE, key_blob, len(key_blob), hp.i32(key_lens),
        value_blob, len(value_blob), hp.i32(value_lens), ts_arr, base_ts, hdr_ptr, hdr_lens_ptr, od_ptr, n)
    if written == -2:   # some memoryview of wider items: lengths in items, not bytes
        key_blob, key_lens = _as_bytes_list_slow(list(keys), "key")
        value_blob, value_lens = _as_bytes_list_slow(values, "value")
        written = hp.lib.el_encode_records(
            cbuf + HEADER_SIZE, cap - HEADER_SIZE, key_blob, len(key_blob), hp.i32(key_lens),
            value_blob, len(value_blob), hp.i32(value_lens), ts_arr, base_ts, hdr_ptr, hdr_lens_ptr, od_ptr, n)
    del cbuf
    buf, total = finish_records(buf, written, n, compression=compression, transactional=transactional,
                                extra_attributes=extra_attributes, base_offset=base_offset,
                                partition_leader_epoch=partition_leader_epoch,
                                last_offset_delta=n - 1 if last_offset_delta is None else last_offset_delta,
                                base_timestamp=base_ts, max_timestamp=max_ts, producer_id=producer_id,
                                producer_epoch=producer_epoch, base_sequence=base_sequence)
    del buf[total:]
    return buf


def finish_records(buf: bytearray, written: int, n: int, *, compression: int, transactional: bool = False,
                   extra_attributes: int = 0, **fields) -> tuple[bytearray, int]:
    """Make a batch of the n records el_encode_records wrote (`written` bytes) after the
    header room of `buf`: compress them (into a new buffer) when asked, then fill the
    header (`fields`: el_batch_header's, records_count aside) and its CRC. Returns the
    buffer that holds the batch and the batch's length, from byte 0; `buf` itself (not
    trimmed: a caller may reuse it) unless compressed."""
    if written < 0:  # cannot happen with the caller's bound (HEADER_SIZE + blobs + n * MAX_RECORD_OVERHEAD)
        raise AssertionError("record encoding overflowed its buffer")
    if compression:
        body = _compression.compress(compression, memoryview(buf)[HEADER_SIZE:HEADER_SIZE + written])
        buf = bytearray(HEADER_SIZE) + body
        total = len(buf)
    else:
        total = HEADER_SIZE + written
    attributes = (compression & ATTR_COMPRESSION) | (ATTR_TRANSACTIONAL if transactional else 0) | extra_attributes
    cbuf = hp.from_buffer(buf)
    finish_batch(cbuf, total, attributes=attributes, records_count=n, **fields)
    del cbuf
    return buf, total


def rebuild_batch(h: BatchHeader, cols: Columns, keep, *, delete_horizon: int | None = None):
    """The batch `h` reduced to the records at indices `keep` of its decoded columns, as
    Kafka's cleaner rewrites a v2 batch: baseOffset, lastOffsetDelta, producer id, epoch
    and base sequence, partitionLeaderEpoch, codec and timestamp type are kept; each
    kept record keeps its offset (the offsetDeltas get gaps), timestamp and headers.
    `delete_horizon` (ms) marks the batch's tombstones as removable after it (attribute
    bit 6, the horizon in baseTimestamp, KIP-534); a batch that has one keeps it.
    Returns None when nothing is kept."""
    if not keep:
        return None
    base = h.base_offset
    extra = h.attributes & (ATTR_LOG_APPEND_TIME | ATTR_DELETE_HORIZON)
    if h.attributes & ATTR_DELETE_HORIZON:
        delete_horizon = h.base_timestamp
    elif delete_horizon is not None:
        extra |= ATTR_DELETE_HORIZON
    timestamps = [cols.timestamps[i] for i in keep]
    hdrs = [cols.headers[i] for i in keep]
    return encode_batch(
        [cols.values[i] for i in keep], [cols.keys[i] for i in keep], timestamps,
        hdrs if any(hdrs) else None, compression=h.compression,
        producer_id=h.producer_id, producer_epoch=h.producer_epoch, base_sequence=h.base_sequence,
        transactional=h.is_transactional, base_offset=base, partition_leader_epoch=h.partition_leader_epoch,
        offset_deltas=[cols.offsets[i] - base for i in keep], last_offset_delta=h.last_offset_delta,
        base_timestamp=delete_horizon,
        max_timestamp=h.max_timestamp if h.log_append_time else max(timestamps),
        extra_attributes=extra)


def finish_batch(cbuf, total: int, **fields) -> None:
    h = hp.new("el_batch_header *")
    for name, value in fields.items():
        setattr(h, name, value)
    hp.lib.el_finish_batch(cbuf, total, h)


# ---------------------------------------------------------------- decoding

def _header_tuple(h) -> BatchHeader:
    return BatchHeader(h.base_offset, h.batch_length, h.partition_leader_epoch, h.magic, h.crc,
                       h.attributes, h.last_offset_delta, h.base_timestamp, h.max_timestamp,
                       h.producer_id, h.producer_epoch, h.base_sequence, h.records_count)


def parse_header(buf, position: int = 0, *, verify_crc: bool = True, path=None,
                 file_position: int | None = None) -> BatchHeader:
    """Header of the whole batch at buf[position:]; CorruptRecordError if it is not one."""
    h = hp.new("el_batch_header *")
    try:
        cbuf = hp.from_buffer(buf)
    except TypeError:
        raise TypeError(f"a batch must be a bytes-like object, not {type(buf).__name__}") from None
    rc = hp.lib.el_parse_header(cbuf + position, len(buf) - position, 1 if verify_crc else 0, h)
    if rc:
        where = file_position if file_position is not None else position
        loc = f" in {path}" if path is not None else ""
        raise CorruptRecordError(f"{hp.REASONS[rc]}{loc} at position {where}", path=path, position=where)
    return _header_tuple(h)


def peek_header(buf, position: int = 0) -> BatchHeader | None:
    """Header fields without checks (None if fewer than 61 bytes)."""
    if len(buf) - position < HEADER_SIZE:
        return None
    h = hp.new("el_batch_header *")
    hp.lib.el_parse_header(hp.from_buffer(buf) + position, HEADER_SIZE, 0, h)
    return _header_tuple(h)


def _decode_headers(buf, pos: int, count: int) -> tuple:
    out = []
    for _ in range(count):
        kl, pos = decode_varint(buf, pos)
        key = bytes(buf[pos:pos + kl]).decode("utf-8", errors="surrogateescape")
        pos += kl
        vl, pos = decode_varint(buf, pos)
        if vl < 0:
            out.append((key, None))
        else:
            out.append((key, bytes(buf[pos:pos + vl])))
            pos += vl
    return tuple(out)


_new_raw = hp.ffi.new_allocator(should_clear_after_alloc=False)   # C fills what it returns


def _marshal_works() -> bool:
    """Whether this interpreter's marshal reads el_marshal_columns' stream (its bytes, None,
    list and tuple codes are marshal version 0's; checked once rather than assumed)."""
    src = b"kvalue"
    ints = hp.new("int32_t[]", [0, 0, 1, -1, 1, 0, 5, 0])    # key off/len, value off/len
    out = hp.new("char[]", 64)
    m = hp.lib.el_marshal_columns(src, ints, ints + 2, ints + 4, ints + 6, 2, out, 64)
    try:
        return m > 0 and marshal.loads(hp.ffi.buffer(out, m)) == ([b"k", None], [b"value", b""])
    except (ValueError, EOFError, TypeError):
        return False


_MARSHAL_OK = _marshal_works()


class Columns(NamedTuple):
    """A decoded batch as parallel lists (the fast path for bulk readers)."""

    offsets: list
    timestamps: list
    keys: list
    values: list
    headers: list


def decode_columns(buf: bytes, position: int, header: BatchHeader, *, path=None,
                   file_position: int | None = None) -> Columns:
    """Decode the records of the (already CRC-checked) batch at buf[position:]."""
    n = header.records_count
    where = file_position if file_position is not None else position
    if n == 0:
        return Columns([], [], [], [], [])
    if header.compression:
        body = _compression.decompress(
            header.compression, memoryview(buf)[position + HEADER_SIZE:position + header.size],
            path=path, position=where)
        data, origin = body, 0
        cptr, length = hp.from_buffer(body), len(body)
    else:
        data, origin = buf, position + HEADER_SIZE
        cptr, length = hp.from_buffer(buf) + origin, header.size - HEADER_SIZE
    if n < 0 or n > length:
        raise CorruptRecordError(f"impossible record count {n}{' in ' + str(path) if path else ''} "
                                 f"at position {where}", path=path, position=where)
    ts_delta = hp.new("int64_t[]", n)
    ints = hp.new("int32_t[]", 7 * n)
    flags = hp.lib.el_parse_records(cptr, length, n, origin, ts_delta, ints, ints + n, ints + 2 * n,
                                    ints + 3 * n, ints + 4 * n, ints + 5 * n, ints + 6 * n)
    if flags < 0:
        raise CorruptRecordError(f"{hp.REASONS[flags]}{' in ' + str(path) if path else ''} "
                                 f"at position {where}", path=path, position=where)
    iv = memoryview(hp.ffi.buffer(ints)).cast("i")
    base = header.base_offset
    if flags & 2:                      # offset deltas 0..n-1 (always, unless compacted)
        deltas_ok = n - 1 <= header.last_offset_delta
        offsets = list(range(base, base + n))
    else:
        deltas = iv[0:n].tolist()
        # Compacted batches keep their records' offsets, with gaps: still increasing, and
        # within the batch's [baseOffset, lastOffset] (the CRC covers both, not their agreement).
        deltas_ok = deltas[-1] <= header.last_offset_delta and all(map(int.__lt__, deltas, deltas[1:]))
        offsets = [base + d for d in deltas]
    if not deltas_ok:
        raise CorruptRecordError(f"malformed records section{' in ' + str(path) if path else ''} at position "
                                 f"{where}: record offsets outside the batch's {base}..{header.last_offset} "
                                 "or out of order", path=path, position=where)
    if header.log_append_time:
        timestamps = [header.max_timestamp] * n
    elif flags & 1:                    # one timestamp for the batch (a producer's usual batch)
        timestamps = [header.base_timestamp] * n
    else:
        bts = header.base_timestamp
        timestamps = [bts + d for d in memoryview(hp.ffi.buffer(ts_delta)).cast("q").tolist()]
    if _MARSHAL_OK:
        # Every key and value (None for a null) cut by C into one marshal stream that
        # marshal.loads turns into the two lists: no struct format to compile, no tuple
        # to slice, and null keys take the same path (#17).
        cap = 15 + 10 * n + length
        stream = _new_raw("char[]", cap)
        m = hp.lib.el_marshal_columns(cptr - origin, ints + n, ints + 2 * n, ints + 3 * n, ints + 4 * n,
                                      n, stream, cap)
        if m < 0:   # cannot happen: every field lies inside the records section
            raise AssertionError("record columns overflowed their buffer")
        keys, values = marshal.loads(hp.ffi.buffer(stream, m))
    else:
        ko, kl, vo, vl = (iv[k * n:(k + 1) * n].tolist() for k in range(1, 5))
        keys = [data[o:o + l] if l >= 0 else None for o, l in zip(ko, kl)]
        values = [data[o:o + l] if l >= 0 else None for o, l in zip(vo, vl)]
    if flags & 16:
        headers = [_EMPTY] * n
    else:
        ho, hcount = iv[5 * n:6 * n].tolist(), iv[6 * n:7 * n].tolist()
        headers = [_decode_headers(data, o, c) if c else _EMPTY for o, c in zip(ho, hcount)]
    return Columns(offsets, timestamps, keys, values, headers)


def decode_records(buf: bytes, position: int = 0, header: BatchHeader | None = None, **kw) -> list[Record]:
    if header is None:
        header = parse_header(buf, position)
    return [tuple.__new__(Record, r) for r in zip(*decode_columns(buf, position, header, **kw))]


def iter_batches(buf: bytes, *, verify_crc: bool = True, path=None, base_position: int = 0):
    """Yield (position, header) for each whole batch in buf; a trailing partial batch
    (a byte-limited read) is ignored, damage raises CorruptRecordError."""
    pos = 0
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        h = peek_header(buf, pos)
        if h.magic == MAGIC and h.batch_length >= HEADER_SIZE - LOG_OVERHEAD and pos + h.size > end:
            return  # partial batch at the end of a byte-limited read
        header = parse_header(buf, pos, verify_crc=verify_crc, path=path,
                              file_position=base_position + pos)
        yield pos, header
        pos += header.size
