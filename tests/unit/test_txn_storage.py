"""Storage side of transactions (#19): markers, open transactions, the last stable offset,
.txnindex and read_committed fetches, on real files."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from embedlog import Log
from embedlog.storage import _txnindex
from embedlog.storage._errors import CorruptRecordError, InvalidProducerEpochError
from embedlog.storage._records import encode_batch


def txn(part, pid, epoch, seq, values):
    return part.append(encode_batch(values, producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                                    transactional=True))


def test_markers_open_transactions_lso_and_read_committed(tmp_path):
    log = Log(tmp_path)
    log.create_topic("t", 1)
    p = log.partition("t", 0)
    p.append_records([b"plain0"])
    a = txn(p, 7, 0, 0, [b"a1", b"a2"])
    txn(p, 8, 0, 0, [b"b1"])
    p.append_records([b"plain1"])
    assert p.open_transactions() == {7: a.base_offset, 8: a.last_offset + 1}
    assert p.last_stable_offset() == a.base_offset < p.high_watermark
    cols, nxt = p.fetch(0, read_committed=True)
    assert cols.values == [b"plain0"] and nxt == 1
    m = p.append_marker(7, 0, commit=False)
    assert p.open_transactions() == {8: 3}
    assert p.last_stable_offset() == 3
    assert p.aborted_transactions(0, p.high_watermark) == [(7, 1)]
    p.append_marker(8, 0, commit=True)
    assert p.open_transactions() == {} and p.last_stable_offset() == p.high_watermark
    cols, nxt = p.fetch(0, read_committed=True)
    assert cols.values == [b"plain0", b"b1", b"plain1"] and nxt == p.high_watermark
    cols, _ = p.fetch(0)
    assert cols.values == [b"plain0", b"a1", b"a2", b"b1", b"plain1"]
    entries = _txnindex.read_entries(_txnindex.path_for(p.path, 0))
    assert entries == [(7, 1, m.base_offset, 3)]
    with open(_txnindex.path_for(p.path, 0), "rb") as f:
        assert len(f.read()) == 34
    p.append_marker(8, 1, commit=False)                 # a newer epoch: known from now on
    end = p.log_end_offset
    with pytest.raises(InvalidProducerEpochError):
        p.append_marker(8, 0, commit=True)
    assert p.log_end_offset == end                      # nothing written
    with pytest.raises(CorruptRecordError):
        p.append(bytes(p.read_raw(m.base_offset)))      # clients may not append markers
    log.close()


def test_kafka_python_decodes_the_marker(tmp_path):
    from kafka.record.default_records import DefaultRecordBatch
    log = Log(tmp_path)
    log.create_topic("t", 1)
    p = log.partition("t", 0)
    txn(p, 5, 3, 0, [b"x"])
    m = p.append_marker(5, 3, commit=True, coordinator_epoch=9)
    batch = DefaultRecordBatch(p.read_raw(m.base_offset))
    assert batch.is_control_batch and batch.is_transactional and batch.producer_id == 5
    assert batch.validate_crc()
    (rec,) = list(batch)
    assert rec.key == b"\x00\x00\x00\x01" and rec.value == b"\x00\x00\x00\x00\x00\x09"
    log.close()


def test_kill9_mid_transaction_then_reopen(tmp_path):
    code = textwrap.dedent(f"""
        import os, sys
        from embedlog import Log
        from embedlog.storage._records import encode_batch
        log = Log({str(tmp_path)!r})
        log.create_topic("t", 1, config={{"segment.bytes": 300}})
        p = log.partition("t", 0)
        for i in range(5):
            p.append_records([b"p%d" % i])
        p.append(encode_batch([b"t0"], producer_id=3, producer_epoch=0, base_sequence=0, transactional=True))
        for i in range(10):
            p.append_records([b"q%d" % i * 20])
        p.append(encode_batch([b"u0"], producer_id=4, producer_epoch=0, base_sequence=0, transactional=True))
        p.append_marker(4, 0, False)
        print("ready", flush=True)
        os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and "ready" in proc.stdout, proc.stderr
    log = Log(tmp_path)
    p = log.partition("t", 0)
    assert len(os.listdir(p.path)) > 4                   # several segments: the transaction spans them
    assert p.open_transactions() == {3: 5}
    assert p.last_stable_offset() == 5
    p.state.invalidate()                                  # as after a reboot: rebuilt from the files
    assert p.last_stable_offset() == 5 and p.open_transactions() == {3: 5}
    assert p.aborted_transactions(0, p.high_watermark) == [(4, 16)]
    p.append_marker(3, 0, True)
    cols, _ = p.fetch(0, read_committed=True, max_bytes=1 << 20)
    got = []
    off = 0
    while off < p.high_watermark:
        cols, off = p.fetch(off, read_committed=True)
        got += cols.values
    assert b"t0" in got and b"u0" not in got and len(got) == 16
    log.close()


