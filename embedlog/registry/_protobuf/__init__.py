"""Protobuf as a registry format (`schemaType` PROTOBUF), as Confluent's registry has it.

Parsing: a schema is either .proto text (proto2 or proto3; `edition` files are refused)
read by the small recursive-descent parser in _parse.py, or the base64 FileDescriptorProto that
confluent-kafka's ProtobufSerializer registers (its `_schema_to_str`): text with no `;`
and no `{` that decodes as base64 is taken as the latter. Either way the result is a
FileDescriptorProto with every type name resolved to its full `.pkg.Name` form (protoc's
scoping: innermost scope first), map<K, V> fields turned into their `XEntry` messages and
proto3 `optional` into synthetic oneofs, as protoc writes them. It is then added to a
fresh `google.protobuf` DescriptorPool holding the google/protobuf well-known types and
the references; an import is a reference by name (its text is either form, and its own
imports are loaded first); confluent/meta.proto and confluent/type/decimal.proto are built
in too, as Confluent's serializers skip them like the well-known types. Custom options
`(x.y)` and aggregate option values are ignored; known options are kept; `extend` blocks
are skipped. Errors say line:col.

Identity: canonical() prints the descriptor back as normalized .proto text (declaration
order kept, since message indexes depend on it; full type names; options sorted), so the
text and the descriptor forms of one schema get one id.

Compatibility follows Confluent's protobuf `SchemaDiff` (protobuf-provider .../diff):
compare writer ("original") and reader ("update") messages by name and fields by number,
record a Difference for each change and call the pair compatible when all are in
COMPATIBLE. Scalars group as GENERAL_NUMBER (int32 int64 uint32 uint64 bool, enums),
SIGNED_NUMBER (sint32 sint64), STRING_OR_BYTES, FIXED32 (fixed32 sfixed32), FIXED64,
FLOAT, DOUBLE; a change across groups or between scalar/message/map kinds is
incompatible, a label change (optional/repeated/required, both written) is incompatible
for numbers and allowed for string/bytes; removed messages, required fields added or
removed, oneof fields removed, several fields moved into one oneof are incompatible.

Wire format: the payload after the 5-byte header is the message indexes (a zig-zag varint
count, then zig-zag varint indexes into the file's messages, nested ones after their
parent's; the single byte 0 stands for [0], the first message) and the message bytes.
encode() takes a message of one of the schema's types or a dict (the first message's
fields, protobuf's JSON mapping); decode() returns a dict (the JSON mapping, proto field
names).
"""
from __future__ import annotations

import base64

from google.protobuf import json_format, message_factory
from google.protobuf.message import DecodeError, Message

from .._formats import InvalidSchema, SerializationError
from ._diff import _DESCRIBE, COMPATIBLE, _join, differences
from ._parse import FDP, _Loader, _symbols
from ._print import _Printer

__all__ = ["COMPATIBLE", "FORMAT", "ParsedProtobuf", "ProtobufFormat", "differences"]


# ---------------------------------------------------------------------------------------
# The parsed schema

def _zigzag(buf: bytearray, n: int):
    n = (n << 1) ^ (n >> 63)
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            buf.append(byte | 0x80)
        else:
            buf.append(byte)
            return


def _read_zigzag(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data):
            raise SerializationError("truncated message indexes")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise SerializationError("a message index varint longer than 10 bytes")


