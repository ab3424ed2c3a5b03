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

Kafka's own (org.apache.kafka.connect.transforms.*, by full or short name, `$Key`/`$Value`):
    InsertField     topic.field, partition.field, offset.field, timestamp.field,
                    static.field/static.value; `name!` required, `name?` optional (default)
    ReplaceField    exclude (blacklist), include (whitelist), renames old:new
    ExtractField    field: the key/value becomes one of its fields
    HoistField      field: the key/value is wrapped into a one-field struct/map
    ValueToKey      fields: the key becomes a struct/map of the value's fields
    RegexRouter     regex, replacement ($1 ...): the topic renamed when the regex matches it all
A null key/value passes InsertField, ReplaceField and ValueToKey unchanged.
"""
from __future__ import annotations

import json
from typing import ClassVar

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
        self._schemas: dict[tuple, tuple[dict, dict]] = {}       # _row_schema's

    def _name(self, prefix: str, path: str) -> str:
        return prefix + path.replace(".", "_")

    def _row_schema(self, row_schema: dict, added: tuple) -> dict:
        """The new record's schema: the row's struct plus the added fields, made once per
        (row schema object, added fields), so a converter's schema cache sees one object (the
        row schema is kept so its id is not reused while cached)."""
        cache = self._schemas
        got = cache.get((id(row_schema), added))
        if got is not None and got[0] is row_schema:
            return got[1]
        new_schema = {k: v for k, v in row_schema.items() if k != "field"}
        new_schema["fields"] = [*new_schema.get("fields", ()), *(field(n, primitive(t)) for n, t in added)]
        if len(cache) >= 1024:
            cache.clear()
        cache[(id(row_schema), added)] = (row_schema, new_schema)
        return new_schema

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
        added = []                              # (field name, its type) of each added field
        for path in self.fields:
            name = self._name(self.fields_prefix, path)
            v = _envelope_field(value, path)
            row[name] = v
            added.append((name, "int64" if isinstance(v, int) and not isinstance(v, bool) else "string"))
        if self.delete_mode == "rewrite":
            row[self.fields_prefix + "deleted"] = "true" if op == "d" else "false"
            added.append((self.fields_prefix + "deleted", "string"))
        new_schema = None if row_schema is None else self._row_schema(row_schema, tuple(added))
        headers = tuple(record.headers)
        for path in self.headers:
            v = _envelope_field(value, path)
            headers += ((self._name(self.headers_prefix, path),
                         None if v is None else (v if isinstance(v, str) else json.dumps(v)).encode()),)
        return record._replace(value=row, value_schema=new_schema, headers=headers)



# ---------------------------------------------------------------- Kafka's own transforms
# Each works on the key (`...$Key`) or the value (`...$Value`) of a record, with a schema
# (a struct in JsonConverter's layout, its value a dict) or schemaless (a dict), as Kafka's
# org.apache.kafka.connect.transforms.* do. A null key/value (a tombstone) passes through.
_KAFKA = "org.apache.kafka.connect.transforms."
TIMESTAMP_SCHEMA_NAME = "org.apache.kafka.connect.data.Timestamp"


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class _Part:
    """The shared part of a Key/Value transform: which side it reads and writes, and the
    check of its settings."""

    KEYS: frozenset = frozenset()
    PURPOSE = ""

    def __init__(self, alias: str, settings: dict[str, str], side: str):
        self.prefix, self.side = f"transforms.{alias}.", side
        for k in settings:
            if k != "type" and k not in self.KEYS:
                near = [n for n in self.KEYS if n.split(".")[0] == k.split(".")[0]]
                hint = f" (did you mean {self.prefix}{near[0]}?)" if near else ""
                raise ConnectError(f"unknown setting {self.prefix}{k} for {settings['type']}{hint}; "
                                   f"known: {', '.join(sorted(self.KEYS)) or 'none'}")

    def required(self, settings, key, what):
        if not settings.get(key):
            raise ConnectError(f"{self.prefix}{key} is required ({what})")
        return settings[key]

    def get(self, record):
        if self.side == "key":
            return record.key_schema, record.key
        return record.value_schema, record.value

    def put(self, record, schema, value):
        if self.side == "key":
            return record._replace(key_schema=schema, key=value)
        return record._replace(value_schema=schema, value=value)

    def require(self, schema, value):
        """Kafka's requireStruct / requireMap: a struct under a schema, a map without."""
        if schema is not None:
            if schema.get("type") != "struct" or not isinstance(value, dict):
                raise ConnectError(f"{self.prefix[:-1]}: only Struct objects supported for [{self.PURPOSE}], "
                                   f"found: {schema.get('type')}")
        elif not isinstance(value, dict):
            raise ConnectError(f"{self.prefix[:-1]}: only Map objects supported in absence of schema for "
                               f"[{self.PURPOSE}], found: {type(value).__name__}")


def _fields(schema: dict) -> list[dict]:
    return list(schema.get("fields") or ())


