"""Stateful model test: one real partition (real files in a temp dir) against an in-memory
model.

The model is a list of (key, value, timestamp, headers) records (offset = list index)
plus the list of batches they were appended in (base offset, record count, encoded size).
Hypothesis drives appends (plain, sync=True, or followed by flush(); none/lz4/gzip; null
and empty keys and values; non-monotonic timestamps; headers), reads with random offsets
and limits, time lookups, clean close/reopen, a reboot after a clean close, a kill -9, and
a power loss that drops (or zeroes) part of the not-yet-durable tail of the active segment
and of its unsynced index entries. After every step the whole log must equal the model.

Default run: 200 examples of up to 50 steps each (about 25 s); EMBEDLOG_SOAK=1 runs
10x as many examples.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import struct
import tempfile
import time
from typing import NamedTuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import embedlog

SOAK = os.environ.get("EMBEDLOG_SOAK", "") not in ("", "0")
TOPIC = "t"
# Small segments and index intervals force many rolls and index entries; 0 indexes every
# batch. (segment.bytes, index.interval.bytes):
CONFIGS = [(250, 0), (600, 100), (600, 0), (2000, 100), (2000, 0)]
SEGMENT_RE = re.compile(r"^(\d{20})\.log$")
TS_BASE = 1_700_000_000_000
NONE, GZIP, LZ4 = 0, 1, 3


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------- strategies

blobs = st.one_of(st.none(), st.just(b""), st.binary(min_size=1, max_size=4), st.binary(min_size=1, max_size=40))

timestamps = st.one_of(
    st.integers(TS_BASE, TS_BASE + 50),                   # collisions: ties and near misses
    st.integers(TS_BASE - 10**9, TS_BASE + 10**9),        # spread > segment.ms: time-based rolls
    st.integers(0, 2**45),
    st.just(0),
)

header_lists = st.lists(
    st.tuples(st.text(max_size=8), st.one_of(st.none(), st.just(b""), st.binary(max_size=10))),
    max_size=3)


class BatchSpec(NamedTuple):
    values: list
    keys: list | None
    timestamps: list | None
    ts_relative: bool   # timestamps are deltas from the log's largest timestamp (a clock)
    headers: list | None
    compression: int
    durability: str     # "none": plain append; "sync": sync=True; "flush": append, then flush()


@st.composite
def batch_specs(draw):
    n = draw(st.one_of(st.integers(1, 3), st.integers(1, 20)))   # small batches: many per segment
    values = draw(st.lists(blobs, min_size=n, max_size=n))
    keys = draw(st.one_of(st.none(), st.lists(blobs, min_size=n, max_size=n)))
    # Absolute (anything, ties, far apart), relative (a mostly rising clock, so the time
    # index has many entries and targets land right after them), or None: the library
    # stamps every record with "now".
    ts_relative = draw(st.sampled_from([True, True, True, False]))
    if ts_relative:
        ts = draw(st.lists(st.integers(-3, 200), min_size=n, max_size=n))
    else:
        ts = draw(st.one_of(st.lists(timestamps, min_size=n, max_size=n), st.none()))
    headers = draw(st.one_of(st.none(), st.none(), st.lists(header_lists, min_size=n, max_size=n)))
    compression = draw(st.sampled_from([NONE, LZ4, GZIP]))
    durability = draw(st.sampled_from(["none", "none", "sync", "flush"]))
    return BatchSpec(values, keys, ts, ts_relative, headers, compression, durability)


class ModelBatch(NamedTuple):
    base: int
    count: int
    size: int        # bytes in the .log file

    @property
    def end(self) -> int:
        return self.base + self.count


# ---------------------------------------------------------------- file helpers

def segment_bases(pdir) -> list[int]:
    return sorted(int(m.group(1)) for m in map(SEGMENT_RE.match, os.listdir(pdir)) if m)


def segment_path(pdir, base: int, ext: str = ".log") -> str:
    return os.path.join(pdir, f"{base:020d}{ext}")


def walk_batches(data: bytes) -> list[tuple[int, int, int]]:
    """(position, baseOffset, total size) of each batch header in a .log image."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        assert length >= 49, f"batch at {pos} has impossible length {length}"
        out.append((pos, base, length + 12))
        pos += length + 12
    assert pos == len(data), f"the .log ends inside a batch ({pos} != {len(data)})"
    return out


