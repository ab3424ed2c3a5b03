"""No partition is owned by two live members at once while workers join and leave a group
every few hundred messages, with eager assignors (range, roundrobin) and cooperative-sticky,
and no commit of a worker written like the README's loop fails (#20).

Each worker records, per partition, when on_assign gave it the partition and when its
on_revoke returned (CLOCK_MONOTONIC is one clock for every process on Linux); the test then
checks the intervals of different workers never overlap.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from embedlog import Consumer, KafkaException

from test_groups_multiprocess import make_topic, reap, spawn

PARTITIONS = 6


def worker(conf, strategy, name, quota, out_path):
    intervals = []                  # [topic, partition, start_ns, end_ns]
    holding = {}
    failures = []

    def on_assign(consumer, partitions):
        now = time.monotonic_ns()
        for tp in partitions:
            holding[(tp.topic, tp.partition)] = now

    def on_revoke(consumer, partitions):
        try:                           # the README's handling: commit what was processed
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != -191:   # _NO_OFFSET: nothing consumed since the last commit
                failures.append(f"on_revoke commit: {e}")
        now = time.monotonic_ns()
        for tp in partitions:
            start = holding.pop((tp.topic, tp.partition), None)
            if start is not None:
                intervals.append([tp.topic, tp.partition, start, now])

    c = Consumer({**conf, "group.id": "g", "client.id": name, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "partition.assignment.strategy": strategy,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 200})
    c.subscribe(["t"], on_assign=on_assign, on_revoke=on_revoke)
    seen = 0
    deadline = time.monotonic() + 40
    while seen < quota and time.monotonic() < deadline:
        m = c.poll(0.05)
        if m is None or m.error():
            continue
        seen += 1
        time.sleep(0.003)             # "processing": workers overlap in time, so partitions move
        if seen % 50 == 0:
            try:
                c.commit(asynchronous=False)
            except KafkaException as e:
                failures.append(f"commit: {e}")
    c.close()                         # revokes (on_revoke runs) and leaves
    now = time.monotonic_ns()
    for (topic, p), start in holding.items():
        intervals.append([topic, p, start, now])
    with open(out_path, "w") as f:
        json.dump({"name": name, "intervals": intervals, "failures": failures, "seen": seen}, f)


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_workers_joining_and_leaving_never_share_a_partition(tmp_path, strategy):
    conf = {"bootstrap.servers": f"file://{tmp_path}/log"}
    make_topic(conf, PARTITIONS, 6000)
    pids, outs = [], []
    for i in range(7):                # a new worker every ~0.3 s, each leaving after 200-500 records (~1 s)
        out = tmp_path / f"w{i}.json"
        outs.append(out)
        pids.append(spawn(worker, conf, strategy, f"w{i}", 200 + 50 * (i % 7), str(out)))
        time.sleep(0.3)
    for pid in pids:
        assert reap(pid, 90) == 0
    reports = [json.loads(o.read_text()) for o in outs]
    assert [r["failures"] for r in reports] == [[]] * len(reports)
    by_partition = {}
    for r in reports:
        for topic, p, start, end in r["intervals"]:
            by_partition.setdefault(p, []).append((start, end, r["name"]))
    handovers = 0
    for p, spans in by_partition.items():
        spans.sort()
        for (s1, e1, w1), (s2, e2, w2) in zip(spans, spans[1:]):
            if w1 != w2:
                handovers += 1
                assert s2 >= e1, (f"partition {p} owned by {w1} until {e1} and by {w2} from {s2} "
                                  f"({(e1 - s2) / 1e6:.1f} ms of overlap)")
    intervals = sum(len(spans) for spans in by_partition.values())
    print(f"{strategy}: {len(reports)} workers, {sum(r['seen'] for r in reports)} records handled, "
          f"{intervals} ownership intervals, {handovers} handovers between workers, 0 overlaps, 0 failed commits")
    assert handovers >= PARTITIONS    # the workload really moved partitions between workers
    assert sum(r["seen"] for r in reports) > 0
