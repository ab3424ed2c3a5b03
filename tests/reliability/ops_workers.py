"""The administrative operations under the crash loops (issue #18): consumer-group membership
(join, rebalance, leave, with commits between), delete_topic, add_partitions,
alter_topic_config, delete_records, mirror copies and promotion.

Each is a crashpoints.Scenario, so the crash-point loop (crashpoints.run_scenario) and the
power-loss loop (powerloss.run_power_loss) take it as they are; `FaultWorkload` adapts it
to the fail-at-call-N loop of test_io_faults (fault_loop). Every check states its
invariant in its docstring; all of them also require that the reopened log passes what
`embedlog verify` checks (every CRC and index, `verified`) and that every record written
before the operation is still there (`check_untouched`).

A scenario's directory `d` may hold more than the log: the mirror scenarios keep the
primary in d/primary and its mirror in d/mirror. The loops copy a template directory to a
new place for every case, and mirrors are registered by absolute path, so `relocate(d)`
rewrites the registry and the markers to the copy's place before anything opens it.
"""
from __future__ import annotations

import json
import os
import random
import traceback

import embedlog
from embedlog import StorageError
from embedlog.storage import _failover, _replication
from embedlog.storage._offsets import OffsetStore
from embedlog.storage._state import TEMP_RE

from .crashpoints import (
    NOW,
    Anomaly,
    Scenario,
    _batches,
    check_prefix,
    expect,
    open_log,
    read_all,
)


class _NoBar:
    def update(self, n):
        pass


def verified(root):
    """What `embedlog verify ROOT` checks (every batch's CRC and offsets, every index
    entry), run in-process: raises Anomaly with the first problem."""
    from embedlog.cli.inspect import _Verifier
    v = _Verifier(root)
    v.records = True                      # verify --records: every record decoded too
    for topic, n, dense in v.topics():
        for p in range(n):
            v.partition(topic, p, dense, _NoBar())
    expect(not v.problems, f"verify of {root}: {v.problems[:3]}")


def temp_leftovers(root) -> list[str]:
    out = []
    for r, _dirs, files in os.walk(root):
        out += [os.path.join(r, f) for f in files if TEMP_RE.match(f)]
    return out


def data_of(log, topics) -> dict:
    return {f"{t}-{i}": read_all(log.partition(t, i)) for t in topics for i in range(log.topic(t).num_partitions)}


def fill(log, topic, partitions, rng, batches=4, config=None):
    log.create_topic(topic, partitions=partitions, config=config or {"segment.bytes": 600})
    for p in range(partitions):
        for keys, values in _batches(rng, batches, 0):
            log.partition(topic, p).append_records(values, keys, [NOW - 1000] * len(values))


class OpScenario(Scenario):
    """A scenario whose operation runs on an open log: `open(d)`, `operate(ctx, note)`
    (notes after each acknowledgement), `finish(ctx)` (completes the operation after a
    failure: what an operator does by running it again) and `close(ctx)`."""
    untouched = ("keep",)

    def open(self, d):
        return open_log(d)

    def close(self, ctx):
        ctx.close()

    def operate(self, ctx, note):
        raise NotImplementedError

    def finish(self, ctx):
        raise NotImplementedError

    def run(self, d, note, arm):
        relocate(d)
        ctx = self.open(d)
        arm()
        self.operate(ctx, note)
        self.close(ctx)

    def reference(self, d, notes):
        if not self.untouched:
            return None
        with open_log(self.log_dir(d)) as log:
            return data_of(log, self.untouched)

    def log_dir(self, d):
        return d

    def check_untouched(self, log, ref):
        if not self.untouched:
            return
        got = data_of(log, self.untouched)
        expect(got == ref, "a topic the operation does not touch changed: " +
               ", ".join(f"{k}: {len(got.get(k, []))} records, {len(v)} before" for k, v in ref.items()))


# ------------------------------------------------------------------ topics

class DeleteTopicScenario(OpScenario):
    """Log.delete_topic of a 3-partition topic with data. Invariant: the topic is listed
    with every partition whole and readable (not done), or not listed (done; required
    once delete_topic returned); then the name can be created again and its partitions
    are empty (no record of the old topic comes back)."""
    name = "delete-topic"

    def build(self, d):
        rng = random.Random(self.seed)
        with open_log(d) as log:
            fill(log, "keep", 1, rng)
            fill(log, "gone", 3, rng)
            self.before = data_of(log, ["gone"])

    def operate(self, log, note):
        log.delete_topic("gone")
        note(0)

    def finish(self, log):
        if "gone" in log.topics():
            log.delete_topic("gone")

    def check(self, d, notes, completed, ref):
        relocate(d)
        with open_log(d) as log:
            self.check_untouched(log, ref)
            if "gone" in log.topics():
                expect(not notes, "delete_topic returned but the topic is still listed")
                expect(data_of(log, ["gone"]) == self.before, "a topic whose deletion did not happen lost records")
                log.delete_topic("gone")
            log.create_topic("gone", partitions=3)
            for i in range(3):
                p = log.partition("gone", i)
                expect(p.log_end_offset == 0 and read_all(p) == [],
                       f"gone-{i} created again holds {p.log_end_offset} records of the deleted topic")
        verified(d)


