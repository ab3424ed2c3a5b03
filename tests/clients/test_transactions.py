"""The transactional Producer's API (#19): confluent-kafka's state errors and codes, fencing
by a second instance with the same transactional.id (another process), the coordinator's
__transaction_state records in Kafka's bytes, and, with the partition's markers, commit and
abort as read_committed / read_uncommitted consumers see them, the timeout abort and offsets
sent in a transaction. The crash and exactly-once suites are tests/crash/ (T)."""
import struct
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

import embedlog
from embedlog import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from embedlog.storage import _txn_coordinator as tc
from embedlog.storage._partition import Partition

needs_markers = pytest.mark.skipif(not hasattr(Partition, "append_marker"),
                                   reason="Partition.append_marker (storage side of #19) not there yet")


def _producer(path, tid="tx", **extra):
    return Producer({"bootstrap.servers": f"file://{path}", "transactional.id": tid, "linger.ms": 0, **extra})


def _code(excinfo):
    return excinfo.value.args[0].code()


def test_state_errors_are_confluent_kafkas(tmp_path):
    p = _producer(tmp_path)
    with pytest.raises(KafkaException) as e:
        p.produce("t", b"x")                   # before init_transactions
    assert _code(e) == KafkaError._STATE
    with pytest.raises(KafkaException) as e:
        p.begin_transaction()
    assert _code(e) == KafkaError._STATE
    p.init_transactions()
    with pytest.raises(KafkaException) as e:
        p.init_transactions()
    assert _code(e) == KafkaError._STATE
    with pytest.raises(KafkaException) as e:
        p.produce("t", b"x")                   # outside begin_transaction
    assert _code(e) == KafkaError._STATE
    with pytest.raises(KafkaException) as e:
        p.commit_transaction()
    assert _code(e) == KafkaError._STATE
    p.begin_transaction()
    with pytest.raises(KafkaException) as e:
        p.begin_transaction()
    assert _code(e) == KafkaError._STATE
    p.commit_transaction()                     # nothing produced: nothing to mark
    with pytest.raises(KafkaException) as e:
        p.commit_transaction()                 # twice
    assert _code(e) == KafkaError._STATE
    with pytest.raises(KafkaException) as e:
        p.abort_transaction()
    assert _code(e) == KafkaError._STATE
    p.close()


def test_api_without_transactional_id_is_not_configured(tmp_path):
    p = Producer({"bootstrap.servers": f"file://{tmp_path}"})
    with pytest.raises(KafkaException) as e:
        p.init_transactions()
    assert _code(e) == KafkaError._NOT_CONFIGURED
    p.produce("t", b"plain")                   # a plain producer is unchanged
    assert p.flush() == 0
    p.close()


def test_init_keeps_the_producer_id_and_bumps_the_epoch(tmp_path):
    ids = []
    for _ in range(3):
        p = _producer(tmp_path)
        p.init_transactions()
        ids.append((p._producer_id, p._epoch))
        p.close()
    assert len({pid for pid, _e in ids}) == 1
    assert [e for _p, e in ids] == [0, 1, 2]
    with embedlog.open(tmp_path) as log:
        c = tc.coordinator_for(log)
        c.refresh()
        m = c.get("tx")
        assert (m.producer_id, m.producer_epoch, m.status) == (ids[0][0], 2, tc.EMPTY)


def test_an_exhausted_epoch_takes_a_new_producer_id(tmp_path):
    with embedlog.open(tmp_path) as log:
        c = tc.coordinator_for(log)
        pid, _ = c.init_producer("tx", 60000)
        c._lock("tx", None)
        try:
            c._write(tc.TxnMetadata("tx", pid, tc.EPOCH_EXHAUSTED, 60000, tc.EMPTY, (), 0, -1), sync=True)
        finally:
            c._release("tx")
        pid2, epoch2 = c.init_producer("tx", 60000)
        assert pid2 != pid and epoch2 == 0


FENCE = textwrap.dedent("""
    import sys
    from embedlog import Producer
    p = Producer({"bootstrap.servers": "file://" + sys.argv[1], "transactional.id": "tx", "linger.ms": 0})
    p.init_transactions()
    print(p._producer_id, p._epoch)
    p.close()
""")


