"""The schema registry (issue #15): Confluent's model, REST API and wire format, with the
schemas kept as records in the compacted `_schemas` topic of the log directory.

    reg = embedlog.registry(log)                  # a Registry (one per Log handle)
    reg.register("orders-value", schema_text)     # -> Schema(subject, version, id, ...)
    with embedlog.registry.serve(log_dir) as srv: # Confluent's REST API on srv.url
        ...

Imports: storage and client below it, the format modules beside it.
"""
import sys
import types

from ._errors import (
    CompatibilityNotSet,
    IncompatibleSchema,
    InvalidCompatibility,
    InvalidMode,
    InvalidSchemaError,
    InvalidSubject,
    InvalidVersion,
    ModeNotSet,
    OperationNotPermitted,
    ReferenceExists,
    RegistryError,
    SchemaNotFound,
    StoreError,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from ._registry import LEVELS, MODES, Registry, Schema, registry_for

__all__ = [
    "LEVELS",
    "MODES",
    "CompatibilityNotSet",
    "Deserializer",
    "IncompatibleSchema",
    "InvalidCompatibility",
    "InvalidMode",
    "InvalidSchemaError",
    "InvalidSubject",
    "InvalidVersion",
    "ModeNotSet",
    "OperationNotPermitted",
    "ReferenceExists",
    "Registry",
    "RegistryError",
    "Schema",
    "SchemaNotFound",
    "Serializer",
    "StoreError",
    "SubjectNotFound",
    "SubjectNotSoftDeleted",
    "SubjectSoftDeleted",
    "VersionNotFound",
    "VersionNotSoftDeleted",
    "VersionSoftDeleted",
    "record_subject_name_strategy",
    "registry_for",
    "serve",
    "topic_record_subject_name_strategy",
    "topic_subject_name_strategy",
]

_LAZY = {"serve": "._http", "RegistryServer": "._http", "Serializer": "._serdes", "Deserializer": "._serdes",
         "topic_subject_name_strategy": "._serdes", "record_subject_name_strategy": "._serdes",
         "topic_record_subject_name_strategy": "._serdes"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'embedlog.registry' has no attribute {name!r}")
    import importlib
    obj = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = obj
    return obj


class _CallableModule(types.ModuleType):
    """`embedlog.registry(log)` is the Registry of an open Log (or of a directory path,
    opened for it), while `embedlog.registry.serve` and the serdes stay module names."""

    def __call__(self, log) -> Registry:
        if isinstance(log, (str, bytes)) or hasattr(log, "__fspath__"):
            from ..storage._log import open_log
            log = open_log(log)
        return registry_for(log)


registry = sys.modules[__name__]
registry.__class__ = _CallableModule
