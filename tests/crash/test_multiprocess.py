"""Several processes on one log directory at once (README: "Any number of processes may
open the same directory"; appends take an OS lock, readers never lock and sleep on a
futex until data arrives).

Every child is forked and opens its own Log (a Log opened before fork() must not be
used in the child); it returns its result through a pickle file and leaves with
os._exit, so no child ever runs pytest code.
"""
from __future__ import annotations

import os
import pickle
import random
import select
import signal
import time
import traceback

import pytest

import embedlog

TOPIC = "t"


# ---------------------------------------------------------------- process helpers

class Children:
    """Forked children returning a value (or a traceback) through a result file."""

    def __init__(self, tmpdir):
        self.tmpdir = str(tmpdir)
        self.pids: dict[int, str] = {}
        self._n = 0

    def spawn(self, fn, *args):
        self._n += 1
        result = os.path.join(self.tmpdir, f"child-{self._n}.result")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                try:
                    out = ("ok", fn(*args))
                    code = 0
                except BaseException:
                    out = ("error", traceback.format_exc())
                with open(result, "wb") as f:
                    pickle.dump(out, f)
            finally:
                os._exit(code)
        self.pids[pid] = result
        return pid

    def join(self, pid, timeout=120.0):
        deadline = time.monotonic() + timeout
        while True:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                break
            if time.monotonic() > deadline:
                self.kill_all()
                pytest.fail(f"child {pid} did not finish within {timeout} s")
            time.sleep(0.005)
        result = self.pids.pop(pid)
        try:
            with open(result, "rb") as f:
                kind, value = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):
            pytest.fail(f"child {pid} died without a result (status {status:#x})")
        if kind != "ok":
            pytest.fail(f"child {pid} failed:\n{value}")
        assert status == 0
        return value

    def join_all(self, pids, timeout=120.0):
        deadline = time.monotonic() + timeout
        return [self.join(pid, max(0.1, deadline - time.monotonic())) for pid in pids]

    def kill_all(self):
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pids.pop(pid, None)


@pytest.fixture
def children(tmp_path):
    c = Children(tmp_path)
    yield c
    c.kill_all()


class Gate:
    """Start children together: each reports ready, then all block until the parent
    opens the gate (closes the write end, so every child reads EOF at once)."""

    def __init__(self):
        self.go_r, self.go_w = os.pipe()
        self.ready_r, self.ready_w = os.pipe()

    def child_ready_and_wait(self):
        os.close(self.go_w)            # this child's copy; the parent's closes at open()
        os.write(self.ready_w, b"R")
        assert os.read(self.go_r, 1) == b""

    def open(self, n, timeout=60.0):
        """Wait until n children are ready, then release them all."""
        got = 0
        deadline = time.monotonic() + timeout
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.ready_r], [], [], left)[0]:
                pytest.fail(f"only {got} of {n} children became ready")
            got += len(os.read(self.ready_r, n - got))
        os.close(self.go_w)
        for fd in (self.go_r, self.ready_r, self.ready_w):
            os.close(fd)


# ---------------------------------------------------------------- concurrent writers and tailing readers

def _value(w, j, batch_no, pos, n):
    return b"w%d:%d:b%d:%d/%d" % (w, j, batch_no, pos, n)


def _parse(value):
    w, j, b, pn = value.split(b":")
    pos, n = pn.split(b"/")
    return int(w[1:]), int(j), int(b[1:]), int(pos), int(n)


def _writer(path, w, count, seed, gate):
    rng = random.Random(seed)
    with embedlog.open(path) as log:
        p = log.partition(TOPIC, 0)
        gate.child_ready_and_wait()
        out = []
        j = batch_no = 0
        while j < count:
            n = min(rng.randint(1, 50), count - j)
            sync = rng.random() < 0.2
            compression = (0, 1, 3, 0)[w % 4] if rng.random() < 0.5 else 0   # none, gzip, lz4
            values = [_value(w, j + k, batch_no, k, n) for k in range(n)]
            res = p.append_records(values, keys=[b"w%d-%d" % (w, j + k) for k in range(n)],
                                   headers=[[("w", b"%d" % w)]] * n, compression=compression, sync=sync)
            flushed = p.flushed_offset if sync else None
            out.append((batch_no, j, n, res.base_offset, res.last_offset, sync, flushed))
            j += n
            batch_no += 1
            if rng.random() < 0.1:
                time.sleep(rng.uniform(0, 0.002))   # let the others interleave
        return out


