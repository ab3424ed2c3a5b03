"""FileDescriptorProto -> normalized .proto text: the canonical form that decides identity."""
from __future__ import annotations

from ._parse import _FIELD_MAX, _SCALAR_NAME, FDP, F, _json_name

# ---------------------------------------------------------------------------------------
# Canonical text

def _quote(s) -> str:
    if isinstance(s, bytes):
        s = s.decode("latin-1")
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\{ord(c):03o}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _option_items(options, skip=()) -> list[str]:
    out = []
    for fd, value in options.ListFields():
        if fd.name in skip or fd.message_type is not None or fd.is_repeated:
            continue
        if fd.type == fd.TYPE_BOOL:
            text = "true" if value else "false"
        elif fd.type == fd.TYPE_ENUM:
            text = fd.enum_type.values_by_number[value].name
        elif fd.type in (fd.TYPE_STRING, fd.TYPE_BYTES):
            text = _quote(value)
        else:
            text = repr(value)
        out.append(f"{fd.name} = {text}")
    return sorted(out)


def _ranges(ranges, inclusive: bool) -> str:
    parts = []
    for r in ranges:
        last = r.end if inclusive else r.end - 1
        top = 2 ** 31 - 1 if inclusive else _FIELD_MAX
        parts.append(str(r.start) if last == r.start else f"{r.start} to {'max' if last == top else last}")
    return ", ".join(parts)


class _Printer:
    def __init__(self, fdp: FDP, symbols: dict):
        self.fdp, self.symbols, self.lines = fdp, symbols, []

    def emit(self, depth: int, text: str):
        self.lines.append("  " * depth + text)

    def print(self) -> str:
        fdp = self.fdp
        self.emit(0, f'syntax = "{fdp.syntax or "proto2"}";')
        if fdp.package:
            self.emit(0, f"package {fdp.package};")
        for i, dep in enumerate(fdp.dependency):
            kind = "public " if i in fdp.public_dependency else "weak " if i in fdp.weak_dependency else ""
            self.emit(0, f"import {kind}{_quote(dep)};")
        for item in _option_items(fdp.options):
            self.emit(0, f"option {item};")
        for m in fdp.message_type:
            self.message(m, 0)
        for e in fdp.enum_type:
            self.enum(e, 0)
        for s in fdp.service:
            self.emit(0, f"service {s.name} {{")
            for item in _option_items(s.options):
                self.emit(1, f"option {item};")
            for m in s.method:
                cs = "stream " if m.client_streaming else ""
                ss = "stream " if m.server_streaming else ""
                opts = _option_items(m.options)
                tail = " { " + " ".join(f"option {o};" for o in opts) + " }" if opts else ";"
                self.emit(1, f"rpc {m.name} ({cs}{m.input_type}) returns ({ss}{m.output_type}){tail}")
            self.emit(0, "}")
        return "\n".join(self.lines) + "\n"

    def field_text(self, f, msg, label: bool) -> str:
        entry = self.map_entry(f)
        opts = _option_items(f.options)
        if f.HasField("default_value"):
            dv = f.default_value
            opts.insert(0, "default = " + (_quote(dv) if f.type in (F.TYPE_STRING, F.TYPE_BYTES) else dv))
        if f.HasField("json_name") and f.json_name != _json_name(f.name):
            opts.append(f"json_name = {_quote(f.json_name)}")
        tail = f" [{', '.join(opts)}]" if opts else ""
        if entry is not None:
            k, v = entry.field[0], entry.field[1]
            return f"map<{self.type_text(k)}, {self.type_text(v)}> {f.name} = {f.number}{tail};"
        lab = ""
        if label:
            if f.label == F.LABEL_REPEATED:
                lab = "repeated "
            elif f.label == F.LABEL_REQUIRED:
                lab = "required "
            elif self.fdp.syntax != "proto3" or f.proto3_optional:
                lab = "optional "
        return f"{lab}{self.type_text(f)} {f.name} = {f.number}{tail};"

    def type_text(self, f) -> str:
        return _SCALAR_NAME.get(f.type, f.type_name)

    def map_entry(self, f):
        if f.type != F.TYPE_MESSAGE or f.label != F.LABEL_REPEATED:
            return None
        sym = self.symbols.get(f.type_name.lstrip("."))
        return sym[1] if sym and sym[1].options.map_entry else None

    def message(self, m, depth: int):
        self.emit(depth, f"message {m.name} {{")
        for item in _option_items(m.options, skip=("map_entry",)):
            self.emit(depth + 1, f"option {item};")
        if m.reserved_range:
            self.emit(depth + 1, f"reserved {_ranges(m.reserved_range, False)};")
        if m.reserved_name:
            self.emit(depth + 1, f"reserved {', '.join(_quote(n) for n in m.reserved_name)};")
        if m.extension_range:
            self.emit(depth + 1, f"extensions {_ranges(m.extension_range, False)};")
        done = set()
        for f in m.field:
            real_oneof = f.HasField("oneof_index") and not f.proto3_optional
            if not real_oneof:
                self.emit(depth + 1, self.field_text(f, m, True))
            elif f.oneof_index not in done:
                done.add(f.oneof_index)
                self.emit(depth + 1, f"oneof {m.oneof_decl[f.oneof_index].name} {{")
                for g in m.field:
                    if g.HasField("oneof_index") and g.oneof_index == f.oneof_index:
                        self.emit(depth + 2, self.field_text(g, m, False))
                self.emit(depth + 1, "}")
        for n in m.nested_type:
            if not n.options.map_entry:
                self.message(n, depth + 1)
        for e in m.enum_type:
            self.enum(e, depth + 1)
        self.emit(depth, "}")

    def enum(self, e, depth: int):
        self.emit(depth, f"enum {e.name} {{")
        for item in _option_items(e.options):
            self.emit(depth + 1, f"option {item};")
        if e.reserved_range:
            self.emit(depth + 1, f"reserved {_ranges(e.reserved_range, True)};")
        if e.reserved_name:
            self.emit(depth + 1, f"reserved {', '.join(_quote(n) for n in e.reserved_name)};")
        for v in e.value:
            opts = _option_items(v.options)
            self.emit(depth + 1, f"{v.name} = {v.number}{' [' + ', '.join(opts) + ']' if opts else ''};")
        self.emit(depth, "}")
