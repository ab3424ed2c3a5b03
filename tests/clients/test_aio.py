"""embedlog.aio: confluent-kafka aio-shaped asyncio clients (#19)."""

import asyncio

from embedlog import AdminClient, NewTopic
from embedlog.aio import AIOConsumer, AIOProducer


def test_produce_await_delivered_then_consume(conf):
    async def main():
        admin = AdminClient(conf)
        admin.create_topics([NewTopic("t", 1)])["t"].result()
        admin.close()
        async with AIOProducer(conf) as p:
            fut = await p.produce("t", value=b"v1", key=b"k1")
            await p.flush()
            msg = await fut
            assert (msg.topic(), msg.offset(), msg.value()) == ("t", 0, b"v1")
        c = AIOConsumer({**conf, "group.id": "g", "auto.offset.reset": "earliest"})
        await c.subscribe(["t"])
        got = await asyncio.wait_for(c.poll(None), 60)
        assert (got.key(), got.value(), got.offset()) == (b"k1", b"v1", 0)
        assert await c.poll(0.05) is None
        await c.close()
    asyncio.run(main())


def test_async_for_sees_record_produced_while_waiting(conf):
    async def main():
        admin = AdminClient(conf)
        admin.create_topics([NewTopic("t", 1)])["t"].result()
        admin.close()
        async with AIOConsumer({**conf, "group.id": "g", "auto.offset.reset": "earliest"}) as c:
            await c.subscribe(["t"])
            async def first():
                async for m in c:
                    return m.value()
            task = asyncio.create_task(first())
            await asyncio.sleep(0.2)
            async with AIOProducer(conf) as p:
                await p.produce("t", value=b"late")
            assert await asyncio.wait_for(task, 60) == b"late"
    asyncio.run(main())


def test_thousand_idle_consumers_do_not_spin(conf):
    import resource
    async def main():
        admin = AdminClient(conf)
        admin.create_topics([NewTopic("t", 1)])["t"].result()
        admin.close()
        cs = [AIOConsumer({**conf, "group.id": f"g{i}", "auto.offset.reset": "earliest"}) for i in range(1000)]
        for c in cs:
            await c.assign([__import__("embedlog").TopicPartition("t", 0, 0)])
        tasks = [asyncio.create_task(c.poll(None)) for c in cs]
        await asyncio.sleep(0.5)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(5)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        print(f"1000 idle AIOConsumers: {cpu:.2f} s CPU over 5 s wall")
        async with AIOProducer(conf) as p:
            await p.produce("t", value=b"x")
        got = await asyncio.wait_for(asyncio.gather(*tasks), 120)
        assert all(m.value() == b"x" for m in got)
        for c in cs:
            await c.close()
        return cpu
    cpu = asyncio.run(main())
    assert cpu < 1.0, cpu  # a busy loop would burn ~5 s


def test_cancelled_poll_loses_no_record_and_group_commit(conf):
    from embedlog import TopicPartition
    async def main():
        admin = AdminClient(conf)
        admin.create_topics([NewTopic("t", 1)])["t"].result()
        admin.close()
        c = AIOConsumer({**conf, "group.id": "g", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
        await c.subscribe(["t"])
        async with AIOProducer(conf) as p:
            for i in range(3):
                await p.produce("t", value=b"%d" % i)
        seen = []
        for _ in range(20):  # cancel polls at many moments; every record still arrives once
            t = asyncio.create_task(c.poll(None))
            await asyncio.sleep(0)
            t.cancel()
            try:
                m = await t
                seen.append(m.value())
            except asyncio.CancelledError:
                pass
        while len(seen) < 3:
            seen.append((await asyncio.wait_for(c.poll(None), 60)).value())
        assert seen == [b"0", b"1", b"2"]
        batch = await c.consume(10, 0.1)
        assert batch == []
        await c.commit()
        got = await c.committed([TopicPartition("t", 0)])
        assert got[0].offset == 3
        await c.close()
    asyncio.run(main())