class AddPartitionsScenario(OpScenario):
    """Log.add_partitions from 2 to 5. Invariant: the topic has 2 partitions (not done; then
    add_partitions(5) works) or 5 (done; required once it returned); the old partitions keep
    every record, the new ones are empty and take appends."""
    name = "add-partitions"

    def build(self, d):
        rng = random.Random(self.seed)
        with open_log(d) as log:
            fill(log, "keep", 2, rng)
            self.before = data_of(log, ["keep"])

    untouched = ()

    def operate(self, log, note):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            log.add_partitions("keep", 5)
        note(0)

    def finish(self, log):
        if log.topic("keep").num_partitions < 5:
            self.operate(log, lambda _x: None)

    def check(self, d, notes, completed, ref):
        with open_log(d) as log:
            n = log.topic("keep").num_partitions
            expect(n in (2, 5), f"{n} partitions: neither the old count 2 nor the new 5")
            expect(n == 5 or not notes, "add_partitions returned but the topic still has 2 partitions")
            got = data_of(log, ["keep"])
            for k, v in self.before.items():
                expect(got[k] == v, f"{k} lost records")
            if n == 2:
                self.finish(log)
            for i in range(2, 5):
                p = log.partition("keep", i)
                expect(read_all(p) == [], f"new partition keep-{i} is not empty")
                expect(p.append_records([b"new"]).base_offset == 0, f"keep-{i} does not take an append")
        verified(d)


OLD_CONFIG = {"segment.bytes": 600, "retention.ms": 86_400_000}
NEW_CONFIG = {"segment.bytes": 4096, "retention.ms": 3_600_000, "cleanup.policy": "delete,compact",
              "max.message.bytes": 50_000}


class AlterConfigScenario(OpScenario):
    """Log.alter_topic_config changing four keys at once. Invariant: the topic's config is
    all old or all new (the new one required once it returned), in this handle and in a
    fresh one, and every record is still there."""
    name = "alter-config"

    def build(self, d):
        rng = random.Random(self.seed)
        with open_log(d) as log:
            fill(log, "keep", 1, rng, config=OLD_CONFIG)

    def operate(self, log, note):
        log.alter_topic_config("keep", NEW_CONFIG)
        note(0)

    def finish(self, log):
        self.operate(log, lambda _x: None)

    def check(self, d, notes, completed, ref):
        with open_log(d) as log:
            self.check_untouched(log, ref)
            cfg = log.topic("keep").config
            now = {k: cfg[k] for k in NEW_CONFIG}
            old = {k: embedlog.storage._config.topic_config(OLD_CONFIG)[k] for k in NEW_CONFIG}
            new = {k: embedlog.storage._config.topic_config(NEW_CONFIG)[k] for k in NEW_CONFIG}
            expect(now in (old, new), f"config {now} is neither the old {old} nor the new {new}")
            expect(now == new or not notes, "alter_topic_config returned but the old config is in force")
        verified(d)


class DeleteRecordsScenario(OpScenario):
    """Partition.delete_records(k) then maintain() (which deletes the segments below k).
    Invariant: the log start offset is the old 0 or k (k required once it returned); every
    record from the log start on is there, exactly as written; a second pass gets to k and
    frees the segments below it."""
    name = "delete-records"
    untouched = ()

    def build(self, d):
        rng = random.Random(self.seed)
        self.batches = _batches(rng, 16, 0)
        with open_log(d) as log:
            log.create_topic("t", config={"segment.bytes": 500})
            for keys, values in self.batches:
                log.partition("t", 0).append_records(values, keys, [NOW - 1000] * len(values))
        flat = [kv for keys, values in self.batches for kv in zip(keys, values)]
        self.flat = flat
        self.target = len(flat) * 2 // 3

    def operate(self, log, note):
        p = log.partition("t", 0)
        expect(p.delete_records(self.target) == self.target, "delete_records returned another log start")
        note(0)
        p.maintain(now=NOW)
        note(1)

    def finish(self, log):
        self.operate(log, lambda _x: None)

    def check(self, d, notes, completed, ref):
        from embedlog.storage._segment import list_segments
        with open_log(d) as log:
            p = log.partition("t", 0)
            start = p.log_start_offset
            expect(start in (0, self.target) or (notes and start >= self.target),
                   f"log start {start}, neither 0 nor {self.target}")
            expect(start >= self.target or not notes, f"delete_records returned but the log start is {start}")
            got = read_all(p)
            expect([(k, v) for _o, k, v in got] == self.flat[start:], f"records from {start} on are not as written")
            self.finish(log)
            expect(p.log_start_offset == self.target, "a second pass did not move the log start")
            bases = list_segments(p.path)
            expect(len(bases) == 1 or bases[1] > self.target, f"segments below {self.target} remain: {bases}")
        verified(d)


