"""`embedlog demo [DIR]`: the README's first command. It creates a topic, produces keyed
records, consumes part of them in a consumer group and prints the group's lag.

Without DIR every run gets a fresh directory (`tempfile.mkdtemp`), so every run starts
from an empty log and prints the same lag; the directory is kept for a look around and
its path is printed."""
from __future__ import annotations

import os
import tempfile

import click


@click.command()
@click.argument("dir", required=False)
def demo(dir):
    """Try embedlog: produce, consume in a group, show the lag.

    Creates topic 'orders' in DIR (default: a new directory in the temp directory for
    each run, whose path is printed), produces 1000 keyed records, consumes 600 of them
    in group 'billing' and prints the lag."""
    return run_demo(dir)


def run_demo(path) -> int:
    """Create a topic, produce keyed records, consume half of them in a group, print lag."""
    import json

    from embedlog import AdminClient, Consumer, NewTopic, Producer
    from embedlog.storage._log import open_log

    # A fresh directory per run unless one is given: a reused one would carry the last
    # run's records and commits, and the lag would grow run after run.
    path = os.path.abspath(path) if path else tempfile.mkdtemp(prefix="embedlog-demo-")
    conf = {"bootstrap.servers": f"file://{os.path.abspath(path)}"}
    admin = AdminClient(conf)
    created = admin.create_topics([NewTopic("orders", num_partitions=3)])["orders"]
    try:
        created.result()
        print(f"created topic 'orders' with 3 partitions in {os.path.abspath(path)}")
    except Exception:
        print(f"topic 'orders' already exists in {os.path.abspath(path)}")
    admin.close()

    delivered = []
    producer = Producer({**conf, "acks": "all", "enable.idempotence": True,
                         "compression.type": "lz4", "linger.ms": 5})
    for i in range(1000):
        order = {"order": i, "customer": f"customer-{i % 7}", "amount": i * 3 % 100}
        producer.produce("orders", key=order["customer"].encode(), value=json.dumps(order).encode(),
                         on_delivery=lambda err, msg: delivered.append(err is None))
        producer.poll(0)
    producer.flush()
    producer.close()
    print(f"produced 1000 keyed orders (acks=all, idempotent, lz4): {sum(delivered)} delivered")

    consumer = Consumer({**conf, "group.id": "billing", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe(["orders"])
    consumed = 0
    while consumed < 600:
        msgs = consumer.consume(num_messages=100, timeout=5.0)
        if not msgs:
            break
        for msg in msgs:
            if msg.error() is None:
                consumed += 1
        consumer.commit(asynchronous=False)
    consumer.close()
    print(f"group 'billing' consumed {consumed} records and committed its offsets")

    with open_log(path) as log:
        rows = log.consumer_lag("billing")
    print()
    print(f"{'GROUP':<8} {'TOPIC':<7} {'PARTITION':>9} {'CURRENT-OFFSET':>14} {'LOG-END-OFFSET':>14} {'LAG':>5}")
    for r in rows:
        committed = "-" if r["committed"] is None else r["committed"]
        print(f"{r['group']:<8} {r['topic']:<7} {r['partition']:>9} {committed:>14} "
              f"{r['log_end_offset']:>14} {r['lag']:>5}")
    print(f"total lag: {sum(r['lag'] for r in rows)}")
    print()
    print(f"the log is in {path}; look at it with: embedlog --dir {path} groups describe billing")
    return 0
