"""Exactly-once end to end (issue #19): a consume-transform-produce group of 3 worker
processes (eos_worker.py) reads topic A (3 partitions, 3,000 records, read_committed)
and writes one output per input record to topic B, each batch in a transaction with its
input offsets (send_offsets_to_transaction). Worker 0 is SIGKILLed again and again (at
random moments: mid-produce, mid-commit, mid-rebalance) and restarted with the same
transactional.id. At the end B, read read_committed by a Consumer, holds every input
record's output exactly once: none lost, none twice. The counts are printed.

And kafka-python (another implementation of Kafka's record format) decodes what the
transactional producer wrote: the data batches are transactional, the markers are
control batches carrying COMMIT or ABORT.
"""
from __future__ import annotations

import glob
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections import Counter

import pytest

import embedlog
from embedlog import TopicPartition
from embedlog.storage._partition import Partition

pytestmark = pytest.mark.skipif(not hasattr(Partition, "append_marker"),
                                reason="the storage half of transactions (Partition.append_marker) is not there yet")

WORKER = os.path.join(os.path.dirname(__file__), "eos_worker.py")
N_IN, P = 3000, 3


def _spawn(d, wid):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen([sys.executable, WORKER, d, str(wid)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _committed_outputs(d) -> list[bytes]:
    """B's values as a read_committed Consumer reads them (to the end: every partition's EOF)."""
    c = embedlog.Consumer({"bootstrap.servers": f"file://{d}", "group.id": "check", "isolation.level":
                           "read_committed", "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition("B", p, 0) for p in range(P)])
        out, eof = [], set()
        deadline = time.monotonic() + 60
        while len(eof) < P and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    out.append(m.value())
                elif m.error().code() == embedlog.KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
        assert len(eof) == P, f"B: no EOF on {set(range(P)) - eof} in 60 s"
        return out
    finally:
        c.close()


def _b_count(d) -> int:
    with embedlog.open(d, retention_check_interval_ms=0) as log:
        return sum(log.partition("B", p).last_stable_offset() for p in range(P))


def test_eos_consume_transform_produce_with_a_worker_killed_again_and_again(tmp_path):
    d = str(tmp_path / "log")
    with embedlog.open(d) as log:
        log.create_topic("A", partitions=P)
        log.create_topic("B", partitions=P)
        for p in range(P):
            part = log.partition("A", p)
            for k in range(0, N_IN // P, 100):
                part.append_records([b"%d-%d" % (p, k + j) for j in range(100)], sync=True)
    inputs = Counter(b"out:%d-%d" % (p, k) for p in range(P) for k in range(N_IN // P))
    rng = random.Random(19)
    workers = {w: _spawn(d, w) for w in range(3)}
    kills = restarts = fenced_exits = 0
    try:
        deadline = time.monotonic() + 90
        next_kill = time.monotonic() + rng.uniform(1.0, 2.0)
        while time.monotonic() < deadline:
            time.sleep(0.1)
            for w, proc in list(workers.items()):
                code = proc.poll()
                if code is not None and code != -signal.SIGKILL:
                    assert code == 2, f"worker {w} exited {code}:\n{proc.stderr.read().decode()[-3000:]}"
                    fenced_exits += 1
                    workers[w] = _spawn(d, w)
                    restarts += 1
            if kills < 8 and time.monotonic() >= next_kill:
                workers[0].kill()
                workers[0].wait()
                kills += 1
                workers[0] = _spawn(d, 0)                # the same transactional.id: eos-0
                restarts += 1
                next_kill = time.monotonic() + rng.uniform(0.4, 1.5)
            if kills >= 8 and _b_count(d) >= N_IN:
                break
        open(os.path.join(d, "stop"), "w").close()
        for w, proc in workers.items():
            _out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, f"worker {w} exited {proc.returncode}:\n{err.decode()[-3000:]}"
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    got = Counter(_committed_outputs(d))
    lost = inputs - got
    dup = {v: n for v, n in got.items() if n > 1}
    extra = set(got) - set(inputs)
    with embedlog.open(d) as log:
        raw = sum(log.partition("B", p).high_watermark for p in range(P))
    print(f"EOS: {N_IN} inputs, {sum(got.values())} outputs read_committed, {len(lost)} lost, "
          f"{len(dup)} duplicated, {kills} SIGKILLs, {restarts} restarts ({fenced_exits} fenced exits), "
          f"B holds {raw} offsets incl. aborted records and markers")
    assert not extra, f"outputs of no input: {sorted(extra)[:5]}"
    assert not lost, f"{len(lost)} inputs have no output in B: {sorted(lost)[:5]}"
    assert not dup, f"{len(dup)} inputs have their output twice or more in B: {sorted(dup.items())[:5]}"
    assert kills == 8


# ------------------------------------------------------------------ kafka-python decodes the bytes

def test_kafka_python_decodes_transactional_batches_and_markers(tmp_path):
    from kafka.record.default_records import DefaultRecordBatch
    d = str(tmp_path / "log")
    with embedlog.open(d) as log:
        log.create_topic("t")
    p = embedlog.Producer({"bootstrap.servers": f"file://{d}", "transactional.id": "decode"})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce("t", value=b"kept-1", key=b"k")
    p.produce("t", value=b"kept-2")
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce("t", value=b"dropped")
    assert p.flush(30) == 0                 # written, so the abort has something to hide
    p.abort_transaction(30)
    batches = []
    for path in sorted(glob.glob(os.path.join(d, "t-0", "*.log"))):
        with open(path, "rb") as f:
            buf = f.read()
        pos = 0
        while pos + 12 <= len(buf):
            (size,) = struct.unpack_from(">i", buf, pos + 8)
            b = DefaultRecordBatch(buf[pos:pos + 12 + size])
            assert b.validate_crc(), f"{path}@{pos}: kafka-python says the CRC is wrong"
            batches.append(b)
            pos += 12 + size
    kinds = []
    for b in batches:
        recs = list(b)
        if b.is_control_batch:
            assert b.is_transactional and len(recs) == 1 and b.base_sequence == -1
            (version, ctype) = struct.unpack(">hh", recs[0].key)
            assert version == 0
            kinds.append(("marker", {0: "ABORT", 1: "COMMIT"}[ctype]))
        else:
            assert b.is_transactional and b.producer_id >= 0 and b.producer_epoch >= 0
            kinds.append(("data", [r.value for r in recs]))
    data = [v for k, vs in kinds if k == "data" for v in vs]
    assert data == [b"kept-1", b"kept-2", b"dropped"], kinds
    assert [v for k, v in kinds if k == "marker"] == ["COMMIT", "ABORT"], kinds
    assert kinds[-1] == ("marker", "ABORT") and len({b.producer_id for b in batches}) == 1
