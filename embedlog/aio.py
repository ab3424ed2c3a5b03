"""asyncio clients shaped like confluent-kafka's ``confluent_kafka.aio`` (#19).

``AIOProducer`` / ``AIOConsumer`` wrap the sync clients. Storage calls run in one bounded
executor per client; a waiting poll never holds a thread: it tries a non-blocking
``poll(0)`` in the executor and otherwise awaits an asyncio.Event that one watcher thread
per log directory sets (via call_soon_threadsafe) when a partition file there changes size
or mtime, re-polling at least every 5 s so group membership stays alive.
"""

import asyncio
import os
import threading
import typing
import weakref
from concurrent.futures import ThreadPoolExecutor

from embedlog import Consumer, KafkaException, Producer

__all__ = ["AIOConsumer", "AIOProducer"]

_MAX_BACKOFF = 0.25
_RECHECK = 5.0
_SCAN_EVERY = 0.02


class _DirWatcher:
    """One daemon thread per log directory: stats the partition files every 20 ms and wakes
    every registered asyncio waiter of that directory when any changed."""

    _all: typing.ClassVar[dict] = {}
    _lock = threading.Lock()

    @classmethod
    def of(cls, path):
        path = os.path.realpath(path)
        with cls._lock:
            w = cls._all.get(path)
            if w is None:
                w = cls._all[path] = cls(path)
            return w

    def __init__(self, path):
        self.path = path
        self.waiters = weakref.WeakSet()
        self._wlock = threading.Lock()
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
        while not ev.wait(_SCAN_EVERY):
            now = self._snapshot()
            if now != last:
                last = now
                with self._wlock:
                    ws = list(self.waiters)
                for w in ws:
                    w.wake()

    def add(self, waiter):
        with self._wlock:
            self.waiters.add(waiter)


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


class _Base:
    def __init__(self, sync):
        self._sync = sync
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedlog-aio")

    async def _call(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class AIOProducer(_Base):
    def __init__(self, conf=None, **kwargs):
        super().__init__(Producer(conf, **kwargs))

    async def produce(self, topic, value=None, key=None, on_delivery=None, **kwargs):
        """Returns a future resolving to the delivered message (raises KafkaException on error)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(err, msg):
            def settle():
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
        await self._call(self._sync.poll, 0)
        return fut

    async def poll(self, timeout=0):
        return await self._call(self._sync.poll, timeout)

    async def flush(self, timeout=None):
        return await self._call(self._sync.flush, timeout)

    async def purge(self, *a, **k):
        return await self._call(self._sync.purge, *a, **k)

    async def list_topics(self, *a, **k):
        return await self._call(self._sync.list_topics, *a, **k)

    async def close(self):
        await self._call(self._sync.flush)
        await self._call(self._sync.close)
        self._pool.shutdown(wait=False)


class AIOConsumer(_Base):
    def __init__(self, conf=None, **kwargs):
        super().__init__(Consumer(conf, **kwargs))
        d = _log_dir(conf, kwargs)
        self._watcher = _DirWatcher.of(d) if d else None
        self._waiter = None
        self._stash = []  # what a cancelled poll had already taken from the sync consumer

    async def _try(self, try_once):
        """Runs try_once in the executor; if the awaiting call is cancelled meanwhile, what it
        fetched is kept for the next poll/consume instead of lost."""
        if self._stash:
            got, self._stash = self._stash, []
            return got
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
            if self._watcher is None:
                wait = delay if deadline is None else min(delay, max(0.0, deadline - loop.time()))
                await asyncio.sleep(wait)
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            if self._waiter is None or self._waiter.loop is not loop:
                self._waiter = _Waiter(loop)
                self._watcher.add(self._waiter)
            wait = _RECHECK if deadline is None else min(_RECHECK, max(0.0, deadline - loop.time()))
            try:
                await asyncio.wait_for(self._waiter.event.wait(), wait)
            except asyncio.TimeoutError:
                pass
            self._waiter.event.clear()

    async def poll(self, timeout=-1):
        got = await self._wait(lambda: self._sync.poll(0), timeout)
        if isinstance(got, list):  # stashed by a cancelled consume()
            got, rest = got[0], got[1:]
            self._stash[:0] = rest
        return got

    async def consume(self, num_messages=1, timeout=-1):
        got = await self._wait(lambda: self._sync.consume(num_messages, 0), timeout)
        if got is not None and not isinstance(got, list):
            got = [got]
        return got or []

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.poll(None)

    async def subscribe(self, *a, **k):
        return await self._call(self._sync.subscribe, *a, **k)

    async def unsubscribe(self):
        return await self._call(self._sync.unsubscribe)

    async def assign(self, *a, **k):
        return await self._call(self._sync.assign, *a, **k)

    async def unassign(self):
        return await self._call(self._sync.unassign)

    async def assignment(self):
        return await self._call(self._sync.assignment)

    async def commit(self, *a, **k):
        k.setdefault("asynchronous", False)
        return await self._call(self._sync.commit, *a, **k)

    async def committed(self, *a, **k):
        return await self._call(self._sync.committed, *a, **k)

    async def position(self, *a, **k):
        return await self._call(self._sync.position, *a, **k)

    async def seek(self, *a, **k):
        return await self._call(self._sync.seek, *a, **k)

    async def get_watermark_offsets(self, *a, **k):
        return await self._call(self._sync.get_watermark_offsets, *a, **k)

    async def close(self):
        await self._call(self._sync.close)
        self._pool.shutdown(wait=False)