# ---------------------------------------------------------------- the machine

class PartitionMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = None
        self.log = None
        self.p = None
        self.records: list[tuple] = []        # (key, value, timestamp, headers)
        self.batches: list[ModelBatch] = []
        # Sizes of the active segment's index files at the last clean close (fsync'd then),
        # as (active base, .index bytes, .timeindex bytes), and whether anything was
        # appended since (then the checkpoint is not clean and recovery rescans).
        self.index_floor: tuple[int, int, int] | None = None
        self.appended_since_clean_close = True

    # -------------------------------------------------------- setup / teardown
    @initialize(config=st.sampled_from(CONFIGS))
    def create_log(self, config):
        self.segment_bytes, interval = config
        self.dir = tempfile.mkdtemp(prefix="embedlog-model-")
        self.log = embedlog.open(self.logdir)
        self.log.create_topic(TOPIC, partitions=1, config={"segment.bytes": self.segment_bytes,
                                                             "index.interval.bytes": interval})
        self.p = self.log.partition(TOPIC, 0)

    def teardown(self):
        try:
            if self.log is not None:
                self.log.close()
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def logdir(self) -> str:
        return os.path.join(self.dir, "log")

    @property
    def pdir(self) -> str:
        return os.path.join(self.logdir, f"{TOPIC}-0")

    def clean_close(self):
        self.log.close()
        self.log = None
        active = segment_bases(self.pdir)[-1]
        self.index_floor = (active, os.path.getsize(segment_path(self.pdir, active, ".index")),
                            os.path.getsize(segment_path(self.pdir, active, ".timeindex")))
        self.appended_since_clean_close = False

    def reopen(self):
        self.log = embedlog.open(self.logdir)
        self.p = self.log.partition(TOPIC, 0)

    def expected(self, start: int = 0, stop: int | None = None) -> list[tuple]:
        stop = len(self.records) if stop is None else stop
        return [(o, ts, k, v, h) for o, (k, v, ts, h) in
                enumerate(self.records[start:stop], start)]

    def batch_index(self, offset: int) -> int:
        for i, b in enumerate(self.batches):
            if b.base <= offset < b.end:
                return i
        raise AssertionError(f"offset {offset} is in no model batch")

    def cut_model(self, end: int):
        """Forget everything from `end` on (end must be a batch boundary)."""
        assert end == 0 or any(b.end == end for b in self.batches), end
        del self.records[end:]
        self.batches = [b for b in self.batches if b.end <= end]

    # -------------------------------------------------------- appends
    def _append(self, spec: BatchSpec):
        sync = spec.durability == "sync"
        n = len(spec.values)
        base = len(self.records)
        ts = spec.timestamps
        if spec.ts_relative:
            clock = max((r[2] for r in self.records), default=TS_BASE)
            ts = [clock + d for d in ts]
        before = now_ms()
        res = self.p.append_records(spec.values, keys=spec.keys, timestamps=ts,
                                    headers=spec.headers, compression=spec.compression, sync=sync)
        after = now_ms()
        assert (res.base_offset, res.last_offset, res.log_append_time) == (base, base + n - 1, -1)
        if sync:
            assert self.p.flushed_offset >= base + n, "sync=True returned before the batch was durable"
        if ts is None:
            got = self.p.read(base, max_records=n)
            stamps = {r.timestamp for r in got}
            assert len(got) == n and len(stamps) == 1, stamps
            stamp = stamps.pop()
            assert before <= stamp <= after, (before, stamp, after)
            ts = [stamp] * n
        keys = spec.keys if spec.keys is not None else [None] * n
        headers = spec.headers if spec.headers is not None else [()] * n
        for k, v, t, h in zip(keys, spec.values, ts, headers):
            self.records.append((k, v, t, tuple(tuple(pair) for pair in h)))
        # Offsets are assigned in place: the stored batch has the size of the encoded one.
        size = len(embedlog.build_batch(spec.values, spec.keys, ts, spec.headers,
                                        compression=spec.compression))
        self.batches.append(ModelBatch(base, n, size))
        self.appended_since_clean_close = True
        if spec.durability == "flush":
            self.p.flush()
            assert self.p.flushed_offset == len(self.records), "flush() left records not durable"

    # Appends are what builds the log: two rules, so they are drawn more often. (Rules with
    # fewer arguments and earlier names come first in Hypothesis's choice, which it favours:
    # every rule here takes one argument and "append" sorts first.)
    @rule(spec=batch_specs())
    def append(self, spec):
        self._append(spec)

    @rule(spec=batch_specs())
    def append_more(self, spec):
        self._append(spec)

    # -------------------------------------------------------- reads
    @rule(data=st.data())
    def read(self, data):
        end = len(self.records)
        offset = data.draw(st.one_of(st.integers(0, end), st.sampled_from([b.base for b in self.batches] + [end])),
                           label="offset")
        sizes = [st.integers(1, 3000), st.just(1 << 20)]
        if offset < end:
            # Budgets at the edges: the batches from the one holding `offset` on, exactly
            # (or a byte less or more), or with room for one more batch of some size.
            first = self.batch_index(offset)
            prefix = list(itertools.accumulate(b.size for b in self.batches[first:first + 12]))
            sizes += [st.builds(lambda p, d: max(1, p + d), st.sampled_from(prefix), st.integers(-1, 1)),
                      st.builds(lambda p, s: p + s, st.sampled_from(prefix),
                                st.sampled_from(sorted({b.size for b in self.batches})))]
        max_bytes = data.draw(st.one_of(*sizes), label="max_bytes")
        max_records = data.draw(st.one_of(st.none(), st.integers(1, 50)), label="max_records")
        columns = data.draw(st.booleans(), label="read_columns")
        self.check_read(offset, max_bytes, max_records, columns)

    @rule(budget=st.sampled_from(["exact", "byte_short", "room_for_smallest"]))
    def read_sweep(self, budget):
        """From every batch start, budgets at the edges of the next one or two batches:
        exactly their size, a byte short, or with room left for the smallest batch of the
        log (which may sit in a later segment, behind a batch that does not fit)."""
        smallest = min((b.size for b in self.batches), default=0)
        for i, b in enumerate(self.batches):
            for used in itertools.accumulate(x.size for x in self.batches[i:i + 2]):
                max_bytes = {"exact": used, "byte_short": used - 1, "room_for_smallest": used + smallest}[budget]
                self.check_read(b.base, max_bytes, None, False)

    def check_read(self, offset, max_bytes, max_records, columns):
        end = len(self.records)
        if columns:
            cols = self.p.read_columns(offset, max_bytes=max_bytes, max_records=max_records)
            assert len({len(c) for c in cols}) == 1, "read_columns returned ragged columns"
            got = [tuple(r) for r in zip(*cols)]
        else:
            got = [tuple(r) for r in self.p.read(offset, max_bytes=max_bytes, max_records=max_records)]
        if offset == end:
            assert got == []
            return
        assert got, f"read({offset}) below the log end {end} returned nothing"
        if max_records is not None:
            assert len(got) <= max_records
        # A contiguous run of the model starting exactly at the requested offset.
        assert got == self.expected(offset, offset + len(got))
        last = offset + len(got) - 1
        first_b, last_b = self.batch_index(offset), self.batch_index(last)
        used = sum(b.size for b in self.batches[first_b:last_b + 1])
        if last_b > first_b:    # only the first batch may exceed max_bytes (KIP-74)
            assert used <= max_bytes, f"read returned {used} bytes of batches for max_bytes={max_bytes}"
        if max_records is None or len(got) < max_records:
            # Not cut by max_records: whole batches, and as many as max_bytes allows.
            assert last + 1 == self.batches[last_b].end, "read stopped inside a batch"
            if last_b + 1 < len(self.batches):
                assert used + self.batches[last_b + 1].size > max_bytes, (
                    f"read stopped at {last + 1} with {used} of {max_bytes} bytes used, but the next "
                    f"batch ({self.batches[last_b + 1].size} bytes) fits")

    @rule(data=st.data())
    def read_out_of_range(self, data):
        end = len(self.records)
        offset = data.draw(st.one_of(st.integers(end + 1, end + 1000), st.integers(-1000, -1)), label="offset")
        try:
            got = self.p.read(offset)
        except embedlog.OffsetOutOfRangeError:
            return
        raise AssertionError(f"read({offset}) with log end {end} returned {got!r}")

    def first_at_or_after(self, target: int):
        return next(((o, r[2]) for o, r in enumerate(self.records) if r[2] >= target), None)

    def check_offset_for_time(self, target: int):
        got = self.p.offset_for_time(target)
        assert (tuple(got) if got is not None else None) == self.first_at_or_after(target), \
            f"offset_for_time({target})"

    @rule(data=st.data())
    def offset_for_time(self, data):
        known = [r[2] for r in self.records]     # not deduplicated: same length in every run
        choices = [timestamps]
        if known:
            choices.append(st.builds(lambda t, d: t + d, st.sampled_from(known), st.sampled_from([-1, 0, 1])))
        self.check_offset_for_time(data.draw(st.one_of(*choices), label="target"))

    @rule(delta=st.sampled_from([0, -1, 1]))
    def offset_for_time_sweep(self, delta):
        """Every batch's first timestamp (+ delta): the record right after a time-index
        entry always starts a batch, so this covers the edge of each entry."""
        for t in sorted({self.records[b.base][2] + delta for b in self.batches}):
            self.check_offset_for_time(t)

    # -------------------------------------------------------- close, reboot, crashes
    @rule(kind=st.sampled_from(["close", "reboot", "kill"]))
    def reopen_log(self, kind):
        """close: clean close and reopen. reboot: clean close, then the state cache is lost
        (as after a reboot), so the clean checkpoint must restore the log exactly. kill:
        kill -9 (handles dropped, no flush, no checkpoint); the page cache survives, so
        nothing appended is lost."""
        if kind == "kill":
            self.log._abandon()
            self.log = None
            self.reopen()
            return
        self.clean_close()
        if kind == "reboot":
            self._invalidate_state()
        self.reopen()
        assert self.p.flushed_offset == len(self.records), "close() did not make everything durable"

    @rule(data=st.data())
    def crash_power_loss(self, data):
        """Power loss: the active segment loses some of what was never fdatasync'd."""
        flushed = self.p.flushed_offset
        end = len(self.records)
        assert flushed <= end
        self.log._abandon()
        self.log = None

        active = segment_bases(self.pdir)[-1]
        path = segment_path(self.pdir, active)
        with open(path, "rb") as f:
            image = f.read()
        layout = walk_batches(image)
        assert [(base, size) for _pos, base, size in layout] == \
            [(b.base, b.size) for b in self.batches if b.base >= active], "active segment != model"
        first_volatile = next((pos for pos, base, _size in layout if base >= flushed), len(image))
        boundaries = [pos for pos, _b, _s in layout if pos >= first_volatile] + [len(image)]
        cut = data.draw(st.one_of(st.integers(first_volatile, len(image)), st.sampled_from(boundaries)),
                        label="cut")
        # The lost tail is either gone (file shorter) or reads as zeros (size updated, data not).
        zero_fill = data.draw(st.booleans(), label="zero_fill")
        after = image[:cut] + (bytes(len(image) - cut) if zero_fill else b"")
        os.truncate(path, cut)
        if len(after) > cut:
            os.truncate(path, len(after))
        # Index entries written since the index files were last fsync'd (a clean close; the
        # roll that closed a segment) may be lost too; older ones may not.
        floor = self.index_floor if self.index_floor and self.index_floor[0] == active else None
        for i, (ext, entry) in enumerate(((".index", 8), (".timeindex", 12))):
            ipath = segment_path(self.pdir, active, ext)
            entries = os.path.getsize(ipath) // entry
            keep = floor[1 + i] // entry if floor else 0
            assert keep <= entries
            # Draw how many to drop, not how many to keep: the entry count can differ between
            # runs (records stamped "now" may or may not share a millisecond), and Hypothesis
            # needs the same draws for the same choices.
            drop = data.draw(st.integers(0, 64), label=f"{ext} entries dropped")
            os.truncate(ipath, max(keep, entries - drop) * entry)
        self._invalidate_state()

        # Batches survive up to the first one the cut changed (zeros over zeros change nothing).
        active_batches = [b for b in self.batches if b.base >= active]
        kept = []
        for (pos, _base, size), b in zip(layout, active_batches):
            if after[pos:pos + size] != image[pos:pos + size]:
                break
            kept.append(b)
        new_end = kept[-1].end if kept else active
        assert new_end >= flushed

        self.reopen()
        got_end = self.p.log_end_offset
        assert got_end >= flushed, f"power loss lost durable records: end {got_end} < flushed {flushed}"
        assert got_end == new_end, (
            f"recovery kept offsets [0, {got_end}); the whole batches below the cut end at {new_end}")
        self.cut_model(new_end)
        if self.appended_since_clean_close:
            self.index_floor = None     # recovery rewrote the indexes, without fsync

    def _invalidate_state(self):
        with open(os.path.join(self.pdir, "partition.state"), "r+b") as f:
            f.write(bytes(8))

    # -------------------------------------------------------- the log equals the model
    @invariant()
    def log_equals_model(self):
        if self.p is None:
            return
        p = self.p
        end = len(self.records)
        assert p.log_start_offset == 0
        assert p.log_end_offset == end
        assert p.high_watermark == end
        assert 0 <= p.flushed_offset <= end, (p.flushed_offset, end)
        got = [tuple(r) for r in p.read(0, max_bytes=1 << 30)]
        assert got == self.expected()
        assert p.read(end) == []
        assert p.wait(end, 0) is False
        if end:
            assert p.wait(end - 1, 0) is True
        assert p.size_bytes() == sum(b.size for b in self.batches)

        # Segment files: named at batch boundaries, each holds exactly its model batches,
        # and none is over segment.bytes unless a single batch is.
        bases = segment_bases(self.pdir)
        assert bases and bases[0] == 0
        boundaries = {b.base for b in self.batches} | {end}
        assert set(bases) <= boundaries, (bases, sorted(boundaries))
        for i, base in enumerate(bases):
            stop = bases[i + 1] if i + 1 < len(bases) else end + 1
            inside = [b for b in self.batches if base <= b.base < stop]
            size = os.path.getsize(segment_path(self.pdir, base))
            assert size == sum(b.size for b in inside), f"segment {base}: {size} bytes"
            assert len(inside) <= 1 or size <= self.segment_bytes, f"segment {base} overfull: {size} bytes"
            if i + 1 < len(bases):
                assert inside, f"closed segment {base} is empty"


PartitionMachine.TestCase.settings = settings(
    max_examples=2000 if SOAK else 60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestPartitionModel = PartitionMachine.TestCase
