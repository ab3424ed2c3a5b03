"""embedlog: Kafka's data model as an embedded library.

    with embedlog.open("data/") as log:
        topic = log.create_topic("orders", partitions=3)
        topic.append([b"v1", b"v2"], keys=[b"k1", b"k2"])
        records = log.partition("orders", 0).read(0)

Names are imported on first use (PEP 562), so `import embedlog` - and the pytest
plugin that installing embedlog registers in every project - loads neither the C
extension nor the clients until something asks for them.
"""
import importlib

from ._version import __version__

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


def __getattr__(name):
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


def __dir__():
    return __all__
