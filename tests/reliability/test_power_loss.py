"""Simulated power loss (tests/reliability/powerloss.py): each workload runs once with the
recorder installed in the I/O table; at every point of its trace, random states a power
loss could leave (unsynced writes dropped, torn, partly kept or zeroed; folder operations
since the folder's last fsync reverted) are written out, opened with embedlog after a
"reboot" (partition.state invalidated, recovery runs) and checked: everything acknowledged
durably (sync=True / acks=all, flush(), a returned commit, create_topic, maintain) is
there, the log is a gap-free prefix of what was written, no read returns a corrupt or
half-written record, and the log takes appends again.

Default: about 21,500 distinct states. Soak (`pytest -m soak tests/reliability` or
EMBEDLOG_SOAK=1): the *_soak tests, 100x the seeds (about 2 million states).
"""
from __future__ import annotations

import os

import pytest

from . import crashpoints as cp
from . import powerloss as pl

SOAK = int(os.environ.get("EMBEDLOG_SOAK_FACTOR", "100"))   # soak runs this many times the seeds

# kind -> (scenario for a seed, seeds, random states tried at each point of the trace)
KINDS = {
    "append": (lambda s: pl.PowerAppendScenario(s, segment_bytes=2048, batches=20, sync_every=4, flush_every=7),
               [0, 1, 2, 3], 60),
    "append-rolls": (lambda s: pl.PowerAppendScenario(s, segment_bytes=300, batches=14), [0, 1], 40),
    "commit": (lambda s: cp.CommitScenario(s), [0, 1, 2], 40),
    "create-topic": (lambda s: cp.CreateTopicScenario(s), [0, 1, 2], 40),
    "retention-bytes": (lambda s: cp.RetentionScenario(s, mode="bytes"), [0, 1], 40),
    "retention-ms": (lambda s: cp.RetentionScenario(s, mode="ms"), [0, 1], 40),
    "compaction": (lambda s: cp.CompactionScenario(s, segment_bytes=(500, 300)[s % 2]), [0, 1, 2], 40),
}
MIN_STATES = {"append": 12500, "append-rolls": 1400, "commit": 280, "create-topic": 850, "retention-bytes": 950,
              "retention-ms": 1400, "compaction": 2700}


COUNTED: dict[str, int] = {}      # distinct states of each default test, for the total


def _seeds(kind, soak=False):
    seeds = KINDS[kind][1]
    if soak:
        return [s + 1000 * k for k in range(SOAK) for s in seeds]
    return seeds


@pytest.mark.parametrize("kind", list(KINDS))
def test_power_loss_at_every_point(kind, tmp_path, record_property):
    _power_loss(kind, tmp_path, record_property, False)


@pytest.mark.soak
@pytest.mark.parametrize("kind", list(KINDS))
def test_power_loss_at_every_point_soak(kind, tmp_path, record_property):
    _power_loss(kind, tmp_path, record_property, True)


def _power_loss(kind, tmp_path, record_property, soak):
    make, _seeds_default, per_point = KINDS[kind]
    states = points = 0
    for seed in _seeds(kind, soak):
        st = pl.run_power_loss(make(seed), seed=seed, per_point=per_point, keep_failures=str(tmp_path))
        states += st.states
        points += st.points
        assert not st.anomalies, st.report()
    record_property("power_loss_states", states)
    print(f"{kind}: {states} distinct crash states at {points} points, 0 anomalies")
    if not soak:
        COUNTED[kind] = states
    assert states >= MIN_STATES[kind] * (SOAK if soak else 1) / 2


def test_default_run_covers_at_least_20000_states():
    """The figure the issue asks for, counted by the tests above (when they all ran)."""
    if len(COUNTED) < len(KINDS):
        pytest.skip("only part of the power-loss tests ran")
    print(f"power-loss states in all: {sum(COUNTED.values())}")
    assert sum(COUNTED.values()) >= 20000


# ------------------------------------------------------------------ the simulator catches bugs

def test_simulator_catches_an_acknowledgement_without_fdatasync(monkeypatch):
    """sync=True that returns without fdatasync loses acknowledged batches in some state."""
    from embedlog.storage._partition import Partition
    monkeypatch.setattr(Partition, "_fsync", lambda self, fd, path: None)
    st = pl.run_power_loss(pl.PowerAppendScenario(0, batches=8), seed=0, per_point=10, workers=1)
    assert st.anomalies, "lost acknowledged writes went unnoticed"


def test_simulator_catches_a_rename_of_an_unsynced_file(monkeypatch):
    """write_atomic without its fsync before the rename can leave an empty topic file."""
    import os

    from embedlog.storage import _io

    def no_fsync_write_atomic(path, data):
        tmp = os.path.join(os.path.dirname(path), f".{os.getpid()}.tmp")
        fd = _io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _io.write(fd, data)
        finally:
            os.close(fd)
        _io.replace(tmp, path)
        _io.fsync_dir(os.path.dirname(path))
    monkeypatch.setattr("embedlog.storage._log.write_atomic", no_fsync_write_atomic)
    st = pl.run_power_loss(cp.CreateTopicScenario(0), seed=0, per_point=10, workers=1)
    assert st.anomalies, "a renamed unsynced file went unnoticed"


def test_model_keeps_synced_data_and_can_revert_unsynced_names(tmp_path):
    """The model itself: fsync'd bytes survive every state; an unsynced create can vanish."""
    import os
    import random

    from embedlog.storage import _io
    root = tmp_path / "r"
    root.mkdir()
    rec = pl.Recorder(root)
    rec.start()
    try:
        fd = _io.open(str(root / "a"), os.O_RDWR | os.O_CREAT, 0o644)
        _io.pwrite_all(fd, b"synced", 0)
        _io.fdatasync(fd)
        _io.fsync_dir(str(root))
        _io.pwrite_all(fd, b"-unsynced", 6)
        os.close(fd)
        fd = _io.open(str(root / "b"), os.O_RDWR | os.O_CREAT, 0o644)
        _io.pwrite_all(fd, b"new", 0)
        _io.fdatasync(fd)
        os.close(fd)
    finally:
        _io.uninstall()
    model = None
    for _k, model, _marks in pl.replay(rec.snapshot, rec.trace):
        pass
    seen_a, seen_b = set(), set()
    for i in range(200):
        state = model.crash_state(random.Random(i))
        assert state["a"].startswith(b"synced")
        seen_a.add(state["a"])
        seen_b.add(state.get("b"))
    assert b"synced" in seen_a and b"synced-unsynced" in seen_a
    assert None in seen_b and b"new" in seen_b      # its name was never fsync'd in the folder
