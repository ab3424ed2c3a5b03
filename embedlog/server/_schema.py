"""Kafka's protocol messages, encoded and decoded from Kafka's own message-schema JSON
(`messages/*.json`, copied from apache/kafka `clients/src/main/resources/common/message/`).

Nothing here is written per message: a schema file and a version compile once into a
pair of closures (decode, encode) over plain dicts whose keys are the schema's field
names in snake_case (`ProducerId` -> `producer_id`). The rules (kafka-format.md §8.2):

- classic encodings below a message's `flexibleVersions`: int16-length strings, int32
  bytes and arrays, -1 for null;
- flexible versions: compact strings, bytes and arrays (unsigned varint N+1, 0 = null)
  and a tagged-field section at the end of every struct; unknown tags are skipped;
  fields with a `tag` exist only there and are written when they differ from their default;
- a field's own `flexibleVersions` overrides the message's (RequestHeader's ClientId is
  never compact, so an old broker can read it);
- `records` fields are handed out as memoryviews of the request (no copy) and written
  as separate buffers (a fetch response's stored bytes are never copied into a join).

A malformed buffer raises DecodeError naming the message, the field and the position.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import re
import struct

HERE = os.path.join(os.path.dirname(__file__), "messages")


class DecodeError(ValueError):
    """A request that does not parse: truncated, a length past the end, bad UTF-8."""


class SchemaError(Exception):
    """A schema file this interpreter cannot read (a bug, never a client's fault)."""


# ------------------------------------------------------------------ versions

def parse_versions(spec: str | None) -> tuple[int, int]:
    """'0+' -> (0, big), '3-5' -> (3, 5), '7' -> (7, 7), 'none'/None -> empty."""
    if spec is None or spec == "none":
        return (1, 0)
    if spec.endswith("+"):
        return (int(spec[:-1]), 1 << 15)
    if "-" in spec:
        lo, hi = spec.split("-")
        return (int(lo), int(hi))
    return (int(spec), int(spec))


def _in(rng: tuple[int, int], v: int) -> bool:
    return rng[0] <= v <= rng[1]


_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(name: str) -> str:
    return _SNAKE.sub("_", name).lower()


def load_json(name: str) -> dict:
    """A schema file, its `//` comment lines (the licence and version history) dropped."""
    path = os.path.join(HERE, name + ".json")
    with open(path, encoding="utf-8") as f:
        text = "\n".join(line for line in f.read().splitlines() if not line.lstrip().startswith("//"))
    return json.loads(text)


# ------------------------------------------------------------------ primitive codecs

_I8, _I16, _I32, _I64 = struct.Struct(">b"), struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")
_U16, _U32, _F64 = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">d")
_FIXED = {"int8": _I8, "int16": _I16, "int32": _I32, "int64": _I64, "uint16": _U16,
          "uint32": _U32, "float64": _F64}
ZERO_UUID = bytes(16)


