"""confluent-kafka's value types, so programs written for it run unchanged: KafkaError,
KafkaException, TopicPartition, Message, and the OFFSET_* constants.

Error codes are librdkafka's (negative: local conditions such as _PARTITION_EOF) and
Kafka's protocol codes (positive: OFFSET_OUT_OF_RANGE = 1, ...).
"""
from __future__ import annotations

import builtins
from typing import ClassVar

# A message's headers as confluent-kafka gives them: (name, value) pairs in order.
Headers = list[tuple[str, bytes | None]]

OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_STORED = -1000
OFFSET_INVALID = -1001

TIMESTAMP_NOT_AVAILABLE = 0
TIMESTAMP_CREATE_TIME = 1
TIMESTAMP_LOG_APPEND_TIME = 2

_CODES = {
    # librdkafka local codes
    "_BAD_MSG": -199, "_BAD_COMPRESSION": -198, "_DESTROY": -197, "_FAIL": -196,
    "_TRANSPORT": -195, "_MSG_TIMED_OUT": -192, "_PARTITION_EOF": -191,
    "_UNKNOWN_PARTITION": -190, "_FS": -189, "_UNKNOWN_TOPIC": -188, "_INVALID_ARG": -186,
    "_TIMED_OUT": -185, "_QUEUE_FULL": -184, "_ISR_INSUFF": -183, "_UNKNOWN_GROUP": -179,
    "_ASSIGN_PARTITIONS": -175, "_REVOKE_PARTITIONS": -174, "_STATE": -172,
    "_NOT_IMPLEMENTED": -170, "_NO_OFFSET": -168, "_INVALID_TYPE": -154,
    "_PURGE_QUEUE": -152, "_FATAL": -150, "_MAX_POLL_EXCEEDED": -147, "_NOT_CONFIGURED": -145, "_FENCED": -144,
    "_ASSIGNMENT_LOST": -142, "_AUTO_OFFSET_RESET": -140,
    # Kafka protocol codes
    "NO_ERROR": 0, "OFFSET_OUT_OF_RANGE": 1, "CORRUPT_MESSAGE": 2, "UNKNOWN_TOPIC_OR_PART": 3,
    "INVALID_FETCH_SIZE": 4, "MSG_SIZE_TOO_LARGE": 10, "REQUEST_TIMED_OUT": 7,
    "INVALID_TOPIC_EXCEPTION": 17, "NOT_ENOUGH_REPLICAS": 19, "NOT_ENOUGH_REPLICAS_AFTER_APPEND": 20,
    "ILLEGAL_GENERATION": 22, "INCONSISTENT_GROUP_PROTOCOL": 23, "INVALID_GROUP_ID": 24,
    "UNKNOWN_MEMBER_ID": 25, "INVALID_SESSION_TIMEOUT": 26, "REBALANCE_IN_PROGRESS": 27,
    "INVALID_COMMIT_OFFSET_SIZE": 28, "TOPIC_ALREADY_EXISTS": 36, "INVALID_PARTITIONS": 37,
    "INVALID_REPLICATION_FACTOR": 38, "INVALID_CONFIG": 40, "INVALID_REQUEST": 42,
    "OUT_OF_ORDER_SEQUENCE_NUMBER": 45, "DUPLICATE_SEQUENCE_NUMBER": 46,
    "INVALID_PRODUCER_EPOCH": 47, "INVALID_TXN_STATE": 48, "INVALID_PRODUCER_ID_MAPPING": 49,
    "INVALID_TRANSACTION_TIMEOUT": 50, "CONCURRENT_TRANSACTIONS": 51, "KAFKA_STORAGE_ERROR": 56, "GROUP_ID_NOT_FOUND": 69,
    "NON_EMPTY_GROUP": 68, "FENCED_INSTANCE_ID": 82, "INVALID_RECORD": 87,
    "UNSTABLE_OFFSET_COMMIT": 88, "PRODUCER_FENCED": 90,
}
_NAMES = {v: k for k, v in _CODES.items()}


