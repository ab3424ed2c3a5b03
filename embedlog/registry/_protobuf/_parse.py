""".proto text -> FileDescriptorProto, and the loader that puts a schema and its references
into one DescriptorPool (the package docstring, `__init__.py`, has the rules)."""
from __future__ import annotations

import base64
import binascii
import re

from google.protobuf import (
    any_pb2,
    api_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    source_context_pb2,
    struct_pb2,
    timestamp_pb2,
    type_pb2,
    wrappers_pb2,
)
from google.protobuf.message import DecodeError

from .._formats import InvalidSchema

FDP = descriptor_pb2.FileDescriptorProto
F = descriptor_pb2.FieldDescriptorProto

# The well-known types every schema may import without a reference (Confluent's _init_pool).
_BUILTIN = {m.DESCRIPTOR.name: m.DESCRIPTOR.serialized_pb for m in (
    any_pb2, source_context_pb2, type_pb2, api_pb2, descriptor_pb2, duration_pb2, empty_pb2,
    field_mask_pb2, struct_pb2, timestamp_pb2, wrappers_pb2)}

# Confluent's own files, which its serializers also skip as known types (the messages only:
# the `extend` blocks declaring the (confluent.*_meta) options are skipped like any other).
_BUILTIN_TEXT = {
    "confluent/meta.proto": 'syntax = "proto3";\npackage confluent;\nimport "google/protobuf/descriptor.proto";\n'
                            'option go_package = "../confluent";\n'
                            "message Meta { string doc = 1; map<string, string> params = 2; "
                            "repeated string tags = 3; repeated Rule rules = 4; }\n"
                            "message Rule { string name = 1; string doc = 2; string expr = 3; string sql = 4; }\n",
    "confluent/type/decimal.proto": 'syntax = "proto3";\npackage confluent.type;\n'
                                    "message Decimal { bytes value = 1; uint32 precision = 2; int32 scale = 3; }\n",
}

_SCALARS = {"double": F.TYPE_DOUBLE, "float": F.TYPE_FLOAT, "int64": F.TYPE_INT64, "uint64": F.TYPE_UINT64,
            "int32": F.TYPE_INT32, "fixed64": F.TYPE_FIXED64, "fixed32": F.TYPE_FIXED32, "bool": F.TYPE_BOOL,
            "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "uint32": F.TYPE_UINT32,
            "sfixed32": F.TYPE_SFIXED32, "sfixed64": F.TYPE_SFIXED64, "sint32": F.TYPE_SINT32,
            "sint64": F.TYPE_SINT64}
_SCALAR_NAME = {v: k for k, v in _SCALARS.items()}
_MAP_KEYS = set(_SCALARS) - {"double", "float", "bytes"}
_LABELS = {"optional": F.LABEL_OPTIONAL, "required": F.LABEL_REQUIRED, "repeated": F.LABEL_REPEATED}
_FIELD_MAX = 536870911


# ---------------------------------------------------------------------------------------
# Tokens

_TOKEN = re.compile(r"""
    (?P<ws>\s+) | (?P<comment>//[^\n]*|/\*.*?\*/) |
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)(?![\w.])) |
    (?P<ident>\.?[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*) |
    (?P<symbol>[{}\[\]()<>;=,:+\-/.])
""", re.VERBOSE | re.DOTALL)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", "'": "'", '"': '"', "?": "?"}


class _Tok:
    __slots__ = ("col", "kind", "line", "text")

    def __init__(self, kind, text, line, col):
        self.kind, self.text, self.line, self.col = kind, text, line, col