def read_uvarint(buf, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise DecodeError("varint longer than 5 bytes")


def write_uvarint(out: bytearray, value: int):
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


class Writer:
    """A bytearray for the small fields and a list of parts, so that large buffers
    (records) are passed to the socket as they are."""

    __slots__ = ("buf", "parts", "size")
    BIG = 4096

    def __init__(self):
        self.buf = bytearray()
        self.parts = []
        self.size = 0

    def raw(self, data):
        n = len(data)
        if n >= self.BIG:
            if self.buf:
                self.parts.append(self.buf)
                self.size += len(self.buf)
                self.buf = bytearray()
            self.parts.append(data)
            self.size += n
        else:
            self.buf += data

    def finish(self) -> list:
        if self.buf:
            self.parts.append(self.buf)
            self.size += len(self.buf)
            self.buf = bytearray()
        return self.parts

    def getvalue(self) -> bytes:
        return b"".join(bytes(p) for p in self.finish())


# ------------------------------------------------------------------ field model

class Field:
    __slots__ = ("name", "key", "type", "versions", "nullable", "tagged", "tag", "flexible",
                 "fields", "default", "item", "is_array", "ignorable")

    def __init__(self, spec: dict, structs: dict):
        self.name = spec["name"]
        self.key = snake(self.name)
        t = spec["type"]
        self.is_array = t.startswith("[]")
        self.item = t[2:] if self.is_array else t
        self.type = t
        self.versions = parse_versions(spec.get("versions"))
        self.nullable = parse_versions(spec.get("nullableVersions"))
        self.tagged = parse_versions(spec.get("taggedVersions"))
        self.tag = None if spec.get("tag") is None else int(spec["tag"])   # BrokerHeartbeatRequest: "0"
        self.flexible = parse_versions(spec["flexibleVersions"]) if "flexibleVersions" in spec else None
        self.ignorable = spec.get("ignorable", False)
        sub = spec.get("fields")
        if sub is None and self.item in structs:
            sub = structs[self.item]
        self.fields = [Field(f, structs) for f in sub] if sub is not None else None
        if self.fields is None and self.item not in _PRIMS:
            raise SchemaError(f"unknown type {t!r} of field {self.name}")
        self.default = self._default(spec.get("default"))

    def _default(self, d):
        if d == "null":
            return None
        if self.is_array:
            return []
        if self.fields is not None:
            return None        # a struct field: built from its fields' defaults on demand
        t = self.item
        if t == "bool":
            return d in (True, "true")
        if t in ("string",):
            return "" if d is None else d
        if t in ("bytes", "records"):
            return b""
        if t == "uuid":
            return ZERO_UUID
        if t == "float64":
            return float(d) if d is not None else 0.0
        if d is None or d == "":
            return 0
        return int(d, 0) if isinstance(d, str) else int(d)


_PRIMS = {"bool", "int8", "int16", "int32", "int64", "uint16", "uint32", "float64", "string",
          "bytes", "records", "uuid"}


def _active(fields, version):
    return [f for f in fields if _in(f.versions, version)]


def field_default(f: Field, version: int):
    """A field's value when absent: its schema default; a non-nullable struct's is the
    struct of its fields' defaults; a fresh list for arrays."""
    if f.fields is not None and not f.is_array and f.default is None and not _in(f.nullable, version):
        return struct_defaults(f.fields, version)
    return [] if isinstance(f.default, list) else f.default


def struct_defaults(fields, version) -> dict:
    return {f.key: field_default(f, version) for f in _active(fields, version)}


# ------------------------------------------------------------------ decoder compiler

def _prim_decoder(t: str, compact: bool, nullable: bool, where: str):
    if t in _FIXED:
        s = _FIXED[t]
        size, unpack = s.size, s.unpack_from

        def dec(buf, pos):
            if pos + size > len(buf):
                raise DecodeError(f"{where}: truncated at byte {pos}")
            return unpack(buf, pos)[0], pos + size
        return dec
    if t == "bool":
        def dec(buf, pos):
            if pos >= len(buf):
                raise DecodeError(f"{where}: truncated at byte {pos}")
            return buf[pos] != 0, pos + 1
        return dec
    if t == "uuid":
        def dec(buf, pos):
            if pos + 16 > len(buf):
                raise DecodeError(f"{where}: truncated at byte {pos}")
            return bytes(buf[pos:pos + 16]), pos + 16
        return dec
    is_str = t == "string"
    is_records = t == "records"

    def dec(buf, pos):
        if compact:
            n, pos = read_uvarint(buf, pos)
            n -= 1
        elif is_str:
            if pos + 2 > len(buf):
                raise DecodeError(f"{where}: truncated at byte {pos}")
            n = _I16.unpack_from(buf, pos)[0]
            pos += 2
        else:
            if pos + 4 > len(buf):
                raise DecodeError(f"{where}: truncated at byte {pos}")
            n = _I32.unpack_from(buf, pos)[0]
            pos += 4
        if n < 0:
            if n == -1 and nullable:
                return None, pos
            raise DecodeError(f"{where}: length {n} at byte {pos} (not nullable here)")
        end = pos + n
        if end > len(buf):
            raise DecodeError(f"{where}: length {n} at byte {pos} runs past the end ({len(buf)} bytes)")
        if is_str:
            try:
                return str(buf[pos:end], "utf-8"), end
            except UnicodeDecodeError as e:
                raise DecodeError(f"{where}: invalid UTF-8 at byte {pos}: {e}") from None
        if is_records:
            return buf[pos:end], end           # a memoryview of the request: no copy
        return bytes(buf[pos:end]), end
    return dec


def _field_decoder(f: Field, version: int, flexible: bool, where: str):
    compact = flexible if f.flexible is None else _in(f.flexible, version) and flexible
    nullable = _in(f.nullable, version)
    name = f"{where}.{f.name}"
    if f.fields is not None:
        inner = _struct_decoder(f.fields, version, flexible, name)
    else:
        inner = _prim_decoder(f.item, compact, nullable and not f.is_array, name)
    if not f.is_array:
        if f.fields is not None and nullable:
            def dec(buf, pos):      # a nullable struct: int8 -1 for null, 1 for present
                if pos >= len(buf):
                    raise DecodeError(f"{name}: truncated at byte {pos}")
                if buf[pos] == 0xFF:
                    return None, pos + 1
                return inner(buf, pos + 1)
            return dec
        return inner

    def dec(buf, pos):
        if compact:
            n, pos = read_uvarint(buf, pos)
            n -= 1
        else:
            if pos + 4 > len(buf):
                raise DecodeError(f"{name}: truncated at byte {pos}")
            n = _I32.unpack_from(buf, pos)[0]
            pos += 4
        if n < 0:
            if n == -1 and nullable:
                return None, pos
            raise DecodeError(f"{name}: array length {n} at byte {pos}")
        if n > len(buf) - pos:           # every element takes at least one byte
            raise DecodeError(f"{name}: array of {n} elements at byte {pos} cannot fit in {len(buf)} bytes")
        out = []
        for _ in range(n):
            item, pos = inner(buf, pos)
            out.append(item)
        return out, pos
    return dec


def _struct_decoder(fields, version: int, flexible: bool, where: str):
    active = _active(fields, version)
    plain = [(f.key, _field_decoder(f, version, flexible, where)) for f in active
             if not (flexible and _in(f.tagged, version) and f.tag is not None)]
    tagged = {f.tag: (f.key, _field_decoder(f, version, flexible, where)) for f in active
              if flexible and _in(f.tagged, version) and f.tag is not None}
    defaults = {f.key: field_default(f, version) for f in active
                if f.tag is not None and flexible and _in(f.tagged, version)}

    def dec(buf, pos):
        out = copy.deepcopy(defaults) if defaults else {}
        for key, d in plain:
            out[key], pos = d(buf, pos)
        if flexible:
            count, pos = read_uvarint(buf, pos)
            last = -1
            for _ in range(count):
                tag, pos = read_uvarint(buf, pos)
                size, pos = read_uvarint(buf, pos)
                if tag <= last:
                    raise DecodeError(f"{where}: tagged fields out of order ({tag} after {last})")
                last = tag
                end = pos + size
                if end > len(buf):
                    raise DecodeError(f"{where}: tagged field {tag} of {size} bytes runs past the end")
                known = tagged.get(tag)
                if known is not None:
                    value, stop = known[1](buf[:end], pos)
                    if stop != end:
                        raise DecodeError(f"{where}: tagged field {tag} is {size} bytes, its value {stop - pos}")
                    out[known[0]] = value
                pos = end                       # unknown tags are skipped
        return out, pos
    return dec


# ------------------------------------------------------------------ encoder compiler

def _prim_encoder(t: str, compact: bool, nullable: bool, where: str):
    if t in _FIXED:
        pack = _FIXED[t].pack

        def enc(w, v):
            try:
                w.buf += pack(v)
            except struct.error as e:
                raise ValueError(f"{where}: {v!r}: {e}") from None
        return enc
    if t == "bool":
        def enc(w, v):
            w.buf.append(1 if v else 0)
        return enc
    if t == "uuid":
        def enc(w, v):
            b = bytes(v) if v is not None else ZERO_UUID
            if len(b) != 16:
                raise ValueError(f"{where}: a uuid is 16 bytes, not {len(b)}")
            w.buf += b
        return enc
    is_str = t == "string"

    def enc(w, v):
        if v is None:
            if not nullable:
                raise ValueError(f"{where}: null is not allowed in this version")
            if compact:
                w.buf.append(0)
            else:
                w.buf += b"\xff\xff" if is_str else b"\xff\xff\xff\xff"
            return
        if is_str:
            v = v.encode("utf-8")
        if isinstance(v, (list, tuple)):          # records as several buffers (a fetch)
            n = sum(len(p) for p in v)
        else:
            n = len(v)
        if compact:
            write_uvarint(w.buf, n + 1)
        elif is_str:
            w.buf += _I16.pack(n)
        else:
            w.buf += _I32.pack(n)
        if isinstance(v, (list, tuple)):
            for p in v:
                w.raw(p)
        else:
            w.raw(v)
    return enc


def _field_encoder(f: Field, version: int, flexible: bool, where: str):
    compact = flexible if f.flexible is None else _in(f.flexible, version) and flexible
    nullable = _in(f.nullable, version)
    name = f"{where}.{f.name}"
    if f.fields is not None:
        inner = _struct_encoder(f.fields, version, flexible, name)
    else:
        inner = _prim_encoder(f.item, compact, nullable and not f.is_array, name)
    if not f.is_array:
        if f.fields is not None and nullable:
            def enc(w, v):
                if v is None:
                    w.buf.append(0xFF)
                else:
                    w.buf.append(1)
                    inner(w, v)
            return enc
        return inner

    def enc(w, v):
        if v is None:
            if not nullable:
                raise ValueError(f"{name}: null array is not allowed in this version")
            if compact:
                w.buf.append(0)
            else:
                w.buf += b"\xff\xff\xff\xff"
            return
        if compact:
            write_uvarint(w.buf, len(v) + 1)
        else:
            w.buf += _I32.pack(len(v))
        for item in v:
            inner(w, item)
    return enc


def _struct_encoder(fields, version: int, flexible: bool, where: str):
    active = _active(fields, version)
    plain = []
    tagged = []
    for f in active:
        e = _field_encoder(f, version, flexible, where)
        if flexible and _in(f.tagged, version) and f.tag is not None:
            tagged.append((f.tag, f.key, e, field_default(f, version)))
        else:
            plain.append((f.key, e, field_default(f, version)))
    tagged.sort()

    def enc(w, obj):
        get = obj.get
        for key, e, dflt in plain:
            v = get(key, dflt)
            e(w, v)
        if flexible:
            present = []
            for tag, key, e, dflt in tagged:
                v = get(key, dflt)
                if v is not None and v != dflt:
                    present.append((tag, e, v))
            write_uvarint(w.buf, len(present))
            for tag, e, v in present:
                sub = Writer()
                e(sub, v)
                data = sub.getvalue()
                write_uvarint(w.buf, tag)
                write_uvarint(w.buf, len(data))
                w.raw(data)
    return enc


# ------------------------------------------------------------------ messages

class Message:
    """One schema file: its api key, versions, and per-version codecs (compiled lazily)."""

    def __init__(self, name: str):
        spec = load_json(name)
        self.name = spec["name"]
        self.api_key = spec.get("apiKey")
        self.kind = spec["type"]
        self.valid = parse_versions(spec["validVersions"])
        self.flexible = parse_versions(spec.get("flexibleVersions"))
        structs = {s["name"]: s["fields"] for s in spec.get("commonStructs", [])}
        self.fields = [Field(f, structs) for f in spec["fields"]]

    def is_flexible(self, version: int) -> bool:
        return _in(self.flexible, version)

    @functools.lru_cache(maxsize=None)
    def decoder(self, version: int):
        return _struct_decoder(self.fields, version, self.is_flexible(version), f"{self.name} v{version}")

    @functools.lru_cache(maxsize=None)
    def encoder(self, version: int):
        return _struct_encoder(self.fields, version, self.is_flexible(version), f"{self.name} v{version}")

    def decode(self, buf, version: int, pos: int = 0, *, whole: bool = True) -> tuple[dict, int]:
        if not _in(self.valid, version):
            raise DecodeError(f"{self.name}: version {version} is not in {self.valid[0]}-{self.valid[1]}")
        obj, end = self.decoder(version)(buf, pos)
        if whole and end != len(buf):
            raise DecodeError(f"{self.name} v{version}: {len(buf) - end} bytes left after the message")
        return obj, end

    def encode(self, obj: dict, version: int, w: Writer | None = None) -> Writer:
        w = w if w is not None else Writer()
        self.encoder(version)(w, obj)
        return w

    def to_bytes(self, obj: dict, version: int) -> bytes:
        return self.encode(obj, version).getvalue()

    def defaults(self, version: int) -> dict:
        return struct_defaults(self.fields, version)


@functools.lru_cache(maxsize=None)
def message(name: str) -> Message:
    return Message(name)


def schema_names() -> list[str]:
    return sorted(n[:-5] for n in os.listdir(HERE) if n.endswith(".json"))