def _reader(path, total, seed, gate):
    rng = random.Random(seed)
    with embedlog.open(path) as log:
        p = log.partition(TOPIC, 0)
        gate.child_ready_and_wait()
        seen = []
        nxt = 0
        waits = 0
        while nxt < total:
            if not p.wait(nxt, timeout=30):
                raise AssertionError(f"wait({nxt}) timed out after 30 s with {len(seen)} records seen "
                                     f"(high watermark {p.high_watermark})")
            waits += 1
            hw = p.high_watermark
            assert hw > nxt, f"wait({nxt}) returned True but the high watermark is {hw}"
            kw = rng.choice([dict(), dict(max_bytes=1), dict(max_bytes=700), dict(max_records=7)])
            recs = p.read(nxt, **kw)
            assert recs, f"read({nxt}, {kw}) returned nothing below the high watermark {hw}"
            seen.extend(tuple(r) for r in recs)
            nxt = recs[-1].offset + 1
        return seen, waits


@pytest.mark.parametrize("segment_bytes", [1 << 30, 6000])
def test_concurrent_writers_and_tailing_readers(tmp_path, children, segment_bytes):
    writers, per_writer, readers = 4, 2000, 2
    total = writers * per_writer
    path = str(tmp_path / "log")
    seed = random.randrange(2**32)
    with embedlog.open(path) as log:
        log.create_topic(TOPIC, partitions=1, config={"segment.bytes": segment_bytes,
                                                      "index.interval.bytes": 256})
    gate = Gate()
    reader_pids = [children.spawn(_reader, path, total, seed + 100 + r, gate) for r in range(readers)]
    writer_pids = [children.spawn(_writer, path, w, per_writer, seed + w, gate) for w in range(writers)]
    gate.open(readers + writers)
    acks = children.join_all(writer_pids)
    seen = children.join_all(reader_pids)

    with embedlog.open(path) as log:
        p = log.partition(TOPIC, 0)
        assert p.log_end_offset == p.high_watermark == total
        final = []
        while len(final) < total:
            got = p.read(len(final))
            assert got
            final.extend(got)
        assert p.read(total) == []
        raw = p.read_raw(0, max_bytes=1 << 30)

    ctx = f"seed={seed} segment.bytes={segment_bytes}"
    # Offsets dense and unique, exactly the writers' records, each once.
    assert [r.offset for r in final] == list(range(total)), ctx
    parsed = [_parse(r.value) for r in final]
    assert sorted((w, j) for w, j, *_ in parsed) == [(w, j) for w in range(writers) for j in range(per_writer)], ctx
    for r, (w, j, *_rest) in zip(final, parsed):
        assert r.key == b"w%d-%d" % (w, j) and r.headers == (("w", b"%d" % w),), (ctx, r)
    # Each writer's records in its own order.
    for w in range(writers):
        js = [j for ww, j, *_ in parsed if ww == w]
        assert js == list(range(per_writer)), f"{ctx}: writer {w}'s records are out of order"
    # Batches never interleave: a batch's records are contiguous, in order, and are one stored batch.
    pos_of = {(w, j): r.offset for r, (w, j, *_rest) in zip(final, parsed)}
    for k, (w, j, b, pos, n) in enumerate(parsed):
        if pos == 0:
            block = parsed[k:k + n]
            assert [(x[0], x[2], x[3]) for x in block] == [(w, b, q) for q in range(n)], \
                f"{ctx}: writer {w} batch {b} is not contiguous at offset {k}"
    stored = []
    at = 0
    while at < len(raw):
        h = embedlog.parse_header(raw, at)
        stored.append((h.base_offset, h.records_count))
        at += h.size
    # Every append: the result it got names exactly where its records are; durable ones
    # returned with flushed_offset past them.
    expected_batches = []
    for w, batches in enumerate(acks):
        assert sum(n for _, _, n, *_ in batches) == per_writer
        for batch_no, j, n, base, last, sync, flushed in batches:
            assert (base, last) == (pos_of[(w, j)], pos_of[(w, j)] + n - 1), \
                f"{ctx}: writer {w} batch {batch_no} was acked at {base}..{last}"
            if sync:
                assert flushed >= last + 1, f"{ctx}: sync append {base}..{last} returned with flushed {flushed}"
            expected_batches.append((base, n))
    assert stored == sorted(expected_batches), f"{ctx}: stored batches differ from the appends"
    # Each tailing reader saw exactly the final log, in order.
    final_tuples = [tuple(r) for r in final]
    for r, (got, waits) in enumerate(seen):
        assert len(got) == total, f"{ctx}: reader {r} saw {len(got)} records"
        assert got == final_tuples, f"{ctx}: reader {r} saw a different sequence than the final read"
        assert waits >= 1


# ---------------------------------------------------------------- visibility and wake-ups

