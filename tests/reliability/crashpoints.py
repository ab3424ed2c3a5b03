"""Crash at the Nth mutating call (SQLite's crash-test loop; reliability.md §3.2, technique 1).

For a scenario (an operation on a small log), a reference run in a child counts the
operation's calls of the I/O table (embedlog/storage/_io.py): T. Then for every N in 1..T+1 a
child copies the scenario's template directory, opens the log, arms `KillAt(N)` and runs
the operation: at call N it SIGKILLs itself, a write call having first written a prefix
of its bytes (the tear). The parent then reopens the log (recovery runs) and checks it.
N = T+1 must complete: the loop has then visited every call. Children report what they
acknowledged through a pipe, as they go, so the parent knows what must have survived.

    stats = run_scenario(AppendScenario(sync=True), seeds=range(4))
    assert not stats.anomalies, stats.report()

Checks (the scenario's `check`): the log is a gap-free prefix of what was written, batch
by batch; every acknowledged record is there, byte-identical; no half-written batch is
readable and no read raises; the log takes appends afterwards. Offset commits read back
as the last acknowledged value or the one in flight. Retention leaves every record from
the log start on; compaction leaves each group of segments old or new, never a mix.
Topic creation leaves no topic (and the name can be created again) or a complete one.
Recovery interrupted at any call and run again gives the same log as recovery run once.

Seeds vary the workload and the tear: the kept prefix of the torn write is, by seed,
half, random, nothing, everything, one byte, or all but one byte (TEARS).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import tempfile
import traceback

import embedlog
from embedlog.storage._offsets import OffsetStore

from .iofault import Counter, KillAt, install
from ._workers import fan_out

TEARS = (0.5, "random", 0.0, 1.0, 1, "len-1")
NOW = 1_700_000_000_000


def work_root() -> str:
    """tmpfs when there is one: fsync is free there, and every crash is simulated anyway."""
    for d in (os.environ.get("EMBEDLOG_CRASH_DIR"), "/dev/shm"):
        if d and os.path.isdir(d) and os.access(d, os.W_OK):
            return d
    return tempfile.gettempdir()


def tear_for(seed: int):
    t = TEARS[seed % len(TEARS)]
    return t


def open_log(path):
    return embedlog.open(path, retention_check_interval_ms=0)


def read_all(part) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record from the log start to the high watermark."""
    out = []
    pos = part.log_start_offset
    end = part.high_watermark
    while pos < end:
        cols, nxt = part.fetch(pos)
        out.extend(zip(cols.offsets, cols.keys, cols.values))
        if nxt <= pos:
            raise AssertionError(f"fetch({pos}) made no progress below the high watermark {end}")
        pos = nxt
    return out