# ------------------------------------------------------------------ groups

def _consumer(d, name):
    return embedlog.Consumer({"bootstrap.servers": f"file://{d}", "group.id": "g", "client.id": name,
                              "enable.auto.commit": False, "log.retention.check.interval.ms": 0,
                              "auto.offset.reset": "earliest", "heartbeat.interval.ms": 60_000})


class GroupScenario(OpScenario):
    """Group membership with commits between: member a joins and commits every partition
    (3); b joins (rebalance: a gives up two), both commit theirs (5 and 6); b leaves
    (rebalance: a gets everything back) and a commits all (7); a leaves. Invariant: every
    partition's committed offset is its last acknowledged one or the one in flight, never
    lower (never backwards, never lost) and never absent after an acknowledged commit;
    group.json is whole; a new member then joins, gets all partitions and commits."""
    name = "group"
    untouched = ()
    P = 4

    def build(self, d):
        rng = random.Random(self.seed)
        with open_log(d) as log:
            fill(log, "t", self.P, rng, batches=2)
        # (partitions, value) of each commit, in order; a run reports its index when acknowledged
        self.commits = []

    def open(self, d):
        return d

    def close(self, ctx):
        pass

    def operate(self, d, note):
        TP = embedlog.TopicPartition
        i = 0

        def commit(c, value):
            nonlocal i
            tps = sorted(tp.partition for tp in c.assignment())
            note({"try": [i, tps, value]})         # what is in flight, if the kill comes now
            c.commit(offsets=[TP("t", p, value) for p in tps], asynchronous=False)
            note({"ok": i})
            i += 1
        a = _consumer(d, "a")
        try:
            a.subscribe(["t"])
            a.poll(0.05)
            commit(a, 3)
            b = _consumer(d, "b")
            try:
                b.subscribe(["t"])
                b.poll(0.05)
                a.poll(0.05)
                b.poll(0.05)
                commit(a, 5)
                commit(b, 6)
            finally:
                b.close()
            a.poll(0.05)
            commit(a, 7)
        finally:
            a.close()

    def finish(self, d):
        pass

    def reference(self, d, notes):
        return True          # the notes of each run say what it committed (assignments depend on timing)

    def check(self, d, notes, completed, ref):
        acked = {n["ok"] for n in notes if "ok" in n}
        tried = [n["try"] for n in notes if "try" in n]
        last = {}
        for idx, tps, value in tried:                # what the crashed run acknowledged
            if idx in acked:
                for p in tps:
                    last[p] = value
        nxt = next((c for c in tried if c[0] not in acked), None)   # in flight when it was killed
        with open_log(d) as log:
            store = OffsetStore(log)
            store.refresh()
            for p in range(self.P if ref is not None else 0):
                got = store.committed("g", "t", p)
                got = got[0] if got else None
                allowed = {last.get(p)}
                if nxt is not None and p in nxt[1]:
                    allowed.add(nxt[2])
                expect(got in allowed, f"t-{p}: committed {got}, expected one of {sorted(allowed, key=str)} "
                       f"({len(acked)} commits acknowledged): lost, gone backwards, or never made")
            read_all(log.partition("__consumer_offsets", 0))
            gdir = os.path.join(d, "groups", "g")
            if os.path.exists(os.path.join(gdir, "group.json")):
                with open(os.path.join(gdir, "group.json")) as f:
                    json.load(f)                       # whole
        c = _consumer(d, "after")
        try:
            c.subscribe(["t"])
            c.poll(0.05)
            got = sorted(tp.partition for tp in c.assignment())
            expect(got == list(range(self.P)), f"a new member after the crash got partitions {got}")
            c.commit(offsets=[embedlog.TopicPartition("t", p, 9) for p in got], asynchronous=False)
        finally:
            c.close()
        with open_log(d) as log:
            store = OffsetStore(log)
            store.refresh()
            expect(all(store.committed("g", "t", p)[0] == 9 for p in range(self.P)), "the commit after recovery")
        verified(d)


