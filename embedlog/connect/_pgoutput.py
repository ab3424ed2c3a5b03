"""pgoutput's logical replication messages (protocol version 1), decoded from bytes.

PostgreSQL's "Logical Replication Message Formats": every message is one byte of type then
big-endian fields; strings are NUL-terminated UTF-8.

    B Begin     final_lsn:i64 (the commit record's LSN) commit_ts:i64 (us since 2000-01-01) xid:i32
    C Commit    flags:i8 commit_lsn:i64 end_lsn:i64 commit_ts:i64
    O Origin    lsn:i64 name:str
    R Relation  relid:i32 namespace:str name:str replica_identity:i8 ('d','n','f','i') ncols:i16
                then per column: flags:i8 (1: part of the replica identity) name:str type_oid:i32 typmod:i32
    Y Type      oid:i32 namespace:str name:str
    I Insert    relid:i32 'N' tuple
    U Update    relid:i32 ['K' key tuple | 'O' old tuple] 'N' tuple
    D Delete    relid:i32 ('K' key tuple | 'O' old tuple)
    T Truncate  nrels:i32 options:i8 (1 CASCADE, 2 RESTART IDENTITY) relid:i32 * nrels
    tuple       ncols:i16 then per column: 'n' (NULL) | 'u' (unchanged TOASTed value) | 't' len:i32 text

A column's value is its text output (the type's output function, in the walsender's
TimeZone/DateStyle), as bytes; `UNCHANGED` stands for a TOASTed value the update did not
touch (PostgreSQL does not send it). Pure functions, no I/O.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from ._data import ConnectError

UNCHANGED = object()
PG_EPOCH_US = 946_684_800_000_000          # 2000-01-01 in microseconds since 1970-01-01


class Begin(NamedTuple):
    final_lsn: int
    commit_ts_us: int                      # since 1970-01-01
    xid: int


class Commit(NamedTuple):
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts_us: int


class Origin(NamedTuple):
    lsn: int
    name: str


class Column(NamedTuple):
    flags: int
    name: str
    type_oid: int
    typmod: int


class Relation(NamedTuple):
    relid: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple


class Type(NamedTuple):
    oid: int
    namespace: str
    name: str


class Insert(NamedTuple):
    relid: int
    new: tuple


class Update(NamedTuple):
    relid: int
    old_kind: str | None                   # 'K' (key columns only), 'O' (the whole old row) or None
    old: tuple | None
    new: tuple


class Delete(NamedTuple):
    relid: int
    old_kind: str
    old: tuple


class Truncate(NamedTuple):
    options: int
    relids: tuple


_I16, _I32, _U32, _I64, _U64 = (struct.Struct(f) for f in (">h", ">i", ">I", ">q", ">Q"))


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def byte(self) -> str:
        b = self.buf[self.pos:self.pos + 1]
        if not b:
            raise ConnectError("pgoutput message ends early")
        self.pos += 1
        return chr(b[0])

    def _num(self, s: struct.Struct) -> int:
        try:
            (v,) = s.unpack_from(self.buf, self.pos)
        except struct.error:
            raise ConnectError("pgoutput message ends early") from None
        self.pos += s.size
        return v

    def i8(self) -> int:
        return ord(self.byte())

    def i16(self) -> int:
        return self._num(_I16)

    def i32(self) -> int:
        return self._num(_I32)

    def u32(self) -> int:
        return self._num(_U32)

    def i64(self) -> int:
        return self._num(_I64)

    def u64(self) -> int:
        return self._num(_U64)

    def string(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise ConnectError("pgoutput string without its NUL")
        s = self.buf[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return s

    def tuple(self) -> tuple:
        values, self.pos = tuple_at(self.buf, self.pos)
        return values


_N, _U, _T, _B = b"nutb"


def tuple_at(buf: bytes, pos: int) -> tuple[tuple, int]:
    """The tuple at `pos` and the position after it: one loop over the message, a column's
    text a slice of it (bytes), None for NULL, UNCHANGED for an untouched TOASTed value."""
    try:
        (n,) = _I16.unpack_from(buf, pos)
        pos += 2
        out = []
        append, size_at = out.append, _I32.unpack_from
        for _ in range(n):
            kind = buf[pos]
            if kind == _T or kind == _B:
                (size,) = size_at(buf, pos + 1)
                pos += 5
                if pos + size > len(buf):
                    raise ConnectError("pgoutput message ends early")
                append(buf[pos:pos + size])
                pos += size
            elif kind == _N:
                append(None)
                pos += 1
            elif kind == _U:
                append(UNCHANGED)
                pos += 1
            else:
                raise ConnectError(f"pgoutput tuple column of unknown kind {chr(kind)!r}")
    except (IndexError, struct.error):
        raise ConnectError("pgoutput message ends early") from None
    return tuple(out), pos


def decode(data: bytes):
    """One pgoutput message -> Begin, Commit, Origin, Relation, Type, Insert, Update, Delete
    or Truncate; None for the message kinds a version-1 stream may carry that CDC ignores
    ('M' logical decoding messages)."""
    if type(data) is not bytes:
        data = bytes(data)
    if data[:1] == b"I" and data[5:6] == b"N":        # most of a stream: its own short path
        return Insert(_U32.unpack_from(data, 1)[0], tuple_at(data, 6)[0])
    r = _Reader(data)
    kind = r.byte()
    if kind == "B":
        return Begin(r.u64(), r.i64() + PG_EPOCH_US, r.u32())
    if kind == "C":
        return Commit(r.i8(), r.u64(), r.u64(), r.i64() + PG_EPOCH_US)
    if kind == "I":
        relid = r.u32()
        if r.byte() != "N":
            raise ConnectError("pgoutput Insert without its new tuple")
        return Insert(relid, r.tuple())
    if kind == "U":
        relid = r.u32()
        k = r.byte()
        old_kind = old = None
        if k in ("K", "O"):
            old_kind, old = k, r.tuple()
            k = r.byte()
        if k != "N":
            raise ConnectError("pgoutput Update without its new tuple")
        return Update(relid, old_kind, old, r.tuple())
    if kind == "D":
        relid = r.u32()
        k = r.byte()
        if k not in ("K", "O"):
            raise ConnectError("pgoutput Delete without its old tuple")
        return Delete(relid, k, r.tuple())
    if kind == "R":
        relid, ns, name, ident, n = r.u32(), r.string(), r.string(), r.byte(), r.i16()
        cols = tuple(Column(r.i8(), r.string(), r.u32(), r.i32()) for _ in range(n))
        return Relation(relid, ns, name, ident, cols)
    if kind == "Y":
        return Type(r.u32(), r.string(), r.string())
    if kind == "O":
        return Origin(r.u64(), r.string())
    if kind == "T":
        n, opts = r.i32(), r.i8()
        return Truncate(opts, tuple(r.u32() for _ in range(n)))
    if kind == "M":
        return None
    raise ConnectError(f"unknown pgoutput message type {kind!r} (protocol version 1 expected)")