class Anomaly(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Anomaly(what)


# ------------------------------------------------------------------ scenarios

class Scenario:
    """One operation to crash in. `build(dir)` makes the template (no hook installed);
    `run(dir, note, arm)` runs in the child: open, `arm()`, operate, `note(obj)` after each
    acknowledgement; `check(dir, notes, completed, ref)` raises Anomaly. `ref` is what
    `reference(dir, notes)` returned for the uncrashed reference run's directory."""
    name = "scenario"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def build(self, d):
        raise NotImplementedError

    def run(self, d, note, arm):
        raise NotImplementedError

    def reference(self, d, notes):
        return None

    def check(self, d, notes, completed, ref):
        raise NotImplementedError


def _batches(rng, n, first_id, keys=True):
    out = []
    i = first_id
    for _ in range(n):
        k = rng.randint(1, 3)
        values = [b"%06d|" % (i + j) + rng.randbytes(rng.randint(10, 150)) for j in range(k)]
        ks = [b"k%d" % ((i + j) % 5) if keys else None for j in range(k)]
        out.append((ks, values))
        i += k
    return out


class AppendScenario(Scenario):
    """Appends (acks=1 or sync=True) of 1-3 record batches, with index entries, rolls
    when segment_bytes is small, then a clean close."""

    def __init__(self, seed=0, *, sync=False, segment_bytes=1024, batches=12, pre=3):
        super().__init__(seed)
        self.sync, self.segment_bytes, self.nbatches = sync, segment_bytes, batches
        rng = random.Random(seed)
        self.pre = _batches(rng, pre, 0)
        npre = sum(len(v) for _k, v in self.pre)
        self.batches = _batches(rng, batches, npre)
        self.name = f"append-{'sync' if sync else 'acks1'}-seg{segment_bytes}"

    def build(self, d):
        with open_log(d) as log:
            log.create_topic("t", config={"segment.bytes": self.segment_bytes, "index.interval.bytes": 64})
            p = log.partition("t", 0)
            for keys, values in self.pre:
                p.append_records(values, keys, [NOW - 1] * len(values))

    def run(self, d, note, arm):
        log = open_log(d)
        p = log.partition("t", 0)
        arm()
        for i, (keys, values) in enumerate(self.batches):
            # Explicit timestamps: the calls made (time index entries) must not depend on the clock.
            p.append_records(values, keys, [NOW + i] * len(values), sync=self.sync)
            note(i)
        log.close()

    def expected(self):
        recs = []
        for keys, values in self.pre + self.batches:
            recs.append(list(zip(keys, values)))
        return recs           # per batch

    def check(self, d, notes, completed, ref):
        check_prefix(d, "t", self.expected(), len(self.pre) + (max(notes) + 1 if notes else 0))


def check_prefix(d, topic, batches, acked_batches, *, append_after=True):
    """The log of `topic`-0 is whole batches 0..k-1 of `batches` (lists of (key, value)),
    offsets 0.., with k >= acked_batches; it takes an append afterwards."""
    with open_log(d) as log:
        p = log.partition(topic, 0)
        got = read_all(p)
        flat = [kv for b in batches for kv in b]
        expect(len(got) <= len(flat), f"{len(got)} records, more than the {len(flat)} written")
        for i, (off, k, v) in enumerate(got):
            expect(off == i, f"record {i} has offset {off}: a gap or a reordering")
            expect((k, v) == flat[i], f"offset {i} holds {(k, v[:12] if v else v)!r}, written "
                   f"{(flat[i][0], flat[i][1][:12])!r}")
        bounds = [0]
        for b in batches:
            bounds.append(bounds[-1] + len(b))
        expect(len(got) in bounds, f"{len(got)} records: part of a batch is readable")
        k = bounds.index(len(got))
        expect(k >= acked_batches, f"lost write: {k} batches survive, {acked_batches} were acknowledged")
        expect(p.log_end_offset == len(got), f"log end {p.log_end_offset} but {len(got)} records")
        if append_after:
            r = p.append_records([b"after-crash"])
            expect(r.base_offset == len(got), f"the next append got offset {r.base_offset}, not {len(got)}")
            expect([x.value for x in p.read(len(got))] == [b"after-crash"], "the append after recovery is unreadable")


class CommitScenario(Scenario):
    """Consumer.commit (synchronous) of increasing offsets: after a crash the committed
    offset is the last acknowledged one or the one in flight."""
    name = "commit"

    def __init__(self, seed=0, commits=10):
        super().__init__(seed)
        rng = random.Random(seed)
        self.values = sorted(rng.sample(range(2, 500), commits))

    def _consumer(self, d):
        return embedlog.Consumer({"bootstrap.servers": f"file://{d}", "group.id": "g",
                                  "enable.auto.commit": False, "log.retention.check.interval.ms": 0})

    def build(self, d):
        with open_log(d) as log:
            log.create_topic("t", partitions=2)
        c = self._consumer(d)
        c.commit(offsets=[embedlog.TopicPartition("t", 0, 1), embedlog.TopicPartition("t", 1, 2)],
                 asynchronous=False)
        c.close()

    def run(self, d, note, arm):
        c = self._consumer(d)
        arm()
        for i, v in enumerate(self.values):
            c.commit(offsets=[embedlog.TopicPartition("t", 0, v), embedlog.TopicPartition("t", 1, v + 1)],
                     asynchronous=False)
            note(i)
        c.close()

    def check(self, d, notes, completed, ref):
        last = max(notes) if notes else -1
        allowed = [self.values[last] if last >= 0 else 1]
        if last + 1 < len(self.values):
            allowed.append(self.values[last + 1])
        with open_log(d) as log:
            store = OffsetStore(log)
            store.refresh()
            got0 = store.committed("g", "t", 0)
            got1 = store.committed("g", "t", 1)
            expect(got0 is not None and got1 is not None, "a committed offset is gone")
            expect(got0[0] in allowed, f"committed offset {got0[0]}, expected one of {allowed}")
            expect(got1[0] == got0[0] + 1, f"one commit half applied: partition 0 at {got0[0]}, "
                   f"partition 1 at {got1[0]}")
            read_all(log.partition("__consumer_offsets", 0))     # whole and readable
        # and the group can commit again
        c = self._consumer(d)
        c.commit(offsets=[embedlog.TopicPartition("t", 0, 999)], asynchronous=False)
        expect(c.committed([embedlog.TopicPartition("t", 0)])[0].offset == 999, "commit after recovery lost")
        c.close()


class RetentionScenario(Scenario):
    """Partition.maintain deleting a prefix of segments (retention.bytes, or retention.ms
    with every segment expired, which rolls first)."""

    def __init__(self, seed=0, *, mode="bytes"):
        super().__init__(seed)
        self.mode = mode
        rng = random.Random(seed)
        self.batches = _batches(rng, 24, 0)
        self.name = f"retention-{mode}"

    def build(self, d):
        cfg = {"segment.bytes": 600}
        if self.mode == "bytes":
            cfg["retention.bytes"] = 1500
        else:
            cfg["retention.ms"] = 1000
        with open_log(d) as log:
            log.create_topic("t", config=cfg)
            p = log.partition("t", 0)
            for i, (keys, values) in enumerate(self.batches):
                p.append_records(values, keys, timestamps=[NOW - 100_000 + i] * len(values))

    def run(self, d, note, arm):
        log = open_log(d)
        p = log.partition("t", 0)
        arm()
        p.maintain(now=NOW)
        note(0)
        log.close()

    def reference(self, d, notes):
        with open_log(d) as log:
            return log.partition("t", 0).log_start_offset

    def check(self, d, notes, completed, new_start):
        flat = [kv for keys, values in self.batches for kv in zip(keys, values)]
        with open_log(d) as log:
            p = log.partition("t", 0)
            start = p.log_start_offset
            expect(0 <= start <= new_start, f"log start {start}, outside [0, {new_start}]")
            if notes:
                expect(start == new_start, f"maintain returned but the log start is {start}, not {new_start}")
            got = read_all(p)
            expect([(k, v) for _o, k, v in got] == flat[start:] and [o for o, _k, _v in got] ==
                   list(range(start, len(flat))), f"records from the log start {start} are not "
                   f"exactly the ones written ({len(got)} read)")
            p.maintain(now=NOW)                 # a pass afterwards finishes the job
            expect(p.log_start_offset == new_start, f"a second pass left log start {p.log_start_offset}")
            got = read_all(p)
            expect([(k, v) for _o, k, v in got] == flat[new_start:], "the second pass lost records")


def _folder_digest(part) -> bytes:
    """SHA-256 of a partition's state as a second compaction pass would see it: its offsets
    and every file of its folder (names and bytes) but the shared-memory partition.state."""
    import hashlib
    h = hashlib.sha256(repr((part.log_start_offset, part.log_end_offset, part.high_watermark)).encode())
    for name in sorted(os.listdir(part.path)):
        path = os.path.join(part.path, name)
        if name == "partition.state" or not os.path.isfile(path):
            h.update(b"\0" + name.encode())
            continue
        with open(path, "rb") as f:
            data = f.read()
        h.update(b"%s\0%d\0" % (name.encode(), len(data)) + data)
    return h.digest()


class CompactionScenario(Scenario):
    """Partition.maintain(force_compaction=True) on a compacted topic: each group of
    segments is the old one or the cleaned one, and every key keeps its latest value."""

    def __init__(self, seed=0, *, segment_bytes=500):
        super().__init__(seed)
        rng = random.Random(seed)
        self.records = []
        for i in range(70):
            key = b"k%d" % rng.randrange(8)
            value = None if rng.random() < 0.1 else b"%06d|" % i + rng.randbytes(rng.randint(10, 60))
            self.records.append((key, value))
        self.segment_bytes = segment_bytes
        self.name = f"compaction-seg{segment_bytes}"
        # Recovered partitions the second pass of check() already cleaned (in this process):
        # most crash points and power-loss states recover to one of a few identical folders,
        # and cleaning the same files again at the same NOW is the same computation.
        self._cleaned_again: set[bytes] = set()

    def build(self, d):
        with open_log(d) as log:
            log.create_topic("c", config={"cleanup.policy": "compact", "segment.bytes": self.segment_bytes})
            p = log.partition("c", 0)
            i = 0
            rng = random.Random(self.seed + 1)
            while i < len(self.records):
                n = rng.randint(1, 3)
                chunk = self.records[i:i + n]
                p.append_records([v for _k, v in chunk], [k for k, _v in chunk],
                                 timestamps=[NOW - 1000] * len(chunk))
                i += n

    def run(self, d, note, arm):
        log = open_log(d)
        p = log.partition("c", 0)
        arm()
        p.maintain(now=NOW, force_compaction=True)
        note(0)
        log.close()

    def reference(self, d, notes):
        from embedlog.storage._segment import list_segments
        with open_log(d) as log:
            p = log.partition("c", 0)
            new = {o: (k, v) for o, k, v in read_all(p)}
            bases = list_segments(p.path)
            end = p.log_end_offset
        return new, bases, end

    def check(self, d, notes, completed, ref):
        new, bases, end = ref
        old = dict(enumerate(self.records))
        with open_log(d) as log:
            p = log.partition("c", 0)
            got = {o: (k, v) for o, k, v in read_all(p)}
            expect(p.log_end_offset == end, f"log end {p.log_end_offset}, not {end}")
            for o, kv in got.items():
                expect(old.get(o) == kv, f"offset {o} holds a record that was never written there")
            edges = bases + [end]
            for lo, hi in zip(edges, edges[1:]):
                part = {o: kv for o, kv in got.items() if lo <= o < hi}
                was = {o: kv for o, kv in old.items() if lo <= o < hi}
                now = {o: kv for o, kv in new.items() if lo <= o < hi}
                expect(part in (was, now), f"offsets [{lo}, {hi}) are neither the old segments "
                       f"({len(was)} records) nor the cleaned ones ({len(now)}): {len(part)} records")
            if notes:
                expect(got == new, "maintain returned but the cleaned log is not there")
            latest = {}
            for o in sorted(got):
                latest[got[o][0]] = got[o][1]
            want = {}
            for k, v in self.records:
                want[k] = v
            expect(latest == want, "a key lost its latest value")
            key = _folder_digest(p)
            if key in self._cleaned_again:
                return                                      # this very folder was cleaned again already
            self._cleaned_again.add(key)
            p.maintain(now=NOW, force_compaction=True)      # and it can be cleaned again
            again = {o: (k, v) for o, k, v in read_all(p)}
            latest2 = {}
            for o in sorted(again):
                latest2[again[o][0]] = again[o][1]
            expect(latest2 == want, "a second pass lost a key's latest value")


class CreateTopicScenario(Scenario):
    """Log.create_topic: no topic (and the name can be created again), or a whole one."""
    name = "create-topic"

    def build(self, d):
        with open_log(d) as log:
            log.create_topic("other")

    def run(self, d, note, arm):
        log = open_log(d)
        arm()
        log.create_topic("new", partitions=3, config={"segment.bytes": 4096})
        note(0)
        log.close()

    def check(self, d, notes, completed, ref):
        with open_log(d) as log:
            names = log.topics()
            expect("other" in names, "an unrelated topic vanished")
            if "new" not in names:
                expect(not notes, "create_topic returned but the topic is missing")
                log.create_topic("new", partitions=3, config={"segment.bytes": 4096})
            t = log.topic("new")
            expect(t.num_partitions == 3, f"the topic has {t.num_partitions} partitions, not 3")
            for i in range(3):
                p = log.partition("new", i)
                expect(p.log_start_offset == 0 and p.log_end_offset == 0, f"partition {i} is not empty")
                r = p.append_records([b"x%d" % i])
                expect(r.base_offset == 0 and [x.value for x in p.read(0)] == [b"x%d" % i],
                       f"partition {i} does not take an append")
            leftovers = [n for n in os.listdir(os.path.join(d, "topics")) if n.startswith(".")]
            expect(not leftovers, f"temp files left in topics/: {leftovers}")


class RecoveryScenario(Scenario):
    """A crash during recovery from a crash: the first crash (call `first_n` of `base`)
    leaves a directory; recovery of it is then crashed at every call, rerun, and must
    give the same log as recovery run once, which must pass the base scenario's check.
    `reboot` also invalidates partition.state first (as a reboot does), so recovery
    scans the segments from the recovery point and rewrites their indexes."""

    def __init__(self, base: Scenario, first_n: int, *, reboot=False, seed=0):
        super().__init__(seed)
        self.base, self.first_n, self.reboot = base, first_n, reboot
        self.first_notes: list = []
        self.base_ref = None
        self.name = f"recovery-after-{base.name}{'-reboot' if reboot else ''}"

    def build(self, d):
        self.base.build(d)
        refd = d + ".base-reference"
        shutil.copytree(d, refd, symlinks=True)
        try:
            _status, notes = run_child(refd, self.base, Counter())
            self.base_ref = self.base.reference(refd, [x["ack"] for x in notes if "ack" in x])
        finally:
            shutil.rmtree(refd, ignore_errors=True)
        _status, notes = run_child(d, self.base, KillAt(self.first_n, tear=tear_for(self.seed), seed=self.seed))
        self.first_notes = [x["ack"] for x in notes if "ack" in x]
        if self.reboot:
            invalidate_states(d)

    def run(self, d, note, arm):
        arm()
        with open_log(d) as log:
            for name in log.topics():
                for i in range(log.topic(name).num_partitions):
                    log.partition(name, i).log_end_offset
        note(0)

    def reference(self, d, notes):
        return snapshot(d)

    def check(self, d, notes, completed, ref):
        got = snapshot(d)
        expect(got == ref, "recovery interrupted and rerun gives another log than recovery run once: "
               + ", ".join(f"{k}: {len(got.get(k, []))} vs {len(v)} records" for k, v in ref.items()))
        self.base.check(d, self.first_notes, False, self.base_ref)


def invalidate_states(d):
    """What a reboot does to partition.state: its boot id no longer matches (FORMAT.md §6);
    zeroing the magic has the same effect."""
    for root, _dirs, files in os.walk(d):
        if "partition.state" in files:
            with open(os.path.join(root, "partition.state"), "r+b") as f:
                f.write(bytes(8))


def snapshot(d) -> dict:
    """{"topic-p": [(offset, key, value), ...]} of every partition of the log."""
    out = {}
    with open_log(d) as log:
        for name in log.topics():
            for i in range(log.topic(name).num_partitions):
                out[f"{name}-{i}"] = read_all(log.partition(name, i))
    return out


def count_calls(scenario: Scenario, root: str | None = None) -> int:
    """The calls of the I/O table one uncrashed run of the scenario makes."""
    base = tempfile.mkdtemp(prefix="el-count-", dir=root or work_root())
    try:
        d = os.path.join(base, "d")
        scenario.build(d)
        status, notes = run_child(d, scenario, Counter())
        if status != "completed":
            raise RuntimeError(f"{scenario.name} did not complete: {notes}")
        return next(x["calls"] for x in notes if "calls" in x)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ the loop

def run_child(d, scenario: Scenario, hook, timeout: float = 60.0):
    """Run scenario.run(d) in a forked child with `hook` armed; returns (status, notes):
    status is "killed", "completed" or "error"; notes are the child's reports."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                        # child
        code = 0
        try:
            os.close(r)

            def note(obj):
                os.write(w, (json.dumps({"ack": obj}) + "\n").encode())

            if isinstance(hook, KillAt):
                hook.on_kill = lambda op, path, kept: os.write(
                    w, (json.dumps({"kill": [op, path, kept]}) + "\n").encode())
            scenario.run(d, note, lambda: install(hook))
            if isinstance(hook, Counter):
                os.write(w, (json.dumps({"calls": len(hook), "ops": hook.calls}) + "\n").encode())
        except BaseException:
            os.write(w, (json.dumps({"error": traceback.format_exc()}) + "\n").encode())
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    notes = [json.loads(line) for line in data.decode().splitlines() if line]
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed", notes
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return "completed", notes
    return "error", notes


class Stats:
    def __init__(self):
        self.points = 0
        self.by_scenario: dict[str, int] = {}
        self.anomalies: list[dict] = []
        self.unfinished: list[str] = []

    def add(self, other: "Stats"):
        self.points += other.points
        for k, v in other.by_scenario.items():
            self.by_scenario[k] = self.by_scenario.get(k, 0) + v
        self.anomalies += other.anomalies
        self.unfinished += other.unfinished

    def report(self, limit=5) -> str:
        lines = [f"{self.points} crash points, {len(self.anomalies)} anomalies"]
        for a in self.anomalies[:limit]:
            lines.append(json.dumps(a, default=str)[:2000])
        lines += self.unfinished[:limit]
        return "\n".join(lines)


def _points(scenario: Scenario, tpl: str, ref, ns, total: int, seed: int, root: str,
            keep_failures: str | None) -> Stats:
    stats = Stats()
    tear = tear_for(seed)
    ns = list(ns)
    while ns:
        n = ns.pop(0)
        d = os.path.join(root, f"w{n}")
        shutil.copytree(tpl, d, symlinks=True)
        try:
            status, notes = run_child(d, scenario, KillAt(n, tear=tear, seed=seed * 100003 + n))
            acks = [x["ack"] for x in notes if "ack" in x]
            kill = next((x["kill"] for x in notes if "kill" in x), None)
            stats.points += 1
            where = {"scenario": scenario.name, "seed": seed, "n": n, "tear": tear, "kill": kill}
            if n > total and status != "completed":
                # SQLite's loop goes on until the operation completes (a run may make a call
                # more than the reference run did, e.g. a time index entry on a new ms).
                if n < total + 50:
                    ns.append(n + 1)
                else:
                    stats.unfinished.append(f"{scenario.name} seed {seed}: N={n} > {total} calls did not complete")
            if status == "error":
                stats.anomalies.append({**where, "anomaly": "the operation raised",
                                        "error": next((x["error"] for x in notes if "error" in x), None)})
                continue
            try:
                scenario.check(d, acks, status == "completed", ref)
            except Exception as e:           # Anomaly, or anything the library raised
                stats.anomalies.append({**where, "anomaly": f"{type(e).__name__}: {e}",
                                        "trace": traceback.format_exc()[-1500:]})
                if keep_failures and not os.path.exists(os.path.join(keep_failures, f"{scenario.name}-{seed}-{n}")):
                    shutil.copytree(d, os.path.join(keep_failures, f"{scenario.name}-{seed}-{n}"), symlinks=True)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    stats.by_scenario[scenario.name] = stats.points
    return stats


def run_scenario(scenario: Scenario, *, seed: int = 0, workers: int = 2, keep_failures: str | None = None,
                 root: str | None = None) -> Stats:
    """The whole loop for one scenario and seed: N = 1 .. T+1, spread over `workers`
    forked processes. Anomalies are collected, not raised."""
    base = tempfile.mkdtemp(prefix="el-crash-", dir=root or work_root())
    try:
        tpl = os.path.join(base, "template")
        scenario.build(tpl)
        refdir = os.path.join(base, "reference")
        shutil.copytree(tpl, refdir, symlinks=True)
        status, notes = run_child(refdir, scenario, Counter())
        stats = Stats()
        if status != "completed":
            stats.anomalies.append({"scenario": scenario.name, "seed": seed, "anomaly": "reference run failed",
                                    "notes": notes})
            return stats
        total = next(x["calls"] for x in notes if "calls" in x)
        ref = scenario.reference(refdir, [x["ack"] for x in notes if "ack" in x])
        ns = list(range(1, total + 2))
        def run(cases, sub):
            s = _points(scenario, tpl, ref, cases, total, seed, sub, keep_failures)
            return {"points": s.points, "anomalies": s.anomalies, "unfinished": s.unfinished}
        results = fan_out(base, workers, ns, run, scenario.name)
        for res in results:
            stats.points += res.get("points", 0)
            stats.anomalies += res["anomalies"]
            stats.unfinished += res.get("unfinished", [])
        stats.by_scenario[scenario.name] = stats.points
        return stats
    finally:
        shutil.rmtree(base, ignore_errors=True)