class ParsedProtobuf:
    def __init__(self, fdp: FDP, loader: _Loader):
        self.fdp = fdp
        self.pool = loader.pool
        self.symbols: dict = {}
        for f in loader.files.values():
            _symbols(f, self.symbols)
        self._file = self.pool.FindFileByName(fdp.name)
        self._canonical = None
        self._classes: dict[tuple, type] = {}

    def canonical(self) -> str:
        if self._canonical is None:
            self._canonical = _Printer(self.fdp, self.symbols).print()
        return self._canonical

    def formatted(self, fmt: str) -> str | None:
        if fmt == "serialized":
            return base64.b64encode(self.fdp.SerializeToString(deterministic=True)).decode("ascii")
        return None

    def differences(self, writer: ParsedProtobuf) -> list[tuple[str, str]]:
        return differences(writer, self)

    def incompatibilities(self, writer: ParsedProtobuf) -> list[str]:
        return [f"{path}: {kind} ({_DESCRIBE.get(kind, kind)})"
                for kind, path in differences(writer, self) if kind not in COMPATIBLE]

    def names(self) -> list[str]:
        out = []

        def walk(prefix, msgs):
            for m in msgs:
                if not m.options.map_entry:
                    out.append(prefix + m.name)
                    walk(prefix + m.name + ".", m.nested_type)
        walk(f"{self.fdp.package}." if self.fdp.package else "", self.fdp.message_type)
        return out

    # -- wire format
    def _indexes_of(self, full_name: str) -> list[int] | None:
        msgs, prefix, out = self.fdp.message_type, self.fdp.package, []
        while True:
            for i, m in enumerate(msgs):
                name = _join(prefix, m.name)
                if full_name == name or full_name.startswith(name + "."):
                    out.append(i)
                    if full_name == name:
                        return out
                    msgs, prefix = m.nested_type, name
                    break
            else:
                return None

    def _descriptor(self, indexes: list[int]):
        msgs, desc = self.fdp.message_type, None
        parent = self._file.message_types_by_name
        for depth, i in enumerate(indexes):
            if not 0 <= i < len(msgs):
                raise SerializationError(f"message index {i} at depth {depth} is out of range: the schema has "
                                         f"{len(msgs)} message(s) there")
            desc = parent[msgs[i].name] if desc is None else desc.nested_types_by_name[msgs[i].name]
            msgs = msgs[i].nested_type
        return desc

    def _class(self, indexes: list[int]):
        key = tuple(indexes)
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = message_factory.GetMessageClass(self._descriptor(indexes))
        return cls

    def encode(self, obj) -> bytes:
        if isinstance(obj, Message):
            full = obj.DESCRIPTOR.full_name
            indexes = self._indexes_of(full)
            if indexes is None:
                raise SerializationError(f"message type {full} is not defined by this schema "
                                         f"(it defines {', '.join(self.names())})")
            cls = self._class(indexes)
            msg = cls.FromString(obj.SerializeToString())
        elif isinstance(obj, dict):
            if not self.fdp.message_type:
                raise SerializationError("the schema defines no message")
            indexes = [0]
            msg = self._class(indexes)()
            try:
                json_format.ParseDict(obj, msg)
            except json_format.ParseError as e:
                raise SerializationError(f"{msg.DESCRIPTOR.full_name}: {e}") from None
        else:
            raise SerializationError(f"a Protobuf value is a message or a dict, got {type(obj).__name__}")
        if not msg.IsInitialized():
            raise SerializationError(f"{msg.DESCRIPTOR.full_name}: required fields not set: "
                                     f"{', '.join(msg.FindInitializationErrors())}")
        out = bytearray()
        if indexes == [0]:
            out.append(0)
        else:
            _zigzag(out, len(indexes))
            for i in indexes:
                _zigzag(out, i)
        return bytes(out) + msg.SerializeToString()

    def decode(self, payload: bytes):
        count, pos = _read_zigzag(payload, 0)
        if count < 0 or count > 1024:
            raise SerializationError(f"bad message index count {count}")
        indexes = []
        for _ in range(count):
            i, pos = _read_zigzag(payload, pos)
            indexes.append(i)
        cls = self._class(indexes or [0])
        desc = cls.DESCRIPTOR
        try:
            msg = cls.FromString(payload[pos:])
        except DecodeError as e:
            raise SerializationError(f"{desc.full_name}: not a message of this type: {e}") from None
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)


class ProtobufFormat:
    name = "PROTOBUF"

    def parse(self, schema: str, references: dict[str, str] | None = None) -> ParsedProtobuf:
        if not isinstance(schema, str):
            raise InvalidSchema(f"a Protobuf schema is .proto text or a base64 descriptor, "
                                f"got {type(schema).__name__}")
        if not schema.strip():
            raise InvalidSchema("schema: empty text")
        loader = _Loader(dict(references or {}))
        fdp = loader.load("default", schema, "schema")
        return ParsedProtobuf(fdp, loader)


FORMAT = ProtobufFormat()
