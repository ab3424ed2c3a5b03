"""embedlog: Kafka's data model as an embedded library.

    with embedlog.open("data/") as log:
        topic = log.create_topic("orders", partitions=3)
        topic.append([b"v1", b"v2"], keys=[b"k1", b"k2"])
        records = log.partition("orders", 0).read(0)
"""
from ._errors import (ConfigError, CorruptRecordError, EmbedlogError, FormatVersionError,
                      InvalidPartitionsError, InvalidTopicError, LockTimeoutError, LogClosedError,
                      OffsetOutOfRangeError, RecordTooLargeError, StorageError, TopicExistsError,
                      UnknownTopicOrPartitionError)
from ._log import Log, Topic
from ._log import open_log as open  # embedlog.open(path), like sqlite3.connect
from ._partition import AppendResult, Partition
from ._records import BatchHeader, Record, build_batch, decode_records, parse_header
from ._version import __version__
from ._kafka import (OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, OFFSET_STORED, TIMESTAMP_CREATE_TIME,
                     TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE, KafkaError, KafkaException, Message,
                     TopicPartition)
from ._producer import Producer
from ._consumer import Consumer
from ._admin import AdminClient, NewPartitions, NewTopic

__all__ = sorted([
    "AppendResult", "BatchHeader", "ConfigError", "CorruptRecordError", "EmbedlogError",
    "FormatVersionError", "InvalidPartitionsError", "InvalidTopicError", "LockTimeoutError", "Log",
    "LogClosedError", "OffsetOutOfRangeError", "Partition", "Record", "RecordTooLargeError",
    "StorageError", "Topic", "TopicExistsError", "UnknownTopicOrPartitionError", "__version__",
    "build_batch", "decode_records", "open", "parse_header",
    "KafkaError", "KafkaException", "Message", "TopicPartition", "Producer", "Consumer", "AdminClient",
    "NewTopic", "NewPartitions",
    "OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID", "OFFSET_STORED", "TIMESTAMP_CREATE_TIME",
    "TIMESTAMP_LOG_APPEND_TIME", "TIMESTAMP_NOT_AVAILABLE",
])

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        try:
            _obj.__module__ = "embedlog"
        except (AttributeError, TypeError):
            pass
del _name, _obj
