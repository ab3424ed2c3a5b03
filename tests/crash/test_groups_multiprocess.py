"""Consumer groups across processes: a SIGKILLed member's partitions move (the kernel frees
its lock), a stopped member is evicted after session.timeout.ms, a member that stops
polling leaves after max.poll.interval.ms, and at-least-once holds end to end while
workers are killed and replaced.

Children are forked and open their own clients (nothing opened before fork() is used in a
child); they report through files and leave with os._exit.
"""
from __future__ import annotations

import collections
import os
import random
import signal
import time
import traceback

import pytest

import embedlog
from embedlog import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from embedlog.admin import AdminClient, NewTopic


def spawn(fn, *args):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn(*args)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def reap(pid, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish")


def make_topic(conf, partitions, n, keyed=True):
    a = AdminClient(conf)
    a.create_topics([NewTopic("t", partitions)])["t"].result()
    a.close()
    p = Producer(conf)
    for i in range(n):
        p.produce("t", value=b"%d" % i, key=b"k%d" % i if keyed else None)
    assert p.flush() == 0
    p.close()


def group_conf(conf, **extra):
    return {**conf, "group.id": "g", "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "heartbeat.interval.ms": 50, **extra}


def hold_partitions(conf, report, extra):
    """Join, write the assignment to `report` after each change, poll until killed."""
    c = Consumer(group_conf(conf, **extra))
    c.subscribe(["t"])
    last = None
    while True:
        c.poll(0.05)
        now = sorted(tp.partition for tp in c.assignment())
        if now != last:
            with open(report, "w") as f:
                f.write(" ".join(map(str, now)))
            last = now


def settle(c, want, timeout=20.0):
    deadline = time.monotonic() + timeout
    while sorted(tp.partition for tp in c.assignment()) != want:
        assert time.monotonic() < deadline, f"assignment {c.assignment()} never became {want}"
        c.poll(0.02)


def test_sigkilled_member_partitions_move_to_the_survivor(tmp_path):
    conf = {"bootstrap.servers": f"file://{tmp_path}/log"}
    make_topic(conf, 6, 60)
    report = str(tmp_path / "child.txt")
    pid = spawn(hold_partitions, conf, report, {})
    c = Consumer(group_conf(conf))
    c.subscribe(["t"])
    deadline = time.monotonic() + 20
    while not (len(c.assignment()) == 3 and os.path.exists(report) and len(open(report).read().split()) == 3):
        assert time.monotonic() < deadline, "the two members never split the partitions"
        c.poll(0.02)
    mine = {tp.partition for tp in c.assignment()}
    theirs = {int(x) for x in open(report).read().split()}
    assert mine | theirs == set(range(6)) and not mine & theirs
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    settle(c, list(range(6)))
    c.close()


def test_stopped_member_is_evicted_after_session_timeout_and_rejoins(tmp_path):
    conf = {"bootstrap.servers": f"file://{tmp_path}/log"}
    make_topic(conf, 4, 8)
    report = str(tmp_path / "child.txt")
    extra = {"session.timeout.ms": 600}
    pid = spawn(hold_partitions, conf, report, extra)
    c = Consumer(group_conf(conf, **extra))
    c.subscribe(["t"])
    deadline = time.monotonic() + 20
    while not (len(c.assignment()) == 2 and os.path.exists(report) and len(open(report).read().split()) == 2):
        assert time.monotonic() < deadline
        c.poll(0.02)
    os.kill(pid, signal.SIGSTOP)             # alive, lock held, but silent
    try:
        settle(c, [0, 1, 2, 3])              # evicted once its heartbeats are 600 ms old
        os.kill(pid, signal.SIGCONT)         # it learns it was removed and joins again
        deadline = time.monotonic() + 20
        while len(c.assignment()) != 2:
            assert time.monotonic() < deadline, "the evicted member did not rejoin"
            c.poll(0.02)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    c.close()


def test_max_poll_interval_leaves_the_group_and_reports_lost_partitions(tmp_path):
    conf = {"bootstrap.servers": f"file://{tmp_path}/log"}
    make_topic(conf, 2, 4)
    lost = []
    c = Consumer(group_conf(conf, **{"max.poll.interval.ms": 200}))
    c.subscribe(["t"], on_lost=lambda consumer, parts: lost.append(sorted(tp.partition for tp in parts)))
    settle(c, [0, 1])
    time.sleep(0.6)                          # the application stops polling
    events = []
    deadline = time.monotonic() + 10
    while not any(e.code() == KafkaError._MAX_POLL_EXCEEDED for e in events):
        assert time.monotonic() < deadline, "no _MAX_POLL_EXCEEDED event"
        m = c.poll(0.05)
        if m is not None and m.error() is not None:
            events.append(m.error())
    assert lost == [[0, 1]]
    settle(c, [0, 1])                        # it rejoined
    c.close()


# ---------------------------------------------------------------- at-least-once, end to end

N_MESSAGES = 100_000
PARTITIONS = 12


def worker(conf, outdir, wid):
    c = Consumer(group_conf(conf, **{"client.id": f"w{wid}", "session.timeout.ms": 5000}))
    c.subscribe(["t"])
    path = os.path.join(outdir, f"processed-{wid}-{os.getpid()}.txt")
    pending = 0
    with open(path, "a", buffering=1 << 16) as f:
        while not os.path.exists(os.path.join(outdir, "stop")):
            m = c.poll(0.1)
            if m is None or m.error() is not None:
                if pending:                      # idle: commit what was processed
                    f.flush()
                    try:
                        c.commit(asynchronous=False)
                    except KafkaException:
                        pass
                    pending = 0
                continue
            gen = c.consumer_group_metadata()["generation_id"]
            f.write(f"{gen} {m.partition()} {m.offset()} {os.getpid()}\n")
            pending += 1
            if pending >= 500:
                f.flush()                    # processed before committed: at-least-once
                try:
                    c.commit(asynchronous=False)
                except KafkaException:
                    pass                     # rebalanced under us: the new owner goes on
                pending = 0
        f.flush()
        try:
            c.commit(asynchronous=False)
        except KafkaException:
            pass
    c.close()


def test_at_least_once_with_workers_killed_and_replaced(tmp_path):
    conf = {"bootstrap.servers": f"file://{tmp_path}/log"}
    outdir = str(tmp_path / "out")
    os.makedirs(outdir)
    make_topic(conf, PARTITIONS, N_MESSAGES)
    rng = random.Random(int(os.environ.get("EMBEDLOG_CRASH_SEED", random.randrange(1 << 30))))
    workers = {spawn(worker, conf, outdir, w): w for w in range(4)}
    next_id, kills = 4, 0
    store_log = embedlog.open(str(tmp_path / "log"))
    from embedlog.storage._offsets import store_for
    store = store_for(store_log)
    ends = {p: store_log.partition("t", p).log_end_offset for p in range(PARTITIONS)}
    deadline = time.monotonic() + 180
    while True:
        assert time.monotonic() < deadline, "the group never committed everything"
        time.sleep(0.15)
        if kills < 6 and rng.random() < 0.5:
            victim = rng.choice(list(workers))
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)
            del workers[victim]
            kills += 1
            workers[spawn(worker, conf, outdir, next_id)] = next_id
            next_id += 1
        store.refresh()
        committed = {p: (store.committed("g", "t", p) or (0,))[0] for p in range(PARTITIONS)}
        if kills >= 6 and committed == ends:
            break
    open(os.path.join(outdir, "stop"), "w").close()
    for pid in list(workers):
        assert reap(pid) == 0
    # 1. every message was processed at least once
    seen = collections.defaultdict(set)          # (gen, partition, offset) -> worker pids
    processed = set()
    for name in os.listdir(outdir):
        if not name.startswith("processed-"):
            continue
        for line in open(os.path.join(outdir, name)):
            parts = line.split()
            if len(parts) != 4:
                continue                         # a line torn by SIGKILL
            gen, p, off, pid = map(int, parts)
            processed.add((p, off))
            seen[(gen, p, off)].add(pid)
    assert processed == {(p, o) for p in range(PARTITIONS) for o in range(ends[p])}
    # 2. within one generation no message was processed by two workers
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    assert not twice, f"processed by two workers in the same generation: {list(twice.items())[:5]}"
    # 3. committed offsets only moved forward
    from embedlog.storage._offsets import decode_key, decode_value
    part = store_log.partition("__consumer_offsets", 0)
    history = collections.defaultdict(list)
    for rec in part.read(0, max_bytes=1 << 30):
        k = decode_key(rec.key)
        if k and k[0] == "g" and rec.value is not None:
            history[k[2]].append(decode_value(rec.value)[0])
    for p, offsets in history.items():
        assert offsets == sorted(offsets), f"partition {p}: a commit went backwards: {offsets}"
    assert kills == 6
    store_log.close()
