"""The sync clients and embedlog.aio's under one behaviour table (#19).

Each scenario is written once against a client factory; it runs with the sync Producer/
Consumer and with AIOProducer/AIOConsumer driven from an event loop, and both runs must
give the scenario's expected observations (so also the same ones). The asyncio clients'
method names are checked against confluent_kafka.aio's.
"""
import asyncio
import inspect

import pytest

from embedlog import (
    AdminClient,
    Consumer,
    KafkaError,
    KafkaException,
    NewTopic,
    Producer,
    TopicPartition,
)
from embedlog.aio import AIOConsumer, AIOProducer


class _Sync:
    def __init__(self):
        self.made = []

    def producer(self, conf):
        p = Producer(conf)
        self.made.append(p)
        return p

    def consumer(self, conf):
        c = Consumer(conf)
        self.made.append(c)
        return c

    def close(self):
        pass


class _AsyncClient:
    """A sync-looking face over an aio client: each call runs to completion on one loop."""

    def __init__(self, loop, client):
        self._loop, self._client = loop, client

    def __getattr__(self, name):
        fn = getattr(self._client, name)

        def call(*args, **kwargs):
            out = self._loop.run_until_complete(fn(*args, **kwargs))
            if name == "produce":       # a future of the delivery: the sync call returns None
                out.add_done_callback(lambda f: f.exception())
                return None
            return out
        return call


class _Async:
    def __init__(self):
        self.loop = asyncio.new_event_loop()

    def producer(self, conf):
        return _AsyncClient(self.loop, AIOProducer(conf))

    def consumer(self, conf):
        return _AsyncClient(self.loop, AIOConsumer(conf))

    def close(self):
        self.loop.close()


def _topic(conf, name="t", partitions=1):
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(name, partitions)])[name].result()
    admin.close()


def _produce(mk, conf, n, topic="t", **kw):
    p = mk.producer(conf)
    reports = []
    for i in range(n):
        p.produce(topic, value=b"v%d" % i, key=b"k%d" % i,
                  on_delivery=lambda err, msg: reports.append((err, msg.offset() if err is None else None)), **kw)
    p.flush()
    p.close() if hasattr(p, "close") else None
    return reports


def _group(conf, **kw):
    return {**conf, "group.id": "g", "auto.offset.reset": "earliest", "enable.auto.commit": False, **kw}


def _drain(c, n, timeout=30):
    out = []
    while len(out) < n:
        m = c.poll(timeout)
        assert m is not None, f"only {len(out)} of {n} records arrived"
        if m.error() is None:
            out.append((m.partition(), m.offset(), m.key(), m.value()))
    return out


def scenario_produce_consume_commit(mk, conf):
    _topic(conf)
    reports = _produce(mk, conf, 10)
    c = mk.consumer(_group(conf))
    c.subscribe(["t"])
    got = _drain(c, 10)
    c.commit()
    committed = [tp.offset for tp in c.committed([TopicPartition("t", 0)])]
    assert c.poll(0.1) is None
    c.close()
    return reports, got, committed


def scenario_seek_and_watermarks(mk, conf):
    _topic(conf)
    _produce(mk, conf, 10)
    c = mk.consumer(_group(conf))
    c.assign([TopicPartition("t", 0, 0)])
    first = _drain(c, 1)
    c.seek(TopicPartition("t", 0, 7))
    after = _drain(c, 3)
    marks = c.get_watermark_offsets(TopicPartition("t", 0))
    pos = [tp.offset for tp in c.position([TopicPartition("t", 0)])]
    c.close()
    return first, after, tuple(marks), pos


def scenario_consume_bounded(mk, conf):
    _topic(conf)
    _produce(mk, conf, 10)
    c = mk.consumer(_group(conf))
    c.assign([TopicPartition("t", 0, 0)])
    sizes, offsets = [], []
    while len(offsets) < 10:
        batch = c.consume(4, 30)
        assert batch, "consume() returned nothing while records were there"
        sizes.append(len(batch) <= 4)
        offsets += [m.offset() for m in batch]
    c.close()
    return sizes, offsets


def scenario_pause_resume(mk, conf):
    _topic(conf)
    _produce(mk, conf, 3)
    c = mk.consumer(_group(conf))
    tp = TopicPartition("t", 0, 0)
    c.assign([tp])
    c.pause([tp])
    while_paused = c.poll(0.3)
    c.resume([tp])
    got = _drain(c, 3)
    c.close()
    return while_paused, got


def scenario_store_offsets(mk, conf):
    _topic(conf)
    _produce(mk, conf, 5)
    c = mk.consumer(_group(conf, **{"enable.auto.offset.store": False}))
    c.assign([TopicPartition("t", 0, 0)])
    _drain(c, 5)
    c.store_offsets(offsets=[TopicPartition("t", 0, 2)])
    c.commit()
    committed = [tp.offset for tp in c.committed([TopicPartition("t", 0)])]
    c.close()
    return committed


def scenario_unknown_topic_event(mk, conf):
    _topic(conf)
    c = mk.consumer(_group(conf, **{"allow.auto.create.topics": False}))
    c.subscribe(["nope"])
    ev = None
    for _ in range(50):
        m = c.poll(0.2)
        if m is not None and m.error() is not None:
            ev = m.error().code()
            break
    c.close()
    return ev


