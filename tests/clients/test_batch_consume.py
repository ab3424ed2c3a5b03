"""Consumer.consume_batch(): columns equal to what poll() hands out (compaction gaps,
codecs, several partitions, control batches), positions and commits by chunk (issue #17)."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embedlog
from embedlog import Consumer, KafkaException, TopicPartition
from embedlog.storage import _state
from embedlog.storage._records import ATTR_CONTROL, encode_batch, parse_header


def append_control_batch(part):
    """A transaction marker (COMMIT) as a transactional producer's broker writes it. Clients
    may not append one (append_batches refuses), so this goes below that check."""
    batch = encode_batch([b"\x00\x00\x00\x00\x00\x00"], [b"\x00\x00\x00\x01"], transactional=True,
                         producer_id=7, producer_epoch=0, base_sequence=-1, extra_attributes=ATTR_CONTROL)
    with part._mutex:
        part._lock()
        try:
            part._append_locked([batch], [parse_header(batch)], [])
        finally:
            part.state.unlock(_state.LOCK_APPEND)


def build_log(logdir, partitions, rounds, codec, control):
    """A compacted topic whose closed segments were cleaned (offset gaps), written in
    batches of a few records, with a control batch in partition 0 when asked."""
    with embedlog.open(logdir) as log:
        t = log.create_topic("t", partitions=partitions,
                             config={"cleanup.policy": "compact", "segment.bytes": "600",
                                     "min.cleanable.dirty.ratio": "0.01"})
        for r, batch in enumerate(rounds):
            keys = [b"k%d" % k for k, _v in batch]
            values = [None if v is None else b"v%d-%d" % (r, v) for _k, v in batch]
            headers = [[("r", b"%d" % r)] if v is not None and v % 2 else None for _k, v in batch]
            t.append(values, keys, timestamps=[1000 + r] * len(batch), headers=headers, compression=codec)
            if control and r == len(rounds) // 2:
                append_control_batch(t.partition(0))
        for p in range(partitions):
            t.partition(p).compact()


def by_poll(conf, partitions):
    c = Consumer({**conf, "group.id": "poll", "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition("t", p, 0) for p in range(partitions)])
    out = {p: [] for p in range(partitions)}
    eofs = set()
    while len(eofs) < partitions:
        m = c.poll(5)
        assert m is not None
        if m.error():
            eofs.add(m.partition())
            continue
        out[m.partition()].append((m.offset(), m.key(), m.value(), m.timestamp()[1], tuple(m.headers() or ())))
    c.close()
    return out


def by_batches(conf, partitions, max_messages):
    c = Consumer({**conf, "group.id": "batch", "enable.auto.commit": False})
    c.assign([TopicPartition("t", p, 0) for p in range(partitions)])
    ends = {}
    with embedlog.open(conf["bootstrap.servers"][7:]) as log:
        for p in range(partitions):
            ends[p] = log.partition("t", p).high_watermark
    out = {p: [] for p in range(partitions)}
    chunks = []
    while any(c.position([TopicPartition("t", p)])[0].offset < ends[p] for p in range(partitions)):
        got = c.consume_batch(max_messages, 5)
        assert got
        assert sum(map(len, got)) <= max_messages
        for ch in got:
            assert ch.topic == "t"
            cols = (ch.offsets, ch.keys, ch.values, ch.timestamps, ch.headers)
            assert len(set(map(len, cols))) == 1 and len(ch) == len(ch.offsets) > 0
            out[ch.partition].extend(zip(*cols))
            chunks.append(ch)
    assert c.consume_batch(10, 0) == []
    c.close()
    return out, chunks


batches = st.lists(st.lists(st.tuples(st.integers(0, 6), st.one_of(st.none(), st.integers(0, 50))),
                            min_size=1, max_size=8), min_size=1, max_size=25)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=batches, partitions=st.integers(1, 3), codec=st.sampled_from([0, 1, 3, 4]),
       control=st.booleans(), max_messages=st.integers(1, 40))
def test_consume_batch_columns_equal_poll(tmp_path_factory, rounds, partitions, codec, control, max_messages):
    logdir = str(tmp_path_factory.mktemp("cb") / "log")
    build_log(logdir, partitions, rounds, codec, control)
    conf = {"bootstrap.servers": f"file://{logdir}"}
    expected = by_poll(conf, partitions)
    got, _chunks = by_batches(conf, partitions, max_messages)
    assert got == expected
    for rows in got.values():
        offsets = [r[0] for r in rows]
        assert offsets == sorted(set(offsets))


def test_control_batches_are_skipped_and_gaps_passed(tmp_path):
    logdir = str(tmp_path / "log")
    build_log(logdir, 1, [[(k, k) for k in range(5)], [(k, 10 + k) for k in range(5)]] * 3, 0, True)
    conf = {"bootstrap.servers": f"file://{logdir}"}
    got, _ = by_batches(conf, 1, 1000)
    with embedlog.open(logdir) as log:
        hw = log.partition("t", 0).high_watermark
    offsets = [r[0] for r in got[0]]
    assert len(offsets) < hw                      # the marker and compacted records hold offsets
    assert offsets != list(range(offsets[0], offsets[0] + len(offsets)))      # gaps
    assert all(not (r[1] or b"").startswith(b"\x00\x00") for r in got[0])
    assert {r[2] for r in got[0]} >= {b"v5-%d" % (10 + k) for k in range(5)}   # the latest of each key


def test_commit_by_chunk_then_a_new_consumer_resumes_after_it(tmp_path):
    logdir = str(tmp_path / "log")
    with embedlog.open(logdir) as log:
        t = log.create_topic("t", partitions=2)
        for i in range(40):
            t.append([b"v%d" % j for j in range(50)], partition=i % 2)
    conf = {"bootstrap.servers": f"file://{logdir}", "group.id": "g", "enable.auto.commit": False,
            "max.partition.fetch.bytes": 1000}
    c = Consumer(conf)
    c.assign([TopicPartition("t", 0, 0), TopicPartition("t", 1, 0)])
    got = []
    while sum(map(len, got)) < 700:
        got.extend(c.consume_batch(300, 5))
    last0 = [ch for ch in got if ch.partition == 0][-1]
    assert last0.commit() == [TopicPartition("t", 0, last0.next_offset)]
    last1 = [ch for ch in got if ch.partition == 1][-1]
    c.commit(last1, asynchronous=False)
    assert [tp.offset for tp in c.committed([TopicPartition("t", 0), TopicPartition("t", 1)])] == \
        [last0.next_offset, last1.next_offset]
    # the consumer's own position moved past every chunk it handed out
    assert c.position([TopicPartition("t", 0)])[0].offset == last0.next_offset
    c.close()
    c2 = Consumer(conf)
    c2.assign([TopicPartition("t", 0), TopicPartition("t", 1)])
    first = {}
    while len(first) < 2:
        for ch in c2.consume_batch(100, 5):
            first.setdefault(ch.partition, ch.offsets[0])
    assert first == {0: last0.next_offset, 1: last1.next_offset}
    # commit() without arguments commits the positions past the chunks
    c2.commit(asynchronous=False)
    c2.close()


def test_bad_arguments_and_error_events(tmp_path):
    logdir = str(tmp_path / "log")
    with embedlog.open(logdir) as log:
        log.create_topic("t", partitions=1).append([b"a", b"b"])
    c = Consumer({"bootstrap.servers": f"file://{logdir}", "group.id": "g", "auto.offset.reset": "error"})
    for bad in (0, -1, "10", True):
        with pytest.raises(ValueError, match="max_messages"):
            c.consume_batch(bad, 0)
    c.assign([TopicPartition("t", 0)])          # no committed offset, reset=error: an error event
    with pytest.raises(KafkaException, match="auto.offset.reset"):
        c.consume_batch(10, 1)
    c.seek(TopicPartition("t", 0, 0))
    (ch,) = c.consume_batch(10, 5)
    assert ch.values == [b"a", b"b"] and ch.next_offset == 2
    c.close()


# ---------------------------------------------------------------- the columns' decoder

def reference_records(batch):
    """The records of one batch, decoded byte by byte in Python (FORMAT.md §3), to check
    decode_columns' C paths against something that shares none of their code."""
    from embedlog.storage import _compression
    from embedlog.storage._records import HEADER_SIZE, decode_varint
    h = parse_header(batch)
    body = batch[HEADER_SIZE:h.size]
    if h.compression:
        body = _compression.decompress(h.compression, body)
    pos, out = 0, []
    for _ in range(h.records_count):
        length, pos = decode_varint(body, pos)
        end = pos + length
        pos += 1                                        # attributes
        ts_delta, pos = decode_varint(body, pos)
        offset_delta, pos = decode_varint(body, pos)
        fields = []
        for _field in (0, 1):
            n, pos = decode_varint(body, pos)
            fields.append(None if n < 0 else bytes(body[pos:pos + n]))
            pos += max(n, 0)
        count, pos = decode_varint(body, pos)
        headers = []
        for _h in range(count):
            n, pos = decode_varint(body, pos)
            hk = bytes(body[pos:pos + n]).decode("utf-8", "surrogateescape")
            pos += n
            n, pos = decode_varint(body, pos)
            headers.append((hk, None if n < 0 else bytes(body[pos:pos + n])))
            pos += max(n, 0)
        assert pos == end
        out.append((h.base_offset + offset_delta, h.base_timestamp + ts_delta, fields[0], fields[1],
                    tuple(headers)))
    return out


