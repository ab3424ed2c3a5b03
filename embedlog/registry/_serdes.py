"""Serializers and deserializers in Confluent's wire format, for any registry format.

    byte 0      magic 0
    bytes 1-4   schema id, int32 big-endian
    bytes 5-    the format's payload (FORMAT.encode; Protobuf's starts with its message indexes)

Subject name strategies, as Confluent's (`subject.name.strategy`), called with
(topic, field, record_name) where field is "key" or "value":
    topic_subject_name_strategy         <topic>-key / <topic>-value (the default)
    record_subject_name_strategy        <record full name>
    topic_record_subject_name_strategy  <topic>-<record full name>
"""
from __future__ import annotations

import struct
import threading

from . import _errors as E
from ._formats import SerializationError
from ._registry import Registry, registry_for

MAGIC = 0
_HEADER = struct.Struct(">bI")


def topic_subject_name_strategy(topic: str, field: str, record_name: str | None) -> str:
    return f"{topic}-{field}"


def record_subject_name_strategy(topic: str, field: str, record_name: str | None) -> str:
    if not record_name:
        raise SerializationError("record_subject_name_strategy needs a schema that names a record")
    return record_name


def topic_record_subject_name_strategy(topic: str, field: str, record_name: str | None) -> str:
    return f"{topic}-{record_subject_name_strategy(topic, field, record_name)}"


_CONF = {"auto.register.schemas": True, "use.latest.version": False, "normalize.schemas": False,
         "subject.name.strategy": topic_subject_name_strategy}


def _registry(reg) -> Registry:
    return reg if isinstance(reg, Registry) else registry_for(reg)


def _conf(conf: dict | None) -> dict:
    out = dict(_CONF)
    for k, v in (conf or {}).items():
        if k not in _CONF:
            raise E.RegistryError(f"unknown serializer config {k!r}: one of {', '.join(sorted(_CONF))}")
        out[k] = v
    if out["use.latest.version"] and out["auto.register.schemas"]:
        raise E.RegistryError("use.latest.version needs auto.register.schemas=False (as Confluent's serializers)")
    return out


class Serializer:
    """serializer(obj, topic) -> bytes: obj encoded with `schema` (registered under the
    subject the strategy names, or looked up when auto.register.schemas is off, or the
    subject's latest version with use.latest.version) behind Confluent's 5-byte header.
    `registry` is a Registry or an open Log."""

    def __init__(self, registry, schema: str | None, schema_type: str = "AVRO", conf: dict | None = None, *,
                 references=(), key: bool = False):
        self.registry = _registry(registry)
        self.conf = _conf(conf)
        self.field = "key" if key else "value"
        self.schema_type = schema_type
        self.references = tuple(references)
        self.schema = schema
        if schema is None and not self.conf["use.latest.version"]:
            raise E.RegistryError("a Serializer needs a schema unless use.latest.version is on")
        self._parsed = None if schema is None else self.registry.parse(schema, schema_type, references)
        self._ids: dict[str, tuple[int, object]] = {}
        self._mutex = threading.Lock()

    def subject(self, topic: str) -> str:
        names = self._parsed.names() if self._parsed is not None else []
        return self.conf["subject.name.strategy"](topic, self.field, names[0] if names else None)

    def _schema_for(self, topic: str) -> tuple[int, object]:
        subject = self.subject(topic)
        with self._mutex:
            hit = self._ids.get(subject)
            if hit is None:
                reg = self.registry
                if self.conf["use.latest.version"]:
                    latest = reg.get_version(subject, "latest")
                    hit = (latest.id, reg.parsed_by_id(latest.id))
                elif self.conf["auto.register.schemas"]:
                    hit = (reg.register(subject, self.schema, self.schema_type, self.references).id, self._parsed)
                else:
                    hit = (reg.lookup(subject, self.schema, self.schema_type, self.references).id, self._parsed)
                self._ids[subject] = hit
        return hit

    def __call__(self, obj, topic: str) -> bytes | None:
        if obj is None:
            return None
        schema_id, parsed = self._schema_for(topic)
        return _HEADER.pack(MAGIC, schema_id) + parsed.encode(obj)


class Deserializer:
    """deserializer(data, topic=None) -> object: reads the 5-byte header, fetches the
    writer's schema by id from the registry and decodes the payload with it."""

    def __init__(self, registry):
        self.registry = _registry(registry)
        self._parsed: dict[int, object] = {}

    def schema_id(self, data: bytes) -> int:
        if len(data) < _HEADER.size:
            raise SerializationError(f"{len(data)} bytes is shorter than Confluent's 5-byte header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise SerializationError(f"unknown magic byte {magic} (Confluent's wire format has 0)")
        return schema_id

    def __call__(self, data: bytes | None, topic: str | None = None):
        if data is None:
            return None
        schema_id = self.schema_id(data)
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            parsed = self._parsed[schema_id] = self.registry.parsed_by_id(schema_id)
        return parsed.decode(bytes(memoryview(data)[_HEADER.size:]))
