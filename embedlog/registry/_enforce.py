"""Schema validation of produced records (Confluent Server's topic configs
`confluent.value.schema.validation` / `confluent.key.schema.validation`): a record whose
value (or key) does not start with Confluent's header naming a schema id registered under
the record's subject is refused.

`check_records` is the whole check; it is not yet called from the produce path (that
needs the two topic config keys in storage/_config.py and one call in the producer,
owned elsewhere: see the issue's report). Subjects follow the topic strategy
(<topic>-value / <topic>-key), Confluent's default for validation.
"""
from __future__ import annotations

from ._errors import RegistryError
from ._registry import Registry


class InvalidRecordError(RegistryError):
    """Raised when a record's schema id is unknown or not registered under its subject."""

    error_code = 40403
    http_status = 422


def check_records(registry: Registry, topic: str, values, *, field: str = "value") -> None:
    """Raise InvalidRecordError naming the first bad record (its index in `values`) when
    any value lacks the 5-byte header or names an id that `<topic>-<field>` does not hold
    (soft-deleted versions count as not held). None values (tombstones) pass."""
    subject = f"{topic}-{field}"
    allowed: set[int] | None = None
    for i, data in enumerate(values):
        if data is None:
            continue
        if len(data) < 5 or data[0] != 0:
            raise InvalidRecordError(f"record {i} to topic {topic!r}: its {field} does not start with Confluent's "
                                     f"schema header (magic byte 0, 4-byte schema id)")
        schema_id = int.from_bytes(bytes(data[1:5]), "big")
        if allowed is None:
            try:
                allowed = set(_ids(registry, subject))
            except RegistryError:
                allowed = set()
        if schema_id not in allowed:
            raise InvalidRecordError(f"record {i} to topic {topic!r}: schema id {schema_id} is "
                                     f"{'not registered under subject ' + repr(subject) if _known(registry, schema_id) else 'unknown'}")


def _ids(registry: Registry, subject: str) -> list[int]:
    return [registry.get_version(subject, v).id for v in registry.versions(subject)]


def _known(registry: Registry, schema_id: int) -> bool:
    try:
        registry.get_by_id(schema_id)
    except RegistryError:
        return False
    return True
