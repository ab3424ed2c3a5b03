"""Avro behind the registry's format interface (`_formats.py`), with fastavro.

parse: the schema's JSON through fastavro.parse_schema, the references parsed first into
the same named-types table (so `"type": "com.acme.Address"` resolves to a referenced
schema). canonical: Avro's Parsing Canonical Form (full names, attributes in the spec's
order, no doc) extended with what changes resolution and must therefore change identity:
field defaults, aliases, enum defaults (PCF drops them, so two schemas differing only in a
default would otherwise share an id and the second one's default would be lost).
incompatibilities: Avro's schema resolution rules (specification, "Schema Resolution"),
as Avro's Java SchemaCompatibility checker (the one Confluent's registry runs) applies
them: a reader field missing from the writer needs a default; writer fields the reader
lacks are skipped; int->long->float->double and string<->bytes promote; enum symbols the
writer may send must be in the reader's unless the reader has an enum default; every
writer union branch must be readable, a writer non-union must match some reader branch;
arrays and maps recurse on items/values; named types match by unqualified name or the
reader's aliases; fixed sizes must be equal.
"""
from __future__ import annotations

import io
import json
import re

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

from ._formats import InvalidSchema, SerializationError

PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_PROMOTIONS = {"int": ("long", "float", "double"), "long": ("float", "double"), "float": ("double",),
               "string": ("bytes",), "bytes": ("string",)}
_NAMED = ("record", "error", "enum", "fixed")


def _load(text: str, what: str):
    try:
        return json.loads(text)
    except ValueError:
        # A bare primitive name ("string") is a valid Avro schema text as well.
        if text.strip() in PRIMITIVES:
            return text.strip()
        raise InvalidSchema(f"{what} is not JSON: {text[:80]!r}") from None


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_REQUIRED = {"record": ("fields", list), "error": ("fields", list), "enum": ("symbols", list),
             "fixed": ("size", int), "array": ("items", object), "map": ("values", object)}


def _validate(obj, where: str):
    """What the Avro specification requires and fastavro lets pass or reports as a bare
    KeyError: a record's fields, unique valid field names, valid type names, sizes."""
    if isinstance(obj, list):
        for i, branch in enumerate(obj):
            _validate(branch, f"{where}/{i}")
        return
    if not isinstance(obj, dict):
        return
    t = obj.get("type")
    if isinstance(t, (dict, list)):
        return _validate(t, where)
    need = _REQUIRED.get(t)
    if need is not None:
        key, kind = need
        if key not in obj or not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            raise InvalidSchema(f"at {where or '/'}: a {t} needs {key!r} ({kind.__name__})")
    if t in _NAMED:
        name = obj.get("name")
        if not isinstance(name, str) or not all(_NAME.match(part) for part in name.split(".")):
            raise InvalidSchema(f"at {where or '/'}: {name!r} is not a valid Avro name")
    if t in ("record", "error"):
        seen = set()
        for i, fld in enumerate(obj["fields"]):
            if not isinstance(fld, dict) or not isinstance(fld.get("name"), str) or not _NAME.match(fld["name"]):
                raise InvalidSchema(f"at {where}/fields/{i}: a field needs a valid 'name'")
            if fld["name"] in seen:
                raise InvalidSchema(f"at {where}/fields/{i}: field {fld['name']!r} is defined twice")
            if "type" not in fld:
                raise InvalidSchema(f"at {where}/fields/{i}: field {fld['name']!r} has no 'type'")
            seen.add(fld["name"])
            _validate(fld["type"], f"{where}/fields/{i}")
    elif t == "array":
        _validate(obj["items"], f"{where}/items")
    elif t == "map":
        _validate(obj["values"], f"{where}/values")
    elif t == "fixed" and obj["size"] < 0:
        raise InvalidSchema(f"at {where or '/'}: a fixed size must be >= 0, not {obj['size']}")


def _parse(obj, named: dict, what: str):
    try:
        _validate(obj, "")
    except InvalidSchema as e:
        raise InvalidSchema(f"{what}: {e}") from None
    try:
        return fastavro.parse_schema(obj, named_schemas=named, _write_hint=False)
    except UnknownType as e:
        raise InvalidSchema(f"{what}: unknown type {e.name!r} (not a primitive, not defined "
                            f"before its use, not among the references)") from None
    except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as e:
        raise InvalidSchema(f"{what}: {e}") from None


