"""One consume-transform-produce worker of test_eos.py (issue #19): a member of group
"eos" reading topic A read_committed and writing each record's output to B in a
transaction together with its input offsets (send_offsets_to_transaction). Run as
`python eos_worker.py DIR WORKER_ID`; it stops between transactions once DIR/stop
exists. A fatal error (fenced) exits 2; the parent restarts it with the same id.
"""
from __future__ import annotations

import os
import sys

import embedlog
from embedlog import KafkaException, TopicPartition


def rewind(c):
    """After an abort: back to the committed offsets (what the aborted batch had consumed is read again)."""
    assigned = c.assignment()
    if not assigned:
        return
    for tp in c.committed(assigned, 30):
        c.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))


def main(d, wid):
    boot = f"file://{d}"
    c = embedlog.Consumer({"bootstrap.servers": boot, "group.id": "eos", "client.id": f"w{wid}",
                           "isolation.level": "read_committed", "enable.auto.commit": False,
                           "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                           "heartbeat.interval.ms": 500})
    p = embedlog.Producer({"bootstrap.servers": boot, "transactional.id": f"eos-{wid}"})
    p.init_transactions(30)
    c.subscribe(["A"])
    txns = 0
    while not os.path.exists(os.path.join(d, "stop")):
        msgs = [m for m in c.consume(50, 0.3) if m.error() is None]
        if not msgs:
            continue
        p.begin_transaction()
        try:
            for m in msgs:
                p.produce("B", value=b"out:" + m.value(), key=m.key(), partition=m.partition())
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            txns += 1
        except KafkaException as e:
            err = e.args[0]
            if err.fatal():
                sys.exit(2)
            if not err.txn_requires_abort() and not err.retriable():
                raise
            p.abort_transaction(30)
            rewind(c)
    c.close()
    print(f"worker {wid}: {txns} transactions")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
