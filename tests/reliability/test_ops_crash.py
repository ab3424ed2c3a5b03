"""The administrative operations under the crash-point, power-loss and fail-at-call-N loops
(issue #18): group membership (join, rebalance, leave, commits between), delete_topic,
add_partitions, alter_topic_config, delete_records, mirror copies and promotion
(scenarios and their invariants: ops_workers.py). After every kill, power-loss state or
injected fault and a reopen: the log passes verify, the operation is fully done or not at
all, and nothing acknowledged is lost.

Default: one seed of each operation in each loop (about 40 s). Soak (`pytest -m soak
tests/reliability` or EMBEDLOG_SOAK=1): EMBEDLOG_SOAK_FACTOR (default 100) times the seeds.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile

import pytest

from embedlog import StorageError

from . import crashpoints as cp
from . import ops_workers as ow
from . import powerloss as pl
from .iofault import Counter, FailAt, fds_under, installed
from .test_io_faults import FAULTS, fault_loop

SOAK = int(os.environ.get("EMBEDLOG_SOAK_FACTOR", "100"))

OPS = {
    "group": ow.GroupScenario,
    "delete-topic": ow.DeleteTopicScenario,
    "add-partitions": ow.AddPartitionsScenario,
    "alter-config": ow.AlterConfigScenario,
    "delete-records": ow.DeleteRecordsScenario,
    "mirror-copy": ow.MirrorCopyScenario,
    "promote": ow.PromoteScenario,
}
# power-loss states tried at each point of the trace (default run, soak)
PER_POINT = (2, 10)


def _seeds(soak):
    return [1000 * k for k in range(SOAK)] if soak else [0]


def _crash_points(kind, tmp_path, soak):
    stats = cp.Stats()
    for seed in _seeds(soak):
        stats.add(cp.run_scenario(OPS[kind](seed), seed=seed, keep_failures=str(tmp_path)))
    assert not stats.anomalies and not stats.unfinished, stats.report()
    print(f"{kind}: {stats.points} crash points, 0 anomalies")
    assert stats.points >= 5 * len(_seeds(soak))
    return stats.points


def _power_loss(kind, tmp_path, soak):
    states = 0
    for seed in _seeds(soak):
        st = pl.run_power_loss(OPS[kind](seed), seed=seed, per_point=PER_POINT[soak], keep_failures=str(tmp_path))
        assert not st.anomalies, st.report()
        states += st.states
    print(f"{kind}: {states} power-loss states, 0 anomalies")
    assert states >= 5 * len(_seeds(soak))
    return states


def _faults(kind, soak):
    total = 0
    for seed in _seeds(soak):
        for fault, (err, short) in FAULTS.items():
            for persistent in ((False, True) if soak else (False,)):
                if not soak and fault != "EIO":      # the default run: EIO, transient
                    continue
                root = tempfile.mkdtemp(prefix="el-opsfault-", dir=cp.work_root())
                try:
                    res = fault_loop(ow.FaultWorkload(OPS[kind](seed)), err, short, persistent, root)
                finally:
                    shutil.rmtree(root, ignore_errors=True)
                assert res["n"] < 1000 and res["faults"] > 0
                total += res["faults"]
    print(f"{kind}: {total} faults injected, 0 failures")
    return total


@pytest.mark.parametrize("kind", list(OPS))
def test_ops_crash_points(kind, tmp_path):
    _crash_points(kind, tmp_path, False)


@pytest.mark.parametrize("kind", list(OPS))
def test_ops_power_loss(kind, tmp_path):
    _power_loss(kind, tmp_path, False)





@pytest.mark.parametrize("kind", list(OPS))
def test_ops_fail_at_every_call(kind):
    _faults(kind, False)


@pytest.mark.soak
@pytest.mark.parametrize("kind", list(OPS))
def test_ops_crash_points_soak(kind, tmp_path):
    _crash_points(kind, tmp_path, True)


@pytest.mark.soak
@pytest.mark.parametrize("kind", list(OPS))
def test_ops_power_loss_soak(kind, tmp_path):
    _power_loss(kind, tmp_path, True)


@pytest.mark.soak
@pytest.mark.parametrize("kind", list(OPS))
def test_ops_fail_at_every_call_soak(kind):
    _faults(kind, True)


# ------------------------------------------------------------------ a failed folder fsync after a roll

@pytest.fixture
def log_dir():
    d = tempfile.mkdtemp(prefix="el-opsfault-", dir=cp.work_root())
    yield os.path.join(d, "log")
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("sync", [False, True])
def test_a_failed_folder_fsync_after_a_roll_is_final(log_dir, sync):
    """The roll's fsync of the partition folder fails: the kernel may have lost the new
    segment's name and will not say so again, so the handle goes FAILED as after a failed
    fdatasync: the append raises StorageError naming the folder, every later write raises
    (and touches no file), reads go on, and a reopen recovers and appends again."""
    with cp.open_log(log_dir) as log:
        log.create_topic("t", config={"segment.bytes": 200})
        p = log.partition("t", 0)
        values = []
        for i in range(3):
            values.append(b"%03d" % i + bytes(120))
            p.append_records([values[-1]], sync=True)
        hook = FailAt(1, errno.EIO, only=("fsync_dir",), path_filter="t-0")
        with installed(hook), pytest.raises(StorageError) as e:
            for i in range(3, 8):               # the next append that rolls
                values.append(b"%03d" % i + bytes(120))
                p.append_records([values[-1]], sync=sync)
        assert hook.failed and e.value.errno == errno.EIO and "t-0" in str(e.value.path)
        values.pop()                                   # the failing append was not acknowledged
        with installed(Counter()) as calls:
            for call in (lambda: p.append_records([b"refused"]), lambda: p.append_records([b"refused"], sync=True),
                         p.flush):
                with pytest.raises(StorageError, match="FAILED"):
                    call()
        assert calls.calls == []
        assert [r.value for r in p.read(0)][:len(values)] == values
    assert not fds_under(log_dir)
    with cp.open_log(log_dir) as log:
        p = log.partition("t", 0)
        got = [v for _o, _k, v in cp.read_all(p)]
        assert got[:len(values)] == values and len(got) <= len(values) + 1
        r = p.append_records([b"after reopen"], sync=True)
        assert [v for _o, _k, v in cp.read_all(p)][-1] == b"after reopen" and r.base_offset == len(got)
    ow.verified(log_dir)


# ------------------------------------------------------------------ the loops catch bugs

def test_harness_catches_a_delete_that_removes_data_before_its_commit_point(monkeypatch):
    """delete_topic removing the partitions before unlinking the topic file: a kill in
    between leaves a listed topic that lost records, which the delete-topic check reports."""
    from embedlog.storage import _io
    from embedlog.storage._log import Log

    real = Log.delete_topic

    def data_first(self, name):
        for p in range(self.topic(name).num_partitions):
            _io.rmtree(os.path.join(self.path, f"{name}-{p}"))
        real(self, name)
    monkeypatch.setattr(Log, "delete_topic", data_first)
    stats = cp.run_scenario(ow.DeleteTopicScenario(0), seed=0)
    assert any("lost records" in a["anomaly"] for a in stats.anomalies), stats.report()
