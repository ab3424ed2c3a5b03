"""What the Producer, Consumer and AdminClient share: one open Log per directory per
process (reference-counted), and topic lookup with auto-creation."""
from __future__ import annotations

import os
import threading

from ..storage._config import log_path
from ..storage._errors import TopicExistsError, UnknownTopicOrPartitionError
from ..storage._log import Log, path_from_config

_lock = threading.Lock()
_logs: dict[str, list] = {}      # abspath -> [Log, refcount]


def acquire_log(values: dict) -> Log:
    path = os.path.abspath(path_from_config(log_path(values)))
    timeout = values.get("embedlog.lock.timeout.ms", 30000) / 1000.0
    with _lock:
        slot = _logs.get(path)
        if slot is None or slot[0]._closed:
            slot = _logs[path] = [Log(path, lock_timeout=timeout, retention_check_interval_ms=values.get(
                "log.retention.check.interval.ms", 300000)), 0]
        slot[1] += 1
        return slot[0]


def release_log(log: Log):
    with _lock:
        slot = _logs.get(log.path)
        if slot is None or slot[0] is not log:
            return
        slot[1] -= 1
        if slot[1] <= 0:
            del _logs[log.path]
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