def _with_fields(schema: dict, fields: list[dict]) -> dict:
    out = {k: v for k, v in schema.items() if k not in ("fields", "field")}
    out["fields"] = fields
    return out


class InsertField(_Part):
    """topic.field, partition.field, offset.field (sink records only), timestamp.field,
    static.field + static.value; a name ending in `!` makes the field required, `?`
    (the default) optional."""

    KEYS = frozenset({"topic.field", "partition.field", "offset.field", "timestamp.field", "static.field",
                      "static.value", "replace.null.with.default"})
    PURPOSE = "field insertion"

    def __init__(self, alias, settings, side):
        super().__init__(alias, settings, side)
        self.inserts = []                            # (name, optional, what)
        for what in ("topic", "partition", "offset", "timestamp", "static"):
            spec = settings.get(f"{what}.field")
            if spec:
                optional = not spec.endswith("!")
                self.inserts.append((spec.rstrip("!?"), optional, what))
        self.static_value = settings.get("static.value")
        if not self.inserts:
            raise ConnectError(f"{self.prefix[:-1]}: no field to insert (set topic.field, partition.field, "
                               "offset.field, timestamp.field or static.field)")

    def _value_of(self, record, what):
        if what == "topic":
            return record.topic
        if what == "partition":
            return record.partition if isinstance(record.partition, int) else None
        if what == "offset":
            if not isinstance(record.offset, int):
                raise ConnectError(f"{self.prefix}offset.field: only SinkRecord supported for [{self.PURPOSE}] "
                                   "(a source record has no Kafka offset yet)")
            return record.offset
        if what == "timestamp":
            return record.timestamp
        return self.static_value

    _TYPES: ClassVar[dict] = {"topic": {"type": "string"}, "partition": {"type": "int32"}, "offset": {"type": "int64"},
              "timestamp": {"type": "int64", "name": TIMESTAMP_SCHEMA_NAME, "version": 1},
              "static": {"type": "string"}}

    def apply(self, record):
        schema, value = self.get(record)
        if value is None:
            return record
        self.require(schema, value)
        out = dict(value)
        for name, optional, what in self.inserts:
            v = self._value_of(record, what)
            if v is None and not optional:
                raise ConnectError(f"{self.prefix}{what}.field: {name} is required but the record has no {what}")
            out[name] = v
        if schema is None:
            return self.put(record, None, out)
        fields = _fields(schema) + [{**self._TYPES[what], "optional": optional, "field": name}
                                    for name, optional, what in self.inserts]
        return self.put(record, _with_fields(schema, fields), out)


class ReplaceField(_Part):
    """exclude (or blacklist), include (or whitelist), renames (old:new,...)."""

    KEYS = frozenset({"exclude", "include", "renames", "blacklist", "whitelist", "replace.null.with.default"})
    PURPOSE = "field replacement"

    def __init__(self, alias, settings, side):
        super().__init__(alias, settings, side)
        self.exclude = set(_list(settings.get("exclude", settings.get("blacklist"))))
        self.include = set(_list(settings.get("include", settings.get("whitelist"))))
        self.renames = {}
        for pair in _list(settings.get("renames")):
            old, sep, new = pair.partition(":")
            if not sep or not old or not new:
                raise ConnectError(f"{self.prefix}renames: {pair!r} is not old:new")
            self.renames[old] = new

    def _keep(self, name):
        return name not in self.exclude and (not self.include or name in self.include)

    def apply(self, record):
        schema, value = self.get(record)
        if value is None:
            return record
        self.require(schema, value)
        if schema is None:
            out = {self.renames.get(k, k): v for k, v in value.items() if self._keep(k)}
            return self.put(record, None, out)
        fields = [{**f, "field": self.renames.get(f["field"], f["field"])} for f in _fields(schema)
                  if self._keep(f["field"])]
        out = {self.renames.get(f["field"], f["field"]): value.get(f["field"]) for f in _fields(schema)
               if self._keep(f["field"])}
        return self.put(record, _with_fields(schema, fields), out)


class ExtractField(_Part):
    """field: the key/value becomes that field of the struct or map (null when a map lacks it)."""

    KEYS = frozenset({"field", "field.syntax.version", "replace.null.with.default"})
    PURPOSE = "field extraction"

    def __init__(self, alias, settings, side):
        super().__init__(alias, settings, side)
        self.field = self.required(settings, "field", "the field to extract")

    def apply(self, record):
        schema, value = self.get(record)
        if schema is None:
            if value is not None and not isinstance(value, dict):
                self.require(None, value)
            return self.put(record, None, None if value is None else value.get(self.field))
        if value is not None:
            self.require(schema, value)
        f = next((f for f in _fields(schema) if f.get("field") == self.field), None)
        if f is None:
            raise ConnectError(f"{self.prefix}field: unknown field {self.field!r} (the schema has "
                               f"{', '.join(x['field'] for x in _fields(schema)) or 'no fields'})")
        fschema = {k: v for k, v in f.items() if k != "field"}
        return self.put(record, fschema, None if value is None else value.get(self.field))