def _send(fd, obj):
    data = pickle.dumps(obj)
    os.write(fd, len(data).to_bytes(4, "little") + data)


def _recv(fd, timeout):
    """One message, or None if nothing arrived within `timeout` seconds."""
    if not select.select([fd], [], [], timeout)[0]:
        return None
    hdr = b""
    while len(hdr) < 4:
        chunk = os.read(fd, 4 - len(hdr))
        if not chunk:
            raise EOFError("child closed its pipe")
        hdr += chunk
    n = int.from_bytes(hdr, "little")
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError("child closed its pipe mid-message")
        data += chunk
    return pickle.loads(data)


def _tail_child(path, ctl_r, out_w):
    """Opened once, never reopened: reports what it sees at each step the parent drives."""
    with embedlog.open(path) as log:
        p = log.partition(TOPIC, 0)
        hw0 = p.high_watermark
        _send(out_w, ("opened", hw0, [tuple(r) for r in p.read(0)]))
        assert os.read(ctl_r, 1) == b"A"                   # the parent appended
        _send(out_w, ("read", p.high_watermark, p.log_end_offset, [tuple(r) for r in p.read(hw0)]))
        hw = p.high_watermark
        timed_out = p.wait(hw, timeout=0.2)                # nothing arrives: must be False
        _send(out_w, ("short-wait", timed_out, p.high_watermark))
        _send(out_w, ("waiting", hw))
        t0 = time.monotonic()
        woke = p.wait(hw, timeout=30)
        elapsed = time.monotonic() - t0
        _send(out_w, ("woke", woke, elapsed, p.high_watermark, [tuple(r) for r in p.read(hw)]))
    return True


def test_reader_in_other_process_sees_appends_and_is_woken(tmp_path, children):
    path = str(tmp_path / "log")
    with embedlog.open(path) as log:
        log.create_topic(TOPIC, partitions=1, config={"segment.bytes": 400})
        log.partition(TOPIC, 0).append_records([b"a", b"b"], timestamps=[1, 2])

    n_readers = 2
    pipes = []
    pids = []
    for _ in range(n_readers):
        ctl_r, ctl_w = os.pipe()
        out_r, out_w = os.pipe()
        pids.append(children.spawn(_tail_child, path, ctl_r, out_w))
        os.close(ctl_r)
        os.close(out_w)
        pipes.append((ctl_w, out_r))

    with embedlog.open(path) as log:
        p = log.partition(TOPIC, 0)
        for _, out_r in pipes:
            kind, hw0, recs = _recv(out_r, 30)
            assert (kind, hw0) == ("opened", 2)
            assert [r[3] for r in recs] == [b"a", b"b"]

        # Appended after the readers opened: visible to them without reopening, even
        # across a segment roll (segment.bytes=400).
        first = p.append_records([b"c%d" % i + b"." * 40 for i in range(5)], timestamps=[3] * 5)
        second = p.append_records([b"d%d" % i + b"." * 40 for i in range(5)], timestamps=[4] * 5)
        assert (first.base_offset, second.last_offset) == (2, 11)
        expected = [tuple(r) for r in p.read(2)]
        assert [r[3][:2] for r in expected] == [b"c0", b"c1", b"c2", b"c3", b"c4", b"d0", b"d1", b"d2", b"d3", b"d4"]
        for ctl_w, out_r in pipes:
            os.write(ctl_w, b"A")
            kind, hw, leo, recs = _recv(out_r, 30)
            assert (kind, hw, leo) == ("read", 12, 12)
            assert recs == expected

        for _, out_r in pipes:
            assert _recv(out_r, 30) == ("short-wait", False, 12)
            assert _recv(out_r, 30) == ("waiting", 12)
        # The readers are blocked in wait(12, timeout=30): nothing may come out of them
        # while there is no data (a wait that returns early would report here).
        for _, out_r in pipes:
            assert _recv(out_r, 0.5) is None, "wait() returned although no data arrived"
        res = p.append_records([b"wake"], timestamps=[5])
        assert res.base_offset == 12
        for _, out_r in pipes:
            msg = _recv(out_r, 25)
            assert msg is not None, "a reader blocked in wait() was not woken by the append"
            kind, woke, _elapsed, hw, recs = msg
            assert kind == "woke" and woke is True     # True: woken by the data, not its timeout
            assert hw == 13
            assert [(r[0], r[3]) for r in recs] == [(12, b"wake")]
    for ctl_w, out_r in pipes:
        os.close(ctl_w)
        os.close(out_r)
    assert children.join_all(pids) == [True] * n_readers