def scenario_bad_partition(mk, conf):
    _topic(conf)
    p = mk.producer(conf)
    with pytest.raises(KafkaException) as e:
        p.produce("t", value=b"x", partition=5)
    return ("raised", e.value.args[0].code())


def scenario_closed_consumer(mk, conf):
    _topic(conf)
    c = mk.consumer(_group(conf))
    c.close()
    with pytest.raises(RuntimeError) as e:
        c.poll(0)
    return str(e.value)


TABLE = {
    scenario_produce_consume_commit: (
        [(None, i) for i in range(10)],
        [(0, i, b"k%d" % i, b"v%d" % i) for i in range(10)],
        [10]),
    scenario_seek_and_watermarks: ([(0, 0, b"k0", b"v0")], [(0, i, b"k%d" % i, b"v%d" % i) for i in (7, 8, 9)],
                                   (0, 10), [10]),
    scenario_consume_bounded: ([True, True, True], list(range(10))),
    scenario_pause_resume: (None, [(0, i, b"k%d" % i, b"v%d" % i) for i in range(3)]),
    scenario_store_offsets: [2],
    scenario_unknown_topic_event: KafkaError.UNKNOWN_TOPIC_OR_PART,
    scenario_bad_partition: ("raised", KafkaError._UNKNOWN_PARTITION),
    scenario_closed_consumer: "Consumer closed",
}


@pytest.mark.parametrize("scenario", list(TABLE), ids=lambda f: f.__name__[len("scenario_"):])
def test_sync_and_async_clients_behave_alike(scenario, tmp_path):
    results = {}
    for kind, mk in (("sync", _Sync()), ("async", _Async())):
        conf = {"bootstrap.servers": f"file://{tmp_path}/{kind}"}
        try:
            results[kind] = scenario(mk, conf)
        finally:
            mk.close()
    assert results["sync"] == TABLE[scenario], f"sync clients: {results['sync']!r}"
    assert results["async"] == results["sync"], f"async clients differ: {results['async']!r}"


@pytest.mark.parametrize("ours, theirs_name", [(AIOProducer, "AIOProducer"), (AIOConsumer, "AIOConsumer")])
def test_aio_names_match_confluent_kafka(ours, theirs_name):
    aio = pytest.importorskip("confluent_kafka.aio")
    theirs = getattr(aio, theirs_name)
    names = [n for n, f in inspect.getmembers(theirs, inspect.isfunction)
             if not n.startswith("_") or n in ("__aenter__", "__aexit__")]
    assert len(names) > 10
    missing = [n for n in names if not hasattr(ours, n)]
    assert not missing, f"{ours.__name__} lacks {missing}"
    not_async = [n for n in names if inspect.iscoroutinefunction(getattr(theirs, n))
                 and not inspect.iscoroutinefunction(getattr(ours, n))]
    assert not not_async, f"{ours.__name__}: not coroutines: {not_async}"


def test_shared_executor_serialises_one_client(conf):
    """Many consumers on one shared executor: each client's calls still never overlap."""
    from concurrent.futures import ThreadPoolExecutor

    async def main():
        _topic(conf, partitions=4)
        pool = ThreadPoolExecutor(max_workers=4)
        async with AIOProducer(conf, executor=pool) as p:
            futs = [await p.produce("t", value=b"%d" % i, partition=i % 4) for i in range(40)]
            await p.flush()
            offsets = sorted((m.partition(), m.offset()) for m in await asyncio.gather(*futs))
        cs = [AIOConsumer(_group(conf, **{"group.id": f"g{i}"}), executor=pool) for i in range(8)]
        for c in cs:
            await c.assign([TopicPartition("t", k, 0) for k in range(4)])

        async def take(c):
            got = []
            while len(got) < 40:
                got += [m.value() for m in await c.consume(7, 30)]
            return sorted(got, key=int)
        everyone = await asyncio.gather(*(take(c) for c in cs))
        for c in cs:
            await c.close()
        pool.shutdown()
        return offsets, everyone

    offsets, everyone = asyncio.run(main())
    assert offsets == [(k, i) for k in range(4) for i in range(10)]
    assert all(got == [b"%d" % i for i in range(40)] for got in everyone)


def test_readme_asyncio_example_runs(tmp_path):
    import pathlib
    import re
    import subprocess
    import sys
    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## asyncio: `embedlog.aio`", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "'offset': 0" in out and str(sorted(b"order %d" % i for i in range(5))) in out, out


def test_delivery_future_resolves_without_poll_or_flush(conf):
    """confluent's aio: `await (await produce(...))` is enough; nobody has to poll."""
    async def main():
        _topic(conf)
        p = AIOProducer({**conf, "linger.ms": 50})
        msgs = [await asyncio.wait_for(await p.produce("t", value=b"%d" % i), 30) for i in range(3)]
        with pytest.raises(KafkaException) as e:     # refused at once, as the sync call
            await p.produce("t", value=b"x" * 2_000_000)
        await p.close()
        return [m.offset() for m in msgs], e.value.args[0].code()
    offsets, code = asyncio.run(main())
    assert offsets == [0, 1, 2]
    assert code == KafkaError.MSG_SIZE_TOO_LARGE
