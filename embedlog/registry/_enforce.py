"""Schema validation of produced records: Confluent Server's topic configs
`confluent.value.schema.validation` and `confluent.key.schema.validation` (issue #15).

With one of them true, a record whose value (key) does not start with Confluent's header
(magic byte 0, a 4-byte big-endian schema id) naming an id registered, and not
soft-deleted, under the topic strategy's subject `<topic>-value` (`<topic>-key`) is
refused: InvalidRecordError, a KafkaException with Kafka's code INVALID_RECORD (87),
naming the topic, the record and the id, raised before anything of the call is written.
Tombstones (a None value or key) pass, as they do in Confluent Server.

Who calls it: Producer.produce(), Producer.produce_batch() and the wire server's Produce
ask `client._produce_input.record_check(log, topic)`, which is None while both configs of the
topic are off (produce() then pays one attribute test per record) and otherwise
`topic_check(log, topic)` below. The registry sits above the clients (DESIGN.md §2), so
they load this module by name, and only for a topic that asks for validation.

Freshness: one TopicCheck per Log handle and topic (kept on the Log's Registry) holds the
ids each subject allows, with `_schemas`' notify word (bumped by every append to it, in
any process) as it was when they were computed. Each check loads that word (one atomic
load, no read of `_schemas`) and, only when it moved, catches the registry up (reading
just what was appended) and recomputes the ids; an id not found is looked up once more
before its record is refused. So a schema registered, or a version deleted, by another
process a moment ago counts from the next record.
"""
from __future__ import annotations

import threading

from ..client._kafka import KafkaError, KafkaException
from ..storage._errors import EmbedlogError
from ..storage._records import ATTR_CONTROL, decode_columns, parse_header
from ._errors import RegistryError
from ._registry import Registry, registry_for

INVALID_RECORD = 87                      # Kafka's Errors.INVALID_RECORD (librdkafka's too)
FIELDS = ("key", "value")


class InvalidRecordError(RegistryError, KafkaException):
    """Raised when a produced record's value (key) lacks Confluent's schema header or names
    a schema id not registered under its subject. A KafkaException whose args[0] is
    KafkaError(INVALID_RECORD), the code the wire answers; `topic`, `record` (its index in
    the call, None for produce()), `field` ("value" or "key") and `schema_id` (None without
    a header) say which record and why."""

    code = INVALID_RECORD
    error_code = 42201
    http_status = 422

    def __init__(self, message: str, *, topic=None, record=None, field=None, schema_id=None):
        Exception.__init__(self, KafkaError(INVALID_RECORD, message))
        self.message = message
        self.topic, self.record, self.field, self.schema_id = topic, record, field, schema_id

    def __str__(self):
        return self.message


