"""What connectors hand the runner and get from it: Kafka Connect's data model, small.

A `SourceRecord` is what a source task's `poll()` returns: a destination topic, a key and a
value each with its Connect schema (the JSON form JsonConverter writes: `{"type": "struct",
"fields": [...], "optional": false, "name": ...}`, or None for schemaless), the source
partition and source offset it stands for (small JSON-able dicts, Kafka Connect's
`sourcePartition`/`sourceOffset`), and optional headers and timestamp. A record whose topic
is None carries only an offset: it is stored, nothing is written (a snapshot that found no
rows still says it is done).

A `SinkRecord` is what a sink task's `put()` gets: the record as consumed, its key and value
already through the converters.

Connect schemas here are plain dicts in JsonConverter's layout; `field()` and `struct()`
build them. Values of a struct are dicts by field name.
"""
from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from ..storage._errors import EmbedlogError


class ConnectError(EmbedlogError):
    """A connector cannot be configured or cannot go on; the message names the connector,
    the key or the source and why. Nothing acknowledged is lost."""


class SourceRecord(NamedTuple):
    topic: str | None
    key: Any
    value: Any
    key_schema: dict | None = None
    value_schema: dict | None = None
    partition: dict | None = None          # Kafka Connect's sourcePartition
    offset: dict | None = None             # Kafka Connect's sourceOffset
    timestamp: int | None = None           # ms; None: the time of the write
    headers: tuple = ()                    # ((str, bytes | None), ...)


class SinkRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    key_schema: dict | None
    value_schema: dict | None
    headers: tuple


def field(name: str, schema: dict) -> dict:
    return {**schema, "field": name}


def struct(name: str | None, fields: list[dict], *, optional: bool = False, version: int | None = None,
           doc: str | None = None) -> dict:
    s = {"type": "struct", "fields": fields, "optional": optional}
    if name:
        s["name"] = name
    if version is not None:
        s["version"] = version
    if doc:
        s["doc"] = doc
    return s


def primitive(type_: str, *, optional: bool = True, name: str | None = None, version: int | None = None,
              parameters: dict | None = None, default=None) -> dict:
    s = {"type": type_, "optional": optional}
    if name:
        s["name"] = name
    if version is not None:
        s["version"] = version
    if parameters:
        s["parameters"] = parameters
    if default is not None:
        s["default"] = default
    return s


STRING_SCHEMA = primitive("string", optional=False)


class Connector:
    """What the runner drives. A connector class names its `kind` ("source" or "sink"), its
    config keys (`CONFIG`: {key: _configs.Key}) and validates the typed values in `check()`
    (raise ConnectError; nothing is stored or written then). One task runs per connector.

    Source lifecycle: `start(values, offsets)` where `offsets(partition_dict)` returns the
    last durable source offset for that source partition (or None); then `poll(timeout)`
    returns SourceRecords until `stop()`. After the records of one or more polls are durable
    in the log (acks=all) and their offsets are stored in `_connect_offsets`, the runner calls
    `commit(records)` so the source may release them upstream (a file does nothing; PostgreSQL
    advances the slot's confirmed LSN). A crash between the two replays those records: at
    least once, never lost.

    Sink lifecycle: `start(values, offsets=None)`; `put(records)` with SinkRecords; `flush()`
    before the runner commits the consumed offsets of the group `connect-<name>`; `stop()`.
    """

    kind = "source"
    CONFIG: ClassVar[dict] = {}

    @classmethod
    def check(cls, values: dict) -> None:
        pass

    def start(self, values: dict, offsets) -> None:
        raise NotImplementedError

    def poll(self, timeout: float) -> list[SourceRecord]:
        raise NotImplementedError

    def commit(self, records: list[SourceRecord]) -> None:
        pass

    def put(self, records: list[SinkRecord]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def stop(self) -> None:
        pass
