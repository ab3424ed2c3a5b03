"""embedlog: Kafka's data model as an embedded library.

    with embedlog.open("data/") as log:
        topic = log.create_topic("orders", partitions=3)
        topic.append([b"v1", b"v2"], keys=[b"k1", b"k2"])
        records = log.partition("orders", 0).read(0)

Names are imported on first use (PEP 562), so `import embedlog` - and the pytest
plugin that installing embedlog registers in every project - loads neither the C
extension nor the clients until something asks for them.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__ as __version__

if TYPE_CHECKING:  # what a type checker sees; at runtime __getattr__ below imports on first use
    from ._arrow import to_arrow as to_arrow
    from .client._admin import AdminClient as AdminClient
    from .client._admin import NewPartitions as NewPartitions
    from .client._admin import NewTopic as NewTopic
    from .client._consumer import Consumer as Consumer
    from .client._kafka import OFFSET_BEGINNING as OFFSET_BEGINNING
    from .client._kafka import OFFSET_END as OFFSET_END
    from .client._kafka import OFFSET_INVALID as OFFSET_INVALID
    from .client._kafka import OFFSET_STORED as OFFSET_STORED
    from .client._kafka import TIMESTAMP_CREATE_TIME as TIMESTAMP_CREATE_TIME
    from .client._kafka import TIMESTAMP_LOG_APPEND_TIME as TIMESTAMP_LOG_APPEND_TIME
    from .client._kafka import TIMESTAMP_NOT_AVAILABLE as TIMESTAMP_NOT_AVAILABLE
    from .client._kafka import KafkaError as KafkaError
    from .client._kafka import KafkaException as KafkaException
    from .client._kafka import Message as Message
    from .client._kafka import TopicPartition as TopicPartition
    from .client._producer import Producer as Producer
    from .registry import _CallableModule
    from .server._server import Server as Server
    from .server._server import serve as serve
    from .storage._errors import ConfigError as ConfigError
    from .storage._errors import CorruptRecordError as CorruptRecordError
    from .storage._errors import EmbedlogError as EmbedlogError
    from .storage._errors import FormatVersionError as FormatVersionError
    from .storage._errors import InvalidPartitionsError as InvalidPartitionsError
    from .storage._errors import (
        InvalidReplicationFactorError as InvalidReplicationFactorError,
    )
    from .storage._errors import InvalidTopicError as InvalidTopicError
    from .storage._errors import LockTimeoutError as LockTimeoutError
    from .storage._errors import LogClosedError as LogClosedError
    from .storage._errors import (
        NotEnoughReplicasAfterAppendError as NotEnoughReplicasAfterAppendError,
    )
    from .storage._errors import NotEnoughReplicasError as NotEnoughReplicasError
    from .storage._errors import OffsetOutOfRangeError as OffsetOutOfRangeError
    from .storage._errors import ReadOnlyLogError as ReadOnlyLogError
    from .storage._errors import RecordTooLargeError as RecordTooLargeError
    from .storage._errors import StorageError as StorageError
    from .storage._errors import TopicExistsError as TopicExistsError
    from .storage._errors import (
        UnknownTopicOrPartitionError as UnknownTopicOrPartitionError,
    )
    from .storage._log import Log as Log
    from .storage._log import Topic as Topic
    from .storage._log import open_log as open  # noqa: F401 (re-exported as embedlog.open)
    from .storage._partition import AppendResult as AppendResult
    from .storage._partition import Partition as Partition
    from .storage._records import BatchHeader as BatchHeader
    from .storage._records import Record as Record
    from .storage._records import build_batch as build_batch
    from .storage._records import decode_records as decode_records
    from .storage._records import parse_header as parse_header

    # embedlog.registry(log) -> Registry: the package is a callable module (registry/__init__.py).
    registry: _CallableModule

_EXPORTS = {
    "storage._errors": ["ConfigError", "CorruptRecordError", "EmbedlogError", "FormatVersionError",
                "InvalidPartitionsError", "InvalidTopicError", "LockTimeoutError", "LogClosedError",
                "InvalidReplicationFactorError", "NotEnoughReplicasAfterAppendError", "NotEnoughReplicasError",
                "OffsetOutOfRangeError", "ReadOnlyLogError", "RecordTooLargeError", "StorageError", "TopicExistsError",
                "UnknownTopicOrPartitionError"],
    "storage._log": ["Log", "Topic"],
    "storage._partition": ["AppendResult", "Partition"],
    "storage._records": ["BatchHeader", "Record", "build_batch", "decode_records", "parse_header"],
    "client._kafka": ["OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID", "OFFSET_STORED", "TIMESTAMP_CREATE_TIME",
               "TIMESTAMP_LOG_APPEND_TIME", "TIMESTAMP_NOT_AVAILABLE", "KafkaError", "KafkaException",
               "Message", "TopicPartition"],
    "client._producer": ["Producer"],
    "client._consumer": ["Consumer"],
    "client._admin": ["AdminClient", "NewPartitions", "NewTopic"],
    "server._server": ["Server", "serve"],
    "_arrow": ["to_arrow"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
_WHERE["open"] = "storage._log"          # embedlog.open(path), like sqlite3.connect
_WHERE["registry"] = "registry"          # embedlog.registry(log): the callable package embedlog/registry
_RENAMED = {"open": "open_log"}

__all__ = sorted([*_WHERE, "__version__"])


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'embedlog' has no attribute {name!r}")
    obj = getattr(importlib.import_module(f"{__name__}.{module}"), _RENAMED.get(name, name))
    if isinstance(obj, type) or callable(obj):
        try:
            obj.__module__ = "embedlog"
        except (AttributeError, TypeError):
            pass
    globals()[name] = obj
    return obj


def __dir__() -> list[str]:
    return __all__
