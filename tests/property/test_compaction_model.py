"""Stateful model test of compaction and retention (issue #6): one real partition of a
compacted topic against a model of everything written.

The model is the list of records appended (offset = index), each (key, value) with
value None for a tombstone, plus, for each offset, the time of the first cleaning that
covered it. Hypothesis drives appends (single records and batches, lz4 or none,
repeated keys, tombstones, and records without a key), clock advances, cleanings
(`maintain(now)` with and without force), DeleteRecords, clean reopen and kill -9
(abandoned handles). After every step:

* every record read is the one written at its offset, offsets strictly increase, and
  the log covers log start .. log end offset of the model;
* replaying the log gives, for every key, its latest value (a key whose latest record
  is a tombstone may be absent); no record later than a key's latest is ever dropped;
* everything at or above the cleaned range is present untouched (records the cleaner
  may not touch yet);
* a tombstone that is its key's latest record is present until `delete.retention.ms`
  has passed since the first cleaning that covered it, and gone after a forced
  cleaning at or past that time.

Default run: 200 examples of up to 30 steps (~10 s); EMBEDLOG_SOAK=1 runs 10x as many.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import embedlog

SOAK = os.environ.get("EMBEDLOG_SOAK", "") not in ("", "0")
T0 = 1_700_000_000_000
DELETE_RETENTION = 1000
KEYS = [b"a", b"b", b"c", b"d", b"e", b"f", None]

records = st.lists(st.tuples(st.sampled_from(KEYS),
                             st.one_of(st.none(), st.binary(min_size=0, max_size=30))),
                   min_size=1, max_size=12)


class CompactionMachine(RuleBasedStateMachine):
    @initialize(segment_bytes=st.sampled_from([300, 700, 2000]), codec=st.sampled_from([0, 3]))
    def setup(self, segment_bytes, codec):
        self.dir = tempfile.mkdtemp(prefix="embedlog-compact-")
        self.codec = codec
        self.log = embedlog.Log(self.dir)
        self.log.create_topic("t", 1, {"cleanup.policy": "compact", "segment.bytes": segment_bytes,
                                       "delete.retention.ms": DELETE_RETENTION,
                                       "min.cleanable.dirty.ratio": 0.5})
        self.part = self.log.topic("t").partition(0)
        self.written: list[tuple] = []          # (key, value) by offset
        self.first_cleaned: dict[int, int] = {}  # offset -> now of the first cleaning covering it
        self.cleaned_up_to = 0
        self.log_start = 0
        self.now = T0

    def teardown(self):
        try:
            self.log.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ steps
    @rule(batch=records)
    def append(self, batch):
        n = len(self.written)
        r = self.part.append_records([v for _k, v in batch], [k for k, _v in batch],
                                     timestamps=[self.now] * len(batch), compression=self.codec)
        assert r.base_offset == n and r.last_offset == n + len(batch) - 1
        self.written += batch

    @rule(ms=st.sampled_from([1, 300, DELETE_RETENTION - 1, DELETE_RETENTION, 5000]))
    def tick(self, ms):
        self.now += ms

    @rule(force=st.booleans())
    def clean(self, force):
        result = self.part.maintain(self.now, force_compaction=force)
        done = result.get("compaction")
        if done is None:
            return
        upto = done["cleaned_up_to"]
        for off in range(0, upto):
            self.first_cleaned.setdefault(off, self.now)
        self.cleaned_up_to = max(self.cleaned_up_to, upto)
        if force:
            self.check_tombstones_after_forced_clean()

    @precondition(lambda self: self.written)
    @rule(data=st.data())
    def delete_records(self, data):
        target = data.draw(st.integers(self.log_start, len(self.written)))
        assert self.part.delete_records(target) == max(self.log_start, target)
        self.log_start = max(self.log_start, target)

    @rule(kill=st.booleans())
    def reopen(self, kill):
        if kill:
            self.log._abandon() if hasattr(self.log, "_abandon") else [
                p._abandon() for p in self.log.topic("t").partitions]
        else:
            self.log.close()
        self.log = embedlog.Log(self.dir, create=False)
        self.part = self.log.topic("t").partition(0)

    # ------------------------------------------------------------ checks
    def read_all(self):
        out = []
        off = self.part.log_start_offset
        end = self.part.log_end_offset
        while off < end:
            cols, nxt = self.part.fetch(off, 1 << 16)
            assert nxt > off, "fetch must make progress over compacted gaps"
            out += zip(cols.offsets, cols.keys, cols.values)
            off = nxt
        return out

    def latest(self) -> dict:
        last = {}
        for off, (k, _v) in enumerate(self.written):
            if k is not None and off >= self.log_start:
                last[k] = off
        return last

    @invariant()
    def log_matches_model(self):
        if not hasattr(self, "part"):
            return
        assert self.part.log_end_offset == len(self.written)
        assert self.part.log_start_offset == self.log_start
        got = self.read_all()
        prev = -1
        for off, k, v in got:
            assert off > prev
            prev = off
            assert off >= self.log_start
            wk, wv = self.written[off]
            assert (k, v) == (wk, wv), f"offset {off} holds {(k, v)}, written {(wk, wv)}"
        present = {off for off, _k, _v in got}
        # Nothing the cleaner may not touch is missing; nothing a key still needs is missing.
        for off in range(max(self.cleaned_up_to, self.log_start), len(self.written)):
            assert off in present, f"offset {off} above the cleaned range is missing"
        for key, off in self.latest().items():
            tombstone = self.written[off][1] is None
            if tombstone:
                older = [o for o in present if o < off and self.written[o][0] == key]
                if off not in present:
                    assert not older, f"{key!r}: the tombstone at {off} went before older values {older}"
                cleaned_at = self.first_cleaned.get(off)
                if cleaned_at is None or self.now < cleaned_at + DELETE_RETENTION:
                    assert off in present, f"tombstone {off} removed before delete.retention.ms"
            else:
                assert off in present, f"latest value of {key!r} at {off} is missing"
        for off in present:                       # keyless records are never compacted away
            if self.written[off][0] is None:
                continue
        for off, (k, _v) in enumerate(self.written):
            if k is None and off >= self.log_start:
                assert off in present, f"keyless record {off} was dropped"

    def check_tombstones_after_forced_clean(self):
        present = {off for off, _k, _v in self.read_all()}
        for key, off in self.latest().items():
            cleaned_at = self.first_cleaned.get(off)
            if self.written[off][1] is None and off < self.cleaned_up_to and cleaned_at is not None \
                    and self.now >= cleaned_at + DELETE_RETENTION:
                assert off not in present, f"tombstone {off} outlived delete.retention.ms"


CompactionMachine.TestCase.settings = settings(
    max_examples=2000 if SOAK else 50, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestCompactionModel = CompactionMachine.TestCase
