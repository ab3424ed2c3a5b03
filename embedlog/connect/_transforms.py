"""Single message transforms (`transforms=unwrap`, `transforms.unwrap.type=...`), applied in
the order listed, to source records before the converters and to sink records after them.

    io.debezium.transforms.ExtractNewRecordState   Debezium's change event -> the row after it
        drop.tombstones        true: the tombstone after a delete is dropped (default true)
        delete.handling.mode   drop (default): a delete event is dropped; rewrite: the row
                               before it, with __deleted=true; none: a tombstone in its place
        add.fields             envelope fields to copy in as __<name> (op, table, lsn,
                               source.ts_ms, ts_ms, ...); add.fields.prefix (default __)
        add.headers            the same, as record headers; add.headers.prefix (default __)

A record that is not a change event (no `op`, `after` in its value) passes unchanged, as
Debezium's does.
"""
from __future__ import annotations

import json

from ._data import ConnectError, field, primitive

UNWRAP = "io.debezium.transforms.ExtractNewRecordState"
_UNWRAP_KEYS = {"type", "drop.tombstones", "delete.handling.mode", "add.fields", "add.fields.prefix",
                "add.headers", "add.headers.prefix"}


def _bool(name: str, value: str) -> bool:
    v = str(value).lower()
    if v not in ("true", "false"):
        raise ConnectError(f"{name} must be true or false, not {value!r}")
    return v == "true"


def _envelope_field(value: dict, path: str):
    if "." in path:
        outer, inner = path.split(".", 1)
        part = value.get(outer) or {}
        return part.get(inner) if isinstance(part, dict) else None
    if path in value:
        return value[path]
    return (value.get("source") or {}).get(path)


def _field_schema(envelope_schema: dict | None, name: str) -> dict | None:
    for f in (envelope_schema or {}).get("fields", ()):
        if f.get("field") == name:
            return f
    return None


class ExtractNewRecordState:
    def __init__(self, alias: str, settings: dict[str, str]):
        prefix = f"transforms.{alias}."
        for k in settings:
            if k not in _UNWRAP_KEYS:
                raise ConnectError(f"unknown setting {prefix}{k} for {UNWRAP}")
        self.drop_tombstones = _bool(prefix + "drop.tombstones", settings.get("drop.tombstones", "true"))
        self.delete_mode = settings.get("delete.handling.mode", "drop")
        if self.delete_mode not in ("drop", "rewrite", "none"):
            raise ConnectError(f"{prefix}delete.handling.mode must be drop, rewrite or none, not "
                               f"{self.delete_mode!r}")
        self.fields = [f.strip() for f in settings.get("add.fields", "").split(",") if f.strip()]
        self.fields_prefix = settings.get("add.fields.prefix", "__")
        self.headers = [f.strip() for f in settings.get("add.headers", "").split(",") if f.strip()]
        self.headers_prefix = settings.get("add.headers.prefix", "__")

    def _name(self, prefix: str, path: str) -> str:
        return prefix + path.replace(".", "_")

    def apply(self, record):
        value = record.value
        if value is None:
            return None if self.drop_tombstones else record
        if not isinstance(value, dict) or "op" not in value or "after" not in value:
            return record
        op = value["op"]
        schema = record.value_schema
        row_schema = _field_schema(schema, "after")
        if op == "d":
            if self.delete_mode == "drop":
                return None
            if self.delete_mode == "none":
                return record._replace(value=None, value_schema=None)
            row = dict(value.get("before") or {})
            row_schema = _field_schema(schema, "before")
        else:
            row = dict(value["after"] or {})
        new_schema = None
        if row_schema is not None:
            new_schema = {k: v for k, v in row_schema.items() if k != "field"}
            new_schema["fields"] = list(new_schema.get("fields", ()))
        for path in self.fields:
            name = self._name(self.fields_prefix, path)
            v = _envelope_field(value, path)
            row[name] = v
            if new_schema is not None:
                new_schema["fields"].append(field(name, primitive("int64" if isinstance(v, int)
                                                                  and not isinstance(v, bool) else "string")))
        if self.delete_mode == "rewrite":
            row[self.fields_prefix + "deleted"] = "true" if op == "d" else "false"
            if new_schema is not None:
                new_schema["fields"].append(field(self.fields_prefix + "deleted", primitive("string")))
        headers = tuple(record.headers)
        for path in self.headers:
            v = _envelope_field(value, path)
            headers += ((self._name(self.headers_prefix, path),
                         None if v is None else (v if isinstance(v, str) else json.dumps(v)).encode()),)
        return record._replace(value=row, value_schema=new_schema, headers=headers)


CLASSES = {UNWRAP: ExtractNewRecordState, "ExtractNewRecordState": ExtractNewRecordState}


def transforms(config: dict[str, str]) -> list:
    """The chain named by `transforms`, each configured from `transforms.<alias>.*`."""
    aliases = [a.strip() for a in config.get("transforms", "").split(",") if a.strip()]
    if len(set(aliases)) != len(aliases):
        raise ConnectError(f"transforms names an alias twice: {config['transforms']!r}")
    chain = []
    for alias in aliases:
        prefix = f"transforms.{alias}."
        settings = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
        cls_name = settings.get("type")
        if not cls_name:
            raise ConnectError(f"{prefix}type is missing (the transform's class)")
        cls = CLASSES.get(cls_name)
        if cls is None:
            raise ConnectError(f"{prefix}type: unknown transform {cls_name!r} (known: {UNWRAP})")
        chain.append(cls(alias, settings))
    for k in config:
        if k.startswith("transforms.") and k.split(".")[1] not in aliases:
            raise ConnectError(f"{k}: transform alias {k.split('.')[1]!r} is not listed in transforms")
    return chain


def apply_all(chain, record):
    for t in chain:
        record = t.apply(record)
        if record is None:
            return None
    return record