field = st.one_of(st.none(), st.binary(max_size=300))


@settings(max_examples=150, deadline=None)
@given(records=st.lists(st.tuples(field, field), min_size=1, max_size=60),
       stamps=st.one_of(st.none(), st.lists(st.integers(0, 2**45), min_size=60, max_size=60)),
       codec=st.sampled_from([0, 1, 3]), base=st.integers(0, 2**40),
       with_headers=st.booleans(), marshal_path=st.booleans())
def test_decode_columns_equals_a_python_decoder(records, stamps, codec, base, with_headers, marshal_path):
    """Both ways decode_columns cuts keys and values (one marshal stream built in C, or
    the slices it falls back to where marshal cannot read that stream) give exactly the
    reference decoder's records: nulls, empty fields, every length, codecs, headers."""
    from embedlog.storage import _records
    keys = [k for k, _v in records]
    values = [v for _k, v in records]
    headers = [[("h", k), ("\udcff", None)] if k else None for k in keys] if with_headers else None
    batch = _records.build_batch(values, keys, None if stamps is None else stamps[:len(records)], headers,
                                 compression=codec, base_offset=base)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_records, "_MARSHAL_OK", marshal_path)
        got = [tuple(r) for r in _records.decode_records(batch)]
    assert got == reference_records(batch)
    assert [r[2] for r in got] == keys and [r[3] for r in got] == values


def test_marshal_stream_is_what_marshal_reads_and_refuses_a_short_buffer():
    """el_marshal_columns' stream: marshal.loads gives (keys, values) with None for -1
    lengths; a buffer one byte short of the bound is refused, not overrun."""
    import marshal

    from embedlog.storage import _hotpath as hp
    from embedlog.storage import _records
    assert _records._MARSHAL_OK        # CPython 3.x reads it: the fast path is the one in use
    src = b"KEYvalue2"
    ints = hp.new("int32_t[]", [0, 3, 0,   3, -1, 0,   3, 8, 0,   5, 1, 0])
    n = 3
    need = 15 + 10 * n + 3 + 5 + 1
    out = hp.new("char[]", need)
    m = hp.lib.el_marshal_columns(src, ints, ints + n, ints + 2 * n, ints + 3 * n, n, out, need)
    assert marshal.loads(hp.ffi.buffer(out, m)) == ([b"KEY", None, b""], [b"value", b"2", b""])
    assert hp.lib.el_marshal_columns(src, ints, ints + n, ints + 2 * n, ints + 3 * n, n, out, need - 1) == -1
