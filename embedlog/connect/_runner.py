"""The runner: a `Worker` runs connectors of one log directory, one thread per connector
(its one task), as Kafka Connect's standalone/distributed worker does, with the state in
the `_connect_*` topics (`_store`).

    worker = Worker("data/")                      # runs every stored connector (names=None)
    worker.start()
    worker.submit({"name": "lines", "connector.class": "FileStreamSource", ...})
    ...
    worker.stop()

A worker watches `_connect_configs`: a connector added, changed (restarted with the new
config), paused, resumed or deleted by any process (the CLI, the REST API, another worker)
takes effect within `watch_interval` seconds.

Source loop, per task (at least once, never lost):
    1. records = connector.poll()
    2. each: transforms, then the key/value converters, then produced (acks=all, idempotent)
    3. producer.flush(): every record durable in its topic (a failed delivery fails the task)
    4. the last offset of each source partition appended to _connect_offsets, fdatasync'd
    5. connector.commit(records)
A kill -9 between 3 and 4 replays those records at the next start: duplicates only past the
last stored offset.

Sink loop: a consumer of the group `connect-<name>` (auto.offset.reset=earliest, no auto
commit); each batch consumed is converted, transformed and `put()`, then `flush()` and the
group's offsets committed, so a crash re-delivers at most what followed the last commit.

States (Kafka Connect's): RUNNING, PAUSED, FAILED (with the traceback as `trace`),
UNASSIGNED (no worker runs it: stopped, or its worker process is gone).

    (config stored) -> RUNNING <-> PAUSED       pause()/resume(): the target-state record
         RUNNING/PAUSED -> FAILED               an exception in check/start/poll/put/flush
         any -> UNASSIGNED                      the worker stopped (or was killed)
         any -> (gone)                          delete(): tombstones; offsets kept
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback

from ..storage._log import open_log
from . import _configs, _converters, _transforms
from ._data import ConnectError, SinkRecord
from ._store import Store, canonical, this_worker

log = logging.getLogger("embedlog.connect")


class _Task(threading.Thread):
    def __init__(self, worker: Worker, name: str, raw: dict, generation: int, target: str):
        super().__init__(name=f"connect-{name}", daemon=True)
        self.worker, self.store, self.cname, self.raw, self.generation = worker, worker.store, name, raw, generation
        self.stopping = threading.Event()
        self.target = target
        self.state = None
        self.deleted = False
        self.connector = None

    # -- status
    def _status(self, state, *, trace=None, task_state=None):
        self.state = task_state or state
        try:
            self.store.put_status(self.cname, state, trace=trace, worker_id=self.worker.worker_id,
                                  generation=self.generation, task_state=task_state, task_trace=trace)
        except Exception:
            log.exception("connector %s: cannot store its status %s", self.cname, state)

    def set_target(self, target):
        self.target = target

    def _paused(self) -> bool:
        if self.target == "PAUSED":
            if self.state != "PAUSED":
                self._status("PAUSED")
            return True
        if self.state == "PAUSED":
            self._status("RUNNING")
        return False

    def run(self):
        try:
            checked = _configs.check(self.raw, name=self.cname)
        except ConnectError as e:
            self._status("FAILED", trace=str(e))
            return
        try:
            self.keys = _converters.converter(checked.raw, "key")
            self.values = _converters.converter(checked.raw, "value")
            self.chain = _transforms.transforms(checked.raw)
            self.connector = checked.cls()
            if checked.cls.kind == "source":
                self._run_source(checked)
            else:
                self._run_sink(checked)
        except Exception:                                     # noqa: BLE001 - any failure is the task's
            trace = traceback.format_exc()
            log.error("connector %s failed:\n%s", self.cname, trace)
            self._status("RUNNING", task_state="FAILED", trace=trace)
            self._stop_connector()
            return
        self._stop_connector()
        if self.deleted:
            self.store.delete_status(self.cname)              # over any status written meanwhile
        else:
            self._status("UNASSIGNED")

    def _stop_connector(self):
        c, self.connector = self.connector, None
        if c is not None:
            try:
                c.stop()
            except Exception:
                log.exception("connector %s: stop() failed", self.cname)

    # -- source
    def _run_source(self, checked):
        from ..client._producer import Producer
        stored = self.store.source_offsets(self.cname)

        def offsets(partition):
            got = stored.get(canonical(partition))
            return None if got is None else got[1]

        self.connector.start(checked.values, offsets)
        self._status("RUNNING")
        producer = Producer({"bootstrap.servers": f"file://{self.worker.log.path}", "acks": "all",
                             "enable.idempotence": True, "linger.ms": 5})
        created = set()
        partitions = checked.values.get("topic.creation.default.partitions") or 1
        try:
            while not self.stopping.is_set():
                if self._paused():
                    self.stopping.wait(self.worker.watch_interval)
                    continue
                records = self.connector.poll(self.worker.poll_timeout)
                if records:
                    self._deliver(producer, records, created, partitions, checked)
        finally:
            producer.flush(60)

    def _deliver(self, producer, records, created, partitions, checked):
        failures = []

        def on_delivery(err, _msg):
            if err is not None:
                failures.append(err)

        log_ = self.worker.log
        for n, r in enumerate(records, 1):
            if n % 1000 == 0:
                producer.poll(0)                             # serve delivery reports now and then
            if r.topic is None:
                continue                                     # an offset only
            t = _transforms.apply_all(self.chain, r)
            if t is None:
                continue
            value = self.values.from_connect(t.value_schema, t.value, topic=t.topic)   # before the topic:
            key = self.keys.from_connect(t.key_schema, t.key, topic=t.topic)           # a refusal creates none
            if t.topic not in created:
                if t.topic not in log_.topics():
                    try:
                        log_.create_topic(t.topic, partitions, checked.values.get("topic.creation.default") or None)
                    except Exception:
                        if t.topic not in log_.topics():
                            raise
                created.add(t.topic)
            producer.produce(t.topic, value=value, key=key,
                             headers=list(t.headers) or None, timestamp=t.timestamp or 0, on_delivery=on_delivery)
        left = producer.flush(60)
        if failures or left:
            raise ConnectError(f"connector {self.cname}: {len(failures) + left} records not delivered"
                               f"{': ' + str(failures[0]) if failures else ''}")
        latest, spelled = {}, {}                              # a source reuses one partition dict:
        for r in records:                                     # spell each once (the records keep it alive)
            p = r.partition
            if p is not None and r.offset is not None:
                c = spelled.get(id(p))
                if c is None:
                    c = spelled[id(p)] = canonical(p)
                latest[c] = (p, r.offset)
        self.store.put_offsets(self.cname, latest)
        self.connector.commit(records)

    # -- sink
    def _run_sink(self, checked):
        from ..client._consumer import Consumer
        from ..client._kafka import KafkaException
        self.connector.start(checked.values, None)
        consumer = Consumer({"bootstrap.servers": f"file://{self.worker.log.path}", "group.id": f"connect-{self.cname}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        connector = self.connector

        def on_revoke(c, _partitions):
            connector.flush()
            try:
                c.commit(asynchronous=False)
            except KafkaException:
                pass                                          # nothing consumed since the last commit

        topics = checked.values["topics"] or ["^" + checked.values["topics.regex"]]
        consumer.subscribe(topics, on_revoke=on_revoke)
        self._status("RUNNING")
        paused = False
        try:
            while not self.stopping.is_set():
                if self._paused():
                    if not paused:
                        consumer.pause(consumer.assignment())
                        paused = True
                    consumer.poll(self.worker.watch_interval)
                    continue
                if paused:
                    consumer.resume(consumer.assignment())
                    paused = False
                msgs = consumer.consume(500, self.worker.poll_timeout)
                records = []
                for m in msgs:
                    if m.error():
                        if m.error().fatal() if hasattr(m.error(), "fatal") else False:
                            raise KafkaException(m.error())
                        continue
                    ks, k = self.keys.to_connect(m.key())
                    vs, v = self.values.to_connect(m.value())
                    r = SinkRecord(m.topic(), m.partition(), m.offset(), m.timestamp()[1], k, v, ks, vs,
                                   tuple(m.headers() or ()))
                    r = _transforms.apply_all(self.chain, r)
                    if r is not None:
                        records.append(r)
                if records:
                    connector.put(records)
                if msgs:
                    connector.flush()
                    consumer.commit(asynchronous=False)
        finally:
            try:
                consumer.close()
            except Exception:
                log.exception("connector %s: closing its consumer failed", self.cname)


class Worker:
    """Runs the connectors of one log directory in threads. `names`: only these connectors
    (None: every stored one, as the REST server does)."""

    def __init__(self, log_dir, *, names=None, worker_id: str | None = None, watch_interval: float = 0.2,
                 poll_timeout: float = 0.5):
        self.log = open_log(os.fspath(log_dir), create=True) if isinstance(log_dir, (str, os.PathLike)) \
            else log_dir
        self._own_log = self.log is not log_dir
        self.store = Store(self.log)
        self.names = None if names is None else set(names)
        self.worker_id = worker_id or this_worker()
        self.watch_interval, self.poll_timeout = watch_interval, poll_timeout
        self.tasks: dict[str, _Task] = {}
        self._stop = threading.Event()
        self._watcher = None
        self._lock = threading.Lock()

    # -- the lifecycle
    def start(self):
        if self._watcher is None:
            self._reconcile()
            self._watcher = threading.Thread(target=self._watch, name="connect-worker", daemon=True)
            self._watcher.start()
        return self

    def stop(self, timeout: float = 30.0):
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout)
        with self._lock:
            tasks = list(self.tasks.values())
            self.tasks.clear()
        for t in tasks:
            t.stopping.set()
        for t in tasks:
            t.join(timeout)
        if self._own_log:
            self.log.close()

    close = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _watch(self):
        while not self._stop.wait(self.watch_interval):
            try:
                self._reconcile()
            except Exception:
                log.exception("connect worker: reading _connect_configs failed")

    def _reconcile(self):
        self.store.refresh()
        with self._lock:
            if self._stop.is_set():
                return
            configs = dict(self.store.configs)
            for name, task in list(self.tasks.items()):
                if name not in configs:
                    task.deleted = True
                    task.stopping.set()
                    task.join(30)                             # nothing read after the delete returns
                    del self.tasks[name]
                elif task.raw != configs[name]:
                    task.stopping.set()
                    task.join(30)
                    del self.tasks[name]
                elif not task.is_alive():
                    pass                                      # failed: stays so until restarted
                else:
                    task.set_target(self.store.targets.get(name, "STARTED"))
            for name, raw in configs.items():
                if name in self.tasks or (self.names is not None and name not in self.names):
                    continue
                t = _Task(self, name, raw, self.store.config_offsets.get(name, 0),
                          self.store.targets.get(name, "STARTED"))
                self.tasks[name] = t
                t.start()

    # -- what the CLI and the REST API do
    def submit(self, config: dict, *, name: str | None = None) -> _configs.Checked:
        """Check a config and store it (a new connector, or a changed one restarts); nothing is
        stored when it is refused (ConnectError). A worker of some `names` runs it too."""
        checked = submit(self.store, config, name=name)
        if self.names is not None:
            self.names.add(checked.name)
        return checked

    def restart(self, name: str):
        with self._lock:
            task = self.tasks.pop(name, None)
        if task is not None:
            task.stopping.set()
            task.join(30)
        self._reconcile()

    def wait_for(self, name: str, state: str, timeout: float = 30.0, *, task: bool = True) -> dict:
        """Block until the connector's (task's) state is `state`; its status. ConnectError at
        the timeout, with the state it is in."""
        deadline = time.monotonic() + timeout
        while True:
            self.store.refresh()
            st = self.store.connector_status(name)
            got = st["tasks"][0]["state"] if task else st["connector"]["state"]
            if got == state:
                return st
            if time.monotonic() > deadline:
                raise ConnectError(f"connector {name}: still {got} after {timeout} s, not {state}: {st}")
            time.sleep(0.05)


def submit(store: Store, config: dict, *, name: str | None = None) -> _configs.Checked:
    checked = _configs.check(config, name=name)
    store.refresh()
    if store.configs.get(checked.name) != checked.raw:
        store.put_config(checked.name, checked.raw,
                         target=None if checked.name in store.targets else "STARTED")
    return checked


def run(log_dir, config: dict | None = None, *, names=None) -> Worker:
    """Start a worker on `log_dir` (a path or an open log) that runs `config` (stored first;
    refused with ConnectError before anything is written) or, with `names`, the stored
    connectors of those names (None: all). Returns the running Worker: `.stop()` it."""
    if config is not None:
        names = [_configs.check(config).name]          # refused before anything is written
    w = Worker(log_dir, names=names)
    try:
        if config is not None:
            w.submit(config)
        w.start()
    except BaseException:
        w.stop()
        raise
    return w
