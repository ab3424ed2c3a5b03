"""The cleaner's C passes (csrc/cleaner.c through embedlog/storage/_cleaner.py).

The C key map and filter pass must write exactly the bytes the Python reference writes
(a dict of key -> latest offset and `_cleaner.clean_batch`, the path compressed batches
still take) over real partitions; a key map bounded by log.cleaner.dedupe.buffer.size
cleans over several passes to the same records; bad input says what and where.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as s

import embedlog
from embedlog.storage import _cleaner
from embedlog.storage import _state as st
from embedlog.storage._errors import ConfigError, CorruptRecordError
from embedlog.storage._records import Columns, decode_columns
from embedlog.storage._segment import list_segments, segment_name

T0 = 1_700_000_000_000
RETENTION = 1000


def _log(path, config=None):
    log = embedlog.Log(str(path), retention_check_interval_ms=0)
    cfg = {"cleanup.policy": "compact", "segment.bytes": 4096, "retention.ms": -1,
           "min.cleanable.dirty.ratio": 0.0, "delete.retention.ms": RETENTION}
    cfg.update(config or {})
    return log, log.create_topic("t", 1, cfg).partition(0)


def _roll(part):
    # The active segment is never cleaned: close it as a full one would be, and publish.
    def roll(fields):
        part._roll_locked(fields)
        fields[st.F_SEGMENTS_VERSION] += 1
        part.state.publish(fields)
    part._with_append_lock(roll)


def _segment_files(part):
    return [os.path.join(part.path, segment_name(b) + ".log") for b in list_segments(part.path)]


def _reference(part_path, first_dirty: int, now: int):
    """What one forced cleaning of every closed segment of the partition at `part_path`
    writes, by the Python reference: the concatenated bytes of the cleaned batches."""
    bases = list_segments(part_path)[:-1]                   # the active segment is not cleaned
    paths = [os.path.join(part_path, segment_name(b) + ".log") for b in bases]
    dirty_from = max([b for b in bases if b <= first_dirty] or [bases[0]])
    latest = {}
    for b, p in zip(bases, paths):
        if b < dirty_from:
            continue
        for buf, pos, h in _cleaner.iter_segment_batches(p, os.path.getsize(p)):
            if h.records_count:
                latest.update(zip(decode_columns(buf, pos, h).keys, decode_columns(buf, pos, h).offsets))
    latest.pop(None, None)
    stats = {"records_out": 0, "tombstones_removed": 0, "next_horizon": None}
    out = []
    for p in paths:
        for buf, pos, h in _cleaner.iter_segment_batches(p, os.path.getsize(p)):
            if not h.records_count:
                continue
            cols = decode_columns(buf, pos, h)
            data = _cleaner.clean_batch(h, cols, list(map(latest.get, cols.keys)), now, now + RETENTION, stats)
            if data is True:
                data = buf[pos:pos + h.size]
            if data is not None:
                out.append(bytes(data))
    return b"".join(out), stats


def _closed_bytes(part) -> bytes:
    files = _segment_files(part)[:-1]
    return b"".join(Path(f).read_bytes() for f in files)


record = s.tuples(s.sampled_from([None, b"", b"a", b"b", b"c", b"d" * 20]),       # key
                  s.one_of(s.none(), s.binary(max_size=40)),                       # value (None: tombstone)
                  s.booleans())                                                    # headers
batch = s.tuples(s.lists(record, min_size=1, max_size=12), s.sampled_from([0, 0, 3]),  # codec (3: lz4)
                 s.integers(0, 50))                                                # timestamp spread


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=s.lists(batch, min_size=1, max_size=10), second=s.lists(batch, max_size=4),
       log_append=s.booleans(), later=s.sampled_from([0, RETENTION - 1, RETENTION, 5 * RETENTION]))
def test_c_passes_write_the_reference_bytes(tmp_path_factory, first, second, log_append, later):
    """Two cleanings (the second meets the first's delete horizons): each time the cleaned
    segments hold exactly the bytes of the Python reference, and the stats agree."""
    root = tmp_path_factory.mktemp("c")
    log, part = _log(root / "log", {"segment.bytes": 2048,
                                    "message.timestamp.type": "LogAppendTime" if log_append else "CreateTime"})
    try:
        now = T0 + 100
        for rounds, when in ((first, now), (second, now + later)):
            for recs, codec, spread in rounds:
                ts = [T0 + (i * spread) % 97 for i in range(len(recs))]
                part.append_records([v for _k, v, _h in recs], [k for k, _v, _h in recs], timestamps=ts,
                                    headers=[[("h", b"x")] if h else None for _k, _v, h in recs],
                                    compression=codec)
            _roll(part)
            ck = _cleaner.read_cleaner_checkpoint(part.path)
            snap = root / f"snap{when}"
            shutil.copytree(part.path, snap)
            want, ref = _reference(str(snap), ck["first_dirty_offset"] if ck else 0, when)
            stats = part.compact(when)
            assert _closed_bytes(part) == want
            if stats is not None:
                assert stats["records_out"] == ref["records_out"]
                assert stats["tombstones_removed"] == ref["tombstones_removed"]
            shutil.rmtree(snap)
    finally:
        log.close()


def _replay(part) -> dict:
    seen = {}
    off = part.log_start_offset
    while off < part.log_end_offset:
        cols, off = part.fetch(off, 1 << 20)
        seen.update(zip(cols.keys, zip(cols.offsets, cols.values)))
    return seen


def test_a_bounded_key_map_cleans_over_several_passes(tmp_path):
    """A map of 24 KiB (921 keys at 90%) over 3,000 keys: each pass stops where the map
    filled, and the passes together leave what one pass with room for all leaves."""
    buffer = 1024 * 24
    small_log, small = _log(tmp_path / "small", {"log.cleaner.dedupe.buffer.size": buffer,
                                                 "segment.bytes": 16384})
    big_log, big = _log(tmp_path / "big", {"segment.bytes": 16384})
    try:
        keys = [b"k%05d" % (i % 3000) for i in range(6000)]
        for part in (small, big):
            for i in range(0, len(keys), 100):
                part.append_records([b"v%d" % j for j in range(i, i + 100)], keys[i:i + 100], timestamps=[T0] * 100)
            _roll(part)
        one = big.compact(T0 + 1)
        assert one["keys"] == 3000 and one["records_in"] > one["records_out"]
        passes = []
        for _ in range(10):
            st = small.compact(T0 + 1)
            passes.append(st)
            assert st["keys"] <= int(buffer // 24 * 0.9)
            if st["cleaned_up_to"] >= one["cleaned_up_to"]:
                break
        assert len(passes) >= 3, [p["cleaned_up_to"] for p in passes]
        assert [p["cleaned_up_to"] for p in passes] == sorted(p["cleaned_up_to"] for p in passes)
        assert _replay(small) == _replay(big) == {k: (i, b"v%d" % i) for i, k in enumerate(keys)}
        assert _closed_bytes(small) == _closed_bytes(big)
    finally:
        small_log.close()
        big_log.close()


def test_keymap_grows_and_keeps_every_key():
    km = _cleaner.KeyMap(1 << 24)
    keys = [b"key-%d" % i for i in range(200_000)]
    km.put_columns(Columns(list(range(200_000)), [], keys, [], []))
    assert len(km) == 200_000 and km.memory_bytes <= 1 << 24
    assert km.newest(keys[::997] + [b"absent", None]) == list(range(0, 200_000, 997)) + [None, None]


def test_a_map_too_small_for_one_batch_says_so_and_writes_nothing(tmp_path):
    log, part = _log(tmp_path / "log", {"log.cleaner.dedupe.buffer.size": 48 * 10})
    try:
        part.append_records([b"v"] * 50, [b"%d" % i for i in range(50)], timestamps=[T0] * 50)
        _roll(part)
        before = {f: Path(part.path, f).read_bytes() for f in sorted(os.listdir(part.path))}
        with pytest.raises(ValueError, match=r"log.cleaner.dedupe.buffer.size \(480 bytes\).* at position 0"):
            part.compact(T0 + 1)
        after = {f: Path(part.path, f).read_bytes() for f in sorted(os.listdir(part.path))}
        assert after == before
    finally:
        log.close()
    with pytest.raises(ConfigError, match="log.cleaner.dedupe.buffer.size"):
        embedlog.Log(str(tmp_path / "other"), retention_check_interval_ms=0).create_topic(
            "t", 1, {"log.cleaner.dedupe.buffer.size": 10})


def test_a_damaged_record_is_named_and_the_segments_stay(tmp_path):
    log, part = _log(tmp_path / "log")
    try:
        for i in range(5):
            part.append_records([b"v%d" % i] * 10, [b"k%d" % j for j in range(10)], timestamps=[T0] * 10)
        _roll(part)
        seg = _segment_files(part)[0]
        data = bytearray(Path(seg).read_bytes())
        data[-3] ^= 0xFF                                  # inside the last batch's records (CRC-covered)
        Path(seg).write_bytes(data)
        with pytest.raises(CorruptRecordError, match=r"CRC-32C mismatch in .*00000000000000000000\.log at position"):
            part.compact(T0 + 1)
        assert Path(seg).read_bytes() == bytes(data)
        assert not [f for f in os.listdir(part.path) if f.endswith(".swap")]
    finally:
        log.close()
