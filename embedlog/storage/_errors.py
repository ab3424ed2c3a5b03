"""The exception tree. Every error embedlog raises is an EmbedlogError.

    EmbedlogError
    ├─ ConfigError(ValueError)            unknown config key or bad value
    ├─ InvalidTopicError(ValueError)      a topic name Kafka would reject
    ├─ LogClosedError(RuntimeError)       use of a closed Log, Partition or client
    ├─ FormatVersionError                 files written by a newer embedlog
    ├─ StorageError(OSError)              a write, fsync or lock failed; the partition may be FAILED
    │  ├─ LockTimeoutError                another process held a lock for too long
    │  └─ ReadOnlyLogError                a write through a read-only handle, or a
    │                                     directory this process cannot write
    ├─ CorruptRecordError                 damaged bytes in the middle of a segment
    ├─ OffsetOutOfRangeError              read below the log start or above the log end
    ├─ UnknownTopicOrPartitionError       no such topic or partition
    ├─ TopicExistsError                   create_topic on an existing name
    ├─ RecordTooLargeError                a batch over max.message.bytes
    ├─ InvalidPartitionsError             a partition count that cannot be applied
    ├─ OutOfOrderSequenceError            an idempotent batch that skips or repeats sequences
    ├─ InvalidProducerEpochError          a batch from a fenced (older) producer epoch
    ├─ ProducerFencedError                a transactional producer another instance superseded
    └─ InvalidTxnStateError               a transaction operation the transaction's state refuses

`code` is Kafka's error code for the condition (protocol `Errors.java`) and
`retriable` says whether retrying the same call may succeed.
"""
from __future__ import annotations

import contextlib


class EmbedlogError(Exception):
    """Base of every embedlog error."""

    code = -1
    retriable = False


class ConfigError(EmbedlogError, ValueError):
    """Raised when a config key is unknown or its value is invalid."""

    code = 40  # INVALID_CONFIG


class InvalidTopicError(EmbedlogError, ValueError):
    """Raised when a topic name breaks Kafka's naming rules (before any file is touched)."""

    code = 17  # INVALID_TOPIC_EXCEPTION


class LogClosedError(EmbedlogError, RuntimeError):
    """Raised when a closed Log, Partition or client is used."""


class FormatVersionError(EmbedlogError):
    """Raised when a directory or file was written by a newer, incompatible embedlog."""


class StorageError(EmbedlogError, OSError):
    """Raised when a write, fsync, truncate or lock fails. Carries `path` and `errno`.

    After a failed fsync the partition is FAILED in this process and refuses appends
    (a retried fsync can report success for data the kernel already dropped)."""

    code = 56  # KAFKA_STORAGE_ERROR

    def __init__(self, message, *, path=None, errno=None):
        EmbedlogError.__init__(self, message)
        self.path = path
        self.errno = errno

    def __str__(self):
        return self.args[0]


class LockTimeoutError(StorageError):
    """Raised when another process held a partition lock longer than the timeout
    (a writer that is stopped, e.g. by SIGSTOP, keeps its lock)."""

    retriable = True


class ReadOnlyLogError(StorageError):
    """Raised by every write through a Log opened with read_only=True, and when a
    writable open finds a directory it may not write (permissions, a read-only mount),
    saying to open it with read_only=True. Nothing was written."""


class CorruptRecordError(EmbedlogError):
    """Raised when a batch fails its CRC or structure checks where data must be whole.

    Carries `path` and `position` (byte position of the damaged batch in the file)."""

    code = 2  # CORRUPT_MESSAGE

    def __init__(self, message, *, path=None, position=None):
        super().__init__(message)
        self.path = path
        self.position = position


class OffsetOutOfRangeError(EmbedlogError):
    """Raised when an offset lies below the log start offset or above the log end offset."""

    code = 1

    def __init__(self, message, *, offset=None, log_start_offset=None, log_end_offset=None):
        super().__init__(message)
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class UnknownTopicOrPartitionError(EmbedlogError, KeyError):
    """Raised when a topic or partition does not exist."""

    code = 3

    def __str__(self):
        return self.args[0]


class TopicExistsError(EmbedlogError):
    """Raised when creating a topic whose name is taken."""

    code = 36


class RecordTooLargeError(EmbedlogError, ValueError):
    """Raised when a batch (with its 12-byte log overhead) exceeds max.message.bytes."""

    code = 10


class InvalidPartitionsError(EmbedlogError, ValueError):
    """Raised when a partition count is below 1 or would shrink a topic."""

    code = 37


class OutOfOrderSequenceError(EmbedlogError):
    """Raised when an idempotent producer's batch does not continue its sequence."""

    code = 45


class InvalidProducerEpochError(EmbedlogError):
    """Raised when a batch carries an older epoch than the producer id's current one."""

    code = 47


class ProducerFencedError(EmbedlogError):
    """Raised when a transactional producer's id and epoch are no longer the current ones of
    its transactional.id: a newer instance called init_transactions(), or its transaction
    outlived transaction.timeout.ms and was aborted with a bumped epoch (Kafka's
    PRODUCER_FENCED)."""

    code = 90


class InvalidTxnStateError(EmbedlogError):
    """Raised when the transaction coordinator is asked for a transition its state does not
    allow (Kafka's INVALID_TXN_STATE), e.g. a commit of a transaction being aborted."""

    code = 48


class NotEnoughReplicasError(EmbedlogError):
    """Raised by an acks=all append when fewer replicas than min.insync.replicas are in
    sync: nothing was written."""

    code = 19
    retriable = True


class NotEnoughReplicasAfterAppendError(NotEnoughReplicasError):
    """Raised by an acks=all append that was written to the primary but could not reach
    min.insync.replicas in-sync replicas (a mirror failed meanwhile): not acknowledged."""

    code = 20


class InvalidReplicationFactorError(EmbedlogError, ValueError):
    """Raised when a topic asks for more replicas than the log has directories."""

    code = 38


@contextlib.contextmanager
def typed_os_errors(what: str):
    """An OSError inside as a StorageError saying what failed, naming the file and the errno
    (a StorageError passes unchanged)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        raise StorageError(f"{what} failed: {e.strerror or e}", path=getattr(e, "path", None) or e.filename,
                           errno=e.errno) from e
