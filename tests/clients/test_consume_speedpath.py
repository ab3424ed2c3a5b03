"""consume()'s reused Message objects (#17): the same messages as poll(), and a message
the caller still holds is never re-pointed at another record."""
from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st

import embedlog
from embedlog import Consumer, Producer, TopicPartition

N = 3000


def _log(tmp_path, n=N):
    d = tmp_path / "log"
    with embedlog.open(d) as log:
        log.create_topic("t", partitions=1)
    p = Producer({"bootstrap.servers": f"file://{d}", "acks": 1, "linger.ms": 5, "batch.num.messages": 700})
    for i in range(n):
        p.produce("t", value=b"v%d" % i, key=b"k%d" % i, headers=[("h", b"%d" % i)] if i % 3 == 0 else None,
                  timestamp=1_700_000_000_000 + i)
    assert p.flush() == 0
    p.close()
    return d


def _consumer(d):
    c = Consumer({"bootstrap.servers": f"file://{d}", "group.id": "g", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    c.assign([TopicPartition("t", 0, 0)])
    return c


def _fields(m):
    return (m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp(), len(m))


def _expected(i):
    return ("t", 0, i, b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)] if i % 3 == 0 else None,
            (embedlog.TIMESTAMP_CREATE_TIME, 1_700_000_000_000 + i), len(b"v%d" % i))


def test_consume_returns_what_poll_returns_and_reuses_dropped_messages(tmp_path):
    d = _log(tmp_path)
    c = _consumer(d)
    polled = []
    while len(polled) < N:
        m = c.poll(5.0)
        assert m is not None and m.error() is None
        polled.append(_fields(m))
    c.close()
    assert polled == [_expected(i) for i in range(N)]

    c = _consumer(d)
    consumed, ids_seen, reused = [], set(), 0
    while len(consumed) < N:
        msgs = c.consume(num_messages=250, timeout=5.0)
        assert msgs
        reused += sum(id(m) in ids_seen for m in msgs)
        ids_seen.update(map(id, msgs))
        consumed += map(_fields, msgs)
    c.close()
    assert consumed == polled
    # dropped lists' objects came back (the speed path ran): all but the first calls' worth
    assert reused > N // 2


def test_messages_held_are_never_repointed(tmp_path):
    d = _log(tmp_path)
    c = _consumer(d)
    kept, held_one, held_dict = [], None, {}
    got = 0
    while got < N:
        msgs = c.consume(num_messages=300, timeout=5.0)
        assert msgs
        got += len(msgs)
        kept.append(msgs[::2])          # half of each list held by a new list, the rest dropped
        held_one = msgs[-1]             # one in a variable
        held_dict[msgs[1].offset()] = msgs[1]
        gc.collect()
    c.close()
    for part in kept:
        for m in part:
            assert _fields(m) == _expected(m.offset())
    assert _fields(held_one) == _expected(N - 1)
    assert all(_fields(m) == _expected(o) for o, m in held_dict.items())
    assert [m.offset() for part in kept for m in part] == sorted({m.offset() for part in kept for m in part})


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 700), st.booleans()), min_size=1, max_size=12))
def test_any_mix_of_held_and_dropped_lists_reads_back_right(tmp_path_factory, calls):
    d = _log(tmp_path_factory.mktemp("h"), n=1500)
    c = _consumer(d)
    held, nxt = [], 0
    for n, keep in calls:
        msgs = c.consume(num_messages=n, timeout=0.5)
        assert [m.offset() for m in msgs] == list(range(nxt, nxt + len(msgs)))
        nxt += len(msgs)
        if keep:
            held.append(msgs)
    c.close()
    for msgs in held:
        assert [_fields(m) for m in msgs] == [_expected(m.offset()) for m in msgs]
