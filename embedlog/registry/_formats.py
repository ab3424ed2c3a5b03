"""The three schema formats behind one small interface, as Confluent's registry has them
(`schemaType` AVRO, JSON, PROTOBUF; AVRO when absent).

Each format module (`_avro`, `_jsonschema`, `_protobuf`) has a module-level `FORMAT`, an
object with:

    FORMAT.name                                  "AVRO" | "JSON" | "PROTOBUF"
    FORMAT.parse(schema: str, references: dict[str, str]) -> Parsed
        `references` maps every reference name the schema may use (transitively resolved
        by the registry: a reference's own references are in the same dict) to that
        schema's text. Raises InvalidSchema with a message saying what is wrong and where
        (the registry answers 42201 with it).

    Parsed.canonical() -> str
        The normalized text that decides identity: two registrations whose canonical
        texts are equal are the same schema (same id, no new version).
    Parsed.incompatibilities(writer: Parsed) -> list[str]
        Why data written with `writer` cannot be read with this schema as the reader;
        [] when it can. BACKWARD checks new.incompatibilities(old); FORWARD checks
        old.incompatibilities(new); FULL both. Messages name the field/path and the rule.
    Parsed.encode(obj) -> bytes
        The payload after Confluent's 5-byte header (magic 0, 4-byte big-endian id); for
        Protobuf it starts with the message indexes. Raises SerializationError when obj
        does not match the schema.
    Parsed.decode(payload: bytes) -> object
        The inverse (payload without the 5-byte header).
    Parsed.names() -> list[str]
        The record/message full names the schema defines, first the one a serializer uses
        (for the record and topic-record subject name strategies).
    Parsed.formatted(fmt: str) -> str | None          (optional; added for GET ...?format=)
        The schema text in the output format Confluent's `?format=` names ("serialized":
        Protobuf's base64 FileDescriptorProto, which confluent-kafka's Protobuf serdes ask
        for), or None when the format has no such form (the stored text is served then).
        A format module may leave it out.

Format modules import only the standard library, their format's well-kept library
(fastavro, jsonschema, protobuf) and this module.
"""
from __future__ import annotations

import importlib

from ..storage._errors import EmbedlogError

__all__ = ["TYPES", "InvalidSchema", "SchemaFormatError", "SerializationError", "get"]


class SchemaFormatError(EmbedlogError):
    """Base of the format errors."""


class InvalidSchema(SchemaFormatError):
    """The schema text is not a valid schema of its format (Confluent's 42201)."""


class SerializationError(SchemaFormatError):
    """A value does not match its schema, or bytes are not a value of it."""


# The order is /schemas/types' order. PROTOBUF (._protobuf, a package: parser, printer, diff).
_MODULES = {"AVRO": "._avro", "JSON": "._jsonschema", "PROTOBUF": "._protobuf"}
TYPES = tuple(_MODULES)


def get(schema_type: str | None):
    """The FORMAT object of a `schemaType` (None or "" means AVRO, as Confluent's)."""
    name = (schema_type or "AVRO").upper()
    if name not in _MODULES:
        raise InvalidSchema(f"unknown schemaType {schema_type!r}: one of {', '.join(TYPES)}")
    return importlib.import_module(_MODULES[name], __package__).FORMAT