def test_a_second_instance_fences_the_first(tmp_path):
    p = _producer(tmp_path)
    p.init_transactions()
    p.begin_transaction()
    out = subprocess.run([sys.executable, "-c", FENCE, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert int(out[0]) == p._producer_id and int(out[1]) == p._epoch + 1
    reports = []
    p.produce("t", b"zombie", on_delivery=lambda err, msg: reports.append(err))
    p.flush()
    assert [r.code() for r in reports] == [KafkaError._FENCED]
    with pytest.raises(KafkaException) as e:
        p.commit_transaction()
    err = e.value.args[0]
    assert err.code() == KafkaError._FENCED and err.fatal()
    with pytest.raises(KafkaException) as e:
        p.begin_transaction()                  # fatal: every later call says so
    assert _code(e) == KafkaError._FENCED
    with embedlog.open(tmp_path) as log:
        assert log.topic("t").partition(0).high_watermark == 0      # nothing of the zombie written
    p.close()


def test_stale_group_metadata_requires_abort(tmp_path):
    p = _producer(tmp_path)
    p.init_transactions()
    p.begin_transaction()
    with pytest.raises(KafkaException) as e:
        p.send_offsets_to_transaction([TopicPartition("in", 0, 5)], None)
    assert _code(e) == KafkaError._INVALID_ARG
    md = {"group_id": "g", "member_id": "gone-member", "generation_id": 3}
    with pytest.raises(KafkaException) as e:
        p.send_offsets_to_transaction([TopicPartition("in", 0, 5)], md)
    err = e.value.args[0]
    assert err.code() == KafkaError.UNKNOWN_MEMBER_ID and err.txn_requires_abort()
    with pytest.raises(KafkaException) as e:
        p.commit_transaction()
    assert e.value.args[0].txn_requires_abort()
    p.abort_transaction()                      # nothing was added: no marker needed
    p.begin_transaction()
    p.commit_transaction()
    p.close()


@given(tid=st.text(min_size=1, max_size=20),
       parts=st.lists(st.tuples(st.text(min_size=1, max_size=10), st.integers(0, 2**31 - 1)), unique=True,
                      max_size=6),
       status=st.sampled_from([tc.ONGOING, tc.PREPARE_COMMIT, tc.PREPARE_ABORT, tc.COMPLETE_COMMIT]),
       epoch=st.integers(0, 32767), pid=st.integers(0, 2**63 - 1))
def test_transaction_log_records_round_trip(tid, parts, status, epoch, pid):
    m = tc.TxnMetadata(tid, pid, epoch, 60000, status, tuple(sorted(parts)), 1700000000000, 1699999999000)
    assert tc.decode_key(tc.encode_key(tid)) == tid
    assert tc.decode_value(tid, tc.encode_value(m)) == m


def test_transaction_log_value_is_kafkas_v0_layout():
    m = tc.TxnMetadata("x", 7, 3, 60000, tc.ONGOING, (("a", 1), ("a", 0), ("b", 2)), 11, 10)
    want = (struct.pack(">hqhib", 0, 7, 3, 60000, 1) + struct.pack(">i", 2)
            + struct.pack(">h", 1) + b"a" + struct.pack(">iii", 2, 0, 1)
            + struct.pack(">h", 1) + b"b" + struct.pack(">ii", 1, 2) + struct.pack(">qq", 11, 10))
    assert tc.encode_value(m) == want
    empty = tc.TxnMetadata("x", 7, 4, 60000, tc.EMPTY, (), 11, -1)
    assert tc.encode_value(empty)[17:21] == struct.pack(">i", -1)       # Empty: null partitions
    assert tc.encode_key("x") == b"\x00\x00\x00\x01x"


# ------------------------------------------------------------ with the partition's markers

def _read(path, topic, isolation):
    c = Consumer({"bootstrap.servers": f"file://{path}", "group.id": f"r-{isolation}",
                  "auto.offset.reset": "earliest", "isolation.level": isolation, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    while True:
        m = c.poll(5.0)
        if m is None or m.error() is not None:
            break
        out.append(m.value())
    c.close()
    return out


@needs_markers
def test_commit_and_abort_as_consumers_see_them(tmp_path):
    p = _producer(tmp_path)
    p.init_transactions()
    p.begin_transaction()
    p.produce("t", b"c1")
    p.produce("t", b"c2")
    p.commit_transaction()
    p.begin_transaction()
    purged = []
    p.produce("t", b"a1")
    p.flush()
    p.produce("t", b"a2", on_delivery=lambda err, msg: purged.append(err))
    p.abort_transaction()
    p.begin_transaction()
    p.produce("t", b"c3")
    p.commit_transaction()
    p.close()
    assert _read(tmp_path, "t", "read_committed") == [b"c1", b"c2", b"c3"]
    assert b"a1" in _read(tmp_path, "t", "read_uncommitted")
    assert all(e is None or e.code() == KafkaError._PURGE_QUEUE for e in purged)


@needs_markers
def test_a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced(tmp_path):
    p = _producer(tmp_path, **{"transaction.timeout.ms": 1000})
    p.init_transactions()
    p.begin_transaction()
    p.produce("t", b"late")
    p.flush()
    with embedlog.open(tmp_path) as log:
        start = tc.coordinator_for(log)
        start.refresh()
        t0 = start.get("tx").start_ms
        assert tc.expire_and_recover(log, now=t0 + 500) == 0
        assert tc.expire_and_recover(log, now=t0 + 1001) == 1
    with pytest.raises(KafkaException) as e:
        p.commit_transaction()
    assert e.value.args[0].code() == KafkaError._FENCED and e.value.args[0].fatal()
    assert _read(tmp_path, "t", "read_committed") == []
    p.close()


@needs_markers
def test_offsets_in_a_transaction_count_exactly_when_it_commits(tmp_path):
    conf = {"bootstrap.servers": f"file://{tmp_path}", "group.id": "g"}
    md = {"group_id": "g", "member_id": None, "generation_id": -1}
    p = _producer(tmp_path)
    p.init_transactions()
    admin = Consumer(conf)

    def committed():
        return admin.committed([TopicPartition("in", 0)])[0].offset

    p.begin_transaction()
    p.produce("out", b"x")
    p.send_offsets_to_transaction([TopicPartition("in", 0, 7)], md)
    assert committed() == embedlog.OFFSET_INVALID
    p.abort_transaction()
    assert committed() == embedlog.OFFSET_INVALID
    p.begin_transaction()
    p.produce("out", b"y")
    p.send_offsets_to_transaction([TopicPartition("in", 0, 9)], md)
    assert committed() == embedlog.OFFSET_INVALID
    p.commit_transaction()
    assert committed() == 9
    admin.close()
    p.close()


INTERLEAVE = textwrap.dedent("""
    import sys
    from embedlog import Producer
    path, tid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = Producer({"bootstrap.servers": "file://" + path, "transactional.id": tid, "linger.ms": 0})
    p.init_transactions()
    for i in range(n):
        p.begin_transaction()
        p.produce("t", b"%s-%d" % (tid.encode(), i), partition=0)
        if i % 3 == 2:
            p.abort_transaction()
        else:
            p.commit_transaction()
    p.close()
""")


@needs_markers
def test_two_processes_with_different_ids_interleave_on_one_partition(tmp_path):
    with embedlog.open(tmp_path) as log:
        log.create_topic("t", 1)
    procs = [subprocess.Popen([sys.executable, "-c", INTERLEAVE, str(tmp_path), tid, "12"]) for tid in ("a", "b")]
    assert [pr.wait(timeout=120) for pr in procs] == [0, 0]
    got = _read(tmp_path, "t", "read_committed")
    for tid in ("a", "b"):
        mine = [v for v in got if v.startswith(tid.encode() + b"-")]
        assert mine == [b"%s-%d" % (tid.encode(), i) for i in range(12) if i % 3 != 2]


@needs_markers
def test_readme_transactions_example_runs_as_written(tmp_path):
    """The README's block, byte for byte, run by a fresh interpreter in an empty directory."""
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Transactions (exactly-once)"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    (tmp_path / "example.py").write_text(code)
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "10"
    assert sorted(int(v) for v in _read(tmp_path / "data", "doubled", "read_committed")) == \
        [2 * i for i in range(10)]


@needs_markers
def test_a_send_to_several_partitions_adds_them_in_one_record(tmp_path):
    """AddPartitionsToTxn takes a list: a chunk of records for 3 new partitions is one
    durable Ongoing record in __transaction_state naming all 3, not one record each; the
    transaction still commits whole on every partition, and a produce_batch over 3
    partitions in the next transaction does the same."""
    with embedlog.open(tmp_path) as log:
        log.create_topic("t", partitions=3)
    p = _producer(tmp_path, "multi", **{"linger.ms": 60000})
    p.init_transactions()

    def statuses():
        with embedlog.open(tmp_path) as log:
            cols = log.topic(tc.TXN_TOPIC).partition(0).read_columns(0)
        return [tc.decode_value("multi", v) for v in cols.values]

    before = len(statuses())
    p.begin_transaction()
    for i in range(30):
        p.produce("t", b"v%d" % i, partition=i % 3)
    p.commit_transaction()
    new = statuses()[before:]
    assert [m.status for m in new] == [tc.ONGOING, tc.PREPARE_COMMIT, tc.COMPLETE_COMMIT]
    assert new[0].partitions == (("t", 0), ("t", 1), ("t", 2))

    before = before + len(new)
    p.begin_transaction()
    p.produce_batch("t", [b"b%d" % i for i in range(9)], keys=[b"k%d" % i for i in range(9)])
    p.commit_transaction()
    new = statuses()[before:]
    assert [m.status for m in new] == [tc.ONGOING, tc.PREPARE_COMMIT, tc.COMPLETE_COMMIT]
    assert len(new[0].partitions) == len({p for p in range(3)
                                           if _read_partition(tmp_path, p, "b")})
    p.close()
    assert sorted(_read_all(tmp_path)) == sorted([b"v%d" % i for i in range(30)] + [b"b%d" % i for i in range(9)])


def _read_partition(path, partition, prefix):
    with embedlog.open(path) as log:
        return [v for v in log.topic("t").partition(partition).read_columns(0).values
                if v is not None and v.startswith(prefix.encode())]


def _read_all(path):
    c = Consumer({"bootstrap.servers": f"file://{path}", "group.id": "all", "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    c.assign([TopicPartition("t", p, 0) for p in range(3)])
    out, eofs = [], 0
    while eofs < 3:
        m = c.poll(5.0)
        if m is None:
            break
        if m.error() is not None:
            eofs += 1
            continue
        out.append(m.value())
    c.close()
    return out