# ------------------------------------------------------------------ mirrors

def relocate(d):
    """Point the registry and markers of a copied scenario directory at the copy (the
    template's absolute paths are in d/ORIGIN). Plain file writes, before any hook."""
    origin_file = os.path.join(d, "ORIGIN")
    if not os.path.exists(origin_file):
        return
    with open(origin_file) as f:
        origin = f.read()
    here = os.path.abspath(d)
    if origin == here:
        return
    for sub in ("primary", "mirror"):
        for name in ("replicas.json", "embedlog.json"):
            path = os.path.join(d, sub, name)
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(text.replace(json.dumps(origin)[1:-1], json.dumps(here)[1:-1]))
    with open(origin_file, "w") as f:
        f.write(here)


def _build_mirrored(d, seed, batches=3):
    os.makedirs(d)
    with open(os.path.join(d, "ORIGIN"), "w") as f:
        f.write(os.path.abspath(d))
    rng = random.Random(seed)
    pre = _batches(rng, batches, 0)
    with open_log(os.path.join(d, "primary")) as log:
        log.add_replica(os.path.join(d, "mirror"))
        fill(log, "keep", 1, rng)
        log.create_topic("m", replication_factor=2, config={"segment.bytes": 700, "min.insync.replicas": 2})
        for keys, values in pre:
            log.partition("m", 0).append_records(values, keys, [NOW - 1] * len(values), sync=True)
    return rng, pre


def _segment_files(pdir):
    return {f: open(os.path.join(pdir, f), "rb").read() for f in sorted(os.listdir(pdir)) if f.endswith(".log")}


class MirrorCopyScenario(OpScenario):
    """acks=all appends (sync=True, min.insync.replicas=2) copied to a mirror, with rolls.
    Invariant: the primary is a gap-free prefix of what was written holding every
    acknowledged batch; once the mirror has caught up (replica refresh), its segments are
    byte-identical to the primary's; a copy of the mirror promoted and opened holds every
    acknowledged record; both pass verify."""
    name = "mirror-copy"

    def build(self, d):
        _rng, self.pre = _build_mirrored(d, self.seed)
        # the default run: 3 batches (one roll); the soak: 8 (several)
        self.batches = _batches(random.Random(self.seed + 7), 8 if self.seed else 3,
                                sum(len(v) for _k, v in self.pre))

    def log_dir(self, d):
        return os.path.join(d, "primary")

    def open(self, d):
        return open_log(os.path.join(d, "primary"))

    def operate(self, log, note):
        p = log.partition("m", 0)
        for i, (keys, values) in enumerate(self.batches):
            p.append_records(values, keys, [NOW + i] * len(values), sync=True)
            note(i)

    def finish(self, log):
        # the fault cleared: the mirror catches up (a copy that failed is retried)
        _replication.refresh(log.partition("m", 0), durable=True, wait=10.0)

    def check(self, d, notes, completed, ref):
        relocate(d)
        primary, mirror = os.path.join(d, "primary"), os.path.join(d, "mirror")
        batches = [list(zip(k, v)) for k, v in self.pre + self.batches]
        acked = len(self.pre) + (max(notes) + 1 if notes else 0)
        with open_log(primary) as log:
            self.check_untouched(log, ref)
            p = log.partition("m", 0)
            # Records past the high watermark (not yet on the mirror) are not readable:
            # the mirror catches up first.
            errors = _replication.refresh(p, durable=True, wait=30.0)
            expect(not errors, f"the mirror did not catch up: {errors}")
            expect(p.high_watermark == p.log_end_offset, f"high watermark {p.high_watermark} after catching "
                   f"up, log end {p.log_end_offset}")
        check_prefix(primary, "m", batches, acked, append_after=False)
        with open_log(primary) as log:
            p = log.partition("m", 0)
            expect(_segment_files(p.path) == _segment_files(os.path.join(mirror, "m-0")),
                   "the mirror's segments differ from the primary's after catching up")
            n = len(read_all(p))
        verified(primary)
        import shutil
        copy = os.path.join(d, "promoted")
        shutil.copytree(mirror, copy)
        try:
            _failover.promote(copy, fence=False)
            with open_log(copy) as log:
                got = read_all(log.partition("m", 0))
                flat = [kv for b in batches for kv in b]
                expect([(k, v) for _o, k, v in got] == flat[:n], "the promoted mirror differs from the primary")
            verified(copy)
        finally:
            shutil.rmtree(copy)


