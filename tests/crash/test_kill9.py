"""kill -9 of writer processes at random moments (README: "A process killed mid-append
releases its lock, and the next writer recovers the partition's tail").

A forked writer appends batches of records whose content is a pure function of the
record's offset and of the writer's generation, and reports every acknowledged batch
to the parent through a pipe right after `append_records` returns. The parent
SIGKILLs it at a random moment, reopens the log (which runs recovery) and checks that
the partition is exactly a gap-free prefix of what the writers meant to write:

* every acknowledged record is at the offset its ack reported, byte-identical;
* offsets are dense from 0 and record i carries the value, key, timestamp and headers
  for index i; the only records a dead writer may leave beyond its last ack are the
  whole next batch it was appending (indeterminate outcome), never a part of it,
  garbage or a duplicate;
* log_end_offset == high_watermark == number of records read; every offset reads;
* the bytes of the log below the previously verified end never change, and the
  segment files are whole batches named by their first offset.

Everything runs on ONE directory across all kills: each writer continues from the log
end offset it finds. Sometimes the parent skips its check, so the next writer itself
recovers the previous writer's tail (and may be killed while doing so).
"""
from __future__ import annotations

import os
import random
import select
import signal
import struct
import time
import traceback

import pytest

import embedlog

TOPIC = "t"
T0 = 1_700_000_000_000          # record i has timestamp T0 + i
MSG = struct.Struct("<cqqqq")   # kind, a, b, c, d: 33 bytes < PIPE_BUF, so every write is atomic
ACK_START, ACK_BATCH = b"S", b"A"


# ---------------------------------------------------------------- intended content

def value_for(gen: int, i: int) -> bytes:
    return b"%d:%d:" % (gen, i) + b"x" * (i % 23)


def key_for(i: int):
    return None if i % 13 == 0 else b"k%d" % i


def headers_for(i: int) -> tuple:
    return () if i % 5 == 0 else (("i", b"%d" % i),)


def expected_record(gen: int, i: int) -> embedlog.Record:
    return embedlog.Record(i, T0 + i, key_for(i), value_for(gen, i), headers_for(i))


def gen_of(value) -> int | None:
    try:
        return int(bytes(value).split(b":", 1)[0])
    except (TypeError, ValueError):
        return None


class Plan:
    """The deterministic batch sizes and sync flags of one writer generation; the parent
    rebuilds the same sequence from the seed to know what the writer was doing."""

    def __init__(self, seed: int, sync_mode: str):
        self._rng = random.Random(seed)
        self._items: list[tuple[int, bool]] = []
        self.sync_mode = sync_mode

    def __getitem__(self, k: int) -> tuple[int, bool]:
        while len(self._items) <= k:
            n = self._rng.randint(1, 50)
            if self.sync_mode == "never":
                sync = False
            elif self.sync_mode == "always":
                sync = True
            else:
                sync = self._rng.random() < 0.25
            self._items.append((n, sync))
        return self._items[k]


# ---------------------------------------------------------------- the writer child

def _send(fd, kind, a=0, b=0, c=0, d=0):
    os.write(fd, MSG.pack(kind, a, b, c, d))


def _writer_main(path, gen, seed, sync_mode, wfd):
    # A fresh Log: one opened before fork() must not be used here.
    log = embedlog.open(path)
    p = log.partition(TOPIC, 0)
    i = p.log_end_offset
    _send(wfd, ACK_START, i)
    plan = Plan(seed, sync_mode)
    k = 0
    while True:
        n, sync = plan[k]
        idx = range(i, i + n)
        res = p.append_records([value_for(gen, j) for j in idx], keys=[key_for(j) for j in idx],
                               timestamps=[T0 + j for j in idx], headers=[list(headers_for(j)) for j in idx],
                               sync=sync)
        flushed = p.flushed_offset if sync else -1
        _send(wfd, ACK_BATCH, res.base_offset, res.last_offset, int(sync), flushed)
        i = res.last_offset + 1
        k += 1


def _spawn_writer(path, gen, seed, sync_mode, errfile):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(r)
            _writer_main(path, gen, seed, sync_mode, w)
        except BaseException:
            try:
                with open(errfile, "w") as f:
                    f.write(traceback.format_exc())
            finally:
                os._exit(70)
        os._exit(71)
    os.close(w)
    return pid, r


