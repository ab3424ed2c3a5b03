"""Hypothesis state machine: transactional appends by a few producers, COMMIT/ABORT markers,
plain appends and reopen/recovery of one partition, with read_committed and read_uncommitted
fetches checked against an in-memory model (#19)."""
import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as stn
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from embedlog import Log
from embedlog.storage._records import encode_batch

PIDS = (1, 2, 3)


class TxnPartition(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="txnmodel")
        self.log = Log(self.dir)
        self.log.create_topic("t", 1, config={"segment.bytes": 400})
        self.part = self.log.partition("t", 0)
        self.records = []          # (offset, value, pid or None)
        self.open = {}             # pid -> first offset
        self.seq = dict.fromkeys(PIDS, 0)
        self.aborted = set()       # values of aborted transactions
        self.pending = {p: [] for p in PIDS}
        self.n = 0

    def teardown(self):
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _value(self):
        self.n += 1
        return b"v%d" % self.n

    @rule(pid=stn.sampled_from(PIDS), count=stn.integers(1, 3))
    def transactional(self, pid, count):
        vals = [self._value() for _ in range(count)]
        r = self.part.append(encode_batch(vals, producer_id=pid, producer_epoch=0, base_sequence=self.seq[pid],
                                          transactional=True))
        self.seq[pid] += count
        self.open.setdefault(pid, r.base_offset)
        self.pending[pid] += vals
        self.records += [(r.base_offset + i, v, pid) for i, v in enumerate(vals)]

    @rule()
    def plain(self):
        v = self._value()
        r = self.part.append_records([v])
        self.records.append((r.base_offset, v, None))

    @precondition(lambda self: self.open)
    @rule(data=stn.data(), commit=stn.booleans())
    def end(self, data, commit):
        pid = data.draw(stn.sampled_from(sorted(self.open)))
        self.part.append_marker(pid, 0, commit)
        if not commit:
            self.aborted.update(self.pending[pid])
        self.pending[pid] = []
        del self.open[pid]

    @rule()
    def reopen(self):
        self.log.close()
        self.log = Log(self.dir)
        self.part = self.log.partition("t", 0)

    def _read(self, committed):
        out, off = [], self.part.log_start_offset
        end = self.part.last_stable_offset() if committed else self.part.high_watermark
        while off < end:
            cols, nxt = self.part.fetch(off, read_committed=committed)
            if nxt == off:
                break
            out += cols.values
            off = nxt
        return out

    @invariant()
    def reads_match_the_model(self):
        lso = min(self.open.values(), default=None)
        assert self.part.open_transactions() == self.open
        hw = self.part.high_watermark
        assert self.part.last_stable_offset() == (hw if lso is None else lso)
        assert self._read(False) == [v for _o, v, _p in self.records]
        want = [v for o, v, _p in self.records if (lso is None or o < lso) and v not in self.aborted]
        assert self._read(True) == want


TestTxnPartition = TxnPartition.TestCase
TestTxnPartition.settings = settings(max_examples=15, stateful_step_count=25, deadline=None)