class KafkaError:
    """An error as confluent-kafka reports it: code(), name(), str(), fatal(), retriable()."""

    __slots__ = ("_code", "_str", "_fatal", "_retriable", "_txn_requires_abort")

    # The codes of _CODES, set on the class below; declared so a type checker knows them.
    _BAD_MSG: ClassVar[int]
    _BAD_COMPRESSION: ClassVar[int]
    _DESTROY: ClassVar[int]
    _FAIL: ClassVar[int]
    _TRANSPORT: ClassVar[int]
    _MSG_TIMED_OUT: ClassVar[int]
    _PARTITION_EOF: ClassVar[int]
    _UNKNOWN_PARTITION: ClassVar[int]
    _FS: ClassVar[int]
    _UNKNOWN_TOPIC: ClassVar[int]
    _INVALID_ARG: ClassVar[int]
    _TIMED_OUT: ClassVar[int]
    _QUEUE_FULL: ClassVar[int]
    _ISR_INSUFF: ClassVar[int]
    _UNKNOWN_GROUP: ClassVar[int]
    _ASSIGN_PARTITIONS: ClassVar[int]
    _REVOKE_PARTITIONS: ClassVar[int]
    _STATE: ClassVar[int]
    _NOT_IMPLEMENTED: ClassVar[int]
    _NO_OFFSET: ClassVar[int]
    _INVALID_TYPE: ClassVar[int]
    _PURGE_QUEUE: ClassVar[int]
    _FATAL: ClassVar[int]
    _MAX_POLL_EXCEEDED: ClassVar[int]
    _NOT_CONFIGURED: ClassVar[int]
    _FENCED: ClassVar[int]
    _ASSIGNMENT_LOST: ClassVar[int]
    _AUTO_OFFSET_RESET: ClassVar[int]
    NO_ERROR: ClassVar[int]
    OFFSET_OUT_OF_RANGE: ClassVar[int]
    CORRUPT_MESSAGE: ClassVar[int]
    UNKNOWN_TOPIC_OR_PART: ClassVar[int]
    INVALID_FETCH_SIZE: ClassVar[int]
    MSG_SIZE_TOO_LARGE: ClassVar[int]
    REQUEST_TIMED_OUT: ClassVar[int]
    INVALID_TOPIC_EXCEPTION: ClassVar[int]
    NOT_ENOUGH_REPLICAS: ClassVar[int]
    NOT_ENOUGH_REPLICAS_AFTER_APPEND: ClassVar[int]
    ILLEGAL_GENERATION: ClassVar[int]
    INCONSISTENT_GROUP_PROTOCOL: ClassVar[int]
    INVALID_GROUP_ID: ClassVar[int]
    UNKNOWN_MEMBER_ID: ClassVar[int]
    INVALID_SESSION_TIMEOUT: ClassVar[int]
    REBALANCE_IN_PROGRESS: ClassVar[int]
    INVALID_COMMIT_OFFSET_SIZE: ClassVar[int]
    TOPIC_ALREADY_EXISTS: ClassVar[int]
    INVALID_PARTITIONS: ClassVar[int]
    INVALID_REPLICATION_FACTOR: ClassVar[int]
    INVALID_CONFIG: ClassVar[int]
    INVALID_REQUEST: ClassVar[int]
    OUT_OF_ORDER_SEQUENCE_NUMBER: ClassVar[int]
    DUPLICATE_SEQUENCE_NUMBER: ClassVar[int]
    INVALID_PRODUCER_EPOCH: ClassVar[int]
    INVALID_TXN_STATE: ClassVar[int]
    INVALID_PRODUCER_ID_MAPPING: ClassVar[int]
    INVALID_TRANSACTION_TIMEOUT: ClassVar[int]
    CONCURRENT_TRANSACTIONS: ClassVar[int]
    KAFKA_STORAGE_ERROR: ClassVar[int]
    GROUP_ID_NOT_FOUND: ClassVar[int]
    NON_EMPTY_GROUP: ClassVar[int]
    FENCED_INSTANCE_ID: ClassVar[int]
    INVALID_RECORD: ClassVar[int]
    UNSTABLE_OFFSET_COMMIT: ClassVar[int]
    PRODUCER_FENCED: ClassVar[int]

    def __init__(self, error: int, reason: str | None = None, fatal: bool = False, retriable: bool = False,
                 txn_requires_abort: bool = False) -> None:
        self._code = int(error)
        self._str = reason if reason is not None else _NAMES.get(self._code, f"error {self._code}")
        self._fatal = fatal
        self._retriable = retriable
        self._txn_requires_abort = txn_requires_abort

    def code(self) -> int:
        return self._code

    def name(self) -> str:
        return _NAMES.get(self._code, f"ERR_{self._code}")

    def str(self) -> str:
        return self._str

    def fatal(self) -> bool:
        return self._fatal

    def retriable(self) -> bool:
        return self._retriable

    def txn_requires_abort(self) -> bool:
        return self._txn_requires_abort

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KafkaError):
            return self._code == other._code
        if isinstance(other, int):
            return self._code == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._code)

    def __str__(self) -> builtins.str:
        return f"KafkaError{{code={self.name()},val={self._code},str=\"{self._str}\"}}"

    __repr__ = __str__