class Generation:
    def __init__(self, gen, seed, sync_mode):
        self.gen = gen
        self.seed = seed
        self.plan = Plan(seed, sync_mode)
        self.start = None         # log end offset the writer found (None: killed before it reported)
        self.acks = []            # (base, last, sync, flushed)

    def take(self, buf: bytes):
        for pos in range(0, len(buf), MSG.size):
            kind, a, b, c, d = MSG.unpack_from(buf, pos)
            if kind == ACK_START:
                assert self.start is None and not self.acks, f"generation {self.gen}: duplicate start message"
                self.start = a
            else:
                assert kind == ACK_BATCH, f"generation {self.gen}: unknown message {kind!r}"
                self.acks.append((a, b, bool(c), d))


def run_writer(path, gen: Generation, rng: random.Random, tmpdir, *, max_delay: float, max_acks: int):
    """Fork a writer, SIGKILL it at a random moment, collect every ack it sent."""
    errfile = os.path.join(tmpdir, f"writer-{gen.gen}.err")
    pid, r = _spawn_writer(path, gen.gen, gen.seed, gen.plan.sync_mode, errfile)
    buf = bytearray()
    try:
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0, max_delay))            # a random moment after start
        else:
            want = rng.randint(1, max_acks)                  # right after the K-th ack
            deadline = time.monotonic() + 20
            while sum(1 for p in range(0, len(buf) - len(buf) % MSG.size, MSG.size)
                      if buf[p:p + 1] == ACK_BATCH) < want:
                left = deadline - time.monotonic()
                assert left > 0, f"writer {gen.gen} sent no ack for 20 s"
                if select.select([r], [], [], left)[0]:
                    chunk = os.read(r, 65536)
                    if not chunk:
                        break                                # died on its own: reported below
                    buf += chunk
    finally:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
        os.close(r)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        err = open(errfile).read() if os.path.exists(errfile) else "(no traceback)"
        pytest.fail(f"writer {gen.gen} exited on its own (status {status:#x}) before the kill:\n{err}")
    assert len(buf) % MSG.size == 0, "a torn message in the ack pipe (writes are atomic)"
    gen.take(bytes(buf))


# ---------------------------------------------------------------- the checker

class Model:
    """What the parent knows the log must hold."""

    def __init__(self):
        self.end = 0              # verified log end offset
        self.raw = b""            # the log's bytes (all batches) at the last check
        self.regions = []         # (start, end, gen) of every writer's records
        self.pending: list[Generation] = []
        self.stats = dict(iterations=0, verified=0, kills_before_start=0, acked_records=0,
                          durable_batches=0, acked_batches=0, unacked_batch_kept=0,
                          empty_active_segment=0, full_checks=0)


def read_range(p, lo: int, hi: int) -> list:
    out = []
    o = lo
    while o < hi:
        got = p.read(o, max_bytes=1 << 22)
        assert got, f"read({o}) returned nothing below the log end offset {hi}"
        assert got[0].offset == o, f"read({o}) started at offset {got[0].offset}"
        out.extend(got)
        o = got[-1].offset + 1
    assert o == hi, f"reading [{lo}, {hi}) ended at {o}"
    assert [r.offset for r in out] == list(range(lo, hi)), f"offsets in [{lo}, {hi}) are not dense"
    return out


def raw_batches(raw: bytes, pos: int = 0):
    """(position, header) of every batch in raw[pos:], which must be whole batches."""
    out = []
    while pos < len(raw):
        h = embedlog.parse_header(raw, pos)           # whole, magic 2, CRC ok
        out.append((pos, h))
        pos += h.size
    assert pos == len(raw)
    return out


def check_segment_files(pdir: str, raw: bytes, end: int) -> tuple[int, bool]:
    """The .log files are whole batches, each named by its first offset, contiguous,
    ending at the log end offset, and together exactly the bytes read_raw returned.
    Returns how many segments there are and whether the active one is empty."""
    bases = sorted(int(n[:-4]) for n in os.listdir(pdir) if n.endswith(".log") and n[:-4].isdigit())
    assert bases and bases[0] == 0, f"segments {bases[:5]}... do not start at 0"
    parts = []
    expect = 0
    for k, base in enumerate(bases):
        with open(os.path.join(pdir, f"{base:020d}.log"), "rb") as f:
            data = f.read()
        assert base == expect, f"segment {base:020d}.log does not start where the previous one ended ({expect})"
        if not data:
            assert k == len(bases) - 1, f"empty segment {base:020d}.log is not the last one"
        for pos, h in raw_batches(data):
            assert h.base_offset == expect, \
                f"{base:020d}.log position {pos}: batch at offset {h.base_offset}, expected {expect}"
            expect = h.next_offset
        parts.append(data)
    assert expect == end, f"the segment files end at offset {expect}, the log end offset is {end}"
    assert b"".join(parts) == raw, "read_raw() differs from the segment files"
    return len(bases), not parts[-1]


