"""The connectors' state as records in three compacted topics of the log directory, with
Kafka Connect's keys and JSON values (FORMAT.md, "Connector topics"):

    _connect_configs   connector-NAME        {"properties": {<the config, string values>}}
                       target-state-NAME     {"state": "STARTED" | "PAUSED"}
                       (a null value under connector-NAME: the connector was deleted)
    _connect_status    status-connector-NAME {"state": ..., "trace": ..., "worker_id": ..., "generation": N}
                       status-task-NAME-0    the same, for its one task
    _connect_offsets   ["NAME", {<source partition>}]  {<source offset>}

Every write is one durable append (fdatasync'd, acks=all) of one batch, so a set of offsets
stored together is all there after a crash or not at all. Any process may read and write
them; a `Store` keeps what it has read and reads on from there (`refresh`).
"""
from __future__ import annotations

import json
import os
import socket
import threading

from ..storage._errors import EmbedlogError
from ..storage._records import now_ms

CONFIGS, STATUS, OFFSETS = "_connect_configs", "_connect_status", "_connect_offsets"
TOPIC_CONFIG = {"cleanup.policy": "compact"}
STATES = ("RUNNING", "PAUSED", "FAILED", "UNASSIGNED")


def _dumps(doc) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def canonical(partition: dict) -> str:
    """One spelling of a source partition, whatever its key order."""
    return json.dumps(partition, sort_keys=True, separators=(",", ":"))


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_gone(worker_id: str | None) -> bool:
    """A worker of this host whose process no longer exists (killed, crashed)."""
    host, _, pid = (worker_id or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Store:
    def __init__(self, log):
        self.log = log
        self.lock = threading.RLock()
        self.next = {CONFIGS: 0, STATUS: 0, OFFSETS: 0}
        self.configs: dict[str, dict] = {}           # name -> raw config
        self.config_offsets: dict[str, int] = {}     # name -> offset of its config record
        self.targets: dict[str, str] = {}            # name -> STARTED / PAUSED
        self.status: dict[str, dict] = {}            # status key -> value
        self.offsets: dict[str, dict[str, tuple]] = {}   # name -> {canonical: (partition, offset)}
        for t in self.next:
            self._part(t)

    def _part(self, topic):
        if topic not in self.log.topics():
            try:
                self.log.create_topic(topic, 1, TOPIC_CONFIG)
            except EmbedlogError:
                if topic not in self.log.topics():   # not a concurrent create by another process
                    raise
        return self.log.partition(topic, 0)

    # ------------------------------------------------------------ reading
    def refresh(self, *topics) -> bool:
        """Read what was appended since the last look; True if anything was."""
        changed = False
        with self.lock:
            for topic in topics or tuple(self.next):
                part = self.log.partition(topic, 0)
                pos = max(self.next[topic], part.log_start_offset)
                while True:
                    cols, nxt = part.fetch(pos)
                    for off, key, value in zip(cols.offsets, cols.keys, cols.values):
                        self._apply(topic, off, key, value)
                        changed = True
                    if nxt <= pos:
                        break
                    pos = nxt
                self.next[topic] = pos
        return changed

    def _apply(self, topic, off, key, value):
        doc = None if value is None else json.loads(value)
        if topic == OFFSETS:
            name, partition = json.loads(key)
            per = self.offsets.setdefault(name, {})
            if doc is None:
                per.pop(canonical(partition), None)
            else:
                per[canonical(partition)] = (partition, doc)
            return
        k = key.decode()
        if topic == STATUS:
            if doc is None:
                self.status.pop(k, None)
            else:
                self.status[k] = doc
            return
        if k.startswith("connector-"):
            name = k[len("connector-"):]
            if doc is None:
                self.configs.pop(name, None)
                self.config_offsets.pop(name, None)
            else:
                self.configs[name] = doc["properties"]
                self.config_offsets[name] = off
        elif k.startswith("target-state-"):
            name = k[len("target-state-"):]
            if doc is None:
                self.targets.pop(name, None)
            else:
                self.targets[name] = doc["state"]

    def connector_status(self, name: str) -> dict:
        """Kafka Connect's GET /connectors/NAME/status body. A RUNNING or PAUSED state whose
        worker process on this host is gone reads UNASSIGNED, with why."""
        with self.lock:
            def one(key):
                st = dict(self.status.get(key) or {"state": "UNASSIGNED", "trace": None, "worker_id": None})
                if st["state"] in ("RUNNING", "PAUSED") and worker_gone(st.get("worker_id")):
                    st["trace"] = f"worker {st['worker_id']} is gone (killed or crashed); run the connector again"
                    st["state"] = "UNASSIGNED"
                out = {"state": st["state"], "worker_id": st.get("worker_id")}
                if st.get("trace"):
                    out["trace"] = st["trace"]
                return out
            from ._configs import plugin_kind
            return {"name": name, "connector": one(f"status-connector-{name}"),
                    "tasks": [{"id": 0, **one(f"status-task-{name}-0")}],
                    "type": plugin_kind(self.configs.get(name, {}).get("connector.class", ""))}

    def source_offsets(self, name: str) -> dict[str, tuple]:
        with self.lock:
            return dict(self.offsets.get(name, {}))

    # ------------------------------------------------------------ writing
    def _append(self, topic, pairs):
        keys = [k if isinstance(k, bytes) else k.encode() for k, _ in pairs]
        values = [None if v is None else _dumps(v) for _, v in pairs]
        self._part(topic).append_records(values, keys, sync=True)

    def put_config(self, name: str, raw: dict, *, target: str | None = None):
        pairs = [(f"connector-{name}", {"properties": raw})]
        if target:
            pairs.insert(0, (f"target-state-{name}", {"state": target}))
        self._append(CONFIGS, pairs)

    def put_target(self, name: str, state: str):
        self._append(CONFIGS, [(f"target-state-{name}", {"state": state})])

    def delete(self, name: str):
        """The config's tombstone, then the target state's and the statuses'; the stored source
        offsets stay (as with Kafka Connect: a connector made again with the name resumes)."""
        self._append(CONFIGS, [(f"connector-{name}", None), (f"target-state-{name}", None)])
        self.delete_status(name)

    def delete_status(self, name: str):
        self._append(STATUS, [(f"status-connector-{name}", None), (f"status-task-{name}-0", None)])

    def put_status(self, name: str, state: str, *, trace: str | None = None, worker_id: str, generation: int,
                   task_state: str | None = None, task_trace: str | None = None):
        doc = {"state": state, "trace": trace, "worker_id": worker_id, "generation": generation}
        tdoc = {"state": task_state or state, "trace": task_trace if task_state else trace,
                "worker_id": worker_id, "generation": generation}
        self._append(STATUS, [(f"status-connector-{name}", doc), (f"status-task-{name}-0", tdoc)])

    def put_offsets(self, name: str, offsets: dict[str, tuple]):
        if offsets:
            self._append(OFFSETS, [(_dumps([name, p]), o) for p, o in offsets.values()])
        with self.lock:
            self.offsets.setdefault(name, {}).update(offsets)


__all__ = ["CONFIGS", "OFFSETS", "STATES", "STATUS", "Store", "canonical", "now_ms", "this_worker"]
