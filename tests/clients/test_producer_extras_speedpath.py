"""produce()'s partition=, timestamp=, headers= path (issue #17): the extras columns stored by
index, the headers sized once per equal headers, and the checks they must not skip."""
import threading
import time

import pytest

import embedlog
from embedlog import KafkaError, KafkaException, Producer
from embedlog.admin import AdminClient, NewPartitions, NewTopic


def read_all(logdir, topic, partition=0):
    with embedlog.open(logdir) as log:
        return log.partition(topic, partition).read(0, max_bytes=1 << 30)


def make_topic(conf, name, nparts):
    a = AdminClient(conf)
    a.create_topics([NewTopic(name, nparts)])[name].result()
    a.close()


def test_mixed_records_in_one_chunk_keep_their_own_extras(conf, logdir):
    """Records with and without each extra interleaved in one chunk longer than the first
    column (64 entries): each reads back with its partition, timestamp and headers."""
    make_topic(conf, "m", 2)
    p = Producer({**conf, "linger.ms": 60000, "batch.num.messages": 100000})
    given = []
    before = int(time.time() * 1000)
    for i in range(1000):
        part = i % 2 if i % 3 == 1 else -1
        ts = 1_000_000 + i if i % 5 == 0 else 0
        hs = [("i", b"%d" % i)] if i % 7 == 0 else ([("same", b"x")] if i % 11 == 0 else None)
        p.produce("m", b"v%d" % i, b"k%d" % i, partition=part, timestamp=ts, headers=hs)
        given.append((part, ts, hs))
    assert len(p) == 1000                    # one chunk, still queued
    assert p.flush() == 0
    got = {}
    for q in (0, 1):
        for r in read_all(logdir, "m", q):
            got[int(r.value[1:])] = (q, r.timestamp, r.headers)
    assert sorted(got) == list(range(1000))
    for i, (part, ts, hs) in enumerate(given):
        q, rts, rhs = got[i]
        if part != -1:
            assert q == part, i
        if ts:
            assert rts == ts, i
        else:
            assert rts >= before, i
        assert rhs == (tuple(hs) if hs else ()), i


def test_chunk_after_chunk_and_a_chunk_longer_than_the_last(conf, logdir):
    """The column length follows the last chunk; a longer one grows and loses nothing."""
    p = Producer({**conf, "linger.ms": 60000, "batch.num.messages": 100000})
    for n in (10, 3000, 5, 200):
        for i in range(n):
            p.produce("g", b"%d" % i, timestamp=5_000 + i, headers=[("n", b"%d" % n)])
        assert p.flush() == 0
    recs = read_all(logdir, "g")
    want = [(5_000 + i, (("n", b"%d" % n),)) for n in (10, 3000, 5, 200) for i in range(n)]
    assert [(r.timestamp, r.headers) for r in recs] == want


def test_threads_racing_past_batch_num_messages(conf, logdir):
    """Several threads producing with extras into chunks of 50: the columns grow past their
    length when records arrive before the chunk is taken, and every record keeps its own."""
    make_topic(conf, "r", 3)
    p = Producer({**conf, "batch.num.messages": 50, "linger.ms": 1})

    def work(t):
        for i in range(3000):
            p.produce("r", b"%d:%d" % (t, i), partition=(t + i) % 3, timestamp=10_000 + i,
                      headers=[("t", b"%d" % t)])
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert p.flush() == 0
    seen = set()
    for q in range(3):
        for r in read_all(logdir, "r", q):
            t, i = map(int, r.value.split(b":"))
            assert (q, r.timestamp, r.headers) == ((t + i) % 3, 10_000 + i, (("t", b"%d" % t),))
            seen.add((t, i))
    assert len(seen) == 12000


def test_headers_are_taken_when_produce_is_called(conf, logdir):
    """The queued record has the headers as given: changing the list afterwards (before the
    send) changes neither it nor a later record produced with the changed list."""
    p = Producer({**conf, "linger.ms": 60000})
    hs = [("h", b"1")]
    p.produce("t", b"a", headers=hs)
    hs.append(("g", b"2"))
    p.produce("t", b"b", headers=hs)
    hs[0] = ("h", b"3")
    p.produce("t", b"c", headers=hs)
    d = {"k": b"1"}
    p.produce("t", b"d", headers=d)
    d["k"] = b"2"
    p.produce("t", b"e", headers=d)
    assert p.flush() == 0
    assert [r.headers for r in read_all(logdir, "t")] == [
        (("h", b"1"),), (("h", b"1"), ("g", b"2")), (("h", b"3"), ("g", b"2")), (("k", b"1"),), (("k", b"2"),)]


def test_bad_headers_raise_even_when_equal_looking_ones_were_sized(conf):
    """The sizing cache never lets through what the checks refuse: a list made bad after a
    good produce(), a non-list that compares equal, a pair of the wrong shape."""
    from collections import UserList
    p = Producer({**conf, "linger.ms": 60000})
    hs = [("h", b"v")]
    p.produce("t", b"x", headers=hs)
    hs[0] = ("h", 5)
    with pytest.raises(TypeError, match="headers must be"):
        p.produce("t", b"x", headers=hs)
    hs[0] = ("h",)
    with pytest.raises(TypeError, match="headers must be"):
        p.produce("t", b"x", headers=hs)
    p.produce("t", b"x", headers=[("h", b"v")])
    with pytest.raises(TypeError, match="headers must be"):
        p.produce("t", b"x", headers=UserList([("h", b"v")]))      # == the cached list, not a list
    with pytest.raises(TypeError, match="headers must be"):
        p.produce("t", b"x", headers="h")
    assert len(p) == 2                       # nothing queued by the failed calls
    assert p.flush() == 0


def test_header_bytes_count_for_message_max_bytes_on_every_call(conf, logdir):
    p = Producer({**conf, "message.max.bytes": 1000, "linger.ms": 60000})
    big = [("h", b"x" * 100)]
    p.produce("t", b"v" * 850, headers=[("h", b"x")])
    for _ in range(2):                       # the second call finds the headers sized
        with pytest.raises(KafkaException) as e:
            p.produce("t", b"v" * 900, headers=big)
        assert e.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    p.produce("t", b"v" * 850, headers=big)
    assert p.flush() == 0
    assert [len(r.value) for r in read_all(logdir, "t")] == [850, 850]


def test_partition_checks_on_the_quick_path(conf):
    make_topic(conf, "p", 2)
    p = Producer({**conf, "linger.ms": 60000})
    p.produce("p", b"x", partition=1)
    for bad in (2, -2, 1 << 40):
        with pytest.raises(KafkaException) as e:
            p.produce("p", b"x", partition=bad)
        assert e.value.args[0].code() == KafkaError._UNKNOWN_PARTITION
        assert "partitions 0..1" in str(e.value)
    for bad in (True, 1.0, "1", None):
        with pytest.raises(TypeError, match="partition must be an int"):
            p.produce("p", b"x", partition=bad)
    for bad in (-1, 1.5, True, "5"):
        with pytest.raises(TypeError, match="timestamp must be"):
            p.produce("p", b"x", partition=0, timestamp=bad)
    assert len(p) == 1
    a = AdminClient(conf)
    with pytest.warns(UserWarning):
        a.create_partitions([NewPartitions("p", 3)])["p"].result()
    a.close()
    p.produce("p", b"y", partition=2)       # a partition added since is known at once
    assert p.flush() == 0
