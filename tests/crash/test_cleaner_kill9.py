"""kill -9 of a process while it applies retention or compacts (issue #6): afterwards the
log is valid and complete, i.e. the old segments or the new ones, never a mix or a loss.

Every record's content is a pure function of its offset, so any record read back can
be checked on its own, and a model of "latest value per key" says what compaction must
preserve. A forked child opens the log and runs `maintain()`; the parent kills it
either at a random moment or at a named crash point (the Nth hit of a failpoint inside
the swap or the deletion), reopens the log (recovery runs) and checks it, then appends
more records so the next round has new dirty data. One directory across all rounds.
"""
from __future__ import annotations

import os
import random
import signal
import time

import pytest

import embedlog
from embedlog.storage import _failpoints

T0 = 1_700_000_000_000
KEYS = 150
DAY = 86_400_000
CRASH_POINTS = ["cleaner.before_swap", "cleaner.swap.committed", "cleaner.swap.deleted_one",
                "cleaner.swap.renamed_one", "retention.log_start_durable", "retention.deleted_one"]


def key_for(i: int) -> bytes:
    # Every 5th record has a key of its own, never written again: its only value lives
    # in an old segment forever, so losing any old segment's data is detected.
    return b"c%d" % i if i % 5 == 0 else b"k%d" % (i * 7919 % KEYS)


def value_for(i: int):
    return None if i % 23 == 0 else b"v%d:" % i + b"x" * (i % 40)


def append_range(part, lo: int, hi: int, rng: random.Random):
    i = lo
    while i < hi:
        n = min(hi - i, rng.randint(1, 30))
        r = part.append_records([value_for(j) for j in range(i, i + n)], [key_for(j) for j in range(i, i + n)],
                                timestamps=[T0 + j for j in range(i, i + n)])
        assert r.base_offset == i
        i += n


def _child(path, topic, now, point, nth, delay_kill):
    code = 0
    try:
        if point:
            hits = [0]

            def die():
                hits[0] += 1
                if hits[0] >= nth:
                    os.kill(os.getpid(), signal.SIGKILL)
            _failpoints.arm(point, die, times=1 << 30)
        log = embedlog.Log(path, create=False)
        log.topic(topic).partition(0).maintain(now, force_compaction=True)
        log.close()
    except BaseException:               # noqa: BLE001 - report through the exit code
        import traceback
        traceback.print_exc()
        code = 1
    os._exit(code)


def run_child(path, topic, now, rng: random.Random) -> str:
    point = rng.choice(CRASH_POINTS + [None, None])
    pid = os.fork()
    if pid == 0:
        _child(path, topic, now, point, rng.randint(1, 3), None)
    if point is None:
        time.sleep(rng.uniform(0, 0.05))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        assert os.WEXITSTATUS(status) == 0, "the maintenance child failed (traceback above)"
        return "finished"
    assert os.WTERMSIG(status) == signal.SIGKILL
    return f"killed at {point or 'a random moment'}"


def check_compacted(part, written: int):
    """Replaying the log gives the model's latest value per key; every record is the one
    written at its offset; offsets increase; nothing beyond the log end."""
    assert part.log_end_offset == written
    latest = {}
    for i in range(written):
        latest[key_for(i)] = i
    seen = {}
    last = -1
    for rec in part.read(part.log_start_offset, max_bytes=1 << 30):
        assert rec.offset > last, "offsets must increase"
        last = rec.offset
        assert rec.key == key_for(rec.offset) and rec.value == value_for(rec.offset), \
            f"record at offset {rec.offset} is not the one written there"
        assert rec.timestamp == T0 + rec.offset
        seen[rec.key] = rec.offset
    for key, off in latest.items():
        if value_for(off) is None:
            # The key's tombstone may be gone, but then no older value may remain either.
            assert seen.get(key) in (None, off), f"{key!r}: an older value outlived its tombstone"
        else:
            assert seen.get(key) == off, f"{key!r}: latest value at {off} lost (found {seen.get(key)})"


def check_retained(part, written: int, prev_start: int) -> int:
    start = part.log_start_offset
    assert prev_start <= start <= written
    assert part.log_end_offset == written
    offsets = []
    off = start
    while off < written:
        recs = part.read(off, max_bytes=1 << 20)
        for rec in recs:
            assert rec.value == value_for(rec.offset) and rec.key == key_for(rec.offset)
        offsets += [r.offset for r in recs]
        off = recs[-1].offset + 1
    assert offsets == list(range(start, written)), "the retained log must be dense from its start"
    return start


