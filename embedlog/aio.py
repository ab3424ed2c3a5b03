"""asyncio clients shaped like confluent-kafka's ``confluent_kafka.aio`` (#19).

``AIOProducer`` / ``AIOConsumer`` wrap the sync clients. Storage calls run in one bounded
executor per client; a waiting poll never holds a thread: it tries a non-blocking
``poll(0)`` in the executor and otherwise awaits an asyncio.Event that one watcher thread
per log directory sets (via call_soon_threadsafe) when a partition file there changes size
or mtime, re-polling at least every 5 s so group membership stays alive.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
import typing
import weakref
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from embedlog import Consumer, KafkaError, KafkaException, Producer

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from typing_extensions import Self

    from embedlog import Message, TopicPartition

__all__ = ["AIOConsumer", "AIOProducer"]

_MAX_BACKOFF = 0.25
_RECHECK = 5.0
_SCAN_EVERY = 0.02
_IDLE_END = 1.0                  # a watcher with no waiter this long ends


class _DirWatcher:
    """One daemon thread per log directory while anything waits there: stats the partition
    files every 20 ms and wakes every registered asyncio waiter of that directory when any
    changed. With no waiter left for a second it ends (a closed consumer drops its waiter),
    and the next wait starts a new one."""

    _all: typing.ClassVar[dict] = {}
    _lock = threading.Lock()

    @classmethod
    def watch(cls, path, waiter):
        """Register `waiter` with the directory's watcher, starting one if none runs."""
        path = os.path.realpath(path)
        with cls._lock:
            w = cls._all.get(path)
            if w is None:
                w = cls._all[path] = cls(path)
            w.waiters.add(waiter)
            return w

    def __init__(self, path):
        self.path = path
        self.waiters = weakref.WeakSet()
        threading.Thread(target=self._run, name=f"embedlog-aio-watch:{path}", daemon=True).start()

    def _snapshot(self):
        out = []
        try:
            for d in os.scandir(self.path):
                if d.is_dir():
                    for f in os.scandir(d.path):
                        st = f.stat()
                        out.append((f.path, st.st_size, st.st_mtime_ns))
        except OSError:
            pass
        return out

    def _run(self):
        ev = threading.Event()
        last = self._snapshot()
        idle_since = None
        while not ev.wait(_SCAN_EVERY):
            with self._lock:
                ws = list(self.waiters)
                if not ws:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > _IDLE_END:
                        del self._all[self.path]
                        return
                    continue
            idle_since = None
            now = self._snapshot()
            if now != last:
                last = now
                for w in ws:
                    w.wake()


class _Waiter:
    def __init__(self, loop):
        self.loop = loop
        self.event = asyncio.Event()

    def wake(self):
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # loop closed
            pass


def _log_dir(conf, kwargs):
    conf = {**(conf or {}), **kwargs}
    b = str(conf.get("bootstrap.servers", ""))
    return b[len("file://"):] if b.startswith("file://") else None


def _delegate(name):
    """An async method running the sync client's `name` in the client's executor."""
    async def call(self, *args, **kwargs):
        return await self._call(getattr(self._sync, name), *args, **kwargs)
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"await the sync client's {name}() in the client's executor."
    return call


class _Base:
    """`executor`: confluent-kafka's argument: run the storage calls in this executor (shared
    by many clients) instead of a one-thread executor of the client's own. A client's calls
    never run at once (the sync clients are not thread-safe), whatever the executor."""

    def __init__(self, sync, executor=None):
        self._sync = sync
        self._own_pool = executor is None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedlog-aio") \
            if executor is None else executor
        self._serial = threading.Lock() if executor is not None else None
        self._closed = False

    async def _call(self, fn, *args, **kwargs):
        if self._closed:            # the sync client's own error (RuntimeError), at once
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, fn, args, kwargs)

    def _run(self, fn, args, kwargs):
        if self._serial is None:
            return fn(*args, **kwargs)
        with self._serial:
            return fn(*args, **kwargs)

    def _shutdown(self):
        self._closed = True
        if self._own_pool:
            self._pool.shutdown(wait=False)

    async def cluster_id(self, timeout: float = -1) -> str:
        """The cluster id (for a log directory: its name, as AdminClient reports it)."""
        md = await self._call(self._sync.list_topics, timeout=timeout)
        return md.cluster_id

    async def set_sasl_credentials(self, username: str, password: str) -> None:
        fn = getattr(self._sync, "set_sasl_credentials", None)
        if fn is None:
            raise KafkaException(KafkaError(KafkaError._NOT_IMPLEMENTED,
                                            "set_sasl_credentials: a log directory has no SASL"))
        return await self._call(fn, username, password)

    list_topics = _delegate("list_topics")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        raise NotImplementedError


