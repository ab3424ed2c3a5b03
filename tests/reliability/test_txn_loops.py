"""Transaction commit and abort under the crash-point and power-loss loops (issue #19;
scenarios and invariants: txn_workers.py): a kill at every I/O call of a transaction
(init's state already taken, then produce to two partitions, offsets, commit or abort),
and power-loss states at every point of its trace; after each, the transaction is whole
or absent (absent for an abort, present once commit returned), its offsets with it.

Default: one seed of each (power loss: 1 state per point). Soak: EMBEDLOG_SOAK_FACTOR
(default 100) seeds, 10 states per point.
"""
from __future__ import annotations

import os

import pytest

from embedlog.storage._partition import Partition

from . import crashpoints as cp
from . import powerloss as pl
from . import txn_workers as tw

pytestmark = pytest.mark.skipif(not hasattr(Partition, "append_marker"),
                                reason="the storage half of transactions (Partition.append_marker) is not there yet")

SOAK = int(os.environ.get("EMBEDLOG_SOAK_FACTOR", "100"))
OPS = {"commit": tw.TxnCommitScenario, "abort": tw.TxnAbortScenario}


def _seeds(soak):
    return list(range(SOAK)) if soak else [0]


def _crash_points(kind, tmp_path, soak):
    stats = cp.Stats()
    for seed in _seeds(soak):
        stats.add(cp.run_scenario(OPS[kind](seed), seed=seed, keep_failures=str(tmp_path)))
    assert not stats.anomalies and not stats.unfinished, stats.report()
    print(f"transaction {kind}: {stats.points} crash points, 0 anomalies")
    assert stats.points >= 10 * len(_seeds(soak))


def _power_loss(kind, tmp_path, soak):
    states = 0
    for seed in _seeds(soak):
        st = pl.run_power_loss(OPS[kind](seed), seed=seed, per_point=10 if soak else 1,
                               keep_failures=str(tmp_path))
        assert not st.anomalies, st.report()
        states += st.states
    print(f"transaction {kind}: {states} power-loss states, 0 anomalies")
    assert states >= 10 * len(_seeds(soak))


@pytest.mark.parametrize("kind", list(OPS))
def test_txn_crash_points(kind, tmp_path):
    _crash_points(kind, tmp_path, False)


@pytest.mark.parametrize("kind", list(OPS))
def test_txn_power_loss(kind, tmp_path):
    _power_loss(kind, tmp_path, False)


@pytest.mark.soak
@pytest.mark.parametrize("kind", list(OPS))
def test_txn_crash_points_soak(kind, tmp_path):
    _crash_points(kind, tmp_path, True)


@pytest.mark.soak
@pytest.mark.parametrize("kind", list(OPS))
def test_txn_power_loss_soak(kind, tmp_path):
    _power_loss(kind, tmp_path, True)
