"""kill -9 of a transactional producer mid-transaction (issue #19, "Crash safety").

Rounds on ONE directory: a child forked from this process (embedlog imported once; a
fork costs milliseconds, an interpreter hundreds) runs transactions with
transactional.id tx-crash until it is SIGKILLed: at a random moment by the parent, at a
random I/O call (a torn write) of a random transaction, or right after the commit point
or after the k-th marker (failpoints). What each transaction writes, and whether it
commits or aborts, is a function of its index (txn_rounds.py); the child only reports
how far it got.

After each kill, before any recovery: read_committed shows no transaction that never
reached its commit point, and no partial share of one in any partition. Then the
transaction is recovered, by the next producer with the same transactional.id
(init_transactions fences the dead one) or, every 50th round, by
transaction.timeout.ms (a read_committed Consumer polling until the LSO moves: S's fetch
path runs expire_and_recover): every transaction is whole or absent, acknowledged
commits are there, aborted and unfinished ones are not, and the group's offset of in-0
is exactly one past the last visible transaction (the offsets came with the records).

Counts (rounds, kills mid-produce, mid-commit, mid-abort, in init, by timeout, in-doubt
commits that committed / aborted) are printed. Default 100 rounds; soak 1,000.
"""
from __future__ import annotations

import os
import random
import select
import signal
import time
import traceback
from collections import Counter

import pytest
import txn_rounds as tr

import embedlog
from embedlog.storage._partition import Partition

pytestmark = pytest.mark.skipif(not hasattr(Partition, "append_marker"),
                                reason="the storage half of transactions (Partition.append_marker) is not there yet")


def _work_dir(tmp_path):
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(tmp_path)
    import tempfile
    return tempfile.mkdtemp(prefix="el-txn-kill9-", dir=base)


def _run_child(d, first, mode, seed, timeout_ms):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            tr.child(d, first, w, mode, random.Random(seed), timeout_ms)
        except BaseException:  # noqa: BLE001  (reported to the parent)
            os.write(w, ("E " + traceback.format_exc().replace("\n", "|") + "\n").encode())
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(pid, r, kill_after, from_ready=True):
    """Read the child's notes; SIGKILL it `kill_after` s after its init_transactions
    returned ("R"; from the fork when not from_ready; None: it kills itself, or is
    killed after 20 s). Returns the notes."""
    data = b""
    deadline = time.monotonic() + (kill_after if kill_after is not None else 20.0)
    armed = kill_after is None or not from_ready
    killed_by_us = False
    poller = select.poll()
    poller.register(r, select.POLLIN)
    while True:
        if not armed and b"R\n" in data:
            armed = True
            deadline = time.monotonic() + kill_after
        elif not armed:
            deadline = time.monotonic() + 20.0
        left = deadline - time.monotonic()
        if left <= 0 and not killed_by_us:
            os.kill(pid, signal.SIGKILL)
            killed_by_us = True
        # poll, not select: a test process that has run many files may hold descriptors
        # past select()'s FD_SETSIZE (1024), which select() refuses.
        ready = poller.poll(1000 * (max(left, 0.0) if not killed_by_us else 5.0))
        if ready:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    notes = data.decode().splitlines()
    err = [n for n in notes if n.startswith("E ")]
    assert not err, "the transactional child raised:\n" + err[0][2:].replace("|", "\n")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended with status {status}"
    return notes


def _phase(notes) -> str:
    last = notes[-1] if notes else "I"
    return {"I": "init", "R": "between", "B": "produce", "C": "commit", "K": "between", "A": "abort",
            "a": "between"}[last.split()[0]]


def _recover_by_timeout(d, deadline_s=20.0):
    """A read_committed consumer polls until every partition's LSO is at its high
    watermark (the abandoned transaction aborted by transaction.timeout.ms)."""
    c = embedlog.Consumer({"bootstrap.servers": f"file://{d}", "group.id": "reader", "isolation.level":
                           "read_committed", "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "enable.partition.eof": True})
    try:
        c.assign([embedlog.TopicPartition(tr.TOPIC, p, 0) for p in range(tr.P)])
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            c.consume(1000, 0.2)
            with embedlog.open(d, retention_check_interval_ms=0) as log:
                if all(log.partition(tr.TOPIC, p).last_stable_offset() == log.partition(tr.TOPIC, p).high_watermark
                       for p in range(tr.P)):
                    return
        raise AssertionError(f"the abandoned transaction was not aborted within {deadline_s} s of its timeout")
    finally:
        c.close()


def _rounds(tmp_path, rounds, seed):
    d = _work_dir(tmp_path)
    try:
        tr.setup(d)
        rng = random.Random(seed)
        status: dict[int, str] = {}
        counts = Counter()
        first = 0
        for rnd in range(rounds):
            timeout_round = rnd % 50 == 49
            mode = "time" if timeout_round else rng.choice(("time", "time", "io", "failpoint"))
            pid, r = _run_child(d, first, mode, rng.randrange(1 << 30), 1000 if timeout_round else 60_000)
            # time kills: mostly 0-80 ms into the transactions, 1 in 10 from the fork (in init)
            notes = _collect(pid, r, rng.uniform(0.0, 0.08) if mode == "time" else None,
                             from_ready=timeout_round or rng.random() > 0.1)
            counts["rounds"] += 1
            counts[f"kill {mode}"] += 1
            counts[f"mid-{_phase(notes)}"] += 1
            for line in notes:
                tag, *rest = line.split()
                if rest:
                    i = int(rest[0])
                    status[i] = tag
                    first = max(first, i + 1)
            with embedlog.open(d, retention_check_interval_ms=0) as log:
                tr.check_partial_ok(log, status)
            if timeout_round:
                _recover_by_timeout(d)
                counts["recovered by timeout"] += 1
            else:
                p = embedlog.Producer(tr.config(d))      # the restart: the same transactional.id
                p.init_transactions(30)
                p.close() if hasattr(p, "close") else p.flush(0)
                counts["recovered by fencing"] += 1
            with embedlog.open(d, retention_check_interval_ms=0) as log:
                doubt = tr.check_recovered(log, status)
            for i, vis in doubt.items():
                counts["in-doubt committed" if vis else "in-doubt aborted"] += 1
                status[i] = "K" if vis else "x"             # settled from now on
        counts["transactions"] = len(status)
        counts["committed"] = sum(1 for s in status.values() if s == "K")
        print("txn kill -9 rounds:", dict(sorted(counts.items())))
        assert counts["rounds"] == rounds and counts["mid-commit"] + counts["mid-produce"] > 0
        return counts
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def test_txn_kill9_rounds(tmp_path):
    _rounds(tmp_path, 100, 19)


@pytest.mark.soak
def test_txn_kill9_rounds_soak(tmp_path):
    _rounds(tmp_path, 1000, 1919)