def test_the_cleaner_never_cleans_at_or_past_the_lso(tmp_path):
    log = Log(tmp_path)
    log.create_topic("c", 1, config={"cleanup.policy": "compact", "segment.bytes": 200,
                                     "min.cleanable.dirty.ratio": 0.01})
    p = log.partition("c", 0)
    open_at = txn(p, 9, 0, 0, [b"open"]).base_offset
    for i in range(40):
        p.append_records([b"v%d" % i], keys=[b"k"])      # every one supersedes the last
    p.compact()
    cols, _ = p.fetch(open_at + 1, max_bytes=1 << 20)
    assert cols.offsets[0] == open_at + 1                # nothing past the LSO was cleaned
    assert p.last_stable_offset() == open_at
    p.append_marker(9, 0, True)
    p.compact()
    offsets = []
    off = 0
    while off < p.high_watermark:
        cols, off = p.fetch(off)
        offsets += cols.offsets
    assert open_at + 1 not in offsets                    # cleaned once the transaction ended
    log.close()


def test_mirrors_copy_the_txnindex(tmp_path):
    import filecmp
    log = Log(str(tmp_path / "p"), retention_check_interval_ms=0)
    log.add_replica(str(tmp_path / "m"))
    log.create_topic("t", 1, replication_factor=2, config={"segment.bytes": 300})
    p = log.partition("t", 0)
    txn(p, 2, 0, 0, [b"x" * 50])
    p.append_marker(2, 0, False)
    for i in range(10):
        p.append_records([b"y" * 60], sync=True)          # rolls: the marker's segment is closed
    name = os.path.basename(_txnindex.path_for(p.path, 0))
    mirror = os.path.join(str(tmp_path / "m"), "t-0", name)
    assert os.path.exists(mirror) and filecmp.cmp(_txnindex.path_for(p.path, 0), mirror, shallow=False)
    log.close()


def test_consumer_lag_counts_against_the_lso_for_read_committed(tmp_path):
    from embedlog.storage._offsets import consumer_lag, store_for
    log = Log(tmp_path)
    log.create_topic("t", 1)
    p = log.partition("t", 0)
    p.append_records([b"a", b"b"])
    txn(p, 4, 0, 0, [b"c", b"d", b"e"])
    store_for(log).commit("g", [("t", 0, 1, "")])
    rows = {r["partition"]: r for r in consumer_lag(log, "g", read_committed=True)}
    plain = {r["partition"]: r for r in consumer_lag(log, "g")}
    assert rows[0]["log_end_offset"] == 2 and rows[0]["lag"] == 1
    assert plain[0]["log_end_offset"] == 5 and plain[0]["lag"] == 4
    assert p.last_stable_offset() == 2
    log.close()


def test_compaction_keeps_every_marker(tmp_path):
    """Markers share their 4-byte key (the type): a cleaner that deduplicated them as record
    keys would leave committed transactions without their COMMIT (offsets in
    __consumer_offsets would stay pending) and aborted ones without their ABORT."""
    from embedlog.storage._records import ATTR_CONTROL, iter_batches
    log = Log(tmp_path)
    log.create_topic("c", 1, config={"cleanup.policy": "compact", "segment.bytes": 300,
                                     "min.cleanable.dirty.ratio": 0.01})
    p = log.partition("c", 0)
    markers = []
    for i in range(12):
        txn(p, 5, 0, i, [b"v%d" % i])
        markers.append(p.append_marker(5, 0, commit=i % 3 != 0).base_offset)
    for i in range(20):
        p.append_records([b"x%d" % i], keys=[b"k"])
    stats = p.compact()
    assert stats is not None
    kept = []
    for name in sorted(os.listdir(p.path)):
        if name.endswith(".log"):
            with open(os.path.join(p.path, name), "rb") as f:
                data = f.read()
            kept += [h.base_offset for _pos, h in iter_batches(data) if h.attributes & ATTR_CONTROL]
    assert kept == markers
    cols, _ = p.fetch(0, max_bytes=1 << 20, read_committed=True)
    assert [v for v in cols.values if v.startswith(b"v")] == [b"v%d" % i for i in range(12) if i % 3]
    log.close()