def verify(path, model: Model, rng: random.Random, *, full: bool):
    """Reopen (recovering the dead writer's tail) and check everything against the model."""
    log = embedlog.open(path)
    try:
        p = log.partition(TOPIC, 0)
        end = p.log_end_offset
        assert p.high_watermark == end, f"high watermark {p.high_watermark} != log end offset {end}"
        assert p.log_start_offset == 0
        assert p.flushed_offset <= end, f"flushed offset {p.flushed_offset} beyond the log end {end}"
        assert end >= model.end, f"the log shrank from {model.end} to {end}"

        new = read_range(p, model.end, end)
        by_offset = lambda i: new[i - model.end]  # noqa: E731
        expected_batches = []     # (base, count) of every batch the writers wrote since the last check
        cursor = model.end
        for g in model.pending:
            if g.start is None:
                assert not g.acks
                model.stats["kills_before_start"] += 1
                continue
            assert g.start == cursor, \
                f"writer {g.gen} found log end offset {g.start}, but the log before it ends at {cursor}"
            acked = cursor
            for k, (base, last, sync, flushed) in enumerate(g.acks):
                n, want_sync = g.plan[k]
                assert (base, last) == (acked, acked + n - 1), \
                    f"writer {g.gen} batch {k} of {n} records acked at {base}..{last}, expected {acked}.."
                assert sync == want_sync
                if sync:
                    assert flushed >= last + 1, \
                        f"append(sync=True) of {base}..{last} returned with flushed_offset {flushed}"
                    model.stats["durable_batches"] += 1
                expected_batches.append((acked, n))
                acked += n
            model.stats["acked_batches"] += len(g.acks)
            model.stats["acked_records"] += acked - cursor
            assert end >= acked, f"writer {g.gen} had records up to {acked - 1} acknowledged; log end is {end}"
            g_end = acked
            if acked < end and gen_of(by_offset(acked).value) == g.gen:
                # The batch in flight when the writer died survived: it must be the whole batch.
                n, _ = g.plan[len(g.acks)]
                assert acked + n <= end, \
                    f"writer {g.gen}: only part of its unacknowledged {n}-record batch at {acked} is in the log"
                expected_batches.append((acked, n))
                g_end = acked + n
                model.stats["unacked_batch_kept"] += 1
            for i in range(cursor, g_end):
                got = by_offset(i)
                assert got == expected_record(g.gen, i), f"offset {i}: {got} != {expected_record(g.gen, i)}"
            model.regions.append((cursor, g_end, g.gen))
            cursor = g_end
        assert cursor == end, (f"records {cursor}..{end - 1} were written by no writer: first is "
                               f"{by_offset(cursor) if cursor < end else None}")

        raw = p.read_raw(0, max_bytes=1 << 40)
        assert raw[:len(model.raw)] == model.raw, "bytes below the previously verified end changed"
        got_batches = [(h.base_offset, h.records_count) for _, h in raw_batches(raw, len(model.raw))]
        assert got_batches == expected_batches, "batch boundaries differ from the appends (split/merged batches)"

        # Reads may start at any offset (the new records were all read above; here single
        # records from 200 random starting offsets), and nothing reads past the end.
        offsets = range(model.end, end)
        sample = offsets if len(offsets) <= 200 else rng.sample(offsets, 200)
        for o in sample:
            got = p.read(o, max_bytes=1, max_records=1)
            assert [r.offset for r in got] == [o], f"read({o}, max_records=1) -> {got}"
            assert got[0] == by_offset(o)
        assert p.read(end) == []
        with pytest.raises(embedlog.OffsetOutOfRangeError):
            p.read(end + 1)

        if full:
            check_full(p, model, raw, end, rng)
        model.end = end
        model.raw = raw
        model.pending = []
        model.stats["verified"] += 1
        nsegs, empty_active = check_segment_files(p.path, raw, end)
        model.stats["segments"] = nsegs
        model.stats["empty_active_segment"] += empty_active
        model.stats["log_end_offset"] = end
    finally:
        # Half the time close cleanly (clean checkpoint, no scan next time), else drop the
        # handles as a crash would.
        if rng.random() < 0.5:
            log.close()
        else:
            log._abandon()