def _append_one_later(path, delay):
    time.sleep(delay)
    with embedlog.open(path) as log:
        return tuple(log.partition(TOPIC, 0).append_records([b"from-child"]))


def test_wait_is_woken_by_an_append_from_another_process(tmp_path, children):
    """The waiter is the parent; the appender a child that starts after the wait began."""
    path = str(tmp_path / "log")
    with embedlog.open(path) as log:
        log.create_topic(TOPIC, partitions=1)
        p = log.partition(TOPIC, 0)
        pid = children.spawn(_append_one_later, path, 0.3)
        assert p.wait(0, timeout=30) is True
        assert p.high_watermark == 1
        assert [r.value for r in p.read(0)] == [b"from-child"]
        assert children.join(pid) == (0, 0, -1)
        assert p.wait(1, timeout=0.1) is False


# ---------------------------------------------------------------- topic creation races

def _create_topics(path, names, partitions, gate):
    with embedlog.open(path) as log:
        gate.child_ready_and_wait()
        out = {}
        for name in names:
            t = log.create_topic(name, partitions=partitions)
            res = t.partition(partitions - 1).append_records([name.encode()])
            out[name] = (t.topic_id, tuple(res))
        return out


def test_concurrent_creates_of_different_topics_all_succeed(tmp_path, children):
    path = str(tmp_path / "log")
    embedlog.open(path).close()
    procs, per_proc = 4, 5
    gate = Gate()
    names = [[f"p{k}-topic{i}" for i in range(per_proc)] for k in range(procs)]
    pids = [children.spawn(_create_topics, path, names[k], k + 1, gate) for k in range(procs)]
    gate.open(procs)
    results = children.join_all(pids)
    with embedlog.open(path) as log:
        assert log.topics() == sorted(n for ns in names for n in ns)
        for k, res in enumerate(results):
            for name in names[k]:
                topic_id, append_result = res[name]
                assert append_result == (0, 0, -1)
                t = log.topic(name)
                assert t.num_partitions == k + 1
                assert t.topic_id == topic_id
                assert [r.value for r in t.partition(k).read(0)] == [name.encode()]
                for q in range(k):
                    assert t.partition(q).log_end_offset == 0


def _create_same(path, name, partitions, gate):
    with embedlog.open(path) as log:
        gate.child_ready_and_wait()
        try:
            t = log.create_topic(name, partitions=partitions)
            outcome = "created"
        except embedlog.TopicExistsError:
            outcome = "exists"
            t = log.topic(name)      # the winner's topic is visible to the loser
        return outcome, partitions, t.num_partitions, t.topic_id


def test_concurrent_creates_of_the_same_topic_exactly_one_wins(tmp_path, children):
    path = str(tmp_path / "log")
    embedlog.open(path).close()
    rounds = 10
    for i in range(rounds):
        name = f"same-{i}"
        gate = Gate()
        pids = [children.spawn(_create_same, path, name, parts, gate) for parts in (1, 3)]
        gate.open(2)
        results = children.join_all(pids)
        outcomes = sorted(r[0] for r in results)
        assert outcomes == ["created", "exists"], f"round {i}: {results}"
        winner = next(r for r in results if r[0] == "created")
        # Both see the winner's topic: its partition count and its id.
        assert all(r[2] == winner[1] and r[3] == winner[3] for r in results), f"round {i}: {results}"
        with embedlog.open(path) as log:
            t = log.topic(name)
            assert (t.num_partitions, t.topic_id) == (winner[1], winner[3])
            for q in range(t.num_partitions):
                assert t.partition(q).append_records([b"x"]).base_offset == 0
        # The loser created nothing: no partition folder beyond the winner's.
        extra = [q for q in range(winner[1], 3) if os.path.exists(os.path.join(path, f"{name}-{q}"))]
        assert not extra, f"round {i}: the losing create left partition folders {extra}"
    with embedlog.open(path) as log:
        assert log.topics() == sorted(f"same-{i}" for i in range(rounds))


def _open_fresh_dir(path, gate):
    gate.child_ready_and_wait()
    with embedlog.open(path) as log:
        name = f"pid{os.getpid()}"
        log.create_topic(name)
        return name


def test_concurrent_first_open_of_a_new_directory(tmp_path, children):
    """Several processes open (and so create) the same not-yet-existing directory at once:
    all succeed and end up with one valid log directory."""
    for i in range(5):
        path = str(tmp_path / f"log{i}")
        gate = Gate()
        pids = [children.spawn(_open_fresh_dir, path, gate) for _ in range(4)]
        gate.open(4)
        names = children.join_all(pids)
        with embedlog.open(path, create=False) as log:
            assert log.topics() == sorted(names)
