"""Transaction commit and abort as scenarios of the crash-point and power-loss loops
(crashpoints.run_scenario, powerloss.run_power_loss; issue #19).

The template holds topic t (2 partitions, small segments), topic in, and transaction 0
of transactional.id tx (3 records over both partitions, offset 1 of in-0 for group g)
committed. The operation (`run`): a producer with the same id runs init_transactions,
then, armed, transaction 1 (4 records over both partitions, offset 2 of in-0), then
commit_transaction (TxnCommitScenario) or abort_transaction (TxnAbortScenario).

Invariants after the kill or power loss and a reopen:
* before recovery, read_committed shows transaction 0 whole, and of transaction 1 at
  most whole per-partition shares (commit) or nothing (abort);
* after recovery (a new producer with the same id runs init_transactions, fencing the
  dead one), transaction 1 is whole or absent, present once commit_transaction
  returned, absent for the abort; LSO == high watermark on both partitions;
* g's committed offset of in-0 is 2 exactly when transaction 1 is visible, else 1;
* the log passes verify, and a new transaction commits and is visible.
"""
from __future__ import annotations

import embedlog
from embedlog import TopicPartition
from embedlog.storage._offsets import OffsetStore

from .crashpoints import Scenario, expect, open_log
from .ops_workers import verified

TID, P = "tx", 2


def _records(i):
    n = 3 if i == 0 else 4
    return [((i + j) % P, b"%d:%d:%d" % (i, j, n)) for j in range(n)]


def _producer(d):
    return embedlog.Producer({"bootstrap.servers": f"file://{d}", "transactional.id": TID})


def _txn(p, d, i, commit=True):
    c = embedlog.Consumer({"bootstrap.servers": f"file://{d}", "group.id": "g", "enable.auto.commit": False})
    md = c.consumer_group_metadata()
    c.close()
    p.begin_transaction()
    for part, v in _records(i):
        p.produce("t", value=v, partition=part)
    p.send_offsets_to_transaction([TopicPartition("in", 0, i + 1)], md, 30)
    if commit:
        p.commit_transaction(30)
    else:
        p.flush(30)                      # written first, so the abort has records to hide
        p.abort_transaction(30)


def _visible(log):
    out = {}
    for part in range(P):
        p = log.partition("t", part)
        pos, end = p.log_start_offset, p.last_stable_offset()
        while pos < end:
            cols, nxt = p.fetch(pos, read_committed=True)
            for v in cols.values:
                out.setdefault(int(v.split(b":")[0]), []).append((part, v))
            expect(nxt > pos, f"t-{part}: read_committed fetch({pos}) made no progress below the LSO {end}")
            pos = nxt
    return out


class TxnScenario(Scenario):
    commit = True

    def __init__(self, seed=0):
        super().__init__(seed)
        self.name = "txn-commit" if self.commit else "txn-abort"

    def build(self, d):
        with open_log(d) as log:
            log.create_topic("t", partitions=P, config={"segment.bytes": 300 + 97 * (self.seed % 5)})
            log.create_topic("in")
        p = _producer(d)
        p.init_transactions(30)
        _txn(p, d, 0)
        p.close()

    def run(self, d, note, arm):
        p = _producer(d)
        p.init_transactions(30)
        arm()
        _txn(p, d, 1, self.commit)
        note(0)
        p.close()        # clients share one Log per path: an open one would serve the next state's check

    def check(self, d, notes, completed, ref):
        with open_log(d) as log:
            vis = _visible(log)
            expect(sorted(vis.get(0, [])) == sorted(_records(0)), f"transaction 0 is not whole: {vis.get(0)}")
            one = vis.get(1, [])
            if not self.commit:
                expect(not one, f"the aborted transaction 1 is visible before recovery: {one}")
            for part in range(P):
                share = [r for r in one if r[0] == part]
                expect(share in ([], [r for r in _records(1) if r[0] == part]),
                       f"t-{part} shows a partial share of transaction 1: {share}")
        p = _producer(d)
        p.init_transactions(30)                      # the restart: recovers the dead one's transaction
        with open_log(d) as log:
            vis = _visible(log)
            one = sorted(vis.get(1, []))
            expect(one in ([], sorted(_records(1))), f"transaction 1 partly visible after recovery: {one}")
            if not self.commit:
                expect(not one, "the aborted transaction 1 is visible after recovery")
            elif notes:
                expect(one, "commit_transaction returned, but transaction 1 is not visible after recovery")
            for part in range(P):
                lp = log.partition("t", part)
                expect(lp.last_stable_offset() == lp.high_watermark,
                       f"t-{part}: LSO {lp.last_stable_offset()} below the HW {lp.high_watermark} after recovery")
            store = OffsetStore(log)
            store.refresh()
            got = store.committed("g", "in", 0)
            want = 2 if one else 1
            expect(got is not None and got[0] == want,
                   f"g's offset of in-0 is {got}, but transaction 1 is {'' if one else 'not '}visible (want {want})")
        verified(d)
        try:
            _txn(p, d, 2)                            # and a new transaction commits
        finally:
            p.close()
        with open_log(d) as log:
            expect(len(_visible(log).get(2, [])) == 4, "a transaction after recovery is not visible")


class TxnCommitScenario(TxnScenario):
    commit = True


class TxnAbortScenario(TxnScenario):
    commit = False