def _rounds(crash_iterations, default):
    return crash_iterations or default


def test_kill9_during_compaction(tmp_path, crash_iterations):
    rng = random.Random(int(os.environ.get("EMBEDLOG_SEED", "6")))
    path = str(tmp_path / "log")
    log = embedlog.Log(path)
    log.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": 3000,
                              "delete.retention.ms": DAY, "min.cleanable.dirty.ratio": 0.0})
    written = 0
    log.close()
    outcomes = {}
    for rnd in range(_rounds(crash_iterations, 40)):
        log = embedlog.Log(path, create=False)
        part = log.topic("c").partition(0)
        more = rng.randint(50, 400)
        append_range(part, written, written + more, rng)
        written += more
        log.close()
        now = T0 + written + rng.choice([0, DAY // 2, DAY + 1, 3 * DAY]) * (rnd // 4)
        outcome = run_child(path, "c", now, rng)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        log = embedlog.Log(path, create=False)
        check_compacted(log.topic("c").partition(0), written)
        log.close()
    assert sum(v for k, v in outcomes.items() if k.startswith("killed")) >= 5, outcomes


def test_kill9_during_retention(tmp_path, crash_iterations):
    rng = random.Random(int(os.environ.get("EMBEDLOG_SEED", "7")))
    path = str(tmp_path / "log")
    log = embedlog.Log(path)
    log.create_topic("r", 1, {"segment.bytes": 2000, "retention.bytes": 6000, "retention.ms": 50_000})
    log.close()
    written = start = 0
    killed = 0
    for _ in range(_rounds(crash_iterations, 40)):
        log = embedlog.Log(path, create=False)
        more = rng.randint(20, 300)
        append_range(log.topic("r").partition(0), written, written + more, rng)
        written += more
        log.close()
        now = T0 + written + rng.choice([0, 10_000, 60_000])
        killed += run_child(path, "r", now, rng).startswith("killed")
        log = embedlog.Log(path, create=False)
        start = check_retained(log.topic("r").partition(0), written, start)
        log.close()
    assert start > 0, "retention never deleted anything"
    assert killed >= 5


def test_compaction_after_a_crash_finishes_or_discards_the_swap(tmp_path):
    """Deterministic: a child killed right after the manifest (the commit point) leaves
    a swap that the next opener completes; one killed before it leaves .cleaned files
    that are discarded. Either way the files are exactly one consistent generation."""
    for point, expect_swapped in (("cleaner.before_swap", False), ("cleaner.swap.committed", True)):
        path = str(tmp_path / point)
        log = embedlog.Log(path)
        log.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": 3000})
        part = log.topic("c").partition(0)
        append_range(part, 0, 600, random.Random(1))
        first = os.path.join(part.path, "%020d.log" % 0)
        before = sorted(os.listdir(part.path))
        size_before = os.path.getsize(first)
        log.close()
        pid = os.fork()
        if pid == 0:
            _child(path, "c", T0 + 600, point, 1, None)
        os.waitpid(pid, 0)
        pdir = os.path.join(path, "c-0")
        leftovers = [n for n in os.listdir(pdir) if n.endswith(".cleaned") or n == "cleaner.swap"]
        assert leftovers, "the kill should have left the cleaner's files behind"
        log = embedlog.Log(path, create=False)
        part = log.topic("c").partition(0)
        check_compacted(part, 600)
        after = sorted(os.listdir(pdir))
        assert "cleaner.swap" not in after
        segments = [n for n in after if n.endswith(".log")]
        assert segments == [n for n in before if n.endswith(".log")]   # groups fit one segment each
        if expect_swapped:
            assert os.path.getsize(first) < size_before, "the committed swap was not completed"
            assert not [n for n in after if n.endswith(".cleaned")]
        else:
            assert os.path.getsize(first) == size_before, "an uncommitted cleaning leaked in"
        part.maintain(T0 + 600)             # the next pass discards a dead cleaner's output
        assert not [n for n in os.listdir(pdir) if n.endswith(".cleaned")]
        check_compacted(part, 600)
        log.close()
