"""What the parts of Partition share: its constants, AppendResult and the errors it raises."""
from __future__ import annotations

import functools

from ._errors import StorageError
from ._records import Record

DEFAULT_LOCK_TIMEOUT = 30.0
_new_record = functools.partial(tuple.__new__, Record)   # 2x cheaper than Record(*fields)
DEFAULT_MAX_BYTES = 1 << 20
MAX_OPEN_SEGMENTS = 64
_SMALL_READ = 65536               # read step when only a few records are wanted
_END, _BUDGET, _DAMAGE = 0, 1, 2   # why _read_segment stopped
PRODUCER_BATCHES_RETAINED = 5      # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
INT32_MAX = 2**31 - 1


class _Stale(Exception):
    """A lock-free read met files that changed under it; the caller reads again."""


class AppendResult(tuple):
    """(base_offset, last_offset, log_append_time): log_append_time is -1 for CreateTime."""

    __slots__ = ()

    def __new__(cls, base_offset, last_offset, log_append_time=-1):
        return tuple.__new__(cls, (base_offset, last_offset, log_append_time))

    base_offset = property(lambda s: s[0])
    last_offset = property(lambda s: s[1])
    log_append_time = property(lambda s: s[2])


def _storage_error(e: OSError, what: str, path) -> StorageError:
    return StorageError(f"{what} failed for {path}: {e.strerror or e}", path=str(path), errno=e.errno)
