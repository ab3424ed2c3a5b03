"""PostgreSQL column types -> Connect schemas and values, as Debezium's PostgreSQL connector
maps them (its defaults: decimal.handling.mode=precise, time.precision.mode=adaptive,
binary.handling.mode=bytes).

    int2 / int4 / int8 / oid      int16 / int32 / int64
    bool                          boolean
    float4 / float8               float32 / float64
    text, varchar, bpchar, name   string
    numeric(p, s)                 bytes org.apache.kafka.connect.data.Decimal {scale, connect.decimal.precision}
                                  (the unscaled value, big-endian two's complement)
    numeric (no typmod)           struct io.debezium.data.VariableScaleDecimal {scale: int32, value: bytes}
                                  decimal.handling.mode=string: string; double: float64
    date                          int32 io.debezium.time.Date (days since 1970-01-01)
    time                          int64 io.debezium.time.MicroTime (us since midnight)
    timestamp                     int64 io.debezium.time.MicroTimestamp (us since 1970-01-01)
    timestamptz                   string io.debezium.time.ZonedTimestamp (ISO-8601, UTC, "Z")
    json / jsonb                  string io.debezium.data.Json
    uuid                          string io.debezium.data.Uuid
    bytea                         bytes
    anything else                 string (its text form)

Values arrive as text (pgoutput's tuple data, or `col::text` in the snapshot, both under
TimeZone=UTC and DateStyle=ISO). A TOASTed value an update left unchanged becomes Debezium's
placeholder `__debezium_unavailable_value` (as bytes for bytes columns).
"""
from __future__ import annotations

import datetime
import decimal
import re

from ._data import field, primitive, struct

UNAVAILABLE = "__debezium_unavailable_value"

BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID, JSON = 16, 17, 18, 19, 20, 21, 23, 25, 26, 114
FLOAT4, FLOAT8, BPCHAR, VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ = 700, 701, 1042, 1043, 1082, 1083, 1114, 1184
NUMERIC, UUID, JSONB = 1700, 2950, 3802

_EPOCH_DATE = datetime.date(1970, 1, 1)


def _bool(t: str) -> bool:
    return t in ("t", "true")


def _bytea(t: str) -> bytes:
    if t.startswith("\\x"):
        return bytes.fromhex(t[2:])
    return t.encode("latin-1")                      # bytea_output=escape is not used (we set hex)


def _date(t: str) -> int:
    return (datetime.date.fromisoformat(t) - _EPOCH_DATE).days


def _time(t: str) -> int:
    tm = datetime.time.fromisoformat(t) if t != "24:00:00" else None
    if tm is None:
        return 86_400_000_000
    return ((tm.hour * 60 + tm.minute) * 60 + tm.second) * 1_000_000 + tm.microsecond


def _parse_ts(t: str) -> datetime.datetime:
    # PostgreSQL's ISO output: "2024-01-02 03:04:05.123456" with "+00" (UTC) for timestamptz;
    # years past 9999 or BC do not fit Python's datetime and stay out of scope here.
    if t.endswith("+00"):
        t = t[:-3] + "+00:00"
    return datetime.datetime.fromisoformat(t)


def _micro_timestamp(t: str) -> int:
    d = _parse_ts(t).replace(tzinfo=datetime.timezone.utc)
    return (d - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)


_UTC_TS = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d{1,6})?\+00")


def _zoned(t: str) -> str:
    m = _UTC_TS.fullmatch(t)
    if m is not None:                               # PostgreSQL's UTC text: rearranged, not parsed
        frac = (m.group(3) or "").rstrip("0")
        return f"{m.group(1)}T{m.group(2)}{frac if len(frac) > 1 else ''}Z"
    d = _parse_ts(t).astimezone(datetime.timezone.utc)
    s = d.strftime("%Y-%m-%dT%H:%M:%S")
    if d.microsecond:
        s += f".{d.microsecond:06d}".rstrip("0")
    return s + "Z"


_PLAIN_DECIMAL = re.compile(r"-?(\d+)(?:\.(\d*))?")


