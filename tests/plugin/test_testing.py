"""embedlog.testing: what passes, what fails, and what the failure says."""
import threading
import time

import pytest

import embedlog
from embedlog.storage._offsets import store_for
from embedlog.testing import assert_topic_contains, read_topic, topic_lag, wait_for_zero_lag


@pytest.fixture
def lg(tmp_path):
    with embedlog.open(tmp_path / "log") as log:
        yield log


@pytest.fixture
def two(lg):
    """Topic 't': partition 0 holds a1 a2 a3 (key a), partition 1 holds b1 b2 (key b)."""
    t = lg.create_topic("t", 2)
    t.append([b"a1", b"a2"], keys=[b"a", b"a"], partition=0)
    t.append([b"b1"], keys=[b"b"], partition=1)
    t.append([b"a3"], keys=[b"a"], partition=0)
    t.append([b"b2"], keys=[b"b"], partition=1)
    return lg


def fails(*fragments, **kw):
    class _Ctx:
        def __enter__(self):
            return self

        def __exit__(self, typ, e, tb):
            assert typ is AssertionError, f"expected an AssertionError, got {typ}"
            for f in fragments:
                assert f in str(e), (f, str(e))
            self.message = str(e)
            return True
    return _Ctx()


def test_order_is_per_partition(two):
    assert_topic_contains(two, "t", [b"a1", b"a2", b"a3"])
    assert_topic_contains(two, "t", [b"b1", b"a1", b"b2", b"a3"])        # partitions interleave freely
    assert_topic_contains(two, "t", ["a2", "b2"])                           # str is UTF-8; a subsequence
    with fails("#1 value=b'a1' is out of order: it is in partition 0 at offset 0, before #0 value=b'a2'",
               "the topic holds 5 record(s)", "partition 0: 3 record(s)", "offset 2: key=b'a' value=b'a3'"):
        assert_topic_contains(two, "t", [b"a2", b"a1"])
    with fails("#2 value=b'zz' is not in the topic"):
        assert_topic_contains(two, "t", [b"a1", b"b1", b"zz"])


def test_keys_partition_exact(two):
    assert_topic_contains(two, "t", [(b"a", b"a1"), ("b", "b2")])
    with fails("#0 (key=b'b', value=b'a1') is not in the topic"):
        assert_topic_contains(two, "t", [(b"b", b"a1")])
    assert_topic_contains(two, "t", [b"b1", b"b2"], partition=1, exact=True)
    with fails("#0 value=b'a1' is not in the topic", "topic 't' partition 1"):
        assert_topic_contains(two, "t", [b"a1"], partition=1)
    with fails("unexpected record in partition 0 at offset 2: key=b'a' value=b'a3'"):
        assert_topic_contains(two, "t", [b"a1", b"a2", b"b1", b"b2"], exact=True)
    assert_topic_contains(two, "t", [b"a1", b"a2", b"a3", b"b1", b"b2"], exact=True)


def test_by_key(two):
    assert_topic_contains(two, "t", {b"a": [b"a1", b"a3"], "b": ["b2"]})
    with fails("key b'a': #0 (key=b'a', value=b'b1') is not in the topic"):
        assert_topic_contains(two, "t", {b"a": [b"b1"]})
    with fails("key b'a': #1 (key=b'a', value=b'a1') is out of order"):
        assert_topic_contains(two, "t", {b"a": [b"a2", b"a1"]})
    with fails("unexpected record in partition 1 at offset 0"):
        assert_topic_contains(two, "t", {b"a": [b"a1", b"a2", b"a3"]}, exact=True)


def test_tombstones_and_binary(lg):
    lg.create_topic("c", 1).append([None, b"\xff"], keys=[b"k", b"k"])
    assert_topic_contains(lg, "c", [(b"k", None), (b"k", b"\xff")], exact=True)
    with fails("#1 value=None is in the topic fewer times than the list has it"):
        assert_topic_contains(lg, "c", [None, None])
    with fails("#0 value=b'k' is not in the topic"):
        assert_topic_contains(lg, "c", [b"k"])                               # a key is not a value


def test_timeout_waits_for_records_produced_later(lg, tmp_path):
    t = lg.create_topic("late", 1)
    with fails("#0 value=b'x' is not in the topic"):
        assert_topic_contains(lg, "late", [b"x"])
    threading.Timer(0.2, lambda: t.append([b"x"])).start()
    started = time.monotonic()
    assert_topic_contains(str(tmp_path / "log"), "late", [b"x"], timeout=10)
    assert time.monotonic() - started < 9
    with fails("after 0.1s", "unknown topic 'nope'"):
        assert_topic_contains(lg, "nope", [b"x"], timeout=0.1)


def test_log_given_as_path_or_config(two, tmp_path):
    path = tmp_path / "log"
    assert_topic_contains(path, "t", [b"a1"])
    assert_topic_contains({"bootstrap.servers": f"file://{path}"}, "t", [b"b1"])
    assert_topic_contains({"embedlog.path": str(path)}, "t", [b"b2"])
    with fails("no embedlog directory at"):
        assert_topic_contains(tmp_path / "elsewhere", "t", [b"a1"])
    assert not (tmp_path / "elsewhere").exists()
    assert {p: [r.value for r in recs] for p, recs in read_topic(path, "t").items()} == {
        0: [b"a1", b"a2", b"a3"], 1: [b"b1", b"b2"]}


def test_wait_for_zero_lag(two):
    store_for(two).commit("g", [("t", 0, 3, ""), ("t", 1, 1, "")])
    with fails("consumer group 'g' still lags by 1 record(s) after 0.1s:", "LAG") as ctx:
        wait_for_zero_lag(two, "g", timeout=0.1)
    lagging = [line.split() for line in ctx.message.splitlines()[2:]]
    assert lagging == [["t", "1", "1", "2", "1"]]                          # only the lagging partition
    threading.Timer(0.2, lambda: store_for(two).commit("g", [("t", 1, 2, "")])).start()
    rows = wait_for_zero_lag(two, "g", timeout=10)
    assert [(r["partition"], r["committed"], r["lag"]) for r in rows] == [(0, 3, 0), (1, 2, 0)]
    assert topic_lag(two, "g") == rows


def test_wait_for_zero_lag_without_commits(two):
    with fails("committed no offsets within 0.05s", "topics=[...]"):
        wait_for_zero_lag(two, "nobody", timeout=0.05)
    with fails("still lags by 5 record(s)", "t", "-"):
        wait_for_zero_lag(two, "nobody", topics="t", timeout=0.05)     # no commit: the whole log lags
    two.create_topic("empty", 2)
    assert [r["lag"] for r in wait_for_zero_lag(two, "nobody", topics=["empty"], timeout=0.05)] == [0, 0]