def _tokenize(text: str, what: str) -> list[_Tok]:
    out, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise InvalidSchema(f"{what}: line {line}:{pos - line_start + 1}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            out.append(_Tok(kind, m.group(), line, pos - line_start + 1))
        chunk = m.group()
        if "\n" in chunk:
            line += chunk.count("\n")
            line_start = pos + chunk.rindex("\n") + 1
        pos = m.end()
    out.append(_Tok("eof", "", line, pos - line_start + 1))
    return out


def _unquote(s: str) -> str:
    body, out, i = s[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n in _ESCAPES:
            out.append(_ESCAPES[n])
            i += 2
        elif n in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            out.append(chr(int(m.group(), 16)) if m else "x")
            i += 2 + (len(m.group()) if m else 0)
        elif n.isdigit():
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(chr(int(m.group(), 8)))
            i += 1 + len(m.group())
        else:
            out.append(n)
            i += 2
    return "".join(out)


def _camel(name: str) -> str:
    """protoc's map entry name: `test_map` -> `TestMap` (+ "Entry")."""
    parts = name.split("_")
    return "".join(p[:1].upper() + p[1:] for p in parts)


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


# ---------------------------------------------------------------------------------------
# Parser: .proto text -> FileDescriptorProto (type names unresolved until _resolve)

class _Parser:
    def __init__(self, text: str, what: str):
        self.what = what
        self.toks = _tokenize(text, what)
        self.i = 0
        self.fdp = FDP()
        self.unresolved = []          # (field proto, type text, scope full name, token)

    # -- token helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def error(self, msg: str, tok: _Tok | None = None):
        t = tok or self.tok
        return InvalidSchema(f"{self.what}: line {t.line}:{t.col}: {msg}")

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def at(self, text: str) -> bool:
        return self.tok.text == text and self.tok.kind in ("symbol", "ident")

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> _Tok:
        if not self.at(text):
            raise self.error(f"expected {text!r}, got {self.tok.text or 'end of text'!r}")
        return self.next()

    def ident(self, what: str = "a name", dotted: bool = False) -> str:
        t = self.tok
        if t.kind != "ident" or (not dotted and "." in t.text):
            raise self.error(f"expected {what}, got {t.text or 'end of text'!r}")
        self.i += 1
        return t.text

    def string(self) -> str:
        if self.tok.kind != "string":
            raise self.error(f"expected a string, got {self.tok.text or 'end of text'!r}")
        out = ""
        while self.tok.kind == "string":
            out += _unquote(self.next().text)
        return out

    def integer(self, what: str) -> int:
        neg = self.accept("-")
        t = self.tok
        if t.kind != "number" or not re.fullmatch(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*", t.text):
            raise self.error(f"expected {what} (an integer), got {t.text or 'end of text'!r}")
        self.i += 1
        text = t.text
        v = int(text, 16) if text[:2] in ("0x", "0X") else int(text, 8) if len(text) > 1 and text[0] == "0" \
            else int(text)
        v = -v if neg else v
        if not -2 ** 31 <= v < 2 ** 31:
            raise self.error(f"{what} {v} is out of the int32 range", t)
        return v

    # -- file
    def parse(self) -> FDP:
        fdp = self.fdp
        if self.at("edition"):
            raise self.error("protobuf editions are not supported (use syntax = \"proto2\" or \"proto3\")")
        if self.accept("syntax"):
            self.expect("=")
            t = self.tok
            syntax = self.string()
            if syntax not in ("proto2", "proto3"):
                raise self.error(f"unknown syntax {syntax!r}: proto2 or proto3", t)
            self.expect(";")
            if syntax == "proto3":
                fdp.syntax = "proto3"
        seen_package = False
        while self.tok.kind != "eof":
            t = self.tok
            if self.accept(";"):
                continue
            if self.accept("import"):
                kind = "public" if self.accept("public") else "weak" if self.accept("weak") else ""
                name = self.string()
                self.expect(";")
                if kind == "public":
                    fdp.public_dependency.append(len(fdp.dependency))
                elif kind == "weak":
                    fdp.weak_dependency.append(len(fdp.dependency))
                fdp.dependency.append(name)
            elif self.accept("package"):
                if seen_package:
                    raise self.error("a file has one package statement", t)
                seen_package = True
                fdp.package = self.ident("a package name", dotted=True).lstrip(".")
                self.expect(";")
            elif self.accept("option"):
                self.option(fdp.options)
                self.expect(";")
            elif self.accept("message"):
                self.message(fdp.message_type.add(), fdp.package)
            elif self.accept("enum"):
                self.enum(fdp.enum_type.add())
            elif self.accept("service"):
                self.service(fdp.service.add(), fdp.package)
            elif self.accept("extend"):
                self.skip_block()
            elif self.at("syntax"):
                raise self.error("the syntax statement must come first")
            else:
                raise self.error(f"expected a top-level statement (message, enum, import, package, option, "
                                 f"service), got {t.text!r}")
        return fdp

    def block(self, what: str):
        """Yields once per statement of a `{ ... }` body (the `{` read), up to its `}`."""
        while not self.accept("}"):
            if self.tok.kind == "eof":
                raise self.error(f"unclosed {what}: expected '}}'")
            if not self.accept(";"):
                yield

    def skip_braces(self, what: str):
        """Skips a balanced `{ ... }` (the `{` read): extend blocks, aggregate option values."""
        depth, start = 1, self.tok
        while depth:
            t = self.next()
            if t.kind == "eof":
                raise self.error(f"unclosed '{{' of {what}", start)
            depth += t.text == "{" and t.kind == "symbol"
            depth -= t.text == "}" and t.kind == "symbol"

    def skip_block(self):
        self.ident("a type name", dotted=True)
        self.expect("{")
        self.skip_braces("an extend block")

    # -- options
    def option_name(self) -> tuple[str, bool]:
        if self.accept("("):
            name = self.ident("an option name", dotted=True)
            self.expect(")")
            while self.tok.kind == "ident" and self.tok.text.startswith("."):
                self.next()
            return name, True
        name = self.ident("an option name", dotted=True)
        return name, "." in name

    def option_value(self):
        t = self.tok
        if self.accept("{"):
            self.skip_braces("an option value")
            return None
        if t.kind == "string":
            return self.string()
        neg = self.accept("-")
        if not neg:
            self.accept("+")
        t = self.tok
        if t.kind == "number":
            self.i += 1
            v = float(t.text) if re.search(r"[.eE]", t.text) and t.text[:2] not in ("0x", "0X") else \
                int(t.text, 0) if t.text[:2] in ("0x", "0X") else int(t.text)
            return -v if neg else v
        if t.kind == "ident":
            self.i += 1
            if t.text in ("inf", "nan"):
                return float(("-" if neg else "") + t.text)
            return t.text
        raise self.error(f"expected an option value, got {t.text or 'end of text'!r}")

    def option(self, options, target: str = "option"):
        """`name = value` into `options` (a *Options message): custom options and aggregate
        values are ignored, an unknown plain name is an error (as protoc's)."""
        t = self.tok
        name, custom = self.option_name()
        self.expect("=")
        vt = self.tok
        value = self.option_value()
        if custom or value is None:
            return
        fd = options.DESCRIPTOR.fields_by_name.get(name)
        if fd is None or fd.is_repeated or fd.message_type is not None:
            raise self.error(f"unknown {target} {name!r}", t)
        try:
            if fd.type == fd.TYPE_BOOL:
                if value not in ("true", "false"):
                    raise ValueError
                value = value == "true"
            elif fd.type == fd.TYPE_ENUM:
                value = fd.enum_type.values_by_name[value].number
            elif fd.type in (fd.TYPE_STRING, fd.TYPE_BYTES):
                if not isinstance(value, str):
                    raise ValueError
                value = value.encode("latin-1") if fd.type == fd.TYPE_BYTES else value
            elif fd.type in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
                value = float(value)
            elif not isinstance(value, int):
                raise ValueError
            setattr(options, name, value)
        except (ValueError, KeyError, TypeError):
            raise self.error(f"bad value {vt.text!r} for {target} {name!r}", vt) from None

    def field_options(self, field: F, syntax3: bool):
        if not self.accept("["):
            return
        while True:
            t = self.tok
            if self.at("default") or self.at("json_name"):
                name = self.next().text
                self.expect("=")
                vi, vt = self.i, self.tok
                value = self.option_value()
                if name == "json_name":
                    if not isinstance(value, str):
                        raise self.error("json_name takes a string", vt)
                    field.json_name = value
                else:
                    if syntax3:
                        raise self.error("explicit default values are not allowed in proto3", t)
                    # protoc keeps a default as written: a string unescaped, anything else its text.
                    field.default_value = value if vt.kind == "string" else \
                        "".join(x.text for x in self.toks[vi:self.i])
            else:
                self.option(field.options, "field option")
            if self.accept("]"):
                break
            self.expect(",")

    # -- messages
    def message(self, msg, scope: str):
        msg.name = self.ident("a message name")
        full = f"{scope}.{msg.name}" if scope else msg.name
        self.expect("{")
        self.message_body(msg, full)

    def message_body(self, msg, full: str):
        syntax3 = self.fdp.syntax == "proto3"
        synthetic = []
        for _ in self.block("message"):
            t = self.tok
            if self.accept("message"):
                self.message(msg.nested_type.add(), full)
            elif self.accept("enum"):
                self.enum(msg.enum_type.add())
            elif self.accept("option"):
                self.option(msg.options, "message option")
                self.expect(";")
            elif self.accept("reserved"):
                self.reserved(msg.reserved_range, msg.reserved_name, _FIELD_MAX)
            elif self.accept("extensions"):
                self.ranges(msg.extension_range, _FIELD_MAX)
                if self.at("["):
                    self.field_options(F(), syntax3)
                self.expect(";")
            elif self.accept("extend"):
                self.skip_block()
            elif self.accept("oneof"):
                index = len(msg.oneof_decl)
                msg.oneof_decl.add().name = self.ident("a oneof name")
                self.expect("{")
                for _ in self.block("oneof"):
                    if self.accept("option"):
                        self.option(msg.oneof_decl[index].options, "oneof option")
                        self.expect(";")
                        continue
                    if self.tok.text in _LABELS:
                        raise self.error("fields in a oneof take no label")
                    f = self.field(msg, full, None)
                    f.oneof_index = index
            elif self.at("map") and self.toks[self.i + 1].text == "<":
                self.map_field(msg, full)
            else:
                label = None
                if self.tok.text in _LABELS and self.toks[self.i + 1].kind == "ident":
                    label = self.next().text
                if label is None and not syntax3:
                    raise self.error("proto2 fields need a label: optional, required or repeated")
                if label == "required" and syntax3:
                    raise self.error("required fields are not allowed in proto3", t)
                if self.at("group"):
                    raise self.error("groups are not supported", t)
                f = self.field(msg, full, label)
                if label == "optional" and syntax3:
                    f.proto3_optional = True
                    synthetic.append(f)
        # protoc appends proto3 optional's synthetic oneofs after the real ones.
        for f in synthetic:
            names = {o.name for o in msg.oneof_decl}
            name = "_" + f.name
            while name in names:
                name = "X" + name
            f.oneof_index = len(msg.oneof_decl)
            msg.oneof_decl.add().name = name
        self.check_message(msg)

    def named_field(self, msg):
        """`NAME = NUMBER` of a field (plain or map), added to msg, the number checked."""
        f = msg.field.add()
        f.name = self.ident("a field name")
        self.expect("=")
        nt = self.tok
        f.number = self.integer("a field number")
        if not 1 <= f.number <= _FIELD_MAX:
            raise self.error(f"field number {f.number} out of range 1..{_FIELD_MAX}", nt)
        if 19000 <= f.number <= 19999:
            raise self.error(f"field number {f.number} is reserved for protobuf itself (19000-19999)", nt)
        return f

    def field(self, msg, scope: str, label: str | None) -> F:
        t = self.tok
        type_text = self.ident("a field type", dotted=True)
        f = self.named_field(msg)
        f.label = _LABELS[label or "optional"]
        self.field_options(f, self.fdp.syntax == "proto3")
        self.expect(";")
        self.set_type(f, type_text, scope, t)
        return f

    def set_type(self, f: F, type_text: str, scope: str, tok: _Tok):
        if type_text in _SCALARS:
            f.type = _SCALARS[type_text]
        else:
            self.unresolved.append((f, type_text, scope, tok))

    def map_field(self, msg, scope: str):
        t = self.tok
        self.expect("map")
        self.expect("<")
        kt = self.tok
        key = self.ident("a map key type")
        if key not in _MAP_KEYS:
            raise self.error(f"map key type {key!r} must be an integral or string scalar", kt)
        self.expect(",")
        vt = self.tok
        value = self.ident("a map value type", dotted=True)
        if value == "map":
            raise self.error("map values cannot be maps", vt)
        self.expect(">")
        f = self.named_field(msg)
        f.label = F.LABEL_REPEATED
        self.field_options(f, self.fdp.syntax == "proto3")
        self.expect(";")
        entry = msg.nested_type.add()
        entry.name = _camel(f.name) + "Entry"
        entry.options.map_entry = True
        for number, name, type_text, tok in ((1, "key", key, kt), (2, "value", value, vt)):
            ef = entry.field.add()
            ef.name, ef.number, ef.label = name, number, F.LABEL_OPTIONAL
            ef.json_name = name
            self.set_type(ef, type_text, f"{scope}.{entry.name}", tok)
        f.type = F.TYPE_MESSAGE
        self.unresolved.append((f, entry.name, scope, t))

    def ranges(self, target, top: int, inclusive: bool = False):
        """`N`, `N to M`, `N to max`, ...: message ranges store an exclusive end, enum ranges an
        inclusive one (as descriptor.proto has them)."""
        while True:
            t = self.tok
            start = self.integer("a range start")
            last = start
            if self.accept("to"):
                last = top if self.accept("max") else self.integer("a range end")
            if last < start:
                raise self.error(f"empty range {start} to {last}", t)
            if not (-2 ** 31 <= start and last <= top):
                raise self.error(f"range {start} to {last} is beyond {top}", t)
            r = target.add()
            r.start, r.end = start, last if inclusive else last + 1
            if not self.accept(","):
                return

    def reserved(self, ranges, names, top: int, inclusive: bool = False):
        if self.tok.kind == "string":
            while True:
                names.append(self.string())
                if not self.accept(","):
                    break
        else:
            self.ranges(ranges, top, inclusive)
        self.expect(";")

    def check_message(self, msg):
        numbers, names = {}, set()
        for f in msg.field:
            if f.number in numbers:
                raise InvalidSchema(f"{self.what}: message {msg.name}: field number {f.number} is used by "
                                    f"both {numbers[f.number]!r} and {f.name!r}")
            if f.name in names:
                raise InvalidSchema(f"{self.what}: message {msg.name}: field name {f.name!r} is used twice")
            numbers[f.number] = f.name
            names.add(f.name)
            for r in msg.reserved_range:
                if r.start <= f.number < r.end:
                    raise InvalidSchema(f"{self.what}: message {msg.name}: field {f.name!r} uses reserved "
                                        f"number {f.number}")
            if f.name in msg.reserved_name:
                raise InvalidSchema(f"{self.what}: message {msg.name}: field name {f.name!r} is reserved")

    # -- enums and services
    def enum(self, enum):
        t = self.tok
        enum.name = self.ident("an enum name")
        self.expect("{")
        for _ in self.block("enum"):
            if self.accept("option"):
                self.option(enum.options, "enum option")
                self.expect(";")
            elif self.accept("reserved"):
                self.reserved(enum.reserved_range, enum.reserved_name, 2 ** 31 - 1, inclusive=True)
            else:
                v = enum.value.add()
                v.name = self.ident("an enum value name")
                self.expect("=")
                v.number = self.integer("an enum value number")
                if self.accept("["):
                    while True:
                        self.option(v.options, "enum value option")
                        if self.accept("]"):
                            break
                        self.expect(",")
                self.expect(";")
        if not enum.value:
            raise self.error(f"enum {enum.name} has no values", t)
        if self.fdp.syntax == "proto3" and enum.value[0].number != 0:
            raise self.error(f"enum {enum.name}: the first value must be 0 in proto3", t)

    def service(self, svc, scope: str):
        svc.name = self.ident("a service name")
        self.expect("{")
        for _ in self.block("service"):
            if self.accept("option"):
                self.option(svc.options, "service option")
                self.expect(";")
                continue
            self.expect("rpc")
            m = svc.method.add()
            m.name = self.ident("a method name")
            for side in ("input", "output"):
                if side == "output":
                    self.expect("returns")
                self.expect("(")
                if self.at("stream") and self.toks[self.i + 1].kind == "ident":
                    self.next()
                    setattr(m, "client_streaming" if side == "input" else "server_streaming", True)
                t = self.tok
                self.unresolved.append((m, self.ident("a message type", dotted=True), scope, t, side))
                self.expect(")")
            if self.accept("{"):
                for _ in self.block("rpc body"):
                    self.expect("option")
                    self.option(m.options, "method option")
                    self.expect(";")
            else:
                self.expect(";")


# ---------------------------------------------------------------------------------------
# Symbols and resolution

def _symbols(fdp: FDP, out: dict):
    """full name (no leading dot) -> (kind "message" | "enum", its proto, package, syntax)."""
    def walk(prefix, messages, enums):
        for e in enums:
            out[f"{prefix}{e.name}"] = ("enum", e, fdp.package, fdp.syntax)
        for m in messages:
            out[f"{prefix}{m.name}"] = ("message", m, fdp.package, fdp.syntax)
            walk(f"{prefix}{m.name}.", m.nested_type, m.enum_type)
    walk(f"{fdp.package}." if fdp.package else "", fdp.message_type, fdp.enum_type)
    return out


def _lookup(symbols: dict, name: str, scope: str):
    if name.startswith("."):
        return name[1:] if name[1:] in symbols else None
    parts = scope.split(".") if scope else []
    for n in range(len(parts), -1, -1):
        candidate = ".".join([*parts[:n], name])
        if candidate in symbols:
            return candidate
    return None


def _resolve(parser: _Parser, symbols: dict):
    for item in parser.unresolved:
        target, text, scope, tok = item[:4]
        full = _lookup(symbols, text, scope)
        if full is None:
            raise parser.error(f"unknown type {text!r} (not defined here nor in an imported file)", tok)
        kind = symbols[full][0]
        if len(item) == 5:                               # an rpc's input or output
            if kind != "message":
                raise parser.error(f"rpc types must be messages, {text!r} is an enum", tok)
            setattr(target, f"{item[4]}_type", "." + full)
            continue
        target.type_name = "." + full
        if target.type != F.TYPE_MESSAGE:
            target.type = F.TYPE_MESSAGE if kind == "message" else F.TYPE_ENUM
        elif kind != "message":
            raise parser.error(f"map field type {text!r} is not a message", tok)
        if kind == "enum" and parser.fdp.syntax == "proto3":
            enum = symbols[full][1]
            if enum.value and enum.value[0].number != 0:
                raise parser.error(f"proto3 fields cannot use the proto2 enum {text!r}", tok)


def _decode_serialized(text: str) -> FDP | None:
    if ";" in text or "{" in text or not text.strip():
        return None
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
        fdp = FDP()
        fdp.ParseFromString(raw)
    except (binascii.Error, ValueError, DecodeError):
        return None
    return fdp


class _Loader:
    """Parses the schema and its references into one DescriptorPool."""

    def __init__(self, references: dict[str, str]):
        self.references = references
        self.pool = descriptor_pool.DescriptorPool()
        for data in _BUILTIN.values():
            self.pool.AddSerializedFile(data)
        self.files: dict[str, FDP] = {n: FDP.FromString(d) for n, d in _BUILTIN.items()}
        self.loading: list[str] = []

    def load(self, name: str, text: str, what: str) -> FDP:
        fdp = _decode_serialized(text)
        parser = None
        if fdp is None:
            parser = _Parser(text, what)
            fdp = parser.parse()
        fdp.name = name
        self.loading.append(name)
        symbols: dict = {}
        for dep in fdp.dependency:
            if dep not in self.files:
                if dep in self.loading:
                    raise InvalidSchema(f"{what}: import cycle: {' -> '.join([*self.loading, dep])}")
                if dep in self.references:
                    self.load(dep, self.references[dep], f"reference {dep!r}")
                elif dep in _BUILTIN_TEXT:
                    self.load(dep, _BUILTIN_TEXT[dep], f"built-in {dep!r}")
                else:
                    raise InvalidSchema(f"{what}: import {dep!r} is neither a reference nor a well-known type "
                                        "(an import names a reference)")
            self._visible(dep, symbols, set())
        self.loading.pop()
        if parser is not None:
            _symbols(fdp, symbols)
            _resolve(parser, symbols)
        try:
            self.pool.Add(fdp)
        except (TypeError, ValueError, KeyError) as e:
            raise InvalidSchema(f"{what}: {e}") from None
        self.files[name] = fdp
        return fdp

    def _visible(self, name: str, out: dict, seen: set):
        if name in seen:
            return
        seen.add(name)
        fdp = self.files[name]
        _symbols(fdp, out)
        for dep in fdp.dependency:         # lenient: every transitively imported file is visible
            self._visible(dep, out, seen)
