"""I/O errors through the I/O table (reliability.md §3.3): fsyncgate, and SQLite's "fail at
operation N" loops with EIO, ENOSPC, EFBIG and short writes, transient (one call fails)
and persistent (every call from N on fails), for append (acks=1, sync), roll, offset
commit, retention, compaction and topic creation.

After each fault: the error is typed (StorageError, or the client's KafkaException) and
names the file and errno; the log stays readable through the handles that saw the error;
once the fault clears, writing resumes (on the same handle, or after reopening when an
fsync failed: a failed fsync is final for the handle); no descriptor or temp file leaks;
and the reopened log holds every acknowledged write, in order, whole.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time

import pytest

import embedlog
from embedlog import KafkaException, StorageError, TopicPartition
from embedlog.storage._errors import NotEnoughReplicasError
from embedlog.storage._offsets import OffsetStore
from embedlog.storage._state import TEMP_RE

from . import crashpoints as cp
from . import powerloss as pl
from ._workers import fan_out
from .conftest import soak_enabled
from .iofault import Counter, FailAt, fds_under, installed

NOW = cp.NOW
LEFTOVER = re.compile(rf"{TEMP_RE.pattern}|\.cleaned$|\.mirror$|^cleaner\.swap$")   # write_atomic's .<pid>[.<seq>].tmp


def leftovers(d) -> list[str]:
    out = []
    for root, _dirs, files in os.walk(d):
        out += [os.path.join(root, f) for f in files if LEFTOVER.search(f)]
    return out


# ------------------------------------------------------------------ fsyncgate

@pytest.fixture
def log_dir():
    d = tempfile.mkdtemp(prefix="el-fault-", dir=cp.work_root())
    yield os.path.join(d, "log")
    shutil.rmtree(d, ignore_errors=True)


def test_a_failed_fdatasync_is_final(log_dir):
    with cp.open_log(log_dir) as log:
        log.create_topic("t")
        p = log.partition("t", 0)
        p.append_records([b"durable"], sync=True)
        with installed(FailAt(1, errno.EIO, only=("fdatasync",))):
            with pytest.raises(StorageError) as e:
                p.append_records([b"not acknowledged"], sync=True)
        assert e.value.errno == errno.EIO and e.value.path.endswith("00000000000000000000.log")
        with installed(Counter()) as calls:
            for call in (lambda: p.append_records([b"refused"]), lambda: p.append_records([b"refused"], sync=True),
                         p.flush):
                with pytest.raises(StorageError, match="FAILED"):
                    call()
        assert calls.calls == []                     # no retried fdatasync, nothing written
        assert [r.value for r in p.read(0)] == [b"durable", b"not acknowledged"]   # still readable
        with cp.open_log(log_dir) as other:          # every other handle recovers before it trusts the state
            state = other.partition("t", 0).state
            assert state.valid()
    with cp.open_log(log_dir) as log:                # reopening re-derives the state from the files
        p = log.partition("t", 0)
        assert p.append_records([b"after reopen"], sync=True).base_offset == 2
        assert [r.value for r in p.read(0)] == [b"durable", b"not acknowledged", b"after reopen"]


def test_failed_fdatasync_pages_lost_recovery_keeps_the_acknowledged_prefix(log_dir):
    """The kernel dropped the unsynced pages after the failed fsync (reliability.md §2.3: they
    read back as zeros): recovery truncates to the last whole batch, every acknowledged
    record is there, and nothing corrupt is returned."""
    with cp.open_log(log_dir) as log:
        log.create_topic("t", config={"index.interval.bytes": 64})
        p = log.partition("t", 0)
        for i in range(5):
            p.append_records([b"durable-%d" % i], sync=True)
        path = os.path.join(log_dir, "t-0", "00000000000000000000.log")
        durable = os.path.getsize(path)
        p.append_records([b"unsynced-1"])
        with installed(FailAt(1, errno.EIO, only=("fdatasync",))):
            with pytest.raises(StorageError):
                p.append_records([b"unsynced-2"], sync=True)
        end = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(durable)
        f.write(bytes(end - durable))
    cp.invalidate_states(log_dir)                    # the page cache went with a reboot
    with cp.open_log(log_dir) as log:
        p = log.partition("t", 0)
        assert [r.value for r in p.read(0)] == [b"durable-%d" % i for i in range(5)]
        assert p.append_records([b"next"], sync=True).base_offset == 5


def test_producer_acks_all_reports_a_failed_fsync_and_acknowledges_nothing_after(log_dir):
    with cp.open_log(log_dir) as log:
        log.create_topic("t")
    conf = {"bootstrap.servers": f"file://{log_dir}", "acks": "all", "log.retention.check.interval.ms": 0}
    p = embedlog.Producer(conf)
    reports = []
    p.produce("t", value=b"ok-1", on_delivery=lambda err, msg: reports.append(err))
    p.flush()
    with installed(FailAt(1, errno.EIO, only=("fdatasync",))):
        p.produce("t", value=b"failed", on_delivery=lambda err, msg: reports.append(err))
        p.flush()
    p.produce("t", value=b"after", on_delivery=lambda err, msg: reports.append(err))
    p.flush()
    p.close() if hasattr(p, "close") else None
    assert reports[0] is None
    assert reports[1] is not None and reports[2] is not None, reports   # no acknowledgement after the failure


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fsyncgate_under_power_loss(seed):
    """Regression: after a failed fdatasync the kernel may have marked the batch's pages
    clean without writing them; the page cache still shows them. A reopen in the same boot
    trusted them, appended after them and acknowledged with fdatasync: after a power loss
    the batch was a hole of zeros and recovery truncated the acknowledged batches behind
    it. Recovery now rewrites what it scans after a failed fsync (FORMAT.md §8)."""
    stats = pl.run_power_loss(pl.FsyncgateScenario(seed), seed=seed, per_point=20)
    assert not stats.anomalies, stats.report()
    assert stats.states > 300


# ------------------------------------------------------------------ fail at operation N

class Workload:
    """One operation under a fault, done again once the fault clears, then checked."""
    name = "workload"

    def build(self, d):
        raise NotImplementedError

    def open(self, d):
        return cp.open_log(d)

    def op(self, ctx, acks):
        raise NotImplementedError

    def resume(self, ctx, acks, failed):
        raise NotImplementedError

    def close(self, ctx):
        ctx.close()

    def check(self, d, acks):
        raise NotImplementedError


class AppendWorkload(Workload):
    def __init__(self, *, sync=False, segment_bytes=1024, seed=0):
        self.sync, self.segment_bytes = sync, segment_bytes
        self.batches = cp._batches(__import__("random").Random(seed), 8, 100)
        self.name = f"append-{'sync' if sync else 'acks1'}-seg{segment_bytes}"

    def build(self, d):
        with cp.open_log(d) as log:
            log.create_topic("t", config={"segment.bytes": self.segment_bytes, "index.interval.bytes": 64})
            log.partition("t", 0).append_records([b"pre"], [b"k"], [NOW - 1])

    def _append(self, log, i, acks):
        keys, values = self.batches[i]
        acks.append((i, "fail"))
        log.partition("t", 0).append_records(values, keys, [NOW + i] * len(values), sync=self.sync)
        acks[-1] = (i, "ok")

    def op(self, log, acks):
        for i in range(len(self.batches) // 2):
            self._append(log, i, acks)

    def resume(self, log, acks, failed):
        start = len(self.batches) // 2
        for i in range(start, len(self.batches)):
            self._append(log, i, acks)

    def check(self, d, acks):
        with cp.open_log(d) as log:
            got = [(k, v) for _o, k, v in cp.read_all(log.partition("t", 0))]
        assert got[0] == (b"k", b"pre")
        got = got[1:]
        last = {i: j for j, (i, _outcome) in enumerate(acks)}     # a batch tried again: its last try
        for i, outcome in [a for j, a in enumerate(acks) if last[a[0]] == j]:                  # attempt order: acknowledged ones all there, in order
            kvs = list(zip(*self.batches[i]))
            if got[:len(kvs)] == kvs:
                got = got[len(kvs):]
            else:
                assert outcome == "fail", f"acknowledged batch {i} is missing or out of order"
        assert got == [], f"{len(got)} records nobody wrote"


class CommitWorkload(Workload):
    name = "commit"

    def build(self, d):
        with cp.open_log(d) as log:
            log.create_topic("t")
        c = self.open(d)
        c.commit(offsets=[TopicPartition("t", 0, 1)], asynchronous=False)
        c.close()

    def open(self, d):
        self.dir = d
        return embedlog.Consumer({"bootstrap.servers": f"file://{d}", "group.id": "g", "enable.auto.commit": False,
                                  "log.retention.check.interval.ms": 0})

    def op(self, c, acks):
        for v in (10, 20):
            acks.append((v, "fail"))
            c.commit(offsets=[TopicPartition("t", 0, v)], asynchronous=False)
            acks[-1] = (v, "ok")

    def resume(self, c, acks, failed):
        acks.append((30, "fail"))
        c.commit(offsets=[TopicPartition("t", 0, 30)], asynchronous=False)
        acks[-1] = (30, "ok")

    def check(self, d, acks):
        with cp.open_log(d) as log:
            store = OffsetStore(log)
            store.refresh()
            assert store.committed("g", "t", 0)[0] == 30


class RetentionWorkload(Workload):
    name = "retention"

    def __init__(self):
        self.scenario = cp.RetentionScenario(0, mode="ms")

    def build(self, d):
        self.scenario.build(d)

    def op(self, log, acks):
        log.partition("t", 0).maintain(now=NOW)

    resume = lambda self, log, acks, failed: self.op(log, acks)

    def check(self, d, acks):
        flat = [kv for keys, values in self.scenario.batches for kv in zip(keys, values)]
        with cp.open_log(d) as log:
            p = log.partition("t", 0)
            got = [(k, v) for _o, k, v in cp.read_all(p)]
            assert got == flat[p.log_start_offset:] and p.log_start_offset == len(flat)


class CompactionWorkload(Workload):
    name = "compaction"

    def __init__(self):
        self.scenario = cp.CompactionScenario(0, segment_bytes=500)

    def build(self, d):
        self.scenario.build(d)

    def op(self, log, acks):
        log.partition("c", 0).maintain(now=NOW, force_compaction=True)

    resume = lambda self, log, acks, failed: self.op(log, acks)

    def check(self, d, acks):
        old = dict(enumerate(self.scenario.records))
        want = {}
        for k, v in self.scenario.records:
            want[k] = v
        with cp.open_log(d) as log:
            got = cp.read_all(log.partition("c", 0))
        latest = {}
        for o, k, v in got:
            assert old[o] == (k, v)
            latest[k] = v
        assert latest == want and len(got) < len(old)


class CreateTopicWorkload(Workload):
    name = "create-topic"

    def build(self, d):
        with cp.open_log(d) as log:
            log.create_topic("other")

    def op(self, log, acks):
        log.create_topic("new", partitions=3)

    def resume(self, log, acks, failed):
        if "new" not in log.topics():
            log.create_topic("new", partitions=3)
        for i in range(3):
            log.partition("new", i).append_records([b"x"], sync=True)

    def check(self, d, acks):
        with cp.open_log(d) as log:
            assert log.topic("new").num_partitions == 3
            for i in range(3):
                assert [r.value for r in log.partition("new", i).read(0)] == [b"x"]


WORKLOADS = {
    "append-acks1": lambda: AppendWorkload(),
    "append-sync": lambda: AppendWorkload(sync=True),
    "roll": lambda: AppendWorkload(segment_bytes=14),
    "commit": CommitWorkload,
    "retention": RetentionWorkload,
    "compaction": CompactionWorkload,
    "create-topic": CreateTopicWorkload,
}
# (errno, short write kept before the error) - a full disk writes part, then says ENOSPC
FAULTS = {"EIO": (errno.EIO, None), "ENOSPC": (errno.ENOSPC, None), "EFBIG": (errno.EFBIG, None),
          "short+ENOSPC": (errno.ENOSPC, 0.5)}

_COMPACTION_DEFAULT = {("EIO", True), ("short+ENOSPC", False)}


def _typed(e, err, d):
    """A typed error that names a file of the log and carries the errno."""
    if isinstance(e, KafkaException):
        text = str(e.args[0])
        assert d in text and os.strerror(err) in text, f"client error does not name the file: {text}"
        return
    if isinstance(e, NotEnoughReplicasError):
        # acks=all below min.insync.replicas because the fault hit the copy to a mirror (a
        # persistent one, in the soak): Kafka's NOT_ENOUGH_REPLICAS, naming the mirror and errno
        assert d in str(e) and os.strerror(err) in str(e) and "nothing was written" in str(e), str(e)
        return
    assert isinstance(e, StorageError), f"{type(e).__name__}: {e}"
    assert e.errno == err, f"errno {e.errno}, injected {err}: {e}"
    assert e.path and str(e.path).startswith(d), f"no file named: path={e.path!r}: {e}"


def _reopen_if_failed(w, ctx, d):
    """A handle whose fsync failed refuses appends until reopened (FORMAT.md §5.3)."""
    w.close(ctx)
    return w.open(d)


def fault_loop(w: Workload, err: int, short, persistent: bool, root: str, max_n: int = 1000,
               workers: int = 2) -> dict:
    """Fail call N of the operation, for N = 1, 2, ... until the operation completes without
    reaching call N. Each N starts from a fresh copy of the template, so the Ns are
    independent: `workers` forked processes take every workers-th N (both cores of the
    machine); the first N that completes is written to a file, and each worker stops at
    its first N past it (what the one-process loop would not have run). An assertion in a
    worker fails the loop."""
    tpl = os.path.join(root, "template")
    w.build(tpl)
    done = os.path.join(root, "completed-at")
    if workers <= 1:
        return _fault_ns(w, err, short, persistent, root, tpl, 1, 1, max_n, done)
    results = fan_out(root, workers, list(range(workers)),
                      lambda ks, sub: _fault_ns(w, err, short, persistent, sub, tpl, ks[0] + 1, workers, max_n,
                                                done),
                      f"fault loop {getattr(w, 'name', w)}")
    failed = [a.get("trace", a) for r in results for a in r.get("anomalies", [])]
    assert not failed, "fault loop worker failed:\n" + "\n".join(map(str, failed))
    return {"n": min(r["n"] for r in results), "faults": sum(r["faults"] for r in results)}


def _completed_at(done: str) -> int | None:
    try:
        with open(done) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _fault_ns(w: Workload, err: int, short, persistent: bool, root: str, tpl: str, first: int, step: int,
              max_n: int, done: str) -> dict:
    """The loop over N = first, first + step, ... up to max_n, until the operation completes
    (then N is written to `done`) or another worker's loop completed below N."""
    faults = 0
    for n in range(first, max_n + 1, step):
        if (at := _completed_at(done)) is not None and at < n:
            return {"n": at, "faults": faults}
        d = os.path.join(root, f"n{n}")
        shutil.copytree(tpl, d, symlinks=True)
        acks = []
        hook = FailAt(n, err, persistent=persistent, short=short, seed=n)
        ctx = w.open(d)
        try:
            raised = None
            with installed(hook):
                try:
                    w.op(ctx, acks)
                except Exception as e:           # the fault surfaced
                    raised = e
            if hook.count < n:
                assert raised is None, f"N={n}: raised without a fault: {raised!r}"
                at = _completed_at(done)
                if at is None or n < at:
                    with open(done + f".{n}", "w") as f:
                        f.write(str(n))
                    os.replace(done + f".{n}", done)
                return {"n": n, "faults": faults}  # the operation completed before call N
            faults += 1
            if raised is not None:
                _typed(raised, err, d)
            if not persistent:          # a failed write_atomic removes its temp file at once
                tmp = [p for p in leftovers(d) if TEMP_RE.match(os.path.basename(p))]
                for _ in range(20):       # a background copier's write may be in flight: let it land
                    if not tmp:
                        break
                    time.sleep(0.05)
                    tmp = [p for p in tmp if os.path.exists(p)]
                assert not tmp, f"N={n} ({hook.failed}): temp files left after the error: {tmp}"
            # the fault has cleared: the handles still read, and writing resumes
            if isinstance(ctx, embedlog.Log):
                for name in ctx.topics():
                    for i in range(ctx.topic(name).num_partitions):
                        cp.read_all(ctx.partition(name, i))
            try:
                w.resume(ctx, acks, raised)
            except (StorageError, KafkaException) as e:
                assert "FAILED" in str(e), f"N={n}: writing did not resume: {e!r}"
                ctx = _reopen_if_failed(w, ctx, d)
                w.resume(ctx, acks, raised)
        finally:
            w.close(ctx)
        leaked = fds_under(d)
        assert not leaked, f"N={n} ({hook.failed}): descriptors leaked: {leaked}"
        left = leftovers(d)
        if persistent:
            # the fault also failed the unlink of the failed write's temp file: it stays
            # until a recovery of its folder (RELIABILITY.md, limits); nothing else may
            left = [p for p in left if not TEMP_RE.match(os.path.basename(p))]
        assert not left, f"N={n} ({hook.failed}): temp files left: {left}"
        w.check(d, acks)
        shutil.rmtree(d)
    return {"n": max_n, "faults": faults}


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("kind", list(WORKLOADS))
def test_fail_at_every_call(kind, fault, persistent, record_property):
    if kind == "compaction" and (fault, persistent) not in _COMPACTION_DEFAULT and not soak_enabled():
        # ~8 s each: the default run keeps a persistent and a transient fault of the cleaner
        pytest.skip("soak test: run with --soak, -m soak or EMBEDLOG_SOAK=1")
    err, short = FAULTS[fault]
    root = tempfile.mkdtemp(prefix="el-fault-", dir=cp.work_root())
    try:
        res = fault_loop(WORKLOADS[kind](), err, short, persistent, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    record_property("faults", res["faults"])
    print(f"{kind} {fault} {'persistent' if persistent else 'transient'}: {res['faults']} faults injected, "
          f"one per call of the operation")
    assert res["n"] < 1000 and res["faults"] > 0


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(1, 20))
def test_fail_at_every_call_soak(seed):
    for kind in ("append-acks1", "append-sync", "roll"):
        for fault, (err, short) in FAULTS.items():
            for persistent in (False, True):
                root = tempfile.mkdtemp(prefix="el-fault-", dir=cp.work_root())
                try:
                    w = AppendWorkload(sync="sync" in kind, segment_bytes=14 if kind == "roll" else 1024, seed=seed)
                    fault_loop(w, err, "random" if short else None, persistent, root)
                finally:
                    shutil.rmtree(root, ignore_errors=True)


def test_a_failed_fsync_marks_the_state(log_dir):
    """The state of a partition whose fdatasync failed tells every process that recovery
    must rewrite, not just rescan (FORMAT.md §6)."""
    with cp.open_log(log_dir) as log:
        log.create_topic("t")
        p = log.partition("t", 0)
        with installed(FailAt(1, errno.EIO, only=("fdatasync",))):
            with pytest.raises(StorageError):
                p.append_records([b"x"], sync=True)
        assert not p.state.valid() and p.state.fsync_failed()
    with cp.open_log(log_dir) as log:
        p = log.partition("t", 0)
        assert p.state.valid() and not p.state.fsync_failed()