class AIOProducer(_Base):
    """confluent_kafka.aio.AIOProducer's shape: `await produce(...)` returns a future of the
    delivered Message. max_workers/batch_size/buffer_timeout are accepted for confluent's
    signature; batching is the sync producer's own (linger.ms, batch.size)."""

    def __init__(self, conf: Mapping[str, Any] | None = None, max_workers: int = 1, executor: Executor | None = None,
                 batch_size: int = 1000, buffer_timeout: float = 1.0, **kwargs: Any) -> None:
        super().__init__(Producer(conf, **kwargs), executor)
        self._unsettled = 0              # futures handed out and not resolved yet
        self._reporter: asyncio.Task | None = None  # the task serving delivery reports while any are
        self._report_pool = None         # its one thread (the sync Producer is thread-safe)

    async def _serve_reports(self):
        """Serve the sync producer's delivery callbacks while futures wait for them, so an
        awaited future resolves without the caller's poll() or flush(), as confluent's do.
        Its poll(0.2) returns as soon as a report is queued."""
        loop = asyncio.get_running_loop()
        if self._report_pool is None:
            self._report_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedlog-aio-reports")
        while self._unsettled and not self._closed:
            await loop.run_in_executor(self._report_pool, self._sync.poll, 0.2)

    async def produce(self, topic: str, value: bytes | str | None = None, key: bytes | str | None = None,
                      on_delivery: Callable[[KafkaError | None, Message], object] | None = None,
                      **kwargs: Any) -> asyncio.Future[Message]:
        """Returns a future resolving to the delivered message (raises KafkaException on error)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(err, msg):
            def settle():
                self._unsettled -= 1
                if on_delivery is not None:
                    on_delivery(err, msg)
                if fut.done():
                    return
                if err is not None:
                    fut.set_exception(KafkaException(err))
                else:
                    fut.set_result(msg)
            loop.call_soon_threadsafe(settle)

        await self._call(self._sync.produce, topic, value=value, key=key, on_delivery=done, **kwargs)
        self._unsettled += 1
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.create_task(self._serve_reports())
        return fut

    async def poll(self, timeout: float = 0) -> int:
        return await self._call(self._sync.poll, timeout)

    flush = _delegate("flush")
    purge = _delegate("purge")
    init_transactions = _delegate("init_transactions")
    begin_transaction = _delegate("begin_transaction")
    send_offsets_to_transaction = _delegate("send_offsets_to_transaction")
    commit_transaction = _delegate("commit_transaction")
    abort_transaction = _delegate("abort_transaction")

    async def close(self) -> None:
        await self._call(self._sync.flush)
        await self._call(self._sync.close)
        self._shutdown()
        if self._reporter is not None:
            await self._reporter
        if self._report_pool is not None:
            self._report_pool.shutdown(wait=False)


class AIOConsumer(_Base):
    """confluent_kafka.aio.AIOConsumer's shape, plus `async for msg in consumer`. A waiting
    poll/consume holds no thread (see the module's docstring)."""

    def __init__(self, conf: Mapping[str, Any] | None = None, max_workers: int = 1, executor: Executor | None = None,
                 **kwargs: Any) -> None:
        super().__init__(Consumer(conf, **kwargs), executor)
        self._dir = _log_dir(conf, kwargs)
        self._waiter = None
        self._stash: list = []  # what a cancelled poll had already taken from the sync consumer

    async def _try(self, try_once):
        """Runs try_once in the executor; if the awaiting call is cancelled meanwhile, what it
        fetched is kept for the next poll/consume instead of lost."""
        if self._stash:
            got, self._stash = self._stash, []
            return got
        if self._closed:
            return try_once()
        fut = asyncio.get_running_loop().run_in_executor(self._pool, try_once)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            def keep(f):
                if not f.cancelled() and f.exception() is None and f.result():
                    r = f.result()
                    self._stash.extend(r if isinstance(r, list) else [r])
            fut.add_done_callback(keep)
            raise

    async def _wait(self, try_once, timeout):
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None or timeout < 0 else loop.time() + timeout
        delay = 0.005
        while True:
            if self._waiter is not None:
                self._waiter.event.clear()
            got = await self._try(try_once)
            if got:
                return got
            if deadline is not None and loop.time() >= deadline:
                return got
            if self._dir is None:
                wait = delay if deadline is None else min(delay, max(0.0, deadline - loop.time()))
                await asyncio.sleep(wait)
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            if self._waiter is None or self._waiter.loop is not loop:
                self._waiter = _Waiter(loop)
                _DirWatcher.watch(self._dir, self._waiter)
            wait = _RECHECK if deadline is None else min(_RECHECK, max(0.0, deadline - loop.time()))
            try:
                await asyncio.wait_for(self._waiter.event.wait(), wait)
            except asyncio.TimeoutError:
                pass
            self._waiter.event.clear()

    async def poll(self, timeout: float | None = -1) -> Message | None:
        got = await self._wait(lambda: self._sync.poll(0), timeout)
        if isinstance(got, list):  # stashed by a cancelled consume()
            got, rest = got[0], got[1:]
            self._stash[:0] = rest
        return got

    async def consume(self, num_messages: int = 1, timeout: float | None = -1) -> list[Message]:
        got = await self._wait(lambda: self._sync.consume(num_messages, 0), timeout)
        if got is not None and not isinstance(got, list):
            got = [got]
        return got or []

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        return await self.poll(None)  # type: ignore[return-value]  # poll(None) waits for a message

    subscribe = _delegate("subscribe")
    unsubscribe = _delegate("unsubscribe")
    assign = _delegate("assign")
    unassign = _delegate("unassign")
    incremental_assign = _delegate("incremental_assign")
    incremental_unassign = _delegate("incremental_unassign")
    assignment = _delegate("assignment")
    committed = _delegate("committed")
    position = _delegate("position")
    seek = _delegate("seek")
    pause = _delegate("pause")
    resume = _delegate("resume")
    store_offsets = _delegate("store_offsets")
    offsets_for_times = _delegate("offsets_for_times")
    get_watermark_offsets = _delegate("get_watermark_offsets")
    consumer_group_metadata = _delegate("consumer_group_metadata")

    async def commit(self, *a: Any, **k: Any) -> list[TopicPartition] | None:
        """Synchronous by default (asynchronous=False), as an awaited commit should be."""
        k.setdefault("asynchronous", False)
        return await self._call(self._sync.commit, *a, **k)

    async def close(self) -> None:
        await self._call(self._sync.close)
        self._shutdown()
        self._waiter = None              # its directory's watcher ends once nothing waits