def check_full(p, model: Model, raw: bytes, end: int, rng: random.Random):
    model.stats["full_checks"] += 1
    records = read_range(p, 0, end)
    pos = 0
    for start, stop, gen in model.regions:
        assert start == pos
        for i in range(start, stop):
            assert records[i] == expected_record(gen, i), f"offset {i}: {records[i]}"
        pos = stop
    assert pos == end
    # Reading from any offset works (each such read decodes a whole batch, so 1500 at
    # random), through the index, and a batch start reads its whole batch (300 at random).
    for o in rng.sample(range(end), min(end, 1500)):
        assert p.read(o, max_bytes=1, max_records=1) == [records[o]]
    batches = raw_batches(raw)
    for _, h in rng.sample(batches, min(len(batches), 300)):
        got = p.read(h.base_offset, max_bytes=1)
        assert got == records[h.base_offset:h.next_offset], f"read({h.base_offset}, max_bytes=1) -> {got}"



# A directory is used for at most this many kills or segments, then the loop continues in
# a fresh one: the log grows with every writer, each check rereads all of it, and a Log
# keeps 3 descriptors open per segment it has read (the .log and both indexes), so
# --crash-iterations=2000 on one directory would be quadratic and run into EMFILE.
ITERATIONS_PER_DIR = 250
SEGMENTS_PER_DIR = 1500


def run_kill_loop(tmp_path, iterations: int, *, sync_mode: str, config: dict, seed: int,
                  max_delay: float = 0.02, max_acks: int = 40, skip_verify: float = 0.25) -> dict:
    rng = random.Random(seed)
    total: dict = {}
    models = []
    it = 0
    try:
        for it in range(iterations):
            if not models or (not models[-1].pending and (
                    models[-1].stats["iterations"] >= ITERATIONS_PER_DIR or
                    models[-1].stats.get("segments", 0) >= SEGMENTS_PER_DIR)):
                if models:   # leave the full directory with a complete check
                    verify(path, models[-1], rng, full=True)
                path = str(tmp_path / f"log{len(models)}")
                with embedlog.open(path) as log:
                    log.create_topic(TOPIC, partitions=1, config=config)
                models.append(Model())
            model = models[-1]
            g = Generation(model.stats["iterations"], rng.getrandbits(32), sync_mode)
            run_writer(path, g, rng, str(tmp_path), max_delay=max_delay, max_acks=max_acks)
            model.pending.append(g)
            model.stats["iterations"] += 1
            last = it == iterations - 1
            if last or rng.random() >= skip_verify:
                verify(path, model, rng, full=last or model.stats["verified"] % 10 == 9)
    except AssertionError as e:
        raise AssertionError(f"[seed={seed} dir={len(models) - 1} iteration={it} sync_mode={sync_mode} "
                             f"config={config}] {e}") from e
    for model in models:
        for k, v in model.stats.items():
            total[k] = total.get(k, 0) + v
    total["directories"] = len(models)
    # Not vacuous: the writers did get records acknowledged before their deaths.
    assert total["acked_records"] > 0
    assert total["acked_batches"] >= iterations // 4, total
    print(f"\nkill -9 loop seed={seed} sync_mode={sync_mode} config={config}: {total}")
    return total


def _seed():
    return int(os.environ.get("EMBEDLOG_CRASH_SEED", random.randrange(2**32)))


# ---------------------------------------------------------------- tests

def test_kill9_acks1_mixed_durable(tmp_path, crash_iterations):
    """acks=1 appends with a quarter durable (sync=True), segments of 20 kB."""
    stats = run_kill_loop(tmp_path, crash_iterations, sync_mode="mixed", seed=_seed(),
                          config={"segment.bytes": 20000, "index.interval.bytes": 512})
    assert stats["segments"] > 1, "no segment roll happened"


def test_kill9_durable_appends(tmp_path, crash_iterations):
    """Every append is sync=True: each ack must have come back with flushed_offset past it."""
    stats = run_kill_loop(tmp_path, crash_iterations, sync_mode="always", seed=_seed(),
                          config={"segment.bytes": 20000, "index.interval.bytes": 512})
    assert stats["durable_batches"] == stats["acked_batches"] > 0


def test_kill9_during_segment_rolls(tmp_path, crash_iterations):
    """segment.bytes=2000: a roll (fsyncs, new files, checkpoint) every batch or two, so
    most kills land inside a roll."""
    stats = run_kill_loop(tmp_path, crash_iterations, sync_mode="mixed", seed=_seed(),
                          config={"segment.bytes": 2000, "index.interval.bytes": 128})
    assert stats["segments"] >= crash_iterations // 2, stats


def _long_run_enabled(config) -> bool:
    expr = config.getoption("markexpr") or ""
    return (config.getoption("--crash-iterations") is not None or bool(os.environ.get("EMBEDLOG_SOAK"))
            or ("crash" in expr and "not crash" not in expr))