class HoistField(_Part):
    """field: the key/value becomes a struct (or map) with it as its only field."""

    KEYS = frozenset({"field"})
    PURPOSE = "field hoisting"

    def __init__(self, alias, settings, side):
        super().__init__(alias, settings, side)
        self.field = self.required(settings, "field", "the name of the field to wrap into")

    def apply(self, record):
        schema, value = self.get(record)
        if schema is None:
            return self.put(record, None, {self.field: value})
        return self.put(record, {"type": "struct", "fields": [{**schema, "field": self.field}], "optional": False},
                        {self.field: value})


class ValueToKey:
    """fields: the key becomes a struct (or map) of these fields copied from the value."""

    PURPOSE = "copying fields from value to key"

    def __init__(self, alias, settings):
        self.prefix = f"transforms.{alias}."
        for k in settings:
            if k not in ("type", "fields", "replace.null.with.default"):
                raise ConnectError(f"unknown setting {self.prefix}{k} for {settings['type']}; known: fields")
        self.fields = _list(settings.get("fields"))
        if not self.fields:
            raise ConnectError(f"{self.prefix}fields is required (the value's fields that make the key)")

    def apply(self, record):
        schema, value = record.value_schema, record.value
        if value is None:
            return record
        side = _Part.__new__(_Part)
        side.prefix, side.PURPOSE = self.prefix, self.PURPOSE
        side.require(schema, value)
        if schema is None:
            return record._replace(key_schema=None, key={f: value.get(f) for f in self.fields})
        by_name = {f["field"]: f for f in _fields(schema)}
        missing = [f for f in self.fields if f not in by_name]
        if missing:
            raise ConnectError(f"{self.prefix}fields: the value has no field {missing[0]!r}")
        key_schema = {"type": "struct", "fields": [by_name[f] for f in self.fields], "optional": False}
        return record._replace(key_schema=key_schema, key={f: value.get(f) for f in self.fields})


class RegexRouter:
    """regex, replacement: a topic the regex matches in full is renamed ($1 ... are groups)."""

    def __init__(self, alias, settings):
        import re
        self.prefix = f"transforms.{alias}."
        for k in settings:
            if k not in ("type", "regex", "replacement"):
                raise ConnectError(f"unknown setting {self.prefix}{k} for {settings['type']}; "
                                   "known: regex, replacement")
        if "regex" not in settings or "replacement" not in settings:
            raise ConnectError(f"{self.prefix}regex and {self.prefix}replacement are required")
        try:
            self.regex = re.compile(settings["regex"])
        except re.error as e:
            raise ConnectError(f"{self.prefix}regex: {settings['regex']!r} is not a regular expression ({e})") \
                from None
        self.replacement = re.sub(r"\$(\d+)", r"\\g<\1>", settings["replacement"])

    def apply(self, record):
        if record.topic is not None and self.regex.fullmatch(record.topic):
            return record._replace(topic=self.regex.sub(self.replacement, record.topic, count=1))
        return record


def _sided(cls, side):
    return lambda alias, settings: cls(alias, settings, side)


CLASSES = {UNWRAP: ExtractNewRecordState, _KAFKA + "ValueToKey": ValueToKey, _KAFKA + "RegexRouter": RegexRouter}
for _cls in (InsertField, ReplaceField, ExtractField, HoistField):
    for _side in ("Key", "Value"):
        CLASSES[f"{_KAFKA}{_cls.__name__}${_side}"] = _sided(_cls, _side.lower())
for _name, _cls in list(CLASSES.items()):
    CLASSES.setdefault(_name.rsplit(".", 1)[1], _cls)        # the short names, as in docs
del _cls, _side, _name


def transforms(config: dict[str, str]) -> list:
    """The chain named by `transforms`, each configured from `transforms.<alias>.*`."""
    aliases = [a.strip() for a in config.get("transforms", "").split(",") if a.strip()]
    if len(set(aliases)) != len(aliases):
        raise ConnectError(f"transforms names an alias twice: {config['transforms']!r}")
    for k in config:
        if k.startswith("transforms.") and k.split(".")[1] not in aliases:
            raise ConnectError(f"{k}: transform alias {k.split('.')[1]!r} is not listed in transforms")
    chain = []
    for alias in aliases:
        prefix = f"transforms.{alias}."
        settings = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
        cls_name = settings.get("type")
        if not cls_name:
            raise ConnectError(f"{prefix}type is missing (the transform's class)")
        cls = CLASSES.get(cls_name)
        if cls is None:
            import difflib
            near = difflib.get_close_matches(cls_name, [n for n in CLASSES if "." in n], n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConnectError(f"{prefix}type: unknown transform {cls_name!r}{hint}")
        chain.append(cls(alias, settings))
    return chain


def apply_all(chain, record):
    for t in chain:
        record = t.apply(record)
        if record is None:
            return None
    return record
