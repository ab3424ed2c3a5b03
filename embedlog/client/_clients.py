"""What the Producer, Consumer and AdminClient share: one open Log per directory per
process (reference-counted), and topic lookup with auto-creation.

A client that only reads (a Consumer without group.id) opens a directory this process
may not write (permissions, a read-only mount, a backup) read-only instead of failing:
nothing in it is created, and each partition shows what it held when first read. Such
Logs are kept apart from writable ones, so a later writer on a directory that became
writable opens it for writing."""
from __future__ import annotations

import os
import threading

from ..storage._config import log_path
from ..storage._errors import (
    ReadOnlyLogError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
)
from ..storage._log import Log, path_from_config

_lock = threading.Lock()
_logs: dict[tuple[str, bool], list] = {}      # (abspath, read_only) -> [Log, refcount]


def _cached(key):
    slot = _logs.get(key)
    return slot if slot is not None and not slot[0]._closed else None


def acquire_log(values: dict, *, reader: bool = False, writes: str | None = None) -> Log:
    """The process's Log for the config's directory (one more reference to it).

    reader=True: this client never writes, so a directory it may not write opens
    read-only. Otherwise such a directory raises ReadOnlyLogError; `writes` says what
    the client would have written there (for that error)."""
    path = os.path.abspath(path_from_config(log_path(values)))
    timeout = values.get("embedlog.lock.timeout.ms", 30000) / 1000.0
    with _lock:
        slot = _cached((path, False)) or (_cached((path, True)) if reader else None)
        if slot is None:
            try:
                log = Log(path, lock_timeout=timeout, retention_check_interval_ms=values.get(
                    "log.retention.check.interval.ms", 300000))
                key = (path, False)
            except ReadOnlyLogError as e:
                if not reader:
                    if writes is None:
                        raise
                    raise ReadOnlyLogError(f"cannot write the log directory {path} ({os.strerror(e.errno)}), "  # type: ignore[arg-type]
                                           f"and {writes}", path=path, errno=e.errno) from e
                log = Log(path, read_only=True)
                key = (path, True)
            slot = _logs[key] = [log, 0]
        slot[1] += 1
        return slot[0]


def release_log(log: Log):
    with _lock:
        key = (log.path, log.read_only)
        slot = _logs.get(key)
        if slot is None or slot[0] is not log:
            return
        slot[1] -= 1
        if slot[1] <= 0:
            del _logs[key]
            log.close()


def get_topic(log: Log, name: str, values: dict):
    """The topic, auto-created (allow.auto.create.topics) with embedlog.num.partitions."""
    try:
        return log.topic(name)
    except UnknownTopicOrPartitionError:
        if not values.get("allow.auto.create.topics", True) or name.startswith("__"):
            raise
    try:
        return log.create_topic(name, partitions=values.get("embedlog.num.partitions", 1))
    except TopicExistsError:          # another client created it first
        return log.topic(name)
