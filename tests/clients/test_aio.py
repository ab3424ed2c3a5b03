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