class AvroSchema:
    """A parsed Avro schema: `tree` is fastavro's parsed form, `named` every named type."""

    def __init__(self, text: str, references: dict[str, str]):
        self.text = text
        named: dict = {}
        pending = dict(references or {})
        # References may refer to each other: parse until no progress (their order is free).
        while pending:
            progress = False
            for name, ref_text in list(pending.items()):
                trial = dict(named)
                try:
                    _parse(_load(ref_text, f"reference {name!r}"), trial, f"reference {name!r}")
                except InvalidSchema:
                    continue
                named = trial
                del pending[name]
                progress = True
            if not progress:
                name = next(iter(pending))
                _parse(_load(pending[name], f"reference {name!r}"), dict(named), f"reference {name!r}")
        obj = _load(text, "the schema")
        self._obj, self._refs_named = obj, dict(named)
        self._codec = None
        self.tree = _parse(obj, named, "the schema")
        self.named = named
        self._own = [n for n in _defined_names(obj)]

    # -------------------------------------------------------------- interface
    def canonical(self) -> str:
        return json.dumps(_canonical(self.tree, self.named, set()), separators=(",", ":"))

    def incompatibilities(self, writer: AvroSchema) -> list[str]:
        out: list[str] = []
        _check(self.tree, self.named, writer.tree, writer.named, "", out, set())
        return out

    def encode(self, obj) -> bytes:
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self._writable(), obj)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            raise SerializationError(f"value does not match the Avro schema: {e}") from None
        return buf.getvalue()

    def decode(self, payload: bytes, reader: AvroSchema | None = None):
        try:
            return fastavro.schemaless_reader(io.BytesIO(payload), self._writable(),
                                              None if reader is None else reader._writable())
        except (EOFError, ValueError, TypeError, IndexError, KeyError, OverflowError, StopIteration) as e:
            raise SerializationError(f"payload is not a value of the Avro schema: {e}") from None

    def names(self) -> list[str]:
        return list(self._own)

    def _writable(self):
        """fastavro's parsed form marked as parsed, carrying the referenced named types."""
        if self._codec is None:
            self._codec = fastavro.parse_schema(self._obj, named_schemas=dict(self._refs_named))
        return self._codec


def _fullname(obj: dict, namespace: str | None) -> str:
    name = obj.get("name", "")
    ns = obj.get("namespace", namespace)
    return name if "." in name or not ns else f"{ns}.{name}"


def _defined_names(obj, namespace=None, out=None) -> list[str]:
    """The full names a schema text defines, outermost first."""
    out = [] if out is None else out
    if isinstance(obj, list):
        for branch in obj:
            _defined_names(branch, namespace, out)
    elif isinstance(obj, dict):
        t = obj.get("type")
        if t in _NAMED:
            full = _fullname(obj, namespace)
            out.append(full)
            ns = full.rpartition(".")[0] or None
            for f in obj.get("fields", ()):
                _defined_names(f.get("type"), ns, out)
        elif t == "array":
            _defined_names(obj.get("items"), namespace, out)
        elif t == "map":
            _defined_names(obj.get("values"), namespace, out)
        elif isinstance(t, (dict, list)):
            _defined_names(t, namespace, out)
    return out


def _resolve(node, named: dict):
    """A type node with a name reference replaced by its definition."""
    if isinstance(node, str):
        if node in PRIMITIVES:
            return node
        return named.get(node, node)
    if isinstance(node, dict) and node.get("type") in PRIMITIVES and len(node) == 1:
        return node["type"]
    if isinstance(node, dict) and node.get("type") in PRIMITIVES and "logicalType" not in node:
        return node["type"]
    return node


def _kind(node) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union"
    t = node.get("type")
    return "record" if t == "error" else t


# ------------------------------------------------------------------ canonical form
def _canonical(node, named, seen):
    node = _resolve(node, named)
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return [_canonical(b, named, seen) for b in node]
    kind = _kind(node)
    if kind in PRIMITIVES:
        out = {"type": kind}
        for k in ("logicalType", "precision", "scale"):
            if k in node:
                out[k] = node[k]
        return out
    if kind in ("record", "enum", "fixed"):
        name = node["name"]
        if name in seen:
            return name
        seen.add(name)
        out = {"name": name, "type": kind}
        if kind == "record":
            fields = []
            for f in node["fields"]:
                cf = {"name": f["name"], "type": _canonical(f["type"], named, seen)}
                if "default" in f:
                    cf["default"] = f["default"]
                if f.get("aliases"):
                    cf["aliases"] = sorted(f["aliases"])
                fields.append(cf)
            out["fields"] = fields
        elif kind == "enum":
            out["symbols"] = list(node["symbols"])
            if "default" in node:
                out["default"] = node["default"]
        else:
            out["size"] = node["size"]
        if node.get("aliases"):
            out["aliases"] = sorted(node["aliases"])
        if "logicalType" in node:
            out["logicalType"] = node["logicalType"]
        return out
    if kind == "array":
        return {"type": "array", "items": _canonical(node["items"], named, seen)}
    if kind == "map":
        return {"type": "map", "values": _canonical(node["values"], named, seen)}
    return node