class PromoteScenario(OpScenario):
    """replicas promote of the mirror (fencing the old primary). Invariant: afterwards
    (or after running promote again, which must then succeed) the mirror is the primary,
    holds every record the old primary acknowledged with acks=all, takes appends and
    passes verify; the old primary is marked a mirror of it, so two primaries never remain."""
    name = "promote"
    untouched = ()

    def build(self, d):
        _rng, self.pre = _build_mirrored(d, self.seed, batches=5)

    def open(self, d):
        return d

    def close(self, ctx):
        pass

    def operate(self, d, note):
        _failover.promote(os.path.join(d, "mirror"))
        note(0)

    def finish(self, d):
        if _replication.marker_problem(os.path.join(d, "mirror"), os.path.join(d, "primary")) is None:
            self.operate(d, lambda _x: None)

    def check(self, d, notes, completed, ref):
        relocate(d)
        primary, mirror = os.path.join(d, "primary"), os.path.join(d, "mirror")
        still_mirror = _replication.marker_problem(mirror, primary) is None
        expect(not (still_mirror and notes), "promote returned but the mirror is still a mirror")
        if still_mirror or (_replication.marker_problem(primary, mirror) is not None and ref != "faults"):
            try:
                _failover.promote(mirror)
            except Exception as e:
                raise Anomaly(f"promote interrupted, then run again, fails: {type(e).__name__}: {e}") from e
        problem = _replication.marker_problem(primary, mirror)
        # A kill never leaves the old primary unfenced; an I/O error writing its marker does
        # (promote fences best-effort, as for an unreachable old primary: known limit).
        expect(problem is None or ref == "faults", f"the old primary is not fenced: {problem}")
        flat = [kv for k, v in self.pre for kv in zip(k, v)]
        with open_log(mirror) as log:
            p = log.partition("m", 0)
            got = read_all(p)
            expect([(k, v) for _o, k, v in got] == flat, f"the promoted mirror holds {len(got)} of {len(flat)} records")
            expect(p.append_records([b"after"]).base_offset == len(flat), "the new primary does not take appends")
        verified(mirror)


# ------------------------------------------------------------------ fail at call N

class FaultWorkload:
    """test_io_faults.fault_loop's Workload over an OpScenario: op = the operation (its
    notes are the acknowledgements); resume = run it to the end again; check = the
    scenario's check with every note (the operation is done)."""

    def __init__(self, scenario: OpScenario):
        self.s = scenario
        self.name = scenario.name
        self.ref = None

    def build(self, d):
        self.s.build(d)
        self.root = os.path.dirname(d)
        self.ref = "faults" if isinstance(self.s, PromoteScenario) else \
            None if isinstance(self.s, GroupScenario) else self.s.reference(d, [])

    def open(self, d):
        relocate(d)
        return self.s.open(d)

    def op(self, ctx, acks):
        from embedlog.storage import _io
        from embedlog.storage._errors import NotEnoughReplicasAfterAppendError
        self.notes = []
        self.persistent = getattr(_io.installed(), "persistent", False)
        try:
            self.s.operate(ctx, self.notes.append)
        except StorageError:
            raise
        except OSError as e:                # untyped: fault_loop fails it; say where it came from
            raise AssertionError(f"a bare {e!r} escaped:\n{traceback.format_exc()[-1500:]}") from e
        except NotEnoughReplicasAfterAppendError as e:
            # A failed copy to the mirror: Kafka's error for it, naming the mirror's file and
            # the errno (not a StorageError: the primary's write went through).
            text = str(e)
            expect(os.path.join(self.root, "") in text and "not acknowledged" in text,
                   f"the mirror's failure does not name the file: {text}")

    def resume(self, ctx, acks, failed):
        self.s.finish(ctx)

    def close(self, ctx):
        self.s.close(ctx)

    def check(self, d, acks):
        # A killed write_atomic leaves its temp file to the next create or recovery; a failed
        # one removes it at once (fault_loop's own pattern predates the sequence number),
        # unless the fault is persistent: then its unlink fails too.
        left = temp_leftovers(d)
        expect(not left or self.persistent, f"temp files left after an I/O error: {left}")
        if isinstance(self.s, GroupScenario):
            self.s.check(d, [], False, None)   # commits failed and retried: only whole, and joinable
        else:
            notes = self.notes if isinstance(self.s, MirrorCopyScenario) else [0]   # done after resume
            self.s.check(d, notes, True, self.ref)