class TopicCheck:
    """The validation of one topic's records; `topic_check()` hands out one per Log and topic."""

    def __init__(self, registry: Registry, topic: str):
        self.registry = registry
        self.topic = topic
        self.fields: tuple = ()          # ("key",), ("value",) or both: what the topic's config asks for
        # (`_schemas`' notify word, registry position Registry._next, {field: frozenset of the
        # 5-byte headers, magic byte and id, of the ids its subject holds}), replaced whole so
        # that a reader never sees a mix of two. A record passes when data[:5] is in the set.
        self._snap: tuple = (-1, -1, {})
        self._word = registry._part().state.notify_value    # bumped by every append to _schemas
        self._lock = threading.Lock()

    def configure(self, config: dict):
        fields = tuple(f for f in FIELDS if config[f"confluent.{f}.schema.validation"])
        if fields != self.fields:
            with self._lock:
                self.fields, self._snap = fields, (-1, -1, {})

    def _current(self) -> dict:
        """The allowed ids: those of the snapshot while `_schemas` has not changed since (one
        atomic load of its notify word), else recomputed after a catch-up."""
        word, at, allowed = self._snap
        if word != self._word() or at != self.registry._next:
            allowed = self._fresh()
        return allowed

    def _fresh(self) -> dict:
        reg = self.registry
        with reg._mutex, self._lock:
            word = self._word()          # before the catch-up: a later append moves it again
            reg._catch_up()
            subjects = reg._state.subjects
            allowed = {f: frozenset(b"\x00" + r.id.to_bytes(4, "big")
                                    for r in subjects.get(f"{self.topic}-{f}", {}).values()
                                    if not r.deleted and 0 <= r.id < 2**32) for f in self.fields}
            self._snap = (word, reg._next, allowed)
        return allowed

    def __call__(self, values, keys, where: str):
        """Raise InvalidRecordError for the first refused record of `values` / `keys` (parallel
        sequences of bytes-like or None; `keys` may be None), described as "record i <where>".
        An id not found is looked up once more before its record is refused."""
        for field, heads in self._current().items():
            items = values if field == "value" else keys
            if items is None:
                continue
            for i, data in enumerate(items):
                if data is not None and bytes(data[:5]) not in heads:
                    heads = self._refuse(data, field, i, where)[field]

    def one(self, value, key):
        """produce()'s check of one record (bytes or None each), as __call__'s."""
        word, at, allowed = self._snap
        if word != self._word() or at != self.registry._next:
            allowed = self._fresh()
        for field, heads in allowed.items():
            data = value if field == "value" else key
            if data is not None and data[:5] not in heads:
                self._refuse(data, field, None, None)

    def batches(self, batches, partition: int):
        """The check for RecordBatches as a Kafka client sent them (the wire server's Produce).
        A batch that does not parse is left to the append, which refuses it with its reason."""
        for b, buf in enumerate(batches):
            try:
                h = parse_header(buf)
                if h.attributes & ATTR_CONTROL:
                    continue
                cols = decode_columns(buf, 0, h)
            except (EmbedlogError, TypeError, ValueError):
                return                   # the append refuses it, with the storage's reason
            self(cols.values, cols.keys, f"of batch {b} to partition {partition}")

    def _refuse(self, data, field: str, index: int | None, where: str | None) -> dict:
        """Raise for `data`, unless a fresh look at the registry finds its id (registered a
        moment ago, maybe by another process): then return the refreshed ids."""
        subject = f"{self.topic}-{field}"
        what = "record" if index is None else f"record {index} {where}"
        head = f"{what} to topic {self.topic!r}: its {field}"
        key = f"confluent.{field}.schema.validation"
        if len(data) < 5 or data[0] != 0:
            raise InvalidRecordError(f"{head} does not start with Confluent's schema header (magic byte 0, "
                                     f"then a 4-byte schema id), and the topic has {key}=true",
                                     topic=self.topic, record=index, field=field)
        schema_id = int.from_bytes(data[1:5], "big")
        allowed = self._fresh()
        if bytes(data[:5]) in allowed[field]:
            return allowed
        reg = self.registry
        with reg._mutex:
            held = sorted((s, v, r.deleted) for s, versions in reg._state.subjects.items()
                          for v, r in versions.items() if r.id == schema_id)
        mine = [v for s, v, _deleted in held if s == subject]
        others = sorted({s for s, _v, _deleted in held if s != subject})
        if mine:
            why = f"whose version {mine[0]} under subject {subject!r} is soft-deleted"
        elif others:
            why = f"registered under {', '.join(map(repr, others))}, not under subject {subject!r}"
        else:
            why = f"which the schema registry does not know (subject {subject!r})"
        raise InvalidRecordError(f"{head} names schema id {schema_id}, {why}; the topic has {key}=true",
                                 topic=self.topic, record=index, field=field, schema_id=schema_id)


_checks_lock = threading.Lock()


def topic_check(log, topic) -> TopicCheck:
    """The TopicCheck of `topic` (a Topic of `log`), configured from its current config
    (the clients ask once per produce_batch() call, producer send and wire Produce request)."""
    reg = registry_for(log)
    checks = reg.__dict__.get("_topic_checks")
    check = None if checks is None else checks.get(topic.name)
    if check is None:
        with _checks_lock:
            check = reg.__dict__.setdefault("_topic_checks", {}).setdefault(topic.name, TopicCheck(reg, topic.name))
    check.configure(topic.config)
    return check