# ------------------------------------------------------------------ resolution rules
def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _names_match(reader: dict, writer: dict) -> bool:
    if _short(reader["name"]) == _short(writer["name"]):
        return True
    return writer["name"] in (reader.get("aliases") or ()) or _short(writer["name"]) in (reader.get("aliases") or ())


def _describe(node) -> str:
    k = _kind(node)
    if k in ("record", "enum", "fixed"):
        return f"{k} {node['name']}"
    return k


def _check(r, rn, w, wn, path, out, seen):
    r = _resolve(r, rn)
    w = _resolve(w, wn)
    rk, wk = _kind(r), _kind(w)
    if rk in ("record", "enum", "fixed") and wk == rk:
        pair = (r["name"], w["name"], path.count("/") > 64)
        if (r["name"], w["name"]) in seen:
            return
        seen = seen | {pair[:2]}
    where = path or "/"
    if wk == "union":
        for i, branch in enumerate(w):
            if rk == "union":
                if not any(_quiet(rb, rn, branch, wn, seen) for rb in r):
                    out.append(f"TYPE_MISMATCH at {where}: the writer's union branch {i} "
                               f"({_describe(_resolve(branch, wn))}) matches no branch of the reader's union")
            else:
                _check(r, rn, branch, wn, f"{path}/{i}", out, seen)
        return
    if rk == "union":
        if not any(_quiet(rb, rn, w, wn, seen) for rb in r):
            out.append(f"MISSING_UNION_BRANCH at {where}: the reader's union has no branch for the writer's "
                       f"{_describe(w)}")
        return
    if rk != wk:
        if wk in _PROMOTIONS and rk in _PROMOTIONS[wk]:
            return
        out.append(f"TYPE_MISMATCH at {where}: the reader's {_describe(r)} cannot read the writer's {_describe(w)}")
        return
    if rk in PRIMITIVES:
        return
    if rk in ("record", "enum", "fixed") and not _names_match(r, w):
        out.append(f"NAME_MISMATCH at {where}: the reader's {rk} {r['name']} is not the writer's {w['name']} "
                   f"(neither its name nor among its aliases)")
        return
    if rk == "fixed":
        if r["size"] != w["size"]:
            out.append(f"FIXED_SIZE_MISMATCH at {where}: the reader's fixed {r['name']} has size {r['size']}, "
                       f"the writer's {w['size']}")
    elif rk == "enum":
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            out.append(f"MISSING_ENUM_SYMBOLS at {where}: the reader's enum {r['name']} lacks the writer's "
                       f"symbols {missing} and has no default")
    elif rk == "array":
        _check(r["items"], rn, w["items"], wn, f"{path}/items", out, seen)
    elif rk == "map":
        _check(r["values"], rn, w["values"], wn, f"{path}/values", out, seen)
    elif rk == "record":
        by_name = {f["name"]: f for f in w["fields"]}
        for i, rf in enumerate(r["fields"]):
            wf = by_name.get(rf["name"])
            if wf is None:
                for alias in rf.get("aliases") or ():
                    wf = by_name.get(alias)
                    if wf is not None:
                        break
            fpath = f"{path}/fields/{i}"
            if wf is None:
                if "default" not in rf:
                    out.append(f"READER_FIELD_MISSING_DEFAULT_VALUE at {fpath}: the field {rf['name']!r} of "
                               f"record {r['name']} has no default value and is missing in the writer's schema")
            else:
                _check(rf["type"], rn, wf["type"], wn, fpath, out, seen)


def _quiet(r, rn, w, wn, seen) -> bool:
    probe: list[str] = []
    _check(r, rn, w, wn, "", probe, seen)
    return not probe


class _Format:
    name = "AVRO"

    def parse(self, schema: str, references: dict[str, str] | None = None) -> AvroSchema:
        if not isinstance(schema, str):
            raise InvalidSchema(f"an Avro schema is a JSON text, not {type(schema).__name__}")
        return AvroSchema(schema, references or {})


FORMAT = _Format()