@pytest.mark.crash
@pytest.mark.parametrize("sync_mode,segment_bytes", [("mixed", 20000), ("always", 4000), ("never", 2000)])
def test_kill9_soak(tmp_path, request, crash_iterations, sync_mode, segment_bytes):
    """The long run: longer writer lifetimes, all sync modes, tiny segments."""
    if not _long_run_enabled(request.config):
        pytest.skip("long kill -9 run: enable with -m crash, --crash-iterations=N or EMBEDLOG_SOAK=1")
    iterations = crash_iterations if request.config.getoption("--crash-iterations") else max(crash_iterations, 500)
    run_kill_loop(tmp_path, iterations, sync_mode=sync_mode, seed=_seed(), max_delay=0.05, max_acks=200,
                  config={"segment.bytes": segment_bytes, "index.interval.bytes": 256})


# ---------------------------------------------------------------- the append lock

def _fork_lock_holder(path, torn_tail: bytes | None):
    """A child that takes the append lock (and optionally starts an append: in_append set,
    `torn_tail` written past the published end) and then blocks forever."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            log = embedlog.open(path)
            p = log.partition(TOPIC, 0)
            assert p.state.lock(0, None)
            if torn_tail is not None:
                p.state.set_in_append(os.getpid())
                pdir = p.path
                active = max(n for n in os.listdir(pdir) if n.endswith(".log"))
                fd = os.open(os.path.join(pdir, active), os.O_WRONLY)
                os.pwrite(fd, torn_tail, os.fstat(fd).st_size)
            os.write(w, b"L")
            while True:
                time.sleep(60)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(70)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 20)
    got = os.read(r, 1) if ready else b""
    os.close(r)
    if got != b"L":
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the lock-holder child did not take the lock")
    return pid


def _make_log(tmp_path):
    path = str(tmp_path / "log")
    with embedlog.open(path) as log:
        log.create_topic(TOPIC, partitions=1)
        log.partition(TOPIC, 0).append_records([b"a", b"b", b"c"], timestamps=[1, 2, 3])
    return path


def test_kill9_of_append_lock_holder_releases_the_lock(tmp_path):
    path = _make_log(tmp_path)
    pid = _fork_lock_holder(path, None)
    killed = False
    log = embedlog.open(path, lock_timeout=0.5)
    try:
        p = log.partition(TOPIC, 0)
        with pytest.raises(embedlog.LockTimeoutError):       # the child really holds it
            p.append_records([b"blocked"])
        assert p.log_end_offset == 3
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        killed = True
        # The kernel released the dead holder's lock: the same handle, with the same short
        # lock timeout, now appends instead of raising LockTimeoutError.
        res = p.append_records([b"after"], timestamps=[4])
        assert (res.base_offset, res.last_offset) == (3, 3)
        assert [r.value for r in p.read(0)] == [b"a", b"b", b"c", b"after"]
        assert p.log_end_offset == 4
    finally:
        if not killed:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        log.close()
    with embedlog.open(path, lock_timeout=0.5) as log:      # and a fresh process-level open too
        p = log.partition(TOPIC, 0)
        assert p.append_records([b"again"]).base_offset == 4
        assert [r.value for r in p.read(0)] == [b"a", b"b", b"c", b"after", b"again"]


@pytest.mark.parametrize("tail", ["half_batch", "garbage", "header_only"])
def test_kill9_mid_append_leaves_no_trace_of_a_torn_batch(tmp_path, tail):
    """The holder died between its write and its publish (in_append set) after writing
    part of a batch: the next writer recovers, drops the torn bytes and appends at the
    old log end."""
    path = _make_log(tmp_path)
    batch = bytearray(embedlog.build_batch([b"torn-%d" % i for i in range(40)], timestamps=[9] * 40))
    batch[0:8] = (3).to_bytes(8, "big")     # as the writer stamps it (outside the CRC)
    torn = {"half_batch": bytes(batch[:len(batch) // 2]),
            "garbage": random.Random(1).randbytes(300),
            "header_only": bytes(batch[:61])}[tail]
    pid = _fork_lock_holder(path, torn)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with embedlog.open(path, lock_timeout=5) as log:
        p = log.partition(TOPIC, 0)
        assert p.log_end_offset == 3
        res = p.append_records([b"d"], timestamps=[4])
        assert res.base_offset == 3
        assert [(r.offset, r.value) for r in p.read(0)] == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    with embedlog.open(path) as log:   # and again from the files
        p = log.partition(TOPIC, 0)
        raw = p.read_raw(0)
        assert [(h.base_offset, h.records_count) for _, h in raw_batches(raw)] == [(0, 3), (3, 1)]
        check_segment_files(p.path, raw, 4)