for _name, _code in _CODES.items():
    setattr(KafkaError, _name, _code)


class KafkaException(Exception):
    """Raised with a KafkaError as args[0], as confluent-kafka does."""

    def __init__(self, kafka_error: KafkaError | str | None = None, *args: object, **kwargs: object) -> None:
        if not isinstance(kafka_error, KafkaError):
            kafka_error = KafkaError(KafkaError._FAIL, str(kafka_error) if kafka_error is not None else None)
        super().__init__(kafka_error, *args)


def error_from(exc: BaseException) -> KafkaError:
    """The KafkaError for one of embedlog's exceptions (they carry Kafka's code)."""
    code = getattr(exc, "code", -1)
    if code is None or code < 0:
        code = KafkaError._FAIL
    return KafkaError(code, str(exc), retriable=bool(getattr(exc, "retriable", False)))


class TopicPartition:
    """confluent-kafka's TopicPartition(topic, partition=-1, offset=OFFSET_INVALID, ...)."""

    __slots__ = ("topic", "partition", "offset", "metadata", "leader_epoch", "error")

    topic: str
    partition: int
    offset: int
    metadata: str | None
    leader_epoch: int | None
    error: KafkaError | None

    def __init__(self, topic: str, partition: int = -1, offset: int = OFFSET_INVALID, metadata: str | None = None,
                 leader_epoch: int | None = None) -> None:
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        self.topic = topic
        self.partition = int(partition)
        self.offset = int(offset)
        self.metadata = metadata
        self.leader_epoch = leader_epoch
        self.error = None

    def __repr__(self) -> str:
        err = f",error={self.error}" if self.error else ""
        return f"TopicPartition{{topic={self.topic},partition={self.partition},offset={self.offset}{err}}}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicPartition) and (self.topic, self.partition) == (other.topic, other.partition)

    def __lt__(self, other: TopicPartition) -> bool:
        return (self.topic, self.partition) < (other.topic, other.partition)

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))


class Message:
    """confluent-kafka's Message: accessor methods, not attributes."""

    __slots__ = ("_topic", "_partition", "_offset", "_key", "_value", "_headers", "_ts", "_error",
                 "_latency", "_leader_epoch")

    def __init__(self, topic: str | None = None, partition: int = -1, offset: int = -1001, key: bytes | None = None,
                 value: bytes | None = None, headers: Headers | None = None,
                 timestamp: tuple[int, int] = (TIMESTAMP_NOT_AVAILABLE, 0), error: KafkaError | None = None,
                 latency: float | None = None, leader_epoch: int | None = None) -> None:
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._key = key
        self._value = value
        self._headers = headers
        self._ts = timestamp
        self._error = error
        self._latency = latency
        self._leader_epoch = leader_epoch

    def topic(self) -> str | None:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Headers | None:
        """A list of (str, bytes|None) pairs, or None when the record has no headers."""
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        """(TIMESTAMP_CREATE_TIME | TIMESTAMP_LOG_APPEND_TIME | TIMESTAMP_NOT_AVAILABLE, ms)."""
        return self._ts

    def error(self) -> KafkaError | None:
        return self._error

    def latency(self) -> float | None:
        return self._latency

    def leader_epoch(self) -> int | None:
        return self._leader_epoch

    def set_key(self, key: bytes | None) -> None:
        self._key = key

    def set_value(self, value: bytes | None) -> None:
        self._value = value

    def set_headers(self, headers: Headers | None) -> None:
        self._headers = headers

    def __len__(self) -> int:
        return len(self._value) if self._value is not None else 0

    def __repr__(self) -> str:
        if self._error is not None:
            return f"<Message error={self._error} {self._topic}[{self._partition}]@{self._offset}>"
        return f"<Message {self._topic}[{self._partition}]@{self._offset} key={self._key!r}>"
