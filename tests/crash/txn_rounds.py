"""Workers and checks of the transaction kill -9 rounds (test_txn_kill9.py, issue #19).

What a transaction writes is a pure function of its index i, so the parent needs no
report of the content, only of how far the child got:

* n(i) = 1 + (7 * i) % 6 records, record j to partition (i + j) % P of topic t, value
  b"i:j:n";
* it sends offset i + 1 of in-0 for group g with send_offsets_to_transaction;
* it aborts when i % 4 == 3, else commits.

The child writes one line per step to a pipe: "I" before init_transactions, "R" after,
"B i" begin, "C i" before commit_transaction, "K i" after it returned, "A i"/"a i"
around abort_transaction. A txn with "K" must be visible, one with "C" and no "K" is in
doubt (all or nothing), every other one must never be visible.
"""
from __future__ import annotations

import os
import signal

import embedlog
from embedlog import TopicPartition

TOPIC, P, TID, GROUP = "t", 3, "tx-crash", "g"


def n_of(i: int) -> int:
    return 1 + (7 * i) % 6


def aborts(i: int) -> bool:
    return i % 4 == 3


def config(d, timeout_ms=60_000):
    return {"bootstrap.servers": f"file://{d}", "transactional.id": TID, "transaction.timeout.ms": timeout_ms,
            "log.retention.check.interval.ms": 0}


def setup(d):
    with embedlog.open(d, retention_check_interval_ms=0) as log:
        log.create_topic(TOPIC, partitions=P, config={"segment.bytes": 4096})
        log.create_topic("in", partitions=1)


def _kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def child(d, first: int, w: int, mode: str, rng, timeout_ms: int) -> None:
    """Run transactions first, first+1, ... until killed. mode "time": the parent kills;
    "io": SIGKILL at a random I/O call of a random transaction's commit or produce
    (with a torn write); "failpoint": SIGKILL after the commit point or after the k-th
    marker."""
    def note(s):
        os.write(w, (s + "\n").encode())
    from embedlog.storage import _failpoints
    if mode == "failpoint":
        name = rng.choice(("txn.after_prepare", "txn.after_marker"))
        k = rng.randint(1, 6)
        hits = [0]

        def action():
            hits[0] += 1
            if hits[0] >= k:
                _kill_self()
        _failpoints.arm(name, action, times=10_000)
    note("I")
    p = embedlog.Producer(config(d, timeout_ms))
    p.init_transactions(30)
    note("R")
    c = embedlog.Consumer({"bootstrap.servers": f"file://{d}", "group.id": GROUP, "enable.auto.commit": False})
    md = c.consumer_group_metadata()
    io_at = first + rng.randint(0, 3) if mode == "io" else -1
    i = first
    while True:
        if i == io_at:
            from reliability.iofault import KillAt, install
            install(KillAt(rng.randint(1, 40), tear="random", seed=rng.randrange(1 << 30)))
        note(f"B {i}")
        p.begin_transaction()
        n = n_of(i)
        for j in range(n):
            p.produce(TOPIC, value=b"%d:%d:%d" % (i, j, n), partition=(i + j) % P)
        p.send_offsets_to_transaction([TopicPartition("in", 0, i + 1)], md, 30)
        if aborts(i):
            p.flush(30)                 # written first, so the abort has records to hide
            note(f"A {i}")
            p.abort_transaction(30)
            note(f"a {i}")
        else:
            note(f"C {i}")
            p.commit_transaction(30)
            note(f"K {i}")
        i += 1


# ------------------------------------------------------------------ checks

def visible(log) -> dict[int, list[tuple[int, int]]]:
    """{txn: [(partition, j), ...]} of what read_committed returns, partition by partition."""
    out: dict[int, list[tuple[int, int]]] = {}
    for part in range(P):
        p = log.partition(TOPIC, part)
        pos, end = p.log_start_offset, p.last_stable_offset()
        while pos < end:
            cols, nxt = p.fetch(pos, read_committed=True)
            for v in cols.values:
                i, j, n = map(int, v.split(b":"))
                assert n == n_of(i), f"record {v!r} in {TOPIC}-{part}: not what txn {i} writes"
                out.setdefault(i, []).append((part, j))
            assert nxt > pos, f"{TOPIC}-{part}: read_committed fetch({pos}) made no progress below the LSO {end}"
            pos = nxt
    return out


def whole(i: int, got: list[tuple[int, int]]) -> bool:
    return sorted(got) == sorted(((i + j) % P, j) for j in range(n_of(i)))


def check_partial_ok(log, status: dict[int, str]) -> None:
    """Before recovery: read_committed shows, per partition, only transactions that were
    acknowledged or at their commit point, each partition's share whole, in order."""
    for i, got in visible(log).items():
        st = status.get(i)
        assert st in ("K", "C"), f"txn {i} ({st}: never committed) is visible to read_committed"
        want = {}
        for j in range(n_of(i)):
            want.setdefault((i + j) % P, []).append(j)
        have = {}
        for part, j in got:
            have.setdefault(part, []).append(j)
        for part, js in have.items():
            assert js == want[part], f"txn {i}: {TOPIC}-{part} shows records {js} of {want[part]}: a partial share"


def check_recovered(log, status: dict[int, str]) -> dict[int, bool]:
    """After recovery (fencing or timeout): every txn whole or absent, acknowledged commits
    present, never-committed ones absent, and g's offset of in-0 is exactly one past the
    last visible txn. Returns {txn: visible} for the txns in doubt."""
    from embedlog.storage._offsets import OffsetStore
    vis = visible(log)
    for i, got in vis.items():
        assert whole(i, got), f"txn {i} is partly visible after recovery: {sorted(got)}"
    for i, st in status.items():
        if st == "K":
            assert i in vis, f"txn {i}: commit_transaction returned, yet it is not visible"
        elif st != "C":
            assert i not in vis, f"txn {i} ({st}) never committed, yet it is visible"
    for part in range(P):
        p = log.partition(TOPIC, part)
        assert p.last_stable_offset() == p.high_watermark, \
            f"{TOPIC}-{part}: LSO {p.last_stable_offset()} below the HW {p.high_watermark} after recovery"
    store = OffsetStore(log)
    store.refresh()
    got = store.committed(GROUP, "in", 0)
    want = max(vis) + 1 if vis else None
    assert (got[0] if got else None) == want, \
        f"committed offset of in-0 is {got}, but the last visible txn says {want}: offsets and records disagree"
    return {i: i in vis for i, st in status.items() if st == "C"}
