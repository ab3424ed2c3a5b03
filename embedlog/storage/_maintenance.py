"""Maintenance of a whole log directory: retention and compaction of every partition,
on demand (`Log.maintain()`, `embedlog maintain`) and by itself in every process that
writes (Kafka's log.retention.check.interval.ms and log cleaner threads, in one thread).

Several processes may write to the same directory; each runs its own timer, and the
cleaner lock of each partition (byte 2 of partition.state) makes the others skip a
partition that is being maintained at that moment.
"""
from __future__ import annotations

import logging
import os
import threading

from ._errors import EmbedlogError, LogClosedError, UnknownTopicOrPartitionError

DEFAULT_INTERVAL_MS = 300000        # Kafka's log.retention.check.interval.ms
_log = logging.getLogger("embedlog.maintenance")


def maintain_log(log, now: int | None = None, topics=None) -> dict:
    """{topic: {partition: what maintain() did}} for every partition of `topics`
    (default: all, internal ones included), skipping ones that did nothing."""
    out = {}
    for name in (log.topics() if topics is None else topics):
        try:
            topic = log.topic(name)
        except UnknownTopicOrPartitionError:
            continue                                   # deleted meanwhile
        for p, part in enumerate(topic.partitions):
            try:
                result = part.maintain(now)
            except LogClosedError:
                raise
            except (EmbedlogError, OSError) as e:
                # One damaged partition must not stop retention everywhere else.
                result = {"error": f"{type(e).__name__}: {e}"}
            if _did_something(result):
                out.setdefault(name, {})[p] = result
    return out


def _did_something(result: dict) -> bool:
    return bool(result.get("retention", {}).get("deleted_segments") or result.get("compaction")
                or result.get("skipped") or result.get("error"))


class Maintainer:
    """A daemon thread that maintains the log every `interval_ms` while it is open."""

    def __init__(self, log, interval_ms: int):
        self.log = log
        self.interval = interval_ms / 1000.0
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"embedlog-maintenance {log.path}", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            if os.getpid() != self.pid:
                return
            try:
                done = maintain_log(self.log)
                if done:
                    _log.info("maintenance of %s: %s", self.log.path, done)
                for name, parts in done.items():
                    for p, r in parts.items():
                        if r.get("error"):       # every pass, through logging (warnings show once)
                            _log.error("maintenance of %s-%d in %s failed: %s", name, p, self.log.path, r["error"])
            except LogClosedError:
                return
            except (EmbedlogError, OSError) as e:    # report, keep the thread: the next pass may succeed
                _log.error("maintenance of %s failed: %s", self.log.path, e)

    def stop(self):
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)


__all__ = ["maintain_log", "Maintainer", "DEFAULT_INTERVAL_MS"]
