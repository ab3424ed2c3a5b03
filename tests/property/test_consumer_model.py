"""Stateful model test: real embedlog clients (Producer, Consumer, AdminClient over real
files in a temp dir) against an in-memory model of a Kafka consumer group on one topic
with 2-3 partitions.

The model holds, per partition, the produced values (offset = list index), the group's
committed offset (None until committed) and the consumer's position. Hypothesis drives
produce, poll, consume, the three kinds of commit, seek (to an offset, to the beginning,
to the end), position/committed/watermark queries, and close + reopen of the consumer in
the same group (assign(), assign() with start offsets, or subscribe()). After every step
the committed offsets must equal the model and never lie past a partition's end.

Positions are resolved lazily, as in Kafka: a newly assigned partition has no position
until the consumer first fetches from it, and then starts from the committed offset as of
that moment (or the earliest offset, auto.offset.reset=earliest). The order in which the
consumer visits partitions is not specified, so after a poll that returned a record from
one partition the model does not know whether the others were resolved. The model's
position is therefore a set of candidates: concrete offsets, and UNRESOLVED, which means
"the committed-or-earliest offset as of the next fetch". Every observation (a record, a
position() answer, an empty poll) must match one candidate and collapses the set.

Default run: 30 examples x up to 40 steps (~10 s). EMBEDLOG_SOAK=1 runs 1,000.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from embedlog import (OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, OFFSET_STORED, Consumer, KafkaError,
                      KafkaException, Producer, TopicPartition)
from embedlog.admin import AdminClient, NewTopic

SOAK = os.environ.get("EMBEDLOG_SOAK", "") not in ("", "0")
TOPIC = "t"
GROUP = "g"
UNRESOLVED = "unresolved"       # a position candidate: committed-or-earliest at the next fetch

# How long poll() may take when the model says a record is there: a None then is a bug.
AVAILABLE_TIMEOUT = 2.0
# How long to wait when the model says nothing is there (poll must return None).
EMPTY_TIMEOUT = 0.05
# When the model cannot tell (candidates on both sides of the end): long enough that an
# available record is certainly returned, so a None still proves "nothing available".
UNSURE_TIMEOUT = 0.5

MODES = ["assign", "assign_stored", "assign_at", "subscribe"]
# Small fetch sizes split a partition's records over several fetches (and so interleave
# partitions); at least one whole batch is always returned.
FETCH_BYTES = [1, 100, 1048576]

payloads = st.one_of(st.binary(max_size=12), st.none())
keys = st.one_of(st.none(), st.binary(max_size=6))
produce_batches = st.lists(st.tuples(st.integers(0, 2), st.lists(st.tuples(keys, payloads), min_size=1, max_size=8)),
                           min_size=1, max_size=3)


def tps(offsets):
    """[(topic, partition, offset)] of a list of TopicPartitions (their == ignores offsets)."""
    return [(tp.topic, tp.partition, tp.offset) for tp in offsets]


class ConsumerGroupModel(RuleBasedStateMachine):

    # ------------------------------------------------------------ setup / teardown
    @initialize(nparts=st.integers(2, 3), mode=st.sampled_from(MODES), fetch_bytes=st.sampled_from(FETCH_BYTES),
                prefill=st.one_of(st.just([]), produce_batches), data=st.data())
    def setup(self, nparts, mode, fetch_bytes, prefill, data):
        self.dir = tempfile.mkdtemp(prefix="embedlog-consumer-model-")
        self.conf = {"bootstrap.servers": f"file://{self.dir}"}
        self.consumer = None
        self.producer = None
        admin = AdminClient(self.conf)
        try:
            admin.create_topics([NewTopic(TOPIC, nparts)])[TOPIC].result()
        finally:
            admin.close()
        self.n = nparts
        self.values = [[] for _ in range(nparts)]        # per partition: (key, value); offset = index
        self.committed = [None] * nparts                 # the group's committed offsets
        self.cands = [{UNRESOLVED} for _ in range(nparts)]
        self.producer = Producer({**self.conf, "linger.ms": 0})
        self.serial = 0
        if prefill:
            self._produce(prefill)
        self._open(mode, fetch_bytes, data)

    def teardown(self):
        try:
            if getattr(self, "consumer", None) is not None:
                self.consumer.close()
            if getattr(self, "producer", None) is not None:
                self.producer.close()
        finally:
            if getattr(self, "dir", None):
                shutil.rmtree(self.dir, ignore_errors=True)

    def _open(self, mode, fetch_bytes, data):
        self.mode = mode
        self.consumer = Consumer({**self.conf, "group.id": GROUP, "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False, "max.partition.fetch.bytes": fetch_bytes})
        self.last_msg = None                 # (message, partition, offset) from this consumer
        self.cands = [{UNRESOLVED} for _ in range(self.n)]
        if mode == "subscribe":
            self.consumer.subscribe([TOPIC])
            self.assigned = False
            self._check_assignment(required=False)
        elif mode == "assign_at":
            start = []
            for p in range(self.n):
                off = data.draw(self._offsets_for(p), label=f"start offset p{p}")
                start.append(TopicPartition(TOPIC, p, off))
                self.cands[p] = {self._resolve_special(p, off)}
            self.consumer.assign(start)
            self.assigned = True
        else:
            offset = OFFSET_STORED if mode == "assign_stored" else OFFSET_INVALID
            self.consumer.assign([TopicPartition(TOPIC, p, offset) for p in range(self.n)])
            self.assigned = True

    def _check_assignment(self, required):
        """A lone subscribed member gets every partition (at the latest during its first poll)."""
        got = sorted((tp.topic, tp.partition) for tp in self.consumer.assignment())
        want = [(TOPIC, p) for p in range(self.n)]
        if required:
            assert got == want, f"single subscribed member was assigned {got}, expected {want}"
        if got == want:
            self.assigned = True
        else:
            assert not self.assigned, f"assignment shrank to {got}"

    # ------------------------------------------------------------ model helpers
    def _offsets_for(self, p):
        """A valid position for partition p: an offset in [0, end], or BEGINNING/END."""
        return st.one_of(st.integers(0, len(self.values[p])), st.sampled_from([OFFSET_BEGINNING, OFFSET_END]))

    def _resolve_special(self, p, off):
        if off == OFFSET_BEGINNING:
            return 0
        if off == OFFSET_END:
            return len(self.values[p])
        return off

    def _start(self, p):
        """Where an unresolved partition starts now: committed, else earliest (0)."""
        return self.committed[p] if self.committed[p] is not None else 0

    def _concrete(self, p):
        """The offsets partition p's position may be at right now."""
        return {self._start(p) if c is UNRESOLVED else c for c in self.cands[p]}

    def _before_fetch(self):
        """A poll/consume may resolve any unresolved partition to its start as of now."""
        for p in range(self.n):
            if UNRESOLVED in self.cands[p]:
                self.cands[p].add(self._start(p))

    def _definitely_available(self):
        return any(max(self._concrete(p)) < len(self.values[p]) for p in range(self.n))

    def _definitely_empty(self):
        return all(min(self._concrete(p)) >= len(self.values[p]) for p in range(self.n))

    def _observe_record(self, m):
        assert m is not None
        assert m.error() is None, f"unexpected event {m.error()!r}"
        assert m.topic() == TOPIC
        p, o = m.partition(), m.offset()
        assert 0 <= p < self.n, f"record from unknown partition {p}"
        ints = {c for c in self.cands[p] if c is not UNRESOLVED}
        assert o in ints, (f"record {TOPIC}[{p}]@{o} is not the next one on its partition; "
                           f"the model's position is one of {sorted(ints)} (end {len(self.values[p])})")
        assert o < len(self.values[p]), f"record {TOPIC}[{p}]@{o} past the end {len(self.values[p])}"
        key, value = self.values[p][o]
        assert m.value() == value, f"{TOPIC}[{p}]@{o}: value {m.value()!r} != {value!r}"
        assert m.key() == key, f"{TOPIC}[{p}]@{o}: key {m.key()!r} != {key!r}"
        self.cands[p] = {o + 1}
        self.last_msg = (m, p, o)

    def _observe_nothing(self):
        """poll/consume returned nothing: every assigned partition was fetched from and is at its end."""
        for p in range(self.n):
            end = len(self.values[p])
            assert end in self._concrete(p), (
                f"poll returned nothing but partition {p} has data: position one of "
                f"{sorted(self._concrete(p))}, end {end}")
            keep_unresolved = UNRESOLVED in self.cands[p] and self._start(p) == end
            self.cands[p] = {end, UNRESOLVED} if keep_unresolved else {end}

    def _observe_positions(self):
        res = self.consumer.position([TopicPartition(TOPIC, p) for p in range(self.n)])
        assert [(tp.topic, tp.partition) for tp in res] == [(TOPIC, p) for p in range(self.n)]
        for p, tp in enumerate(res):
            if tp.offset == OFFSET_INVALID:
                event("position: OFFSET_INVALID")
                assert UNRESOLVED in self.cands[p], (
                    f"position({p}) is OFFSET_INVALID but the model's position is {sorted(self._concrete(p))}")
                self.cands[p] = {UNRESOLVED}
            else:
                ints = {c for c in self.cands[p] if c is not UNRESOLVED}
                assert tp.offset in ints, (
                    f"position({p}) = {tp.offset}, model: one of {sorted(ints)}"
                    + (" or unresolved" if UNRESOLVED in self.cands[p] else ""))
                self.cands[p] = {tp.offset}
        return res

    def _timeout(self):
        if self._definitely_available():
            return AVAILABLE_TIMEOUT, True
        if self._definitely_empty():
            return EMPTY_TIMEOUT, False
        return UNSURE_TIMEOUT, None

    # ------------------------------------------------------------ rules: producer
    @rule(batches=produce_batches)
    def produce(self, batches):
        self._produce(batches)

    def _produce(self, batches):
        """Produce each (partition, [(key, payload)]) batch, then flush (which makes them visible)."""
        reports, expected = [], []
        new = [[] for _ in range(self.n)]
        for p, items in batches:
            p %= self.n
            for key, payload in items:
                offset = len(self.values[p]) + len(new[p])
                # Unique values (mostly) so that a record returned from the wrong place shows.
                value = None if payload is None else b"%d:%d:%d:" % (p, offset, self.serial) + payload
                self.serial += 1
                new[p].append((key, value))
                expected.append((None, p, offset, value))
                self.producer.produce(
                    TOPIC, value=value, key=key, partition=p,
                    on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset(), msg.value())))
        assert self.producer.flush(10.0) == 0
        # Delivery reports: every record, at the next offset of its partition, in produce
        # order within a partition (the order across partitions is not specified).
        for p in range(self.n):
            assert [r for r in reports if r[1] == p] == [e for e in expected if e[1] == p], reports
        assert len(reports) == len(expected), reports
        for p in range(self.n):
            self.values[p].extend(new[p])

    # ------------------------------------------------------------ rules: consume
    @rule(times=st.integers(1, 5))
    def poll(self, times):
        for _ in range(times):
            if not self._poll_once():
                break                     # nothing left: one empty poll is enough

    def _poll_once(self):
        self._before_fetch()
        timeout, available = self._timeout()
        m = self.consumer.poll(timeout)
        event(f"poll: model {'available' if available else 'empty' if available is False else 'unsure'}, "
              f"got {'record' if m is not None else 'None'}")
        if self.mode == "subscribe":
            self._check_assignment(required=True)
        if available is True:
            assert m is not None, f"poll({timeout}) returned None while the model has records available"
        if available is False:
            assert m is None, f"poll() returned {m!r} with the model at the end of every partition"
        if m is None:
            self._observe_nothing()
            return False
        self._observe_record(m)
        return True

    @rule(n=st.integers(1, 12))
    def consume(self, n):
        self._before_fetch()
        timeout, available = self._timeout()
        msgs = self.consumer.consume(num_messages=n, timeout=timeout)
        event(f"consume: model {'available' if available else 'empty' if available is False else 'unsure'}, "
              f"got {'n' if len(msgs) == n else '<n' if msgs else '0'}")
        if self.mode == "subscribe":
            self._check_assignment(required=True)
        assert isinstance(msgs, list)
        assert len(msgs) <= n, f"consume({n}) returned {len(msgs)} messages"
        if available is True:
            assert msgs, f"consume(timeout={timeout}) returned nothing while the model has records available"
        if available is False:
            assert not msgs, f"consume() returned {msgs!r} with the model at the end of every partition"
        if not msgs:
            self._observe_nothing()
        for m in msgs:
            self._observe_record(m)

    # ------------------------------------------------------------ rules: commits
    @precondition(lambda self: self.last_msg is not None)
    @rule()
    def commit_message(self):
        m, p, o = self.last_msg
        res = self.consumer.commit(message=m, asynchronous=False)
        assert tps(res) == [(TOPIC, p, o + 1)]
        self.committed[p] = o + 1

    @precondition(lambda self: self.assigned)
    @rule(data=st.data())
    def commit_offsets(self, data):
        parts = data.draw(st.lists(st.integers(0, self.n - 1), min_size=1, max_size=self.n, unique=True),
                          label="partitions")
        offsets = [TopicPartition(TOPIC, p, data.draw(st.integers(0, len(self.values[p])), label=f"offset p{p}"))
                   for p in parts]
        res = self.consumer.commit(offsets=offsets, asynchronous=False)
        assert tps(res) == tps(offsets)
        for tp in offsets:
            self.committed[tp.partition] = tp.offset

    @rule()
    def commit_positions(self):
        # Observe first: which partitions have a position decides what commit() commits.
        positions = self._observe_positions()
        want = [(TOPIC, tp.partition, tp.offset) for tp in positions if tp.offset != OFFSET_INVALID]
        event(f"commit_positions: {len(want)} partitions")
        if not want:
            with pytest.raises(KafkaException) as ei:
                self.consumer.commit(asynchronous=False)
            assert ei.value.args[0].code() == KafkaError._NO_OFFSET
            return
        res = self.consumer.commit(asynchronous=False)
        assert sorted(tps(res)) == sorted(want)
        for _t, p, off in want:
            self.committed[p] = off

    # ------------------------------------------------------------ rules: positions
    @precondition(lambda self: self.assigned)
    @rule(p=st.integers(0, 2), check=st.booleans(), data=st.data())
    def seek(self, p, check, data):
        p %= self.n
        off = data.draw(self._offsets_for(p), label="seek offset")
        self.consumer.seek(TopicPartition(TOPIC, p, off))
        self.cands[p] = {self._resolve_special(p, off)}
        if check:                 # position() right away: the seek must replace what was buffered
            self._observe_positions()

    @rule()
    def position(self):
        self._observe_positions()

    @rule()
    def committed_offsets(self):
        self.check_committed()

    @rule()
    def watermarks(self):
        for p in range(self.n):
            got = self.consumer.get_watermark_offsets(TopicPartition(TOPIC, p))
            assert tuple(got) == (0, len(self.values[p])), f"watermarks of {p}: {got}"

    # ------------------------------------------------------------ rules: lifecycle
    @rule(mode=st.sampled_from(MODES), fetch_bytes=st.sampled_from(FETCH_BYTES), data=st.data())
    def reopen(self, mode, fetch_bytes, data):
        # enable.auto.commit=False: close() commits nothing; the new consumer starts from
        # the committed offsets (or the earliest offset where none is committed).
        self.consumer.close()
        self.consumer = None
        self._open(mode, fetch_bytes, data)

    # ------------------------------------------------------------ invariants
    @invariant()
    def check_committed(self):
        res = self.consumer.committed([TopicPartition(TOPIC, p) for p in range(self.n)])
        got = tps(res)
        want = [(TOPIC, p, OFFSET_INVALID if c is None else c) for p, c in enumerate(self.committed)]
        assert got == want, f"committed {got}, model {want}"
        for tp in res:              # a committed offset is never past the partition's end
            if tp.offset != OFFSET_INVALID:
                low, high = self.consumer.get_watermark_offsets(TopicPartition(TOPIC, tp.partition))
                assert low <= tp.offset <= high, (
                    f"committed offset {tp.offset} of partition {tp.partition} outside the log [{low}, {high}]")


ConsumerGroupModel.TestCase.settings = settings(
    max_examples=1000 if SOAK else 30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TestConsumerGroupModel = ConsumerGroupModel.TestCase
