"""asyncio clients shaped like confluent-kafka's ``confluent_kafka.aio`` (#19).

``AIOProducer`` / ``AIOConsumer`` wrap the sync clients. Storage calls run in one bounded
executor per client; a waiting poll never holds a thread: it tries a non-blocking
``poll(0)`` in the executor and otherwise sleeps on the event loop with backoff.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from embedlog import Consumer, KafkaException, Producer

__all__ = ["AIOConsumer", "AIOProducer"]

_MAX_BACKOFF = 0.25


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

    async def _wait(self, try_once, timeout):
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None or timeout < 0 else loop.time() + timeout
        delay = 0.005
        while True:
            got = await self._call(try_once)
            if got:
                return got
            if deadline is not None and loop.time() >= deadline:
                return got
            wait = delay if deadline is None else min(delay, max(0.0, deadline - loop.time()))
            await asyncio.sleep(wait)
            delay = min(delay * 2, _MAX_BACKOFF)

    async def poll(self, timeout=-1):
        return await self._wait(lambda: self._sync.poll(0), timeout)

    async def consume(self, num_messages=1, timeout=-1):
        got = await self._wait(lambda: self._sync.consume(num_messages, 0), timeout)
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
