"""Confluent's Protobuf compatibility rules (SchemaDiff, MessageSchemaDiff, FieldSchemaDiff,
OneOfDiff, EnumSchemaDiff in protobuf-provider .../diff), applied to descriptors."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._parse import _SCALAR_NAME, _SCALARS, F

if TYPE_CHECKING:
    from . import ParsedProtobuf

# Confluent SchemaDiff.COMPATIBLE_CHANGES (the current one: a package change is allowed).
COMPATIBLE = frozenset((
    "PACKAGE_CHANGED", "MESSAGE_ADDED", "MESSAGE_MOVED", "ENUM_ADDED", "ENUM_REMOVED", "ENUM_CONST_ADDED",
    "ENUM_CONST_CHANGED", "ENUM_CONST_REMOVED", "FIELD_ADDED", "FIELD_REMOVED", "FIELD_NAME_CHANGED",
    "FIELD_STRING_OR_BYTES_LABEL_CHANGED", "ONEOF_ADDED", "ONEOF_REMOVED", "ONEOF_FIELD_ADDED"))

_SCALAR_KIND = {"int32": "GENERAL_NUMBER", "int64": "GENERAL_NUMBER", "uint32": "GENERAL_NUMBER",
                "uint64": "GENERAL_NUMBER", "bool": "GENERAL_NUMBER", "sint32": "SIGNED_NUMBER",
                "sint64": "SIGNED_NUMBER", "string": "STRING_OR_BYTES", "bytes": "STRING_OR_BYTES",
                "fixed32": "FIXED32", "sfixed32": "FIXED32", "fixed64": "FIXED64", "sfixed64": "FIXED64",
                "float": "FLOAT", "double": "DOUBLE"}


# ---------------------------------------------------------------------------------------
# Compatibility (Confluent's SchemaDiff, on descriptors)

_DESCRIBE = {
    "PACKAGE_CHANGED": "the package changed", "MESSAGE_REMOVED": "a message the writer has is gone",
    "FIELD_KIND_CHANGED": "a field changed between scalar, message and map",
    "FIELD_SCALAR_KIND_CHANGED": "a scalar field changed to a type of another wire group",
    "FIELD_NAMED_TYPE_CHANGED": "a message field changed to another or an incompatible message",
    "FIELD_NUMERIC_LABEL_CHANGED": "a numeric field's label (optional/repeated/required) changed",
    "REQUIRED_FIELD_ADDED": "a required field was added", "REQUIRED_FIELD_REMOVED": "a required field was removed",
    "ONEOF_FIELD_REMOVED": "a field was removed from a oneof",
    "MULTIPLE_FIELDS_MOVED_TO_ONEOF": "several existing fields were moved into one oneof",
    "FIELD_MOVED_TO_EXISTING_ONEOF": "a field was moved into a oneof that already existed",
}


class _Field:
    __slots__ = ("label", "name", "type")

    def __init__(self, f: F, syntax: str, symbols: dict, in_oneof: bool):
        self.name = f.name
        self.type = _SCALAR_NAME.get(f.type) or f.type_name.lstrip(".")
        entry = symbols.get(self.type) if f.type == F.TYPE_MESSAGE else None
        is_map = entry is not None and entry[1].options.map_entry
        if in_oneof or is_map:
            self.label = None
        elif f.label == F.LABEL_REPEATED:
            self.label = "repeated"
        elif f.label == F.LABEL_REQUIRED:
            self.label = "required"
        else:   # proto3 writes no label unless `optional`; proto2 always does
            self.label = "optional" if syntax != "proto3" or f.proto3_optional else None


class _Diff:
    def __init__(self, o: ParsedProtobuf, u: ParsedProtobuf, seen: set):
        self.o, self.u, self.seen, self.found = o, u, seen, []

    def add(self, kind: str, path):
        self.found.append((kind, "#/" + "/".join(path)))

    def compatible(self) -> bool:
        return all(kind in COMPATIBLE for kind, _ in self.found)

    def file(self):
        of, uf = self.o.fdp, self.u.fdp
        if of.package != uf.package:
            self.add("PACKAGE_CHANGED", [])
        self.types(of.message_type, of.enum_type, uf.message_type, uf.enum_type, [], of.package, uf.package)

    def types(self, o_msgs, o_enums, u_msgs, u_enums, path, oscope, uscope):
        def index(msgs):
            return {m.name: (i, m) for i, m in enumerate(m for m in msgs if not m.options.map_entry)}
        om, um = index(o_msgs), index(u_msgs)
        for name in sorted(om.keys() | um.keys()):
            p = [*path, name]
            if name not in um:
                self.add("MESSAGE_REMOVED", p)
            elif name not in om:
                self.add("MESSAGE_ADDED", p)
            else:
                self.message(om[name][1], um[name][1], p, _join(oscope, name), _join(uscope, name))
                if om[name][0] != um[name][0]:
                    self.add("MESSAGE_MOVED", p)
        oe, ue = {e.name: e for e in o_enums}, {e.name: e for e in u_enums}
        for name in sorted(oe.keys() | ue.keys()):
            p = [*path, name]
            if name not in ue:
                self.add("ENUM_REMOVED", p)
            elif name not in oe:
                self.add("ENUM_ADDED", p)
            else:
                ov = {v.number: v.name for v in oe[name].value}
                uv = {v.number: v.name for v in ue[name].value}
                for n in sorted(ov.keys() | uv.keys()):
                    if n not in uv:
                        self.add("ENUM_CONST_REMOVED", [*p, str(n)])
                    elif n not in ov:
                        self.add("ENUM_CONST_ADDED", [*p, str(n)])
                    elif ov[n] != uv[n]:
                        self.add("ENUM_CONST_CHANGED", [*p, str(n)])

    def fields(self, side, m, full):
        syntax = side.symbols[full][3]
        top, oneofs, tag_oneof = {}, {}, {}
        for f in m.field:
            real = f.HasField("oneof_index") and not f.proto3_optional
            fi = _Field(f, syntax, side.symbols, real)
            if real:
                name = m.oneof_decl[f.oneof_index].name
                oneofs.setdefault(name, {})[f.number] = fi
                tag_oneof[f.number] = name
            else:
                top[f.number] = fi
        return top, oneofs, tag_oneof

    def message(self, om, um, path, ofull, ufull):
        if (ofull, ufull) not in self.seen:
            self.seen.add((ofull, ufull))
            otop, o_oneofs, o_tag = self.fields(self.o, om, ofull)
            utop, u_oneofs, u_tag = self.fields(self.u, um, ufull)
            o_all = {**otop, **{t: f for fs in o_oneofs.values() for t, f in fs.items()}}
            u_all = {**utop, **{t: f for fs in u_oneofs.values() for t, f in fs.items()}}
            for name, fs in u_oneofs.items():
                moved = sum(1 for t in fs if otop.pop(t, None) is not None)
                existing = sum(1 for t in fs if t in o_tag)
                if moved > 1:
                    self.add("MULTIPLE_FIELDS_MOVED_TO_ONEOF", [*path, name])
                elif moved == 1 and existing:
                    self.add("FIELD_MOVED_TO_EXISTING_ONEOF", [*path, name])
            for name in sorted(o_oneofs.keys() | u_oneofs.keys()):
                p = [*path, name]
                if name not in u_oneofs:
                    self.add("ONEOF_REMOVED", p)
                elif name not in o_oneofs:
                    self.add("ONEOF_ADDED", p)
                else:
                    of, uf = o_oneofs[name], u_oneofs[name]
                    for t in sorted(of.keys() | uf.keys()):
                        if t not in uf:
                            if t not in u_all:
                                self.add("ONEOF_FIELD_REMOVED", [*p, str(t)])
                        elif t not in of:
                            self.add("ONEOF_FIELD_ADDED", [*p, str(t)])
                        else:
                            self.field(of[t], uf[t], [*p, str(t)])
            for t in sorted(otop.keys() | utop.keys()):
                p = [*path, str(t)]
                if t not in utop:
                    self.add("REQUIRED_FIELD_REMOVED" if otop[t].label == "required" else "FIELD_REMOVED", p)
                elif t not in otop:
                    self.add("REQUIRED_FIELD_ADDED" if utop[t].label == "required" else "FIELD_ADDED", p)
                else:
                    self.field(otop[t], utop[t], p)
            for t in sorted(o_all.keys() & u_all.keys()):
                if (t not in o_tag and t not in u_tag) or (t in o_tag and o_tag[t] == u_tag.get(t)):
                    continue
                self.field(o_all[t], u_all[t], [*path, str(t)])
        self.types(om.nested_type, om.enum_type, um.nested_type, um.enum_type, path, ofull, ufull)

    def field(self, of: _Field, uf: _Field, path):
        if of.name != uf.name:
            self.add("FIELD_NAME_CHANGED", path)
        self.labels_and_types(of.label, uf.label, of.type, uf.type, path)

    def kind(self, side, t: str):
        if t in _SCALARS:
            return "SCALAR", _SCALAR_KIND[t]
        sym = side.symbols.get(t)
        if sym is None or sym[0] == "enum":
            return "SCALAR", "GENERAL_NUMBER"
        if sym[1].options.map_entry:
            return "MAP", sym[1]
        return "MESSAGE", sym

    def labels_and_types(self, olabel, ulabel, ot, ut, path):
        (ok, oinfo), (uk, uinfo) = self.kind(self.o, ot), self.kind(self.u, ut)
        if ok != uk:
            self.add("FIELD_KIND_CHANGED", path)
        elif ok == "SCALAR":
            if oinfo != uinfo:
                self.add("FIELD_SCALAR_KIND_CHANGED", path)
            elif olabel is not None and ulabel is not None and olabel != ulabel:
                self.add("FIELD_STRING_OR_BYTES_LABEL_CHANGED" if oinfo == "STRING_OR_BYTES"
                         else "FIELD_NUMERIC_LABEL_CHANGED", path)
        elif ok == "MAP":
            for i in (0, 1):
                self.labels_and_types(None, None, _type_of(oinfo.field[i]), _type_of(uinfo.field[i]), path)
        else:
            olocal, ulocal = _local(ot, oinfo[2]), _local(ut, uinfo[2])
            if olocal != ulocal:
                self.add("FIELD_NAMED_TYPE_CHANGED", path)
                return
            sub = _Diff(self.o, self.u, self.seen)
            sub.message(oinfo[1], uinfo[1], olocal.split("."), ot, ut)
            self.found.extend(sub.found)
            if not sub.compatible():
                self.add("FIELD_NAMED_TYPE_CHANGED", path)


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def _type_of(f: F) -> str:
    return _SCALAR_NAME.get(f.type) or f.type_name.lstrip(".")


def _local(full: str, package: str) -> str:
    return full[len(package) + 1:] if package and full.startswith(package + ".") else full


def differences(writer: ParsedProtobuf, reader: ParsedProtobuf) -> list[tuple[str, str]]:
    """Confluent's Difference list (type, path) from writer ("original") to reader ("update")."""
    d = _Diff(writer, reader, set())
    d.file()
    out = []
    for item in d.found:
        if item not in out:
            out.append(item)
    return out