def _unscaled_text(t: str, scale: int) -> bytes:
    """numeric(p, s)'s text (s digits after the point, as PostgreSQL writes it) to the
    unscaled bytes without a Decimal; other forms (NaN, more digits) through _unscaled."""
    m = _PLAIN_DECIMAL.fullmatch(t)
    if m is None or len(m.group(2) or "") > scale:
        return _unscaled(decimal.Decimal(t), scale)
    n = int(m.group(1) + (m.group(2) or "").ljust(scale, "0"))
    if t[0] == "-":
        n = -n
    return n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)


def _unscaled(d: decimal.Decimal, scale: int) -> bytes:
    n = int(d.scaleb(scale).to_integral_value(rounding=decimal.ROUND_HALF_UP))
    return n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)


class ColumnType:
    """A column's Connect schema (without its field name) and its text -> value function."""

    __slots__ = ("convert", "placeholder", "schema")

    def __init__(self, schema: dict, convert, placeholder=None):
        self.schema, self.convert, self.placeholder = schema, convert, placeholder


def column_type(oid: int, typmod: int, *, optional: bool, decimal_mode: str = "precise") -> ColumnType:
    def p(type_, **kw):
        return primitive(type_, optional=optional, **kw)

    if oid == INT2:
        return ColumnType(p("int16"), int)
    if oid in (INT4,):
        return ColumnType(p("int32"), int)
    if oid in (INT8, OID):
        return ColumnType(p("int64"), int)
    if oid == BOOL:
        return ColumnType(p("boolean"), _bool)
    if oid == FLOAT4:
        return ColumnType(p("float"), float)
    if oid == FLOAT8:
        return ColumnType(p("double"), float)
    if oid == BYTEA:
        return ColumnType(p("bytes"), _bytea, UNAVAILABLE.encode())
    if oid == DATE:
        return ColumnType(p("int32", name="io.debezium.time.Date", version=1), _date)
    if oid == TIME:
        return ColumnType(p("int64", name="io.debezium.time.MicroTime", version=1), _time)
    if oid == TIMESTAMP:
        return ColumnType(p("int64", name="io.debezium.time.MicroTimestamp", version=1), _micro_timestamp)
    if oid == TIMESTAMPTZ:
        return ColumnType(p("string", name="io.debezium.time.ZonedTimestamp", version=1), _zoned)
    if oid in (JSON, JSONB):
        return ColumnType(p("string", name="io.debezium.data.Json", version=1), str, UNAVAILABLE)
    if oid == UUID:
        return ColumnType(p("string", name="io.debezium.data.Uuid", version=1), str)
    if oid == NUMERIC:
        if decimal_mode == "string":
            return ColumnType(p("string"), str, UNAVAILABLE)
        if decimal_mode == "double":
            return ColumnType(p("double"), float)
        if typmod >= 4:
            precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
            return ColumnType(p("bytes", name="org.apache.kafka.connect.data.Decimal", version=1,
                                parameters={"scale": str(scale), "connect.decimal.precision": str(precision)}),
                              lambda t: _unscaled_text(t, scale))
        return ColumnType(struct("io.debezium.data.VariableScaleDecimal",
                                 [field("scale", primitive("int32", optional=False)),
                                  field("value", primitive("bytes", optional=False))],
                                 optional=optional, doc="Variable scaled decimal") | {"version": 1},
                          _variable_scale)
    return ColumnType(p("string"), str, UNAVAILABLE)


def _variable_scale(t: str) -> dict:
    d = decimal.Decimal(t)
    scale = max(0, -d.as_tuple().exponent) if d.is_finite() else 0
    return {"scale": scale, "value": _unscaled(d, scale)}


def zero(schema: dict):
    """The value a non-optional field takes when PostgreSQL did not send it (the columns of a
    DEFAULT replica identity's old row that are not the key)."""
    return {"int16": 0, "int32": 0, "int64": 0, "float": 0.0, "double": 0.0, "boolean": False,
            "string": "", "bytes": b""}.get(schema["type"])
