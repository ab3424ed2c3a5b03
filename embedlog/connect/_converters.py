"""Kafka Connect's converters: a (schema, value) pair to the bytes of a record and back.

    org.apache.kafka.connect.json.JsonConverter          schemas.enable=true (Kafka's default):
        {"schema": <Connect schema>, "payload": <value>}; false: the value alone. Bytes
        (BYTES schemas, Decimal's unscaled bytes) travel as base64, as Kafka's does.
    org.apache.kafka.connect.storage.StringConverter     the value as UTF-8 text
    org.apache.kafka.connect.converters.ByteArrayConverter  bytes as they are
    io.confluent.connect.avro.AvroConverter, io.confluent.connect.json.JsonSchemaConverter
        Confluent's wire format with a schema registry (`_registryconv`)

Each is named by its Java class or its short name (`JsonConverter`); `key.converter.*` and
`value.converter.*` keys configure them. A null value stays a null record value (a
tombstone), with every converter.
"""
from __future__ import annotations

import base64
import json

from . import _registryconv
from ._data import ConnectError

CLASSES = {
    "org.apache.kafka.connect.json.JsonConverter": "json",
    "org.apache.kafka.connect.storage.StringConverter": "string",
    "org.apache.kafka.connect.converters.ByteArrayConverter": "bytes",
}
_SHORT = {name.rsplit(".", 1)[1]: kind for name, kind in CLASSES.items()}
# Settings of the converters (after `key.converter.` / `value.converter.`); the last two are
# accepted and do nothing here (Kafka's cache of schema conversions; a null-handling knob).
SETTINGS = {"schemas.enable", "schemas.cache.size", "replace.null.with.default", "encoding"}
DEFAULT = "org.apache.kafka.connect.json.JsonConverter"
_REGISTRY_SHORT = {name.rsplit(".", 1)[1]: name for name in _registryconv.CLASSES}


def _jsonable(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _b64(value):
    """json.dumps's `default`: bytes as base64 text, as _jsonable turns them (anything else
    json cannot write stays a TypeError)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder():
    """json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_b64) as one
    function: json's C encoder made once with the arguments JSONEncoder.encode would give it
    per call (without the circular-reference check: a connector's values are trees), or
    JSONEncoder.encode itself where json has no C encoder."""
    enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_b64)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return enc.encode
    once = make(None, enc.default, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    join = "".join
    return lambda value: join(once(value, 0))


_dumps = _encoder()


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)
    return str(value)


class Converter:
    def __init__(self, class_name: str, settings: dict[str, str], *, role: str):
        kind = CLASSES.get(class_name) or _SHORT.get(class_name)
        if kind is None:
            raise ConnectError(f"{role}.converter: unknown converter class {class_name!r} (known: "
                               f"{', '.join(sorted([*CLASSES, *_registryconv.CLASSES]))})")
        for k in settings:
            if k not in SETTINGS:
                raise ConnectError(f"unknown setting {role}.converter.{k} for {class_name}")
        self.kind, self.role = kind, role
        enable = str(settings.get("schemas.enable", "true")).lower()
        if enable not in ("true", "false"):
            raise ConnectError(f"{role}.converter.schemas.enable must be true or false, not {enable!r}")
        self.schemas = enable == "true"
        # Each schema's JSON text, once per schema object (a source's schemas are built once
        # per table version and reused for every record), as Kafka's converter caches its
        # schema conversions: {id(schema): (schema, '{"schema":<text>,"payload":')}. The
        # schema itself is kept so its id is not reused while cached.
        self._heads: dict[int, tuple[dict, str]] = {}

    def from_connect(self, schema: dict | None, value, *, topic: str | None = None) -> bytes | None:
        if value is None and schema is None:
            return None                               # a tombstone stays one, as with Kafka's converters
        if self.kind == "json":
            return self._json(schema, value)
        if self.kind == "bytes":
            if value is None:
                return None
            if isinstance(value, (bytes, bytearray, memoryview)):
                return bytes(value)
            if isinstance(value, str):
                return value.encode()
            raise ConnectError(f"ByteArrayConverter is not compatible with objects of type {type(value).__name__} "
                               f"({self.role})")
        return None if value is None else _text(value).encode()       # StringConverter

    def _json(self, schema: dict | None, value) -> bytes:
        # JsonConverter: with schemas.enable the envelope, also around a null payload; the
        # text is what json.dumps(separators=(",", ":")) writes for {"schema", "payload"}.
        if not self.schemas:
            return _dumps(value).encode()
        got = self._heads.get(id(schema))
        if got is None or got[0] is not schema:
            if len(self._heads) >= 1024:
                self._heads.clear()
            got = self._heads[id(schema)] = (schema, '{"schema":' + _dumps(schema) + ',"payload":')
        return (got[1] + _dumps(value) + "}").encode()

    def to_connect(self, data: bytes | None) -> tuple[dict | None, object]:
        if data is None:
            return None, None
        if self.kind == "bytes":
            return {"type": "bytes", "optional": True}, bytes(data)
        if self.kind == "string":
            return {"type": "string", "optional": True}, bytes(data).decode("utf-8", errors="replace")
        try:
            doc = json.loads(bytes(data))
        except ValueError as e:
            raise ConnectError(f"{self.role} is not JSON ({e}); set {self.role}.converter for these records") \
                from None
        if not self.schemas:
            return None, doc
        if not isinstance(doc, dict) or set(doc) != {"schema", "payload"}:
            raise ConnectError(f"JsonConverter with schemas.enable requires \"schema\" and \"payload\" fields "
                               f"and may not contain additional fields ({self.role}); set "
                               f"{self.role}.converter.schemas.enable=false for plain JSON")
        return doc["schema"], _from_json(doc["schema"], doc["payload"], self.role)


def _from_json(schema: dict | None, value, role: str):
    """A payload under its schema: BYTES from base64, into structs, arrays and maps."""
    if schema is None or value is None:
        return value
    t = schema.get("type")
    if t == "bytes":
        try:
            return base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            raise ConnectError(f"{role}: invalid bytes field (not base64): {str(value)[:40]!r}") from None
    if t == "struct" and isinstance(value, dict):
        return {f["field"]: _from_json(f, value.get(f["field"]), role) for f in schema.get("fields", ())}
    if t == "array" and isinstance(value, list):
        return [_from_json(schema.get("items"), v, role) for v in value]
    if t == "map" and isinstance(value, dict):
        return {k: _from_json(schema.get("values"), v, role) for k, v in value.items()}
    return value


def converter(config: dict[str, str], role: str) -> Converter | _registryconv.RegistryConverter:
    prefix = f"{role}.converter."
    settings = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
    name = config.get(f"{role}.converter", DEFAULT)
    full = _REGISTRY_SHORT.get(name, name)
    if full in _registryconv.CLASSES:
        return _registryconv.RegistryConverter(full, settings, role=role)
    return Converter(name, settings, role=role)
